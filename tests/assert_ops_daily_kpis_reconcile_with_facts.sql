-- The daily KPI mart adds up to the facts: appointments by status and feedback forms.
{{ config(severity='error') }}

with

kpi_totals as (

    select
        sum(appointments) as appointments,
        sum(completed) as completed,
        sum(cancelled) as cancelled,
        sum(rescheduled) as rescheduled,
        sum(no_shows) as no_shows,
        sum(feedback_forms) as feedback_forms
    from {{ ref('ops_daily_kpis') }}

),

fact_totals as (

    select
        count(*) as appointments,
        sum(case when status = 'completed' then 1 else 0 end) as completed,
        sum(case when status = 'cancelled' then 1 else 0 end) as cancelled,
        sum(case when status = 'rescheduled' then 1 else 0 end) as rescheduled,
        sum(case when status = 'no_show' then 1 else 0 end) as no_shows,
        (select count(*) from {{ ref('fact_feedback') }}) as feedback_forms
    from {{ ref('fact_appointment') }}

)

select
    kpi_totals.*,
    fact_totals.appointments as fact_appointments
from kpi_totals
cross join fact_totals
where
    coalesce(kpi_totals.appointments, 0) <> fact_totals.appointments
    or coalesce(kpi_totals.completed, 0) <> coalesce(fact_totals.completed, 0)
    or coalesce(kpi_totals.cancelled, 0) <> coalesce(fact_totals.cancelled, 0)
    or coalesce(kpi_totals.rescheduled, 0) <> coalesce(fact_totals.rescheduled, 0)
    or coalesce(kpi_totals.no_shows, 0) <> coalesce(fact_totals.no_shows, 0)
    or coalesce(kpi_totals.feedback_forms, 0) <> fact_totals.feedback_forms
