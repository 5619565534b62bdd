-- Warn: the wait the appointment's started event reported and the wait the video platform measured (the
-- provider's join lag) disagree by more than var('call_wait_tolerance_minutes'). On clean data the two
-- agree (the provider joins seconds after the visit starts); a disagreement points at a device clock, a
-- late started event, or a call joined on another session.
{{ config(severity='warn') }}

select
    session_id,
    appointment_id,
    event_wait_time_minutes,
    provider_join_lag_minutes,
    wait_difference_minutes
from {{ ref('fact_call_session') }}
where abs(wait_difference_minutes) > {{ var('call_wait_tolerance_minutes') }}
