-- Grain: one row per known device type. A device is known only once an appointment started, so every
-- measure is over started appointments: technical_issue_share is the fraction (0..1) of them with at
-- least one technical_issue event; connection quality and duration are over completed ones.
-- Counts and means are added up from the daily rollup appointment_outcomes_daily (sums and counts, so
-- exact) without reading a fact table. The all-time p90 wait is a percentile of every started appointment,
-- which no sum of days gives: the nightly build (and any build but the hourly one, macro hourly_run)
-- computes it from fact_appointment, the hourly run keeps that value, so between nightly builds it can
-- lag the day's new appointments. The daily p90 in ops_daily_kpis is always current.

with

devices as (

    select * from {{ ref('dim_device') }}

),

outcomes as (

    select * from {{ ref('appointment_outcomes_daily') }}

),

started_by_device as (

    select
        device_key,
        sum(started) as started_appointments,
        sum(started_completed) as completed,
        sum(started_with_technical_issues) as with_technical_issues,
        {{ mean_of('sum(wait_minutes_sum)', 'sum(wait_count)') }} as avg_wait_minutes,
        {{ mean_of('sum(connection_quality_sum)', 'sum(connection_quality_count)') }} as avg_connection_quality,
        {{ mean_of('sum(duration_minutes_sum)', 'sum(duration_count)') }} as avg_duration_minutes
    from outcomes
    group by device_key
    having sum(started) > 0

),

{% if hourly_run() and load_relation(this) is not none %}
    wait_percentiles as (

        -- The hourly run keeps the p90 of the last other build (see the header).
        select
            this_model.device_key,
            this_model.p90_wait_minutes
        from {{ this }} as this_model

    ),
{% else %}
    wait_percentiles as (

        select
            device_key,
            percentile_cont(0.9) within group (order by wait_time_minutes) as p90_wait_minutes
        from {{ ref('fact_appointment') }}
        where is_started
        group by device_key

    ),
{% endif %}

final as (

    select
        devices.device_type,
        devices.device_key,
        devices.is_mobile,
        cast(coalesce(started_by_device.started_appointments, 0) as bigint) as started_appointments,
        cast(coalesce(started_by_device.completed, 0) as bigint) as completed,
        cast(coalesce(started_by_device.with_technical_issues, 0) as bigint) as with_technical_issues,
        cast(started_by_device.avg_wait_minutes as numeric) as avg_wait_minutes,
        cast(wait_percentiles.p90_wait_minutes as numeric) as p90_wait_minutes,
        {{ rate('started_by_device.with_technical_issues', 'started_by_device.started_appointments') }}
            as technical_issue_share,
        cast(started_by_device.avg_connection_quality as numeric) as avg_connection_quality,
        cast(started_by_device.avg_duration_minutes as numeric) as avg_duration_minutes
    from devices
    left join started_by_device
        on devices.device_key = started_by_device.device_key
    left join wait_percentiles
        on devices.device_key = wait_percentiles.device_key
    where devices.is_known

)

select * from final
