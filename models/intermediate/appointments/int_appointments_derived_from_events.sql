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

    select
        events.*,
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

    select
        *,
        -- All terminal events compete for the final status; other types rank among themselves.
        row_number() over (
            partition by appointment_id, case when is_terminal then 'terminal' else event_type end
            order by event_at desc, lifecycle_order desc, event_id desc
        ) as recency_rank
    from appointment_events

),

first_technical_issues as (

    select
        appointment_id,
        technical_issue_type,
        row_number() over (
            partition by appointment_id
            order by event_at asc, event_id asc
        ) as issue_rank
    from appointment_events
    where event_type = 'technical_issue'

),

appointments_pivoted as (

    select
        appointment_id,

        -- from the latest scheduled event
        max(case when event_type = 'scheduled' and recency_rank = 1 then patient_id end) as patient_id,
        max(case when event_type = 'scheduled' and recency_rank = 1 then provider_id end) as provider_id,
        max(case when event_type = 'scheduled' and recency_rank = 1 then appointment_type end) as appointment_type,
        max(case when event_type = 'scheduled' and recency_rank = 1 then scheduled_for end) as scheduled_at,
        max(
            case when event_type = 'scheduled' and recency_rank = 1 then rescheduled_from_appointment_id end
        ) as rescheduled_from_appointment_id,
        min(case when event_type = 'scheduled' then event_at end) as booked_at,

        -- from the latest started event
        max(case when event_type = 'started' and recency_rank = 1 then event_at end) as started_at,
        max(case when event_type = 'started' and recency_rank = 1 then device_type end) as device_type,
        max(case when event_type = 'started' and recency_rank = 1 then wait_time_minutes end) as wait_time_minutes,

        -- from the final (terminal) event
        max(case when is_terminal and recency_rank = 1 then event_type end) as terminal_event_type,
        max(case when is_terminal and recency_rank = 1 then event_at end) as ended_at,
        max(
            case when is_terminal and recency_rank = 1 and event_type = 'completed' then duration_minutes end
        ) as duration_minutes,
        max(
            case when is_terminal and recency_rank = 1 and event_type = 'completed' then connection_quality end
        ) as connection_quality,
        max(case when is_terminal and recency_rank = 1 then cancelled_by end) as cancelled_by,
        max(
            case when is_terminal and recency_rank = 1 then rescheduled_to_appointment_id end
        ) as rescheduled_to_appointment_id,
        max(case when is_terminal and recency_rank = 1 then new_scheduled_for end) as rescheduled_to_at,

        -- counts over distinct events: a re-delivery is the same event
        count(distinct event_id) as event_count,
        count(distinct case when event_type = 'technical_issue' then event_id end) as technical_issue_count,
        count(distinct case when is_terminal then event_id end) as terminal_event_count,
        min(event_at) as first_event_at,
        max(event_at) as last_event_at,
        max(loaded_at) as last_loaded_at

    from events_ranked_by_time
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
        first_technical_issues.technical_issue_type,
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
    left join first_technical_issues
        on
            appointments_pivoted.appointment_id = first_technical_issues.appointment_id
            and first_technical_issues.issue_rank = 1

)

select * from final
