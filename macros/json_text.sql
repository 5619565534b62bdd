{#- A top-level field of a JSON payload as text. The raw tables keep each message as jsonb on Postgres;
    on Redshift the payload is SUPER/varchar, read with json_extract_path_text. -#}
{% macro json_text(column, key) -%}
    {{ return(adapter.dispatch('json_text', 'telemed')(column, key)) }}
{%- endmacro %}

{% macro default__json_text(column, key) -%}
    ({{ column }} ->> '{{ key }}')
{%- endmacro %}

{% macro redshift__json_text(column, key) -%}
    json_extract_path_text({{ column }}, '{{ key }}', true)
{%- endmacro %}
