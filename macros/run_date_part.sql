{#- A part (year, month, day) of the as-of date (macro as_of: the var, or the moment the dbt invocation
    started), as an integer literal: one as-of date for the whole run, whatever the warehouse clock or
    time zone says. -#}
{% macro run_date_part(part) -%}
    {%- set formats = {'year': '%Y', 'month': '%m', 'day': '%d'} -%}
    {{- as_of().strftime(formats[part]) | int -}}
{%- endmacro %}
