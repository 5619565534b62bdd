{#- Table grants come from the `grants` config of the marts; the reporting role also needs usage on the
    schema itself, which dbt does not grant. Runs at the start of every invocation, so a fresh database is
    readable as soon as the first mart is built. -#}
{% macro grant_reporting_schema_usage(schema_name) -%}
    {%- if execute and flags.WHICH in ('run', 'build', 'seed', 'snapshot') -%}
        create schema if not exists {{ adapter.quote(schema_name) }};
        grant usage on schema {{ adapter.quote(schema_name) }} to {{ var('reporting_role', 'telemed_reporting') }}
    {%- else -%}
        select 1
    {%- endif -%}
{%- endmacro %}
