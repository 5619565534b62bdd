-- Grain: one row per specialty with feedback. A form counts for the specialty of the provider version
-- valid at the appointment's time (a provider who changed specialty rates under each in turn).
-- recommend_rate is the fraction (0..1) of forms that would recommend.
-- Added up from the daily rollup feedback_daily (sums and counts, so exactly the averages over the forms),
-- without reading a fact table.

with

forms as (

    select * from {{ ref('feedback_daily') }}

),

specialties as (

    select * from {{ ref('specialties') }}

),

feedback_by_specialty as (

    select
        specialty,
        sum(feedback_forms) as feedback_forms,
        {{ mean_of('sum(provider_rating_sum)', 'sum(provider_rating_count)') }} as avg_provider_rating,
        {{ mean_of('sum(overall_satisfaction_sum)', 'sum(overall_satisfaction_count)') }}
            as avg_overall_satisfaction,
        {{ mean_of('sum(ease_of_use_rating_sum)', 'sum(ease_of_use_rating_count)') }} as avg_ease_of_use_rating,
        {{ mean_of('sum(audio_quality_rating_sum)', 'sum(audio_quality_rating_count)') }}
            as avg_audio_quality_rating,
        {{ mean_of('sum(video_quality_rating_sum)', 'sum(video_quality_rating_count)') }}
            as avg_video_quality_rating,
        {{ rate('sum(would_recommend)', 'sum(feedback_forms)') }} as recommend_rate
    from forms
    group by specialty

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
