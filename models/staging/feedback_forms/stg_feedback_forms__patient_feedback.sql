-- One row per feedback form (feedback_id is the raw primary key; a re-submitted form was skipped by the
-- loader). Ratings and the recommendation are read from the payload and cast.
with

source as (

    select * from {{ source('feedback_forms', 'patient_feedback') }}

),

renamed as (

    select
        -- ids
        feedback_id,
        appointment_id,

        -- measures
        cast({{ json_text('payload', 'provider_rating') }} as integer) as provider_rating,
        cast({{ json_text('payload', 'ease_of_use_rating') }} as integer) as ease_of_use_rating,
        cast({{ json_text('payload', 'audio_quality_rating') }} as integer) as audio_quality_rating,
        cast({{ json_text('payload', 'video_quality_rating') }} as integer) as video_quality_rating,
        cast({{ json_text('payload', 'overall_satisfaction') }} as integer) as overall_satisfaction,
        cast({{ json_text('payload', 'would_recommend') }} as boolean) as would_recommend,

        -- attributes
        nullif(trim({{ json_text('payload', 'comments') }}), '') as comments,
        schema_version,

        -- timestamps (UTC)
        {{ to_utc('submitted_at') }} as submitted_at,

        -- lineage
        source_path,
        source_sha256,
        form_index,
        _load_run_id as load_run_id,
        _loaded_at as loaded_at

    from source

)

select * from renamed
