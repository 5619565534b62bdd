{#- An integer date part. Postgres and Redshift both spell it extract(); the cast keeps the type integer
    (Postgres returns numeric). `isodow` is Monday 1 .. Sunday 7 on both. -#}
{% macro extract_date_part(part, expression) -%}
    {{ return(adapter.dispatch('extract_date_part', 'telemed')(part, expression)) }}
{%- endmacro %}

{% macro default__extract_date_part(part, expression) -%}
    cast(extract({{ part }} from {{ expression }}) as integer)
{%- endmacro %}
