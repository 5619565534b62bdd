-- One row per rejected form or unreadable file; the payload stays in raw.
with

source as (

    select * from {{ source('feedback_forms', 'patient_feedback_rejected') }}

),

renamed as (

    select
        -- ids
        rejected_id,
        feedback_id,

        -- attributes
        reason as rejection_reason,
        error_detail,

        -- lineage
        source_path,
        source_sha256,
        form_index,
        _load_run_id as load_run_id,
        _loaded_at as loaded_at

    from source

)

select * from renamed
