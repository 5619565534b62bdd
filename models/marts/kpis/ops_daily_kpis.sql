{{
    config(
        materialized='incremental',
        unique_key='date_id',
        incremental_strategy='merge',
        on_schema_change='append_new_columns',
        indexes=[{'columns': ['date_id'], 'unique': True}, {'columns': ['last_loaded_at']}],
        post_hook=[
            "{{ delete_outside_range('date_id', [ref('fact_appointment'), ref('fact_feedback')]) }}",
        ],
    )
}}

-- depends_on: {{ ref('stg_kafka__appointment_events') }}
-- Grain: one row per calendar day from the first to the last day with appointments or feedback, days
-- without any included (the "minimum appointments per day" monitor must see them).
-- Appointments count on the UTC day of their scheduled time. Rates are fractions (0..1) of the day's
-- closed appointments (final status reached), so open appointments do not dilute them; wait and
-- technical issues are over started appointments, connection quality over completed ones. Feedback
-- counts on the day the form was submitted.
-- Incremental (merge on date_id): only the days whose numbers can have changed are recomputed:
--   * days of fact rows loaded within var lookback_days of the newest load already here, and every day
--     their appointments can have counted on before (macro changed_appointment_days: an appointment moves
--     to another day when its booking event arrives after its first event), and
--   * days of the covered range not here yet (new days, with or without activity);
-- and a post-hook deletes days that left the covered range (its first or last day lost its only
-- appointment to another day), which a merge cannot.
-- Every measure of a day is recomputed from all of that day's fact rows, so a full refresh and any
-- sequence of incremental runs give the same rows.

with

dates as (

    select * from {{ ref('dim_date') }}

),

appointments as (

    select * from {{ ref('fact_appointment') }}

),

statuses as (

    select * from {{ ref('dim_status') }}

),

feedback as (

    select * from {{ ref('fact_feedback') }}

),

covered_days as (

    -- Reads the facts directly, not their CTEs (Postgres materialises a CTE used more than once in full):
    -- min and max then come from the date_id indexes. The post-hook keeps the table within this range.
    select
        {{ range_bound('min', 'date_id', [ref('fact_appointment'), ref('fact_feedback')]) }} as first_date_id,
        {{ range_bound('max', 'date_id', [ref('fact_appointment'), ref('fact_feedback')]) }} as last_date_id

),

{% if is_incremental() %}
    {%- set loaded_after = incremental_watermark('last_loaded_at') %}
    changed_days as (

        {{ changed_appointment_days(loaded_after) | indent(8) }}
        union
        {{ changed_feedback_days(loaded_after) | indent(8) }}
        union
        select dates.date_id
        from dates
        inner join covered_days
            on dates.date_id between covered_days.first_date_id and covered_days.last_date_id
        left join {{ this }} as this_model
            on dates.date_id = this_model.date_id
        where this_model.date_id is null

    ),
{% endif %}

appointments_by_day as (

    select
        appointments.date_id,
        count(*) as appointments,
        {{ count_where('statuses.is_terminal') }} as closed_appointments,
        {{ count_where("appointments.status = 'completed'") }} as completed,
        {{ count_where("appointments.status = 'cancelled'") }} as cancelled,
        {{ count_where("appointments.status = 'rescheduled'") }} as rescheduled,
        {{ count_where("appointments.status = 'no_show'") }} as no_shows,
        {{ count_where('appointments.is_started') }} as started,
        {{ count_where('appointments.is_started and appointments.had_technical_issues') }}
            as started_with_technical_issues,
        avg(appointments.wait_time_minutes) as avg_wait_minutes,
        percentile_cont(0.9) within group (order by appointments.wait_time_minutes) as p90_wait_minutes,
        avg(appointments.connection_quality) as avg_connection_quality,
        avg(appointments.duration_minutes) as avg_duration_minutes,
        max(appointments.last_loaded_at) as last_loaded_at
    from appointments
    inner join statuses
        on appointments.status_key = statuses.status_key
    {% if is_incremental() -%}
        where {{ in_subquery('appointments.date_id', 'select changed_days.date_id from changed_days') }}
    {%- endif %}
    group by appointments.date_id

),

feedback_by_day as (

    select
        date_id,
        count(*) as feedback_forms,
        avg(overall_satisfaction) as avg_overall_satisfaction,
        avg(provider_rating) as avg_provider_rating,
        max(last_loaded_at) as last_loaded_at
    from feedback
    {% if is_incremental() -%}
        where {{ in_subquery('date_id', 'select changed_days.date_id from changed_days') }}
    {%- endif %}
    group by date_id

),

final as (

    select
        dates.date_id,
        dates.date,
        dates.day_name,
        dates.is_weekend,
        dates.is_holiday,
        cast(coalesce(appointments_by_day.appointments, 0) as bigint) as appointments,
        cast(coalesce(appointments_by_day.closed_appointments, 0) as bigint) as closed_appointments,
        cast(coalesce(appointments_by_day.completed, 0) as bigint) as completed,
        cast(coalesce(appointments_by_day.cancelled, 0) as bigint) as cancelled,
        cast(coalesce(appointments_by_day.rescheduled, 0) as bigint) as rescheduled,
        cast(coalesce(appointments_by_day.no_shows, 0) as bigint) as no_shows,
        cast(coalesce(appointments_by_day.started, 0) as bigint) as started,
        {{ rate('appointments_by_day.completed', 'appointments_by_day.closed_appointments') }} as completion_rate,
        {{ rate('appointments_by_day.cancelled', 'appointments_by_day.closed_appointments') }} as cancellation_rate,
        {{ rate('appointments_by_day.no_shows', 'appointments_by_day.closed_appointments') }} as no_show_rate,
        {{ rate('appointments_by_day.rescheduled', 'appointments_by_day.closed_appointments') }} as reschedule_rate,
        cast(appointments_by_day.avg_wait_minutes as numeric) as avg_wait_minutes,
        cast(appointments_by_day.p90_wait_minutes as numeric) as p90_wait_minutes,
        {{ rate('appointments_by_day.started_with_technical_issues', 'appointments_by_day.started') }}
            as technical_issue_share,
        cast(appointments_by_day.avg_connection_quality as numeric) as avg_connection_quality,
        cast(appointments_by_day.avg_duration_minutes as numeric) as avg_duration_minutes,
        cast(coalesce(feedback_by_day.feedback_forms, 0) as bigint) as feedback_forms,
        cast(feedback_by_day.avg_overall_satisfaction as numeric) as avg_overall_satisfaction,
        cast(feedback_by_day.avg_provider_rating as numeric) as avg_provider_rating,
        -- Newest load behind the day's numbers: the incremental watermark.
        greatest(appointments_by_day.last_loaded_at, feedback_by_day.last_loaded_at) as last_loaded_at
    from dates
    inner join covered_days
        on dates.date_id between covered_days.first_date_id and covered_days.last_date_id
    left join appointments_by_day
        on dates.date_id = appointments_by_day.date_id
    left join feedback_by_day
        on dates.date_id = feedback_by_day.date_id
    {% if is_incremental() -%}
        where dates.date_id in (select changed_days.date_id from changed_days)
    {%- endif %}

)

select * from final
