-- Nothing silently dropped: every appointment id in the events is one row of fact_appointment with the
-- same status as the derivation (catches a stale incremental row as well as a lost one). The hourly run
-- checks the appointments derived from its load window (macro touched_rows), the nightly build all of them.
{{ config(severity='error') }}

with

derived as (

    select
        appointment_id,
        status
    from {{ ref('int_appointments_derived_from_events') }}
    where {{ touched_rows(ref('int_appointments_derived_from_events')) }}

),

facts as (

    select
        appointment_id,
        status
    from {{ ref('fact_appointment') }}

)

select
    derived.appointment_id,
    derived.status as derived_status,
    facts.status as fact_status
from derived
left join facts
    on derived.appointment_id = facts.appointment_id
where facts.appointment_id is null or facts.status <> derived.status
