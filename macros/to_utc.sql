{#- A timestamp with time zone (or an ISO 8601 string with an offset) as a UTC timestamp without time
    zone: every `_at` column of the project is UTC, whatever offset the producer sent. -#}
{% macro to_utc(expression) -%}
    {{ return(adapter.dispatch('to_utc', 'telemed')(expression)) }}
{%- endmacro %}

{% macro default__to_utc(expression) -%}
    (cast({{ expression }} as timestamp with time zone) at time zone 'UTC')
{%- endmacro %}

{% macro redshift__to_utc(expression) -%}
    convert_timezone('UTC', cast({{ expression }} as timestamptz))
{%- endmacro %}
