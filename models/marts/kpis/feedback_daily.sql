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
-- depends_on: {{ ref('fact_appointment') }}
-- Grain: one row per day a form was submitted, provider_id and specialty (of the provider version valid at
-- the appointment time, 'Unknown' when that version has none), over the forms of known appointments: the
-- daily rollup behind provider_performance's and specialty_satisfaction's ratings. Sums and counts (never
-- averages), so any set of days adds up exactly.
-- Incremental (delete+insert by day): the days of forms rebuilt since the watermark and of the forms of a
-- provider with a new version (macro changed_feedback_days) are recomputed from all of their forms; a form's
-- day never changes.

with

feedback as (

    select * from {{ ref('fact_feedback') }}

),

providers as (

    select * from {{ ref('dim_provider') }}

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
        providers.provider_id,
        coalesce(providers.specialty, 'Unknown') as specialty,
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
        max(feedback.last_loaded_at) as last_loaded_at
    from feedback
    inner join providers
        on feedback.provider_key = providers.provider_key
    {% if is_incremental() -%}
        where {{ in_subquery('feedback.date_id', 'select changed_days.date_id from changed_days') }}
    {%- endif %}
    group by feedback.date_id, providers.provider_id, coalesce(providers.specialty, 'Unknown')

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
        provider_id,
        specialty,
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
        last_loaded_at
    from forms_by_day
    {% if is_incremental() -%}
        union all
        select
            emptied_days.date_id,
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
            null
        from emptied_days
    {%- endif %}

)

select * from final
