-- Least privilege: telemed_reporting may select every table of marts and nothing in the other schemas
-- dbt builds. Returns each violation with what is wrong.
{{ config(severity='error') }}

with

dbt_relations as (

    select
        namespaces.nspname as table_schema,
        relations.relname as table_name,
        relations.oid as relation_id
    from pg_catalog.pg_class as relations
    inner join pg_catalog.pg_namespace as namespaces on relations.relnamespace = namespaces.oid
    where
        namespaces.nspname in ('marts', 'staging', 'intermediate', 'snapshots')
        and relations.relkind in ('r', 'p', 'v', 'm', 'f')

),

-- By the relation's OID, not its name: this test can run while models outside its selection are built
-- beside it, and a relation dropped between the catalog read and the privilege check (the __dbt_backup a
-- table build drops after its swap) then gives null, where a name raised "relation does not exist".
privileges as (

    select
        table_schema,
        table_name,
        has_table_privilege('telemed_reporting', relation_id, 'select') as reporting_can_select
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
