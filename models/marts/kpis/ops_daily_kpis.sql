-- Grain: one row per calendar day from the first to the last day with appointments or feedback, days
-- without any included (the "minimum appointments per day" monitor must see them).
-- Appointments count on the UTC day of their scheduled time. Rates are fractions (0..1) of the day's
-- closed appointments (final status reached), so open appointments do not dilute them; wait and
-- technical issues are over started appointments, connection quality over completed ones. Feedback
-- counts on the day the form was submitted.

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

appointments_by_day as (

    select
        appointments.date_id,
        count(*) as appointments,
        sum(case when statuses.is_terminal then 1 else 0 end) as closed_appointments,
        sum(case when appointments.status = 'completed' then 1 else 0 end) as completed,
        sum(case when appointments.status = 'cancelled' then 1 else 0 end) as cancelled,
        sum(case when appointments.status = 'rescheduled' then 1 else 0 end) as rescheduled,
        sum(case when appointments.status = 'no_show' then 1 else 0 end) as no_shows,
        sum(case when appointments.is_started then 1 else 0 end) as started,
        sum(case when appointments.is_started and appointments.had_technical_issues then 1 else 0 end)
            as started_with_technical_issues,
        avg(appointments.wait_time_minutes) as avg_wait_minutes,
        percentile_cont(0.9) within group (order by appointments.wait_time_minutes) as p90_wait_minutes,
        avg(appointments.connection_quality) as avg_connection_quality,
        avg(appointments.duration_minutes) as avg_duration_minutes
    from appointments
    inner join statuses
        on appointments.status_key = statuses.status_key
    group by appointments.date_id

),

feedback_by_day as (

    select
        date_id,
        count(*) as feedback_forms,
        avg(overall_satisfaction) as avg_overall_satisfaction,
        avg(provider_rating) as avg_provider_rating
    from feedback
    group by date_id

),

covered_days as (

    select
        min(date_id) as first_date_id,
        max(date_id) as last_date_id
    from (
        select date_id from appointments_by_day
        union all
        select date_id from feedback_by_day
    ) as activity_days

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
        cast(appointments_by_day.completed as numeric)
        / nullif(appointments_by_day.closed_appointments, 0) as completion_rate,
        cast(appointments_by_day.cancelled as numeric)
        / nullif(appointments_by_day.closed_appointments, 0) as cancellation_rate,
        cast(appointments_by_day.no_shows as numeric)
        / nullif(appointments_by_day.closed_appointments, 0) as no_show_rate,
        cast(appointments_by_day.rescheduled as numeric)
        / nullif(appointments_by_day.closed_appointments, 0) as reschedule_rate,
        cast(appointments_by_day.avg_wait_minutes as numeric) as avg_wait_minutes,
        cast(appointments_by_day.p90_wait_minutes as numeric) as p90_wait_minutes,
        cast(appointments_by_day.started_with_technical_issues as numeric)
        / nullif(appointments_by_day.started, 0) as technical_issue_share,
        cast(appointments_by_day.avg_connection_quality as numeric) as avg_connection_quality,
        cast(appointments_by_day.avg_duration_minutes as numeric) as avg_duration_minutes,
        cast(coalesce(feedback_by_day.feedback_forms, 0) as bigint) as feedback_forms,
        cast(feedback_by_day.avg_overall_satisfaction as numeric) as avg_overall_satisfaction,
        cast(feedback_by_day.avg_provider_rating as numeric) as avg_provider_rating
    from dates
    inner join covered_days
        on dates.date_id between covered_days.first_date_id and covered_days.last_date_id
    left join appointments_by_day
        on dates.date_id = appointments_by_day.date_id
    left join feedback_by_day
        on dates.date_id = feedback_by_day.date_id

)

select * from final
