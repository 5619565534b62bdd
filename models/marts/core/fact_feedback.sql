{{
    config(
        materialized='incremental',
        unique_key='feedback_id',
        incremental_strategy='merge',
        on_schema_change='append_new_columns',
        indexes=[
            {'columns': ['last_loaded_at']},
            {'columns': ['appointment_id']},
            {'columns': ['date_id']},
            {'columns': ['(comments is not null)', 'timestamp desc', 'feedback_id']},
        ],
    )
}}

-- depends_on: {{ ref('stg_feedback_forms__patient_feedback') }}
-- depends_on: {{ ref('int_provider_versions_validity') }}
-- Grain: one row per feedback form whose appointment is known. Forms for appointments that never
-- arrived stay out (the warn test assert_feedback_forms_match_an_appointment reports them) and enter as
-- soon as a late appointment arrives. Provider and patient keys are the appointment's, so a rating goes
-- to the provider version valid at the visit; date_id is the UTC date the form was submitted.
-- Incremental (merge on feedback_id): forms loaded within the look-back window and every form of an
-- appointment that changed in it (late events, its appointment just arrived, another provider version).
-- The index on (commented, timestamp desc, feedback_id) serves the dashboards' recent comments: the newest
-- commented forms, read in order and stopped at the hundredth, whatever the number of forms a day.

{{ refuse_full_refresh_after_purge() }}

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

    changed_providers as (

        select provider_versions.provider_id
        from {{ ref('int_provider_versions_validity') }} as provider_versions
        where provider_versions.loaded_at >= (select watermark.loaded_after from watermark)

    ),

    changed_appointments as (

        -- Rebuilt from events loaded in the window, or belonging to a provider with a version loaded in it:
        -- the same appointments fact_appointment merged, so their forms follow a moved provider version.
        select recent_appointments.appointment_id
        from {{ ref('fact_appointment') }} as recent_appointments
        where recent_appointments.last_loaded_at >= (select watermark.loaded_after from watermark)
        union
        select appointments_of_changed_providers.appointment_id
        from {{ ref('fact_appointment') }} as appointments_of_changed_providers
        where
            {{ in_subquery(
                'appointments_of_changed_providers.provider_id',
                'select changed_providers.provider_id from changed_providers'
            ) }}

    ),

    forms_in_scope as (

        -- Forms loaded in the window (new ones, and late ones whose appointment arrived meanwhile), and
        -- every form of a changed appointment (incl. forms waiting for an appointment that just arrived).
        select recent_forms.feedback_id
        from {{ ref('stg_feedback_forms__patient_feedback') }} as recent_forms
        where recent_forms.loaded_at >= (select watermark.loaded_after from watermark)
        union
        select forms_of_changed.feedback_id
        from {{ ref('stg_feedback_forms__patient_feedback') }} as forms_of_changed
        where
            {{ in_subquery(
                'forms_of_changed.appointment_id',
                'select changed_appointments.appointment_id from changed_appointments'
            ) }}

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
    where
        feedback.is_known_appointment
        and (
            {% if is_incremental() -%}
                {{ in_subquery('feedback.feedback_id', 'select forms_in_scope.feedback_id from forms_in_scope') }}
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
        {{ date_id('submitted_at') }} as date_id,

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
