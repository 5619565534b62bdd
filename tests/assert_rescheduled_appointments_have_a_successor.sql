-- A rescheduled appointment names its successor, and the successor's booking points back at it. Warn:
-- the successor's events may still be in flight (late events), which is normal for a while.
{{ config(severity='warn') }}

with

appointments as (

    select * from {{ ref('fact_appointment') }}

)

select
    rescheduled.appointment_id,
    rescheduled.rescheduled_to_appointment_id,
    successors.rescheduled_from_appointment_id as successor_points_back_to
from appointments as rescheduled
left join appointments as successors
    on rescheduled.rescheduled_to_appointment_id = successors.appointment_id
where
    rescheduled.status = 'rescheduled'
    and (
        successors.appointment_id is null
        or successors.rescheduled_from_appointment_id <> rescheduled.appointment_id
    )
