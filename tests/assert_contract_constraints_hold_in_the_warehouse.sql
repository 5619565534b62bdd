-- Every model under an enforced contract ends with the constraints its contract declares: each not_null
-- column NOT NULL and the primary_key column the table's primary key, whether dbt-postgres declared them
-- before filling the table or macros/create_table_as.sql added them after `create table ... as`. A model
-- missing from the depends_on list below is a failure too (this test would run before it is built).
-- A contracted table not in the warehouse is left out: a partial selection may not have built it yet.
{{ config(severity='error') }}

-- depends_on: {{ ref('appointment_outcomes_daily') }}
-- depends_on: {{ ref('call_quality') }}
-- depends_on: {{ ref('device_quality') }}
-- depends_on: {{ ref('dim_date') }}
-- depends_on: {{ ref('dim_device') }}
-- depends_on: {{ ref('dim_patient') }}
-- depends_on: {{ ref('dim_provider') }}
-- depends_on: {{ ref('dim_status') }}
-- depends_on: {{ ref('dim_time') }}
-- depends_on: {{ ref('fact_appointment') }}
-- depends_on: {{ ref('fact_call_session') }}
-- depends_on: {{ ref('fact_feedback') }}
-- depends_on: {{ ref('feedback_daily') }}
-- depends_on: {{ ref('feedback_ratings_daily') }}
-- depends_on: {{ ref('ops_daily_kpis') }}
-- depends_on: {{ ref('provider_activity_daily') }}
-- depends_on: {{ ref('provider_performance') }}
-- depends_on: {{ ref('specialty_satisfaction') }}

{%- set declared = [] -%}
{%- if execute -%}
    {%- for node in graph.nodes.values() -%}
        {%- if node.resource_type == 'model' and node.config.contract.enforced -%}
            {%- if node.unique_id not in model.depends_on.nodes -%}
                {%- do declared.append((node.schema, node.alias, '', 'missing from the depends_on list of this test')) -%}
            {%- endif -%}
            {%- for column in node.columns.values() -%}
                {%- for constraint in column.constraints -%}
                    {%- if constraint.type in ('not_null', 'primary_key') -%}
                        {%- do declared.append((node.schema, node.alias, column.name, constraint.type)) -%}
                    {%- endif -%}
                {%- endfor -%}
            {%- endfor -%}
        {%- endif -%}
    {%- endfor -%}
{%- endif %}

with

declared (schema_name, table_name, column_name, constraint_type) as (

    {% for row in declared -%}
        select
            '{{ row[0] }}'::text,
            '{{ row[1] }}'::text,
            '{{ row[2] }}'::text,
            '{{ row[3] }}'::text
        {{- "\n        union all" if not loop.last }}
    {% else -%}
        select null::text, null::text, null::text, null::text
        where false
    {%- endfor %}

),

warehouse_columns as (

    select
        namespaces.nspname as schema_name,
        relations.relname as table_name,
        attributes.attname as column_name,
        attributes.attnotnull as is_not_null,
        exists (
            select 1
            from pg_catalog.pg_constraint as constraints
            where
                constraints.conrelid = relations.oid
                and constraints.contype = 'p'
                and constraints.conkey = array[attributes.attnum]
        ) as is_primary_key
    from pg_catalog.pg_class as relations
    inner join pg_catalog.pg_namespace as namespaces on relations.relnamespace = namespaces.oid
    inner join pg_catalog.pg_attribute as attributes on relations.oid = attributes.attrelid
    where
        relations.relkind in ('r', 'p')
        and attributes.attnum > 0
        and not attributes.attisdropped

)

select
    declared.schema_name,
    declared.table_name,
    declared.column_name,
    declared.constraint_type
from declared
left join warehouse_columns
    on
        declared.schema_name = warehouse_columns.schema_name
        and declared.table_name = warehouse_columns.table_name
        and declared.column_name = warehouse_columns.column_name
where
    declared.column_name = ''
    or (
        exists (
            select 1
            from warehouse_columns as tables
            where
                tables.schema_name = declared.schema_name
                and tables.table_name = declared.table_name
        )
        and (
            warehouse_columns.column_name is null
            or (declared.constraint_type = 'not_null' and not warehouse_columns.is_not_null)
            or (declared.constraint_type = 'primary_key' and not warehouse_columns.is_primary_key)
        )
    )
