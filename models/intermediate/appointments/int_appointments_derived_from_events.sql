{{
    config(
        materialized='incremental',
        unique_key='appointment_id',
        incremental_strategy='merge',
        on_schema_change='append_new_columns',
        indexes=[
            {'columns': ['appointment_id'], 'unique': True},
            {'columns': ['last_loaded_at']},
            {'columns': ['rescheduled_from_appointment_id']},
            {'columns': ['provider_id']},
        ],
    )
}}

-- Grain: one row per appointment_id seen in any event.
-- The state comes from the event sequence, never from arrival order:
--   * final status = the last terminal event (completed, no_show, cancelled, rescheduled) by event time,
--     ties broken by the lifecycle order of the event type (seed appointment_event_types), then event_id;
--     no terminal event yet: in_progress once started, else scheduled;
--   * booking attributes from the latest `scheduled` event, device and wait from the latest `started`;
--   * completion measures (duration, connection quality) only when the final event is `completed`;
--   * a re-delivered event (same event_id) counts once.
-- Incremental: appointments with any event loaded within the look-back window are recomputed from all
-- of their events and merged, so late and out-of-order events land exactly as in a full refresh.

{{ refuse_full_refresh_after_purge() }}

with

events as (

    select * from {{ ref('stg_kafka__appointment_events') }}

),

event_types as (

    select * from {{ ref('appointment_event_types') }}

),

{% if is_incremental() %}
    touched_appointments as (

        -- Reads the staging view, not the `events` CTE: Postgres materialises a CTE used twice in full,
        -- which would parse every event on every incremental run.
        select distinct recent_events.appointment_id
        from {{ ref('stg_kafka__appointment_events') }} as recent_events
        where
            recent_events.loaded_at >= {{ incremental_watermark('last_loaded_at') }}

    ),
{% endif %}

appointment_events as (

    -- Only the columns the state needs: the window below sorts every event with them.
    select
        events.event_id,
        events.appointment_id,
        events.event_type,
        events.event_at,
        events.loaded_at,
        events.patient_id,
        events.provider_id,
        events.appointment_type,
        events.scheduled_for,
        events.rescheduled_from_appointment_id,
        events.device_type,
        events.wait_time_minutes,
        events.technical_issue_type,
        events.duration_minutes,
        events.connection_quality,
        events.cancelled_by,
        events.rescheduled_to_appointment_id,
        events.new_scheduled_for,
        event_types.lifecycle_order,
        coalesce(event_types.is_terminal, false) as is_terminal
    from events
    left join event_types
        on events.event_type = event_types.event_type
    {% if is_incremental() -%}
        where
            {{ in_subquery(
                'events.appointment_id',
                'select touched_appointments.appointment_id from touched_appointments'
            ) }}
    {%- endif %}

),

events_ranked_by_time as (

    -- One sort of the events serves every rank: all terminal events compete for the final status, other
    -- types rank among themselves. The first technical issue is the last of its type in this order (one
    -- type has one lifecycle order, and the reverse of event_at, event_id descending is ascending, nulls
    -- last either way). row_number and lag ignore the frame, so the three share one pass.
    select
        *,
        row_number() over by_recency as recency_rank,
        last_value(technical_issue_type) over by_recency as last_technical_issue_type_in_order,
        -- a re-delivery (same event_id) sorts beside the first delivery: it counts once
        coalesce(event_id != lag(event_id) over by_recency, true) as is_first_delivery
    from appointment_events
    window by_recency as (
        partition by appointment_id, case when is_terminal then 'terminal' else event_type end
        order by event_at desc, lifecycle_order desc, event_id desc
        rows between unbounded preceding and unbounded following
    )

),

events_flagged as (

    -- Each event's role, decided once per event rather than in every aggregate below.
    select
        *,
        event_type = 'scheduled' as is_scheduled,
        event_type = 'technical_issue' as is_technical_issue,
        recency_rank = 1 and event_type = 'scheduled' as is_latest_scheduled,
        recency_rank = 1 and event_type = 'started' as is_latest_started,
        recency_rank = 1 and is_terminal as is_final,
        recency_rank = 1 and is_terminal and event_type = 'completed' as is_final_completed
    from events_ranked_by_time

),

