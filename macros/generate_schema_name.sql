{#- Schemas are the exact names of docs/architecture.md (staging, intermediate, marts, monitoring) in every
    target: isolation between environments comes from separate databases, not schema prefixes. -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
