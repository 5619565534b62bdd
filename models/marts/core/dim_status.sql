{{ config(tags=['static']) }}

-- Grain: one row per appointment status (the appointment_statuses seed): the four final statuses and
-- the two open ones an appointment has before its terminal event.

with

statuses as (

    select * from {{ ref('appointment_statuses') }}

),

final as (

    select
        status_key,
        status,
        is_successful,
        is_terminal,
        sort_order,
        description
    from statuses

)

select * from final
