{{
    config(
        materialized='incremental',
        unique_key='date_id',
        incremental_strategy='delete+insert',
        on_schema_change='append_new_columns',
        indexes=[{'columns': ['date_id']}, {'columns': ['last_loaded_at']}],
        post_hook=["{{ delete_emptied_days('feedback_forms') }}"],
    )
}}

-- depends_on: {{ ref('int_provider_versions_validity') }}
-- Grain: one row per day a form was submitted, specialty (of the provider version valid at the appointment
-- time; null when that version has none) and device of the rated appointment (Unknown until it started),
-- over the forms of known appointments: ratings as sums and counts (never averages), so any set of rows
-- adds up exactly. The daily rollup behind the dashboards' feedback cards, which filter by day, specialty
-- and device (a few dozen rows a day, where fact_feedback has hundreds of forms).
-- Incremental (delete+insert by day) as feedback_daily: the days of forms rebuilt since the watermark (a
-- form is rebuilt when its appointment is, which is when its device can change) and of the forms of a
-- provider with a new version (macro changed_feedback_days) are recomputed from all of their forms.

with

feedback as (

    select * from {{ ref('fact_feedback') }}

),

appointments as (

    select * from {{ ref('fact_appointment') }}

),

providers as (

    select * from {{ ref('dim_provider') }}

),

devices as (

    select * from {{ ref('dim_device') }}

),

{% if is_incremental() %}
    {%- set loaded_after = incremental_watermark('last_loaded_at') %}
    changed_days as (

        {{ changed_feedback_days(loaded_after, provider_versions=true) | indent(8) }}

    ),
{% endif %}

forms_by_day as (

    select
        feedback.date_id,
        providers.specialty,
        appointments.device_key,
        devices.device_type,
        count(*) as feedback_forms,
        sum(feedback.provider_rating) as provider_rating_sum,
        count(feedback.provider_rating) as provider_rating_count,
        sum(feedback.overall_satisfaction) as overall_satisfaction_sum,
        count(feedback.overall_satisfaction) as overall_satisfaction_count,
        sum(feedback.ease_of_use_rating) as ease_of_use_rating_sum,
        count(feedback.ease_of_use_rating) as ease_of_use_rating_count,
        sum(feedback.audio_quality_rating) as audio_quality_rating_sum,
        count(feedback.audio_quality_rating) as audio_quality_rating_count,
        sum(feedback.video_quality_rating) as video_quality_rating_sum,
        count(feedback.video_quality_rating) as video_quality_rating_count,
        {{ count_where('feedback.would_recommend') }} as would_recommend,
        count(feedback.would_recommend) as would_recommend_count,
        max(feedback.last_loaded_at) as last_loaded_at
    from feedback
    inner join appointments
        on feedback.appointment_id = appointments.appointment_id
    left join providers
        on feedback.provider_key = providers.provider_key
    left join devices
        on appointments.device_key = devices.device_key
    {% if is_incremental() -%}
        where {{ in_subquery('feedback.date_id', 'select changed_days.date_id from changed_days') }}
    {%- endif %}
    group by feedback.date_id, providers.specialty, appointments.device_key, devices.device_type

),

{% if is_incremental() %}
    emptied_days as (

        -- A recomputed day without forms left: one zero row, so delete+insert removes its old rows.
        select changed_days.date_id
        from changed_days
        where not exists (
            select 1 from forms_by_day where forms_by_day.date_id = changed_days.date_id
        )

    ),
{% endif %}

final as (

    select
        date_id,
        specialty,
        device_key,
        device_type,
        cast(feedback_forms as bigint) as feedback_forms,
        cast(provider_rating_sum as bigint) as provider_rating_sum,
        cast(provider_rating_count as bigint) as provider_rating_count,
        cast(overall_satisfaction_sum as bigint) as overall_satisfaction_sum,
        cast(overall_satisfaction_count as bigint) as overall_satisfaction_count,
        cast(ease_of_use_rating_sum as bigint) as ease_of_use_rating_sum,
        cast(ease_of_use_rating_count as bigint) as ease_of_use_rating_count,
        cast(audio_quality_rating_sum as bigint) as audio_quality_rating_sum,
        cast(audio_quality_rating_count as bigint) as audio_quality_rating_count,
        cast(video_quality_rating_sum as bigint) as video_quality_rating_sum,
        cast(video_quality_rating_count as bigint) as video_quality_rating_count,
        cast(would_recommend as bigint) as would_recommend,
        cast(would_recommend_count as bigint) as would_recommend_count,
        last_loaded_at
    from forms_by_day
    {% if is_incremental() -%}
        union all
        select
            emptied_days.date_id,
            null,
            null,
            null,
            0,
            null,
            0,
            null,
            0,
            null,
            0,
            null,
            0,
            null,
            0,
            0,
            0,
            null
        from emptied_days
    {%- endif %}

)

select * from final
