{#- A full refresh (or a first build) of a model that reads raw events and forms would silently drop the
    history `python -m loaders retention --apply` purged from raw. The incremental path stays exact (only
    rows whose appointment is closed and built are purged), so this refuses the rebuild instead, naming
    what happened. Lossy on purpose: `--vars '{allow_full_refresh_after_purge: true}'`. -#}
{% macro refuse_full_refresh_after_purge() -%}
    {#- unit tests build from their fixtures, never from raw: not a rebuild -#}
    {%- if execute and model.resource_type == 'model' and not is_incremental()
        and not var('allow_full_refresh_after_purge', false) -%}
        {%- set log = adapter.get_relation(database=target.database, schema='raw', identifier='retention_log') -%}
        {%- if log is not none -%}
            {%- set found = run_query(
                "select count(*), coalesce(sum(rows_deleted), 0), max(logged_at) from " ~ log
                ~ " where applied and rows_deleted > 0 and policy = 'raw_events_and_forms'") -%}
            {%- set row = found.rows[0] -%}
            {%- if row[0] > 0 -%}
                {{ exceptions.raise_compiler_error(
                    this.identifier ~ ": refusing a full refresh: retention purged " ~ row[1]
                    ~ " raw event and form rows (last on " ~ row[2] ~ ", see raw.retention_log), so a rebuild"
                    ~ " from raw would lose that history. Build incrementally (plain `dbt build`: exact after a"
                    ~ " purge), or rebuild knowingly with --vars '{allow_full_refresh_after_purge: true}'."
                    ~ " See the README, Retention and privacy.") }}
            {%- endif -%}
        {%- endif -%}
    {%- endif -%}
{%- endmacro %}
