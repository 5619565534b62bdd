-- Least privilege: telemed_reporting may select every table of marts and nothing in the other schemas
-- dbt builds. Returns each violation with what is wrong.
{{ config(severity='error') }}

with

dbt_relations as (

    select
        table_schema,
        table_name
    from information_schema.tables
    where table_schema in ('marts', 'staging', 'intermediate', 'snapshots')

),

privileges as (

    select
        table_schema,
        table_name,
        has_table_privilege(
            'telemed_reporting', quote_ident(table_schema) || '.' || quote_ident(table_name), 'select'
        ) as reporting_can_select
    from dbt_relations

)

select
    table_schema,
    table_name,
    case when table_schema = 'marts' then 'marts table not readable' else 'readable outside marts' end as problem
from privileges
where
    (table_schema = 'marts' and not reporting_can_select)
    or (table_schema <> 'marts' and reporting_can_select)
