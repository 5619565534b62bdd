-- One row per patient version (patient_id, updated_at). Direct identifiers (names, email, phone,
-- address) are not selected at all: nothing downstream may use them. The birth date stays here only so
-- that dim_patient can derive a capped age.
with

source as (

    select * from {{ source('clinic_ops', 'patients') }}

),

renamed as (

    select
        -- ids
        patient_id,

        -- attributes
        date_of_birth,
        lower(trim(gender)) as gender,
        has_insurance,
        registration_date,
        upper(trim(state)) as state,

        -- timestamps (UTC)
        {{ to_utc('updated_at') }} as updated_at,

        -- lineage
        _load_run_id as load_run_id,
        _loaded_at as loaded_at

    from source

)

select * from renamed
