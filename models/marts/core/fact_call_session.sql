-- Grain: one row per call session of the video platform, in its latest version loaded (the platform
-- revises a session after the call: ended, then finalized with the network measures).
-- The platform's own measurements beside what the appointment events claim: the provider's join lag is
-- the wait the platform measured, wait_difference_minutes its gap to the wait the started event reported
-- (they agree within a minute on clean data; monitor wait_disagreement_share and the warn test
-- assert_event_wait_agrees_with_platform_join_lag watch it). Measured duration: from the later join to the
-- earlier leave, both participants in the call. Device from the appointment (-1 when the appointment is
-- not in fact_appointment, or has not started there yet).

with

versions as (

    select * from {{ ref('stg_video_api__call_sessions') }}

),

appointments as (

    select * from {{ ref('fact_appointment') }}

),

devices as (

    select * from {{ ref('dim_device') }}

),

ranked as (

    select
        versions.*,
        row_number() over (partition by versions.session_id order by versions.updated_at desc) as version_rank,
        count(*) over (partition by versions.session_id) as version_count,
        max(versions.loaded_at) over (partition by versions.session_id) as last_loaded_at
    from versions

),

latest as (

    select * from ranked
    where version_rank = 1

),

final as (

    select
        -- keys
        latest.session_id,
        latest.appointment_id,
        {{ date_id('latest.scheduled_start_at') }} as date_id,
        coalesce(appointments.device_key, {{ unknown_key() }}) as device_key,

        -- attributes
        coalesce(devices.device_type, 'Unknown') as device_type,
        latest.patient_platform,
        latest.patient_app_version,
        latest.provider_platform,
        latest.patient_resolution,
        latest.patient_resolution in ('720p', '1080p', '1440p', '2160p') as is_hd,
        latest.session_status,
        latest.is_final,
        cast(latest.version_count as integer) as version_count,

        -- measures (minutes)
        cast(
            {{ minutes_between(
                'greatest(latest.patient_joined_at, latest.provider_joined_at)',
                'least(latest.patient_left_at, latest.provider_left_at)'
            ) }} as numeric(8, 2)
        ) as measured_duration_minutes,
        cast(
            {{ minutes_between('latest.scheduled_start_at', 'latest.patient_joined_at') }} as numeric(8, 2)
        ) as patient_join_lag_minutes,
        cast(
            {{ minutes_between('latest.scheduled_start_at', 'latest.provider_joined_at') }} as numeric(8, 2)
        ) as provider_join_lag_minutes,
        appointments.wait_time_minutes as event_wait_time_minutes,
        cast(
            {{ minutes_between('latest.scheduled_start_at', 'latest.provider_joined_at') }}
            - appointments.wait_time_minutes as numeric(8, 2)
        ) as wait_difference_minutes,
        appointments.duration_minutes as event_duration_minutes,

        -- measures (network, reconnects)
        latest.patient_packet_loss_pct,
        latest.patient_jitter_ms,
        latest.patient_bitrate_kbps,
        latest.provider_packet_loss_pct,
        latest.patient_reconnects,
        latest.provider_reconnects,
        latest.patient_reconnects + latest.provider_reconnects as total_reconnects,

        -- timestamps (UTC)
        latest.scheduled_start_at,
        latest.call_started_at,
        latest.call_ended_at,
        latest.updated_at,
        latest.last_loaded_at

    from latest
    left join appointments
        on latest.appointment_id = appointments.appointment_id
    left join devices
        on appointments.device_key = devices.device_key

)

select * from final
