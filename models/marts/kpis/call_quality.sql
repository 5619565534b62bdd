-- Grain: one row per patient platform (ios, android, web) and device type: call quality as the video
-- platform measured it. Join lags and durations over every session; network measures (packet loss, jitter,
-- bitrate, HD share) over finalized sessions only, since they are null until the platform finalizes them;
-- reconnects over sessions that ended. Shares are fractions (0..1).

with

sessions as (

    select * from {{ ref('fact_call_session') }}

),

by_platform_and_device as (

    select
        patient_platform,
        device_type,
        device_key,
        count(*) as sessions,
        {{ count_where('is_final') }} as finalized_sessions,
        {{ count_where('total_reconnects > 0') }} as sessions_with_reconnects,
        count(total_reconnects) as ended_sessions,
        avg(measured_duration_minutes) as avg_measured_duration_minutes,
        avg(patient_join_lag_minutes) as avg_patient_join_lag_minutes,
        avg(provider_join_lag_minutes) as avg_provider_join_lag_minutes,
        avg(event_wait_time_minutes) as avg_event_wait_minutes,
        avg(patient_packet_loss_pct) as avg_packet_loss_pct,
        percentile_cont(0.9) within group (order by patient_packet_loss_pct) as p90_packet_loss_pct,
        avg(patient_jitter_ms) as avg_jitter_ms,
        avg(patient_bitrate_kbps) as avg_bitrate_kbps,
        {{ count_where('is_hd') }} as hd_sessions,
        avg(total_reconnects) as avg_reconnects
    from sessions
    group by patient_platform, device_type, device_key

),

final as (

    select
        patient_platform,
        device_type,
        device_key,
        cast(sessions as bigint) as sessions,
        cast(finalized_sessions as bigint) as finalized_sessions,
        cast(avg_measured_duration_minutes as numeric) as avg_measured_duration_minutes,
        cast(avg_patient_join_lag_minutes as numeric) as avg_patient_join_lag_minutes,
        cast(avg_provider_join_lag_minutes as numeric) as avg_provider_join_lag_minutes,
        cast(avg_event_wait_minutes as numeric) as avg_event_wait_minutes,
        cast(avg_packet_loss_pct as numeric) as avg_packet_loss_pct,
        cast(p90_packet_loss_pct as numeric) as p90_packet_loss_pct,
        cast(avg_jitter_ms as numeric) as avg_jitter_ms,
        cast(avg_bitrate_kbps as numeric) as avg_bitrate_kbps,
        {{ rate('hd_sessions', 'finalized_sessions') }} as hd_share,
        cast(avg_reconnects as numeric) as avg_reconnects,
        {{ rate('sessions_with_reconnects', 'ended_sessions') }} as reconnect_share
    from by_platform_and_device

)

select * from final
