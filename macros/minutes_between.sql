{#- Minutes from `start` to `end` (two timestamps), with the seconds as a fraction: what dbt.datediff cannot
    give (it truncates to whole units), for the call sessions' join lags and measured durations. -#}
{% macro minutes_between(start, end) -%}
    {{ return(adapter.dispatch('minutes_between', 'telemed')(start, end)) }}
{%- endmacro %}

{% macro default__minutes_between(start, end) -%}
    (extract(epoch from ({{ end }}) - ({{ start }})) / 60.0)
{%- endmacro %}

{% macro redshift__minutes_between(start, end) -%}
    (datediff(second, {{ start }}, {{ end }}) / 60.0)
{%- endmacro %}
