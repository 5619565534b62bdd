-- Grain: one row per provider version (SCD type 2), plus
--   * an inferred member per provider_id that appointments name but the clinic data does not hold
--     yet (attributes null, is_inferred true; replaced as soon as the provider's data arrives), and
--   * the Unknown member (provider_key '-1') for appointments whose booking event has not arrived.
-- Versions and their validity come from the full history in raw (int_provider_versions_validity):
-- exact and reproducible; the snapshot snap_clinic_ops__providers cross-checks it (see README).

with

provider_versions as (

    select * from {{ ref('int_provider_versions_validity') }}

),

appointments as (

    select * from {{ ref('int_appointments_derived_from_events') }}

),

known_versions as (

    select
        provider_key,
        provider_id,
        first_name,
        last_name,
        specialty,
        years_experience,
        state,
        hourly_rate,
        available_hours,
        is_active as active,
        version_number,
        valid_from,
        valid_to,
        is_current,
        false as is_inferred
    from provider_versions

),

inferred_providers as (

    select distinct
        {{ dbt.hash(dbt.concat(['appointments.provider_id', "'|inferred'"])) }} as provider_key,
        appointments.provider_id,
        cast(null as {{ dbt.type_string() }}) as first_name,
        cast(null as {{ dbt.type_string() }}) as last_name,
        cast(null as {{ dbt.type_string() }}) as specialty,
        cast(null as integer) as years_experience,
        cast(null as {{ dbt.type_string() }}) as state,
        cast(null as numeric(10, 2)) as hourly_rate,
        cast(null as integer) as available_hours,
        cast(null as boolean) as active,
        0 as version_number,
        cast('1900-01-01' as {{ dbt.type_timestamp() }}) as valid_from,
        cast('9999-12-31' as {{ dbt.type_timestamp() }}) as valid_to,
        true as is_current,
        true as is_inferred
    from appointments
    where
        appointments.provider_id is not null
        and not exists (
            select 1
            from provider_versions
            where provider_versions.provider_id = appointments.provider_id
        )

),

unknown_provider as (

    select
        {{ unknown_key('string') }} as provider_key,
        'unknown' as provider_id,
        cast(null as {{ dbt.type_string() }}) as first_name,
        cast(null as {{ dbt.type_string() }}) as last_name,
        cast(null as {{ dbt.type_string() }}) as specialty,
        cast(null as integer) as years_experience,
        cast(null as {{ dbt.type_string() }}) as state,
        cast(null as numeric(10, 2)) as hourly_rate,
        cast(null as integer) as available_hours,
        cast(null as boolean) as active,
        0 as version_number,
        cast('1900-01-01' as {{ dbt.type_timestamp() }}) as valid_from,
        cast('9999-12-31' as {{ dbt.type_timestamp() }}) as valid_to,
        true as is_current,
        false as is_inferred

),

final as (

    select * from known_versions
    union all
    select * from inferred_providers
    union all
    select * from unknown_provider

)

select * from final
