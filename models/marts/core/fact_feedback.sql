{{
    config(
        materialized='incremental',
        unique_key='feedback_id',
        incremental_strategy='merge',
        on_schema_change='append_new_columns',
        indexes=[{'columns': ['last_loaded_at']}, {'columns': ['appointment_id']}],
    )
}}

-- Grain: one row per feedback form whose appointment is known. Forms for appointments that never
-- arrived stay out (the warn test assert_feedback_forms_match_an_appointment reports them) and enter as
-- soon as a late appointment arrives. Provider and patient keys are the appointment's, so a rating goes
-- to the provider version valid at the visit; date_id is the UTC date the form was submitted.
-- Incremental (merge on feedback_id): forms not here yet (new, or whose appointment just arrived),
-- forms or appointments loaded within the look-back window, and forms whose provider version changed.

with

feedback as (

    select * from {{ ref('int_feedback_joined_to_appointments') }}

),

appointments as (

    select * from {{ ref('fact_appointment') }}

),

{% if is_incremental() %}
    watermark as (

        select {{ incremental_watermark('last_loaded_at') }} as loaded_after

    ),
{% endif %}

feedback_in_scope as (

    select
        feedback.*,
        appointments.provider_key,
        appointments.patient_key,
        appointments.last_loaded_at as appointment_last_loaded_at_in_fact
    from feedback
    inner join appointments
        on feedback.appointment_id = appointments.appointment_id
    {% if is_incremental() -%}
        left join {{ this }} as this_model
            on feedback.feedback_id = this_model.feedback_id
    {%- endif %}
    where
        feedback.is_known_appointment
        and (
            {% if is_incremental() -%}
                this_model.feedback_id is null
                or feedback.loaded_at >= (select watermark.loaded_after from watermark)
                or appointments.last_loaded_at >= (select watermark.loaded_after from watermark)
                or this_model.provider_key <> appointments.provider_key
            {%- else -%}
                true
            {%- endif %}
        )

),

final as (

    select
        -- keys
        feedback_id,
        appointment_id,
        provider_key,
        patient_key,
        {{ extract_date_part('year', 'submitted_at') }} * 10000
        + {{ extract_date_part('month', 'submitted_at') }} * 100
        + {{ extract_date_part('day', 'submitted_at') }} as date_id,

        -- measures
        provider_rating,
        ease_of_use_rating,
        audio_quality_rating,
        video_quality_rating,
        overall_satisfaction,
        would_recommend,

        -- attributes
        comments,
        appointment_status,

        -- timestamps (UTC)
        submitted_at as timestamp,
        -- Newest load behind this row (form or appointment): the incremental watermark.
        greatest(loaded_at, appointment_last_loaded_at_in_fact) as last_loaded_at

    from feedback_in_scope

)

select * from final
