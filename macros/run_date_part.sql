{#- A part (year, month, day) of the date the dbt invocation started, as an integer literal: one as-of
    date for the whole run, whatever the warehouse clock or time zone says. -#}
{% macro run_date_part(part) -%}
    {%- set formats = {'year': '%Y', 'month': '%m', 'day': '%d'} -%}
    {{- run_started_at.strftime(formats[part]) | int -}}
{%- endmacro %}
