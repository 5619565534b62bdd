-- Grain: one row per provider version (SCD type 2), plus
--   * an inferred member per provider_id that appointments name but the clinic data does not hold
--     yet (attributes null, is_inferred true; replaced as soon as the provider's data arrives), and
--   * the Unknown member (provider_key '-1') for appointments whose booking event has not arrived.
-- Versions and their validity come from the full history in raw (int_provider_versions_validity):
-- exact and reproducible; the snapshot snap_clinic_ops__providers cross-checks it (see docs/dbt.md).

{#- The columns of the inferred and Unknown members (macro dimension_member): no attributes, one
    open-ended version. -#}
{%- set member_columns = [
    ('provider_key', dbt.type_string()),
    ('provider_id', dbt.type_string()),
    ('first_name', dbt.type_string()),
    ('last_name', dbt.type_string()),
    ('specialty', dbt.type_string()),
    ('years_experience', 'integer'),
    ('state', dbt.type_string()),
    ('hourly_rate', 'numeric(10, 2)'),
    ('available_hours', 'integer'),
    ('active', 'boolean'),
    ('version_number', 'integer'),
    ('valid_from', dbt.type_timestamp()),
    ('valid_to', dbt.type_timestamp()),
    ('is_current', 'boolean'),
    ('is_inferred', 'boolean'),
] -%}
{%- set member_values = {
    'version_number': '0',
    'valid_from': "cast('1900-01-01' as " ~ dbt.type_timestamp() ~ ")",
    'valid_to': "cast('9999-12-31' as " ~ dbt.type_timestamp() ~ ")",
    'is_current': 'true',
} %}

with recursive

provider_versions as (

    select * from {{ ref('int_provider_versions_validity') }}

),

provider_ids_of_appointments (provider_id) as (

    -- Every provider_id the appointments name, one index probe each (int_appointments_derived_from_events
    -- is indexed on provider_id): a few hundred probes, however many appointments there are.
    select min(first_appointment.provider_id)
    from {{ ref('int_appointments_derived_from_events') }} as first_appointment

    union all

    select (
        select min(next_appointment.provider_id)
        from {{ ref('int_appointments_derived_from_events') }} as next_appointment
        where next_appointment.provider_id > provider_ids_of_appointments.provider_id
    )
    from provider_ids_of_appointments
    where provider_ids_of_appointments.provider_id is not null

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

    select
        {{ dimension_member(
            member_columns,
            member_values,
            provider_key=dbt.hash(dbt.concat(['provider_ids_of_appointments.provider_id', "'|inferred'"])),
            provider_id='provider_ids_of_appointments.provider_id',
            is_inferred='true',
        ) }}
    from provider_ids_of_appointments
    where
        provider_ids_of_appointments.provider_id is not null
        and not exists (
            select 1
            from provider_versions
            where provider_versions.provider_id = provider_ids_of_appointments.provider_id
        )

),

unknown_provider as (

    select
        {{ dimension_member(
            member_columns,
            member_values,
            provider_key=unknown_key('string'),
            provider_id="'unknown'",
            is_inferred='false',
        ) }}

),

final as (

    select * from known_versions
    union all
    select * from inferred_providers
    union all
    select * from unknown_provider

)

select * from final
