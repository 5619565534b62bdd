{#- A full refresh (or a first build) of an incremental model that reads raw events and forms would
    silently drop the history `python -m loaders retention --apply` purged from raw. The incremental path
    stays exact (only rows whose appointment is closed and built are purged), so such a rebuild is refused
    instead, naming what happened. Lossy on purpose: `--vars '{allow_full_refresh_after_purge: true}'`. -#}
{#- The refusal message when raw.retention_log records an applied purge of raw events and forms, else ''. -#}
{% macro purged_raw_history_message(what) -%}
    {%- set log = adapter.get_relation(database=target.database, schema='raw', identifier='retention_log') -%}
    {%- if log is none -%}
        {{ return('') }}
    {%- endif -%}
    {%- set row = run_query(
        "select count(*), coalesce(sum(rows_deleted), 0), max(logged_at) from " ~ log
        ~ " where applied and rows_deleted > 0 and policy = 'raw_events_and_forms'").rows[0] -%}
    {%- if row[0] == 0 -%}
        {{ return('') }}
    {%- endif -%}
    {{ return(what ~ ": refusing a full refresh: retention purged " ~ row[1]
        ~ " raw event and form rows (last on " ~ row[2] ~ ", see raw.retention_log), so a rebuild from raw"
        ~ " would lose that history. Build incrementally (plain `dbt build`: exact after a purge), or rebuild"
        ~ " knowingly with --vars '{allow_full_refresh_after_purge: true}'. See docs/privacy.md.") }}
{%- endmacro %}

{#- on-run-start: a --full-refresh that selects a guarded model stops before anything is built. -#}
{% macro refuse_full_refresh_after_purge_at_start() -%}
    {%- if execute and flags.WHICH in ('run', 'build') and flags.FULL_REFRESH
        and not var('allow_full_refresh_after_purge', false) -%}
        {#- the models that call refuse_full_refresh_after_purge -#}
        {%- set guarded_models = [
            'int_appointments_derived_from_events', 'dim_patient', 'fact_appointment', 'fact_feedback'] -%}
        {%- set guarded = [] -%}
        {%- for unique_id in selected_resources -%}
            {%- if unique_id.startswith('model.') and unique_id.split('.')[-1] in guarded_models -%}
                {%- do guarded.append(unique_id.split('.')[-1]) -%}
            {%- endif -%}
        {%- endfor -%}
        {%- if guarded -%}
            {%- set message = purged_raw_history_message(guarded | join(', ')) -%}
            {%- if message -%}
                {{ exceptions.raise_compiler_error(message) }}
            {%- endif -%}
        {%- endif -%}
    {%- endif -%}
    select 1
{%- endmacro %}

{#- In each guarded model: also a first build (the table missing), which no flag announces. -#}
{% macro refuse_full_refresh_after_purge() -%}
    {#- unit tests build from their fixtures, never from raw: not a rebuild -#}
    {%- if execute and model.resource_type == 'model' and not is_incremental()
        and not var('allow_full_refresh_after_purge', false) -%}
        {%- set message = purged_raw_history_message(this.identifier) -%}
        {%- if message -%}
            {{ exceptions.raise_compiler_error(message) }}
        {%- endif -%}
    {%- endif -%}
{%- endmacro %}
