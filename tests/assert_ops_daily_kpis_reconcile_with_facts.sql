-- The daily KPI mart adds up to the facts, day by day: appointments by status and feedback forms. Every
-- day with a fact row is in the mart, every mart day's counts are its fact rows'. The nightly build checks
-- every day; the hourly run the days of the rows it touched (macro touched_rows), through the date_id
-- indexes.
{{ config(severity='error') }}

with

checked_days as (

    select kpi_rows.date_id
    from {{ ref('ops_daily_kpis') }} as kpi_rows
    where {{ touched_rows(ref('ops_daily_kpis')) }}
    union
    select appointment_rows.date_id
    from {{ ref('fact_appointment') }} as appointment_rows
    where {{ touched_rows(ref('fact_appointment')) }}
    union
    select feedback_rows.date_id
    from {{ ref('fact_feedback') }} as feedback_rows
    where {{ touched_rows(ref('fact_feedback')) }}

),

kpi_days as (

    select
        date_id,
        appointments,
        completed,
        cancelled,
        rescheduled,
        no_shows,
        feedback_forms
    from {{ ref('ops_daily_kpis') }}
    where {{ in_subquery('date_id', 'select checked_days.date_id from checked_days') }}

),

appointment_days as (

    select
        date_id,
        count(*) as appointments,
        sum(case when status = 'completed' then 1 else 0 end) as completed,
        sum(case when status = 'cancelled' then 1 else 0 end) as cancelled,
        sum(case when status = 'rescheduled' then 1 else 0 end) as rescheduled,
        sum(case when status = 'no_show' then 1 else 0 end) as no_shows
    from {{ ref('fact_appointment') }}
    where {{ in_subquery('date_id', 'select checked_days.date_id from checked_days') }}
    group by date_id

),

feedback_days as (

    select
        date_id,
        count(*) as feedback_forms
    from {{ ref('fact_feedback') }}
    where {{ in_subquery('date_id', 'select checked_days.date_id from checked_days') }}
    group by date_id

),

compared as (

    select
        checked_days.date_id,
        kpi_days.date_id is not null as in_mart,
        kpi_days.appointments,
        kpi_days.completed,
        kpi_days.cancelled,
        kpi_days.rescheduled,
        kpi_days.no_shows,
        kpi_days.feedback_forms,
        coalesce(appointment_days.appointments, 0) as fact_appointments,
        coalesce(appointment_days.completed, 0) as fact_completed,
        coalesce(appointment_days.cancelled, 0) as fact_cancelled,
        coalesce(appointment_days.rescheduled, 0) as fact_rescheduled,
        coalesce(appointment_days.no_shows, 0) as fact_no_shows,
        coalesce(feedback_days.feedback_forms, 0) as fact_feedback_forms
    from checked_days
    left join kpi_days
        on checked_days.date_id = kpi_days.date_id
    left join appointment_days
        on checked_days.date_id = appointment_days.date_id
    left join feedback_days
        on checked_days.date_id = feedback_days.date_id

)

select *
from compared
where
    not in_mart
    or appointments <> fact_appointments
    or completed <> fact_completed
    or cancelled <> fact_cancelled
    or rescheduled <> fact_rescheduled
    or no_shows <> fact_no_shows
    or feedback_forms <> fact_feedback_forms
