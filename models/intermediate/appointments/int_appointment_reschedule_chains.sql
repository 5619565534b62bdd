{{ config(materialized='table') }}

-- Grain: one row per appointment that was booked as the reschedule of another one.
-- Walks the `rescheduled_from` links back to the chain's first appointment: reschedule_count is how many
-- times the visit had been moved before this appointment (1 = first reschedule). A link to an
-- appointment not loaded yet still counts; the walk stops there. Depth is capped to survive bad cycles.

with recursive

appointments as (

    select * from {{ ref('int_appointments_derived_from_events') }}

),

reschedule_links as (

    select
        appointment_id,
        rescheduled_from_appointment_id
    from appointments
    where rescheduled_from_appointment_id is not null

),

chain_walk (appointment_id, ancestor_appointment_id, steps) as (

    select
        appointment_id,
        rescheduled_from_appointment_id,
        1
    from reschedule_links

    union all

    select
        chain_walk.appointment_id,
        reschedule_links.rescheduled_from_appointment_id,
        chain_walk.steps + 1
    from chain_walk
    inner join reschedule_links
        on chain_walk.ancestor_appointment_id = reschedule_links.appointment_id
    where chain_walk.steps < 100

),

deepest_ancestor as (

    select
        appointment_id,
        ancestor_appointment_id,
        steps,
        row_number() over (partition by appointment_id order by steps desc) as depth_rank
    from chain_walk

),

final as (

    select
        appointment_id,
        ancestor_appointment_id as original_appointment_id,
        steps as reschedule_count
    from deepest_ancestor
    where depth_rank = 1

)

select * from final