appointments_pivoted as (

    select
        appointment_id,

        -- from the latest scheduled event
        max(patient_id) filter (where is_latest_scheduled) as patient_id,
        max(provider_id) filter (where is_latest_scheduled) as provider_id,
        max(appointment_type) filter (where is_latest_scheduled) as appointment_type,
        max(scheduled_for) filter (where is_latest_scheduled) as scheduled_at,
        max(rescheduled_from_appointment_id) filter (where is_latest_scheduled) as rescheduled_from_appointment_id,
        min(event_at) filter (where is_scheduled) as booked_at,

        -- from the latest started event
        max(event_at) filter (where is_latest_started) as started_at,
        max(device_type) filter (where is_latest_started) as device_type,
        max(wait_time_minutes) filter (where is_latest_started) as wait_time_minutes,

        -- from the first technical issue
        max(last_technical_issue_type_in_order) filter (
            where is_technical_issue and recency_rank = 1
        ) as technical_issue_type,

        -- from the final (terminal) event
        max(event_type) filter (where is_final) as terminal_event_type,
        max(event_at) filter (where is_final) as ended_at,
        max(duration_minutes) filter (where is_final_completed) as duration_minutes,
        max(connection_quality) filter (where is_final_completed) as connection_quality,
        max(cancelled_by) filter (where is_final) as cancelled_by,
        max(rescheduled_to_appointment_id) filter (where is_final) as rescheduled_to_appointment_id,
        max(new_scheduled_for) filter (where is_final) as rescheduled_to_at,

        -- counts over distinct events: a re-delivery is the same event
        count(*) filter (where is_first_delivery) as event_count,
        count(*) filter (where is_first_delivery and is_technical_issue) as technical_issue_count,
        count(*) filter (where is_first_delivery and is_terminal) as terminal_event_count,
        min(event_at) as first_event_at,
        max(event_at) as last_event_at,
        max(loaded_at) as last_loaded_at

    from events_flagged
    group by appointment_id

),

final as (

    select
        appointments_pivoted.appointment_id,
        appointments_pivoted.patient_id,
        appointments_pivoted.provider_id,
        appointments_pivoted.appointment_type,
        coalesce(
            appointments_pivoted.terminal_event_type,
            case when appointments_pivoted.started_at is not null then 'in_progress' else 'scheduled' end
        ) as status,
        appointments_pivoted.scheduled_at,
        appointments_pivoted.booked_at,
        appointments_pivoted.started_at,
        appointments_pivoted.ended_at,
        appointments_pivoted.device_type,
        appointments_pivoted.wait_time_minutes,
        appointments_pivoted.duration_minutes,
        appointments_pivoted.connection_quality,
        appointments_pivoted.technical_issue_count,
        appointments_pivoted.technical_issue_count > 0 as had_technical_issues,
        appointments_pivoted.technical_issue_type,
        appointments_pivoted.cancelled_by,
        appointments_pivoted.rescheduled_from_appointment_id,
        appointments_pivoted.rescheduled_to_appointment_id,
        appointments_pivoted.rescheduled_to_at,
        -- Lead time: how far ahead the visit was booked (first booking event to the visit time).
        -- An integer holds it: the loaders accept timestamps from 2000-01-01 to the load time plus two
        -- years (loaders/CONTRACTS.md), some 16 million minutes apart; an integer goes to 2.1 billion.
        cast(
            {{ dbt.datediff('appointments_pivoted.booked_at', 'appointments_pivoted.scheduled_at', 'minute') }}
            as integer
        ) as lead_time_minutes,
        appointments_pivoted.scheduled_at is not null as has_scheduled_event,
        appointments_pivoted.event_count,
        appointments_pivoted.terminal_event_count,
        appointments_pivoted.first_event_at,
        appointments_pivoted.last_event_at,
        appointments_pivoted.last_loaded_at
    from appointments_pivoted

)

select * from final
