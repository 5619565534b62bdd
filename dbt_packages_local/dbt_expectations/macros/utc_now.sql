{#- The warehouse's current time as a UTC timestamp without time zone, the type of every `_at` column the
    recency test compares with. -#}
{% macro utc_now() -%}
    {{ return(adapter.dispatch('utc_now', 'dbt_expectations')()) }}
{%- endmacro %}

{% macro default__utc_now() -%}
    (cast({{ dbt.current_timestamp() }} as timestamp with time zone) at time zone 'UTC')
{%- endmacro %}

{% macro redshift__utc_now() -%}
    convert_timezone('UTC', cast({{ dbt.current_timestamp() }} as timestamptz))
{%- endmacro %}
