{#- Data tests on the rows a run touched: the scheduled run after a load (`dbt build --selector hourly`)
    tests only the rows of a table loaded within var lookback_days of its newest load, so its cost follows
    the new data, not the size of the warehouse; every other invocation (the nightly build, deploys,
    `make test`) tests every row. See docs/dbt.md, "Hourly and nightly runs". -#}

{#- True in the scheduled run after a load: the `hourly` selector, or TELEMED_RUN_SCOPE=hourly (the hourly
    DAG's Cosmos tasks, which select model by model instead of naming the selector; `nightly` forces the
    other way). It then tests touched rows only and leaves the all-time p90 to the nightly build. Only read
    while executing, so the environment variable never enters the parsed manifest. -#}
{% macro hourly_run() -%}
    {%- if not execute -%}
        {{ return(false) }}
    {%- endif -%}
    {%- set scope = env_var('TELEMED_RUN_SCOPE', '') -%}
    {%- if scope not in ('', 'hourly', 'nightly') -%}
        {{ exceptions.raise_compiler_error("TELEMED_RUN_SCOPE must be 'hourly' or 'nightly', not '" ~ scope ~ "'") }}
    {%- endif -%}
    {%- if scope -%}
        {{ return(scope == 'hourly') }}
    {%- endif -%}
    {{ return(invocation_args_dict.get('selector') == 'hourly') }}
{%- endmacro %}

{#- The start of the recent loads of `relation`: its newest `column` (a load time) minus var lookback_days,
    as a timestamp literal, or none when the relation has no rows (or while parsing). A literal, so the
    planner reads the recent rows through the column's index (as macro incremental_watermark does for an
    incremental model's own table). -#}
{% macro recent_loads_start(relation, column='last_loaded_at') -%}
    {%- if not execute or relation is none -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set newest -%}
        select {{ dbt.dateadd('day', -var('lookback_days'), 'max(' ~ column ~ ')') }} from {{ relation }}
    {%- endset -%}
    {%- set value = run_query(newest).columns[0].values()[0] -%}
    {%- if value is none -%}
        {{ return(none) }}
    {%- endif -%}
    {{ return("cast('" ~ value.isoformat() ~ "' as timestamp with time zone)") }}
{%- endmacro %}

{#- The start of the loads a run on touched rows covers in `relation`, as a timestamp literal (none without
    rows): those within var lookback_days of the table's newest load (macro recent_loads_start) and of the
    newest appointment event built (int_appointments_derived_from_events, the stream every run follows),
    whichever start is later. The second bound keeps a table whose loads stopped, such as patients loaded
    once, from counting as touched in every run: its rows loaded long before the run's new data were
    handled by the runs after their loads (and every nightly build handles all rows). -#}
{% macro touched_loads_start(relation, column='last_loaded_at') -%}
    {%- if not execute -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set events = graph.nodes.get('model.telemed.int_appointments_derived_from_events') -%}
    {%- set events_relation = adapter.get_relation(events.database, events.schema, events.alias) if events else none -%}
    {%- if events_relation is none -%}
        {{ return(recent_loads_start(relation, column)) }}
    {%- endif -%}
    {#- One query (each is a round trip in every test of the run): the later of the two newest loads. -#}
    {%- set newest -%}
        with newest as (
            select
                (select max({{ column }}) from {{ relation }}) as own_load,
                (select max(last_loaded_at) from {{ events_relation }}) as event_load
        )
        select {{ dbt.dateadd(
            'day',
            -var('lookback_days'),
            'greatest(coalesce(own_load, event_load), coalesce(event_load, own_load))'
        ) }}
        from newest
    {%- endset -%}
    {%- set start = run_query(newest).columns[0].values()[0] -%}
    {%- if start is none -%}
        {{ return(none) }}
    {%- endif -%}
    {{ return("cast('" ~ start.isoformat() ~ "' as timestamp with time zone)") }}
{%- endmacro %}

{#- A predicate on `column` (a load time) of `relation` keeping the rows this run touched (macro
    touched_loads_start), or `true` when the run tests every row. -#}
{% macro touched_rows(relation, column='last_loaded_at') -%}
    {%- set start = touched_loads_start(relation, column) if hourly_run() else none -%}
    {%- if start is none -%}
        true
    {%- else -%}
        {{ column }} >= {{ start }}
    {%- endif -%}
{%- endmacro %}

{#- dbt's own hook for the `where` config of generic tests (ours, dbt_expectations' and dbt's), overridden
    here so that, in a run on touched rows, a test on a model with a `last_loaded_at` column (declared in
    its YAML) also keeps to the touched rows. A test's own `where` still applies, in both scopes. -#}
{% macro get_where_subquery(relation) -%}
    {%- set conditions = [] -%}
    {%- set where = config.get('where', '') -%}
    {%- if where -%}
        {%- do conditions.append('(' ~ where ~ ')') -%}
    {%- endif -%}
    {%- if hourly_run() and 'last_loaded_at' in graph.nodes.get(model.attached_node, {}).get('columns', {}) -%}
        {%- do conditions.append(touched_rows(relation)) -%}
    {%- endif -%}
    {%- if conditions -%}
        {%- set filtered -%}
            (select * from {{ relation }} where {{ conditions | join(' and ') }}) dbt_subquery
        {%- endset -%}
        {%- do return(filtered) -%}
    {%- else -%}
        {%- do return(relation) -%}
    {%- endif -%}
{%- endmacro %}
