{#- Dimension keys of the "unknown" members facts point to when a fact has no known member yet
    (an appointment that never started has no device). One place, so facts and dimensions agree. -#}
{% macro unknown_key(kind='integer') -%}
    {%- if kind == 'integer' -%}-1{%- else -%}'-1'{%- endif -%}
{%- endmacro %}
