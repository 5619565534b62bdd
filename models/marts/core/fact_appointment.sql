{{
    config(
        materialized='incremental',
        unique_key='appointment_id',
        incremental_strategy='merge',
        on_schema_change='append_new_columns',
        indexes=[{'columns': ['last_loaded_at']}, {'columns': ['date_id']}, {'columns': ['provider_id']}],
    )
}}

-- depends_on: {{ ref('int_provider_versions_validity') }}
-- Grain: one row per appointment.
-- The appointment's time is its scheduled_for (UTC), or its first event while the booking event has not
-- arrived; date_id and time_id come from it, and the provider version valid at that time gives
-- provider_key. Not started yet: device_key -1 (Unknown). Booking event missing: patient_key '-1'.
-- Incremental (merge on appointment_id), recomputing every appointment that
--   * has an event loaded within var lookback_days of the latest one already here,
--   * belongs to a provider with a version loaded in that window (its version may change), or
--   * whose reschedule chain changed (a late link further up the chain: its row in
--     int_appointment_reschedule_chains was loaded within that window).
-- So a full refresh and any sequence of incremental runs over the same raw data give the same rows.

{{ refuse_full_refresh_after_purge() }}

with

appointments as (

    select * from {{ ref('int_appointments_derived_from_events') }}

),

reschedule_chains as (

    select * from {{ ref('int_appointment_reschedule_chains') }}

),

providers as (

    select * from {{ ref('dim_provider') }}

),

statuses as (

    select * from {{ ref('dim_status') }}

),

devices as (

    select * from {{ ref('dim_device') }}

),

{% if is_incremental() %}
    {%- set loaded_after = incremental_watermark('last_loaded_at') %}
    changed_providers as (

        select distinct provider_versions.provider_id
        from {{ ref('int_provider_versions_validity') }} as provider_versions
        where provider_versions.loaded_at >= {{ loaded_after }}

    ),

    appointment_ids_in_scope as (

        -- Three lists of keys, each read through an index (an `or` of the three conditions on one table
        -- would read every appointment).
        select recent.appointment_id
        from {{ ref('int_appointments_derived_from_events') }} as recent
        where recent.last_loaded_at >= {{ loaded_after }}
        union
        -- A provider's appointments already here (a new one of theirs is in the first list).
        select of_changed_providers.appointment_id
        from {{ this }} as of_changed_providers
        where
            {{ in_subquery(
                'of_changed_providers.provider_id',
                'select changed_providers.provider_id from changed_providers'
            ) }}
        union
        -- A chain row changes only when one of its appointments is loaded again, which gives it a new
        -- last_loaded_at; an appointment that lost its link was loaded again itself.
        select recent_chains.appointment_id
        from {{ ref('int_appointment_reschedule_chains') }} as recent_chains
        where recent_chains.last_loaded_at >= {{ loaded_after }}

    ),
{% endif %}

appointments_in_scope as (

    select
        appointments.*,
        coalesce(appointments.scheduled_at, appointments.first_event_at) as appointment_at
    from appointments
    {% if is_incremental() -%}
        where
            {{ in_subquery(
                'appointments.appointment_id',
                'select appointment_ids_in_scope.appointment_id from appointment_ids_in_scope'
            ) }}
    {%- endif %}

),

final as (

    select
        -- keys
        appointments_in_scope.appointment_id,
        coalesce(providers.provider_key, {{ unknown_key('string') }}) as provider_key,
        case
            when appointments_in_scope.patient_id is null then {{ unknown_key('string') }}
            else {{ pseudonymous_key('appointments_in_scope.patient_id') }}
        end as patient_key,
        {{ date_id('appointments_in_scope.appointment_at') }} as date_id,
        {{ extract_date_part('hour', 'appointments_in_scope.appointment_at') }} * 100
        + {{ extract_date_part('minute', 'appointments_in_scope.appointment_at') }} as time_id,
        statuses.status_key,
        coalesce(devices.device_key, {{ unknown_key() }}) as device_key,

        -- attributes
        appointments_in_scope.appointment_type,
        appointments_in_scope.status,
        appointments_in_scope.provider_id,
        coalesce(devices.device_type, 'Unknown') as device_type,
        appointments_in_scope.started_at is not null as is_started,
        appointments_in_scope.cancelled_by,
        appointments_in_scope.technical_issue_type,
        appointments_in_scope.had_technical_issues,
        appointments_in_scope.rescheduled_from_appointment_id,
        appointments_in_scope.rescheduled_to_appointment_id,
        coalesce(reschedule_chains.original_appointment_id, appointments_in_scope.appointment_id)
            as original_appointment_id,

        -- measures
        appointments_in_scope.wait_time_minutes,
        appointments_in_scope.duration_minutes,
        appointments_in_scope.connection_quality,
        appointments_in_scope.technical_issue_count,
        coalesce(reschedule_chains.reschedule_count, 0) as reschedule_count,
        appointments_in_scope.lead_time_minutes,
        appointments_in_scope.event_count,

        -- timestamps (UTC)
        appointments_in_scope.appointment_at as timestamp,
        appointments_in_scope.booked_at,
        appointments_in_scope.started_at,
        appointments_in_scope.ended_at,
        appointments_in_scope.last_loaded_at

    from appointments_in_scope
    inner join statuses
        on appointments_in_scope.status = statuses.status
    left join devices
        on appointments_in_scope.device_type = devices.device_type
    left join providers
        on
            appointments_in_scope.provider_id = providers.provider_id
            and appointments_in_scope.appointment_at >= providers.valid_from
            and appointments_in_scope.appointment_at < providers.valid_to
    left join reschedule_chains
        on appointments_in_scope.appointment_id = reschedule_chains.appointment_id

)

select * from final
