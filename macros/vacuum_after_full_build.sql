{#- Post-hook of every model (dbt_project.yml), run after the model's transaction has committed: an incremental
    table built in full (its first build, or --full-refresh) is vacuumed and analyzed at once.
    - The statistics: without them Postgres guesses that a third of the rows pass a range condition, so the
      scheduled run's reads of the recent rows (`last_loaded_at >=` a literal: macros touched_rows,
      incremental_watermark) became scans of the whole table until autovacuum came by. Later runs merge a few
      rows: the planner then finds rows newer than its histogram through the index itself, and autovacuum
      keeps the statistics current.
    - The vacuum: a table just written has no page marked all-visible, so every read of a key goes to the
      heap. Vacuumed, the key tests that follow in the same `dbt build` (unique, the proportion of unique
      values, relationships) and the dashboards read the key's index alone: at 1M appointments
      `fact_appointment`'s proportion-of-unique test took 0.7-0.8 s instead of 3.1-3.6, its unique test
      0.4-0.6 s instead of 0.9-1.1, for 0.45 s of vacuum per million rows. It also leaves autovacuum nothing
      to do on the new table, where it would otherwise start at some later minute, perhaps during an hourly
      run.
    VACUUM cannot run in a transaction, hence the hook's `transaction: false`. Nothing for views and tables
    rebuilt in every run (small). -#}
{% macro vacuum_after_full_build() -%}
    {%- if execute and config.get('materialized') == 'incremental' -%}
        {{ return(adapter.dispatch('vacuum_after_full_build', 'telemed')()) }}
    {%- endif -%}
{%- endmacro %}

{#- Elsewhere (Redshift vacuums and analyzes new tables itself): nothing. -#}
{% macro default__vacuum_after_full_build() -%}
{%- endmacro %}

{#- A table without any statistics yet (pg_stats has no row for it) is one just built in full. -#}
{% macro postgres__vacuum_after_full_build() -%}
    {%- set statistics = run_query(
        "select 1 from pg_catalog.pg_stats where schemaname = '" ~ this.schema
        ~ "' and tablename = '" ~ this.identifier ~ "' limit 1"
    ) -%}
    {%- if statistics.rows | length == 0 -%}
        vacuum (analyze) {{ this }}
    {%- endif -%}
{%- endmacro %}
