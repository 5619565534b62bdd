-- Nothing silently dropped: every form of a known appointment is in fact_feedback, and nothing else is.
{{ config(severity='error') }}

with

matched_forms as (

    select feedback_id
    from {{ ref('int_feedback_joined_to_appointments') }}
    where is_known_appointment

),

fact_forms as (

    select feedback_id from {{ ref('fact_feedback') }}

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
    where matched_forms.feedback_id is null

)

select * from missing
union all
select * from unexpected
