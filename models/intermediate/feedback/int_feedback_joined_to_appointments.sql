-- Grain: one row per feedback form (feedback_id).
-- Each form is matched to the appointment it rates; forms whose appointment never arrived keep
-- is_known_appointment = false (fact_feedback leaves them out, a warn test reports them). Provider and
-- patient come from the appointment, so a rating belongs to the provider version valid at the visit.

with

feedback as (

    select * from {{ ref('stg_feedback_forms__patient_feedback') }}

),

appointments as (

    select * from {{ ref('int_appointments_derived_from_events') }}

),

final as (

    select
        feedback.feedback_id,
        feedback.appointment_id,
        appointments.patient_id,
        appointments.provider_id,
        appointments.scheduled_at as appointment_scheduled_at,
        appointments.status as appointment_status,
        feedback.provider_rating,
        feedback.ease_of_use_rating,
        feedback.audio_quality_rating,
        feedback.video_quality_rating,
        feedback.overall_satisfaction,
        feedback.would_recommend,
        feedback.comments,
        feedback.submitted_at,
        appointments.appointment_id is not null as is_known_appointment,
        feedback.loaded_at,
        appointments.last_loaded_at as appointment_last_loaded_at
    from feedback
    left join appointments
        on feedback.appointment_id = appointments.appointment_id

)

select * from final
