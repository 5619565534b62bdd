{#- Post-hook of every model (dbt_project.yml): an incremental table built in full (its first build, or
    --full-refresh) gets its planner statistics at once. Without them Postgres guesses that a third of the
    rows pass a range condition, so the scheduled run's reads of the recent rows (`last_loaded_at >=` a
    literal: macros touched_rows, incremental_watermark) became scans of the whole table until autovacuum
    came by. Later runs merge a few rows: the planner then finds rows newer than its histogram through the
    index itself, and autovacuum keeps the statistics current. Nothing for views and tables rebuilt in
    every run (small). -#}
{% macro analyze_after_full_build() -%}
    {%- if execute and config.get('materialized') == 'incremental' -%}
        {{ return(adapter.dispatch('analyze_after_full_build', 'telemed')()) }}
    {%- endif -%}
{%- endmacro %}

{#- Elsewhere (Redshift analyzes new tables itself): nothing. -#}
{% macro default__analyze_after_full_build() -%}
{%- endmacro %}

{#- A table without any statistics yet (pg_stats has no row for it) is one just built in full. -#}
{% macro postgres__analyze_after_full_build() -%}
    do $$
    begin
        if not exists (
            select 1 from pg_catalog.pg_stats
            where schemaname = '{{ this.schema }}' and tablename = '{{ this.identifier }}'
        ) then
            analyze {{ this }};
        end if;
    end
    $$
{%- endmacro %}
