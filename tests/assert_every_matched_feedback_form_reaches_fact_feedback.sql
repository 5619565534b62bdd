-- Nothing silently dropped: every form of a known appointment is in fact_feedback, and nothing else is.
-- Retention (python -m loaders retention) purges a closed appointment's raw events and forms together
-- while its facts stay: a fact form with neither its raw form nor any raw event of its appointment left
-- is such a purge, not a stray row.
{{ config(severity='error') }}

with

matched_forms as (

    select feedback_id
    from {{ ref('int_feedback_joined_to_appointments') }}
    where is_known_appointment

),

fact_forms as (

    select
        feedback_id,
        appointment_id
    from {{ ref('fact_feedback') }}

),

raw_forms as (

    select feedback_id from {{ ref('stg_feedback_forms__patient_feedback') }}

),

raw_appointments as (

    select appointment_id from {{ ref('stg_kafka__appointment_events') }}

),

missing as (

    select
        matched_forms.feedback_id,
        'missing from fact_feedback' as problem
    from matched_forms
    left join fact_forms
        on matched_forms.feedback_id = fact_forms.feedback_id
    where fact_forms.feedback_id is null

),

unexpected as (

    select
        fact_forms.feedback_id,
        'in fact_feedback without a known appointment' as problem
    from fact_forms
    left join matched_forms
        on fact_forms.feedback_id = matched_forms.feedback_id
    where
        matched_forms.feedback_id is null
        -- Correlated exists (index probes), not `in (subquery)`: an `or` of two `in`s too large to hash in
        -- work_mem was planned as a scan of both lists per fact row (hours at 1M appointments).
        and (
            exists (
                select 1
                from raw_forms
                where raw_forms.feedback_id = fact_forms.feedback_id
            )
            or exists (
                select 1
                from raw_appointments
                where raw_appointments.appointment_id = fact_forms.appointment_id
            )
        )

)

select * from missing
union all
select * from unexpected
