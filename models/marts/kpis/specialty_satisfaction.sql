-- Grain: one row per specialty with feedback. A form counts for the specialty of the provider version
-- valid at the appointment's time (a provider who changed specialty rates under each in turn).
-- recommend_rate is the fraction (0..1) of forms that would recommend.

with

feedback as (

    select * from {{ ref('fact_feedback') }}

),

providers as (

    select * from {{ ref('dim_provider') }}

),

specialties as (

    select * from {{ ref('specialties') }}

),

feedback_by_specialty as (

    select
        coalesce(providers.specialty, 'Unknown') as specialty,
        count(*) as feedback_forms,
        avg(feedback.provider_rating) as avg_provider_rating,
        avg(feedback.overall_satisfaction) as avg_overall_satisfaction,
        avg(feedback.ease_of_use_rating) as avg_ease_of_use_rating,
        avg(feedback.audio_quality_rating) as avg_audio_quality_rating,
        avg(feedback.video_quality_rating) as avg_video_quality_rating,
        {{ share_where('feedback.would_recommend') }} as recommend_rate
    from feedback
    inner join providers
        on feedback.provider_key = providers.provider_key
    group by coalesce(providers.specialty, 'Unknown')

),

final as (

    select
        feedback_by_specialty.specialty,
        specialties.is_primary_care,
        cast(feedback_by_specialty.feedback_forms as bigint) as feedback_forms,
        cast(feedback_by_specialty.avg_provider_rating as numeric) as avg_provider_rating,
        cast(feedback_by_specialty.avg_overall_satisfaction as numeric) as avg_overall_satisfaction,
        cast(feedback_by_specialty.avg_ease_of_use_rating as numeric) as avg_ease_of_use_rating,
        cast(feedback_by_specialty.avg_audio_quality_rating as numeric) as avg_audio_quality_rating,
        cast(feedback_by_specialty.avg_video_quality_rating as numeric) as avg_video_quality_rating,
        cast(feedback_by_specialty.recommend_rate as numeric) as recommend_rate
    from feedback_by_specialty
    left join specialties
        on feedback_by_specialty.specialty = specialties.specialty

)

select * from final
