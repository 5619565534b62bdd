{{ config(materialized='table') }}

-- Grain: one row per provider version (provider_id, updated_at).
-- raw.providers keeps every version the clinic wrote, so the SCD2 validity is derived exactly from that
-- history: a version is valid from its updated_at until the next version's. The first version is valid
-- from the beginning of time, so appointments booked before a provider's first recorded change still
-- find a version; the current version is valid until 9999-12-31 (no null upper bounds in joins).

with

providers as (

    select * from {{ ref('stg_clinic_ops__providers') }}

),

versions_ordered as (

    select
        *,
        row_number() over (partition by provider_id order by updated_at) as version_number,
        lead(updated_at) over (partition by provider_id order by updated_at) as next_updated_at
    from providers

),

final as (

    select
        {{ dbt.hash(dbt.concat(['provider_id', "'|'", dbt.cast('updated_at', api.Column.translate_type('string'))])) }}
            as provider_key,
        provider_id,
        first_name,
        last_name,
        specialty,
        years_experience,
        state,
        hourly_rate,
        available_hours,
        is_active,
        version_number,
        updated_at,
        case
            when version_number = 1 then cast('1900-01-01' as {{ dbt.type_timestamp() }})
            else updated_at
        end as valid_from,
        coalesce(next_updated_at, cast('9999-12-31' as {{ dbt.type_timestamp() }})) as valid_to,
        next_updated_at is null as is_current,
        loaded_at
    from versions_ordered

)

select * from final
