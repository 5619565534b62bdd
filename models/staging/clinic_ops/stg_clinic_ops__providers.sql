-- One row per provider version (provider_id, updated_at). Identical re-copies of a version cannot exist
-- (raw primary key); specialty and state are trimmed, names kept as entered (providers are not patients).
with

source as (

    select * from {{ source('clinic_ops', 'providers') }}

),

renamed as (

    select
        -- ids
        provider_id,

        -- attributes
        trim(first_name) as first_name,
        trim(last_name) as last_name,
        trim(specialty) as specialty,
        upper(trim(state)) as state,
        years_experience,
        hourly_rate,
        available_hours,
        coalesce(active, false) as is_active,

        -- timestamps (UTC)
        {{ to_utc('updated_at') }} as updated_at,

        -- lineage
        _load_run_id as load_run_id,
        _loaded_at as loaded_at

    from source

)

select * from renamed
