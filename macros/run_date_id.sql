{#- The date_id (the yyyymmdd integer of macro date_id) of the as-of date (macro as_of: the var, or the
    moment the dbt invocation started), as an integer literal: one as-of date for the whole run, whatever
    the warehouse clock or time zone says. -#}
{% macro run_date_id() -%}
    {{- as_of().strftime('%Y%m%d') | int -}}
{%- endmacro %}
