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
-- Grain: one row per day and provider_id (null while an appointment's booking has not arrived), over the
-- appointments of that day: the daily rollup behind provider_performance. Status counts, and sums and
-- counts (never averages) of the measures, so any set of days adds up exactly.
-- Incremental (delete+insert by day) as appointment_outcomes_daily: the days macro changed_appointment_days
-- returns are recomputed from all of their fact rows (a provider's new version changes no provider_id).

with

appointments as (

    select * from {{ ref('fact_appointment') }}

),

statuses as (

    select * from {{ ref('dim_status') }}

),

{% if is_incremental() %}
    {%- set loaded_after = incremental_watermark('last_loaded_at') %}
    changed_days as (

        {{ changed_appointment_days(loaded_after) | indent(8) }}

    ),
{% endif %}

activity_by_day as (

    select
        appointments.date_id,
        appointments.provider_id,
        count(*) as appointments,
        {{ count_where('statuses.is_terminal') }} as closed_appointments,
        {{ count_where("appointments.status = 'completed'") }} as completed,
        {{ count_where("appointments.status = 'no_show'") }} as no_shows,
        {{ count_where("appointments.status = 'cancelled'") }} as cancelled,
        sum(appointments.wait_time_minutes) as wait_minutes_sum,
        count(appointments.wait_time_minutes) as wait_count,
        sum(appointments.duration_minutes) as duration_minutes_sum,
        count(appointments.duration_minutes) as duration_count,
        sum(appointments.connection_quality) as connection_quality_sum,
        count(appointments.connection_quality) as connection_quality_count,
        max(appointments.last_loaded_at) as last_loaded_at
    from appointments
    inner join statuses
        on appointments.status_key = statuses.status_key
    {% if is_incremental() -%}
        where {{ in_subquery('appointments.date_id', 'select changed_days.date_id from changed_days') }}
    {%- endif %}
    group by appointments.date_id, appointments.provider_id

),

{% if is_incremental() %}
    emptied_days as (

        -- A recomputed day without appointments left: one zero row, so delete+insert removes its old rows.
        select changed_days.date_id
        from changed_days
        where not exists (
            select 1
            from activity_by_day
            where activity_by_day.date_id = changed_days.date_id
        )

    ),
{% endif %}

final as (

    select
        date_id,
        provider_id,
        cast(appointments as bigint) as appointments,
        cast(closed_appointments as bigint) as closed_appointments,
        cast(completed as bigint) as completed,
        cast(no_shows as bigint) as no_shows,
        cast(cancelled as bigint) as cancelled,
        cast(wait_minutes_sum as numeric) as wait_minutes_sum,
        cast(wait_count as bigint) as wait_count,
        cast(duration_minutes_sum as numeric) as duration_minutes_sum,
        cast(duration_count as bigint) as duration_count,
        cast(connection_quality_sum as bigint) as connection_quality_sum,
        cast(connection_quality_count as bigint) as connection_quality_count,
        last_loaded_at
    from activity_by_day
    {% if is_incremental() -%}
        union all
        select
            emptied_days.date_id,
            null as provider_id,
            0 as appointments,
            0 as closed_appointments,
            0 as completed,
            0 as no_shows,
            0 as cancelled,
            null as wait_minutes_sum,
            0 as wait_count,
            null as duration_minutes_sum,
            0 as duration_count,
            null as connection_quality_sum,
            0 as connection_quality_count,
            null as last_loaded_at
        from emptied_days
    {%- endif %}

)

select * from final
