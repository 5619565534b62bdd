-- A rescheduled appointment names its successor, and the successor's booking points back at it. Warn:
-- the successor's events may still be in flight (late events), which is normal for a while.
-- The hourly run checks the appointments it touched (macro touched_rows), the nightly build all of them.
{{ config(severity='warn') }}

with

-- Two import CTEs over the same fact, each read once: Postgres inlines them, so only the rescheduled
-- rows are joined (one CTE read twice would be materialised whole first: 4x slower at 1M rows).
rescheduled as (

    select
        appointment_id,
        rescheduled_to_appointment_id
    from {{ ref('fact_appointment') }}
    where status = 'rescheduled' and {{ touched_rows(ref('fact_appointment')) }}

),

successors as (

    select
        appointment_id,
        rescheduled_from_appointment_id
    from {{ ref('fact_appointment') }}

)

select
    rescheduled.appointment_id,
    rescheduled.rescheduled_to_appointment_id,
    successors.rescheduled_from_appointment_id as successor_points_back_to
from rescheduled
left join successors
    on rescheduled.rescheduled_to_appointment_id = successors.appointment_id
where
    successors.appointment_id is null
    or successors.rescheduled_from_appointment_id <> rescheduled.appointment_id
