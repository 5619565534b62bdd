{#- The date_id of a date or timestamp: the yyyymmdd integer of its calendar day (dim_date's key), e.g.
    20261031. Timestamps are UTC in this project, so this is the UTC day. -#}
{% macro date_id(expression) -%}
    {%- set year = extract_date_part('year', expression) -%}
    {%- set month = extract_date_part('month', expression) -%}
    {%- set day = extract_date_part('day', expression) -%}
    ({{ year }} * 10000 + {{ month }} * 100 + {{ day }})
{%- endmacro %}
