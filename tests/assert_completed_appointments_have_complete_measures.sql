-- A completed appointment started (device, wait) and ended with duration and connection quality.
-- Warn, not error: events arrive late and out of order, so a `completed` event may land before its
-- `started` event for a while (the appointment then shows device Unknown until the next build).
-- The hourly run checks the appointments it touched (macro touched_rows), the nightly build all of them.
{{ config(severity='warn') }}

select
    appointment_id,
    device_key,
    wait_time_minutes,
    duration_minutes,
    connection_quality
from {{ ref('fact_appointment') }}
where
    status = 'completed'
    and {{ touched_rows(ref('fact_appointment')) }}
    and (
        device_key = {{ unknown_key() }}
        or wait_time_minutes is null
        or duration_minutes is null
        or connection_quality is null
    )
