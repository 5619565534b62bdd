-- Grain: one row per known device type. A device is known only once an appointment started, so every
-- measure is over started appointments: technical_issue_share is the fraction (0..1) of them with at
-- least one technical_issue event; connection quality and duration are over completed ones.

with

devices as (

    select * from {{ ref('dim_device') }}

),

appointments as (

    select * from {{ ref('fact_appointment') }}

),

started_by_device as (

    select
        device_key,
        count(*) as started_appointments,
        {{ count_where("status = 'completed'") }} as completed,
        {{ count_where('had_technical_issues') }} as with_technical_issues,
        avg(wait_time_minutes) as avg_wait_minutes,
        percentile_cont(0.9) within group (order by wait_time_minutes) as p90_wait_minutes,
        avg(connection_quality) as avg_connection_quality,
        avg(duration_minutes) as avg_duration_minutes
    from appointments
    where is_started
    group by device_key

),

final as (

    select
        devices.device_type,
        devices.device_key,
        devices.is_mobile,
        cast(coalesce(started_by_device.started_appointments, 0) as bigint) as started_appointments,
        cast(coalesce(started_by_device.completed, 0) as bigint) as completed,
        cast(coalesce(started_by_device.with_technical_issues, 0) as bigint) as with_technical_issues,
        cast(started_by_device.avg_wait_minutes as numeric) as avg_wait_minutes,
        cast(started_by_device.p90_wait_minutes as numeric) as p90_wait_minutes,
        {{ rate('started_by_device.with_technical_issues', 'started_by_device.started_appointments') }}
            as technical_issue_share,
        cast(started_by_device.avg_connection_quality as numeric) as avg_connection_quality,
        cast(started_by_device.avg_duration_minutes as numeric) as avg_duration_minutes
    from devices
    left join started_by_device
        on devices.device_key = started_by_device.device_key
    where devices.is_known

)

select * from final
