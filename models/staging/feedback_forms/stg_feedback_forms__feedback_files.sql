-- One row per landing file seen by the feedback loader (by content hash).
with

source as (

    select * from {{ source('feedback_forms', 'feedback_files') }}

),

renamed as (

    select
        -- ids
        file_id,
        sha256 as file_sha256,

        -- attributes
        path as file_path,
        lower(status) as file_status,
        error as file_error,

        -- measures
        size_bytes,
        forms_read,
        forms_loaded,
        forms_rejected,
        forms_duplicate,

        -- lineage
        _load_run_id as load_run_id,
        _loaded_at as loaded_at

    from source

)

select * from renamed
