{{
    config(
        materialized='incremental',
        unique_key='date_id',
        incremental_strategy='delete+insert',
        on_schema_change='append_new_columns',
        indexes=[{'columns': ['date_id']}, {'columns': ['last_loaded_at']}],
        post_hook=["{{ delete_emptied_days('appointments') }}"],
    )
}}

-- depends_on: {{ ref('stg_kafka__appointment_events') }}
-- depends_on: {{ ref('int_provider_versions_validity') }}
-- Grain: one row per day, specialty (of the provider version valid at the appointment time; null for a
-- provider_key dim_provider does not hold) and device (Unknown until the appointment started).
-- The daily rollup behind device_quality and the dashboards' outcome cards: status counts, and sums and
-- counts (never averages) of the started appointments' measures, so any set of rows adds up exactly.
-- Incremental (delete+insert by day): the days macro changed_appointment_days returns (rebuilt
-- appointments, the days they came from, appointments of a provider with a new version) are recomputed
-- from all of their fact rows; a day left without appointments keeps a zero row until the post-hook
-- deletes it. So a full refresh and any sequence of incremental runs give the same rows, and an hourly
-- run reads the new rows' days only.

with

appointments as (

    select * from {{ ref('fact_appointment') }}

),

providers as (

    select * from {{ ref('dim_provider') }}

),

devices as (

    select * from {{ ref('dim_device') }}

),

{% if is_incremental() %}
    {%- set loaded_after = incremental_watermark('last_loaded_at') %}
    changed_days as (

        {{ changed_appointment_days(loaded_after, provider_versions=true) | indent(8) }}

    ),
{% endif %}

outcomes_by_day as (

    select
        appointments.date_id,
        providers.specialty,
        appointments.device_key,
        devices.device_type,
        count(*) as appointments,
        {{ count_where("appointments.status = 'completed'") }} as completed,
        {{ count_where("appointments.status = 'cancelled'") }} as cancelled,
        {{ count_where("appointments.status = 'rescheduled'") }} as rescheduled,
        {{ count_where("appointments.status = 'no_show'") }} as no_shows,
        {{ count_where('appointments.is_started') }} as started,
        {{ count_where("appointments.is_started and appointments.status = 'completed'") }} as started_completed,
        {{ count_where('appointments.is_started and appointments.had_technical_issues') }}
            as started_with_technical_issues,
        sum(case when appointments.is_started then appointments.wait_time_minutes end) as wait_minutes_sum,
        count(case when appointments.is_started then appointments.wait_time_minutes end) as wait_count,
        sum(case when appointments.is_started then appointments.connection_quality end)
            as connection_quality_sum,
        count(case when appointments.is_started then appointments.connection_quality end)
            as connection_quality_count,
        sum(case when appointments.is_started then appointments.duration_minutes end) as duration_minutes_sum,
        count(case when appointments.is_started then appointments.duration_minutes end) as duration_count,
        max(appointments.last_loaded_at) as last_loaded_at
    from appointments
    left join providers
        on appointments.provider_key = providers.provider_key
    left join devices
        on appointments.device_key = devices.device_key
    {% if is_incremental() -%}
        where {{ in_subquery('appointments.date_id', 'select changed_days.date_id from changed_days') }}
    {%- endif %}
    group by appointments.date_id, providers.specialty, appointments.device_key, devices.device_type

),

{% if is_incremental() %}
    emptied_days as (

        -- A recomputed day without appointments left: one zero row, so delete+insert removes its old rows.
        select changed_days.date_id
        from changed_days
        where not exists (
            select 1
            from outcomes_by_day
            where outcomes_by_day.date_id = changed_days.date_id
        )

    ),
{% endif %}

final as (

    select
        date_id,
        specialty,
        device_key,
        device_type,
        cast(appointments as bigint) as appointments,
        cast(completed as bigint) as completed,
        cast(cancelled as bigint) as cancelled,
        cast(rescheduled as bigint) as rescheduled,
        cast(no_shows as bigint) as no_shows,
        cast(started as bigint) as started,
        cast(started_completed as bigint) as started_completed,
        cast(started_with_technical_issues as bigint) as started_with_technical_issues,
        cast(wait_minutes_sum as numeric) as wait_minutes_sum,
        cast(wait_count as bigint) as wait_count,
        cast(connection_quality_sum as bigint) as connection_quality_sum,
        cast(connection_quality_count as bigint) as connection_quality_count,
        cast(duration_minutes_sum as numeric) as duration_minutes_sum,
        cast(duration_count as bigint) as duration_count,
        last_loaded_at
    from outcomes_by_day
    {% if is_incremental() -%}
        union all
        select
            emptied_days.date_id,
            null as specialty,
            null as device_key,
            null as device_type,
            0 as appointments,
            0 as completed,
            0 as cancelled,
            0 as rescheduled,
            0 as no_shows,
            0 as started,
            0 as started_completed,
            0 as started_with_technical_issues,
            null as wait_minutes_sum,
            0 as wait_count,
            null as connection_quality_sum,
            0 as connection_quality_count,
            null as duration_minutes_sum,
            0 as duration_count,
            null as last_loaded_at
        from emptied_days
    {%- endif %}

)

select * from final
