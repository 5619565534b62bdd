-- One row per call-session record the connector quarantined; the record stays in raw.
with

source as (

    select * from {{ source('video_api', 'call_sessions_rejected') }}

),

renamed as (

    select
        -- ids
        rejected_id,
        session_id,

        -- attributes
        reason as rejection_reason,
        error_detail,

        -- lineage
        record_sha256,
        api_url,
        _load_run_id as load_run_id,
        _loaded_at as loaded_at

    from source

)

select * from renamed
