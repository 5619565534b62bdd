-- One row per loader run.
with

source as (

    select * from {{ source('loader', 'load_runs') }}

),

renamed as (

    select
        -- ids
        run_id as load_run_id,

        -- attributes
        lower(loader) as loader,
        lower(status) as run_status,
        error as run_error,

        -- measures
        rows_read,
        rows_loaded,
        rows_rejected,
        duplicates_skipped,

        -- timestamps (UTC)
        {{ to_utc('started_at') }} as started_at,
        {{ to_utc('finished_at') }} as finished_at

    from source

)

select * from renamed
