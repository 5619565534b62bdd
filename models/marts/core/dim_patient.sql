-- Grain: one row per patient (type 1: the latest version), plus inferred members for patient ids the
-- appointments name before the clinic data arrives, and the Unknown member (patient_key '-1').
-- No direct identifiers: no names, contacts, address or birth date. Age convention: completed years
-- on the day of the dbt run; ages above var max_reported_age (89) are shown as 90 and grouped "90+",
-- as HIPAA Safe Harbor requires. patient_key is a hash of patient_id, stable across runs, so facts
-- never need rewriting when a patient's data changes.

with

patients as (

    select * from {{ ref('stg_clinic_ops__patients') }}

),

appointments as (

    select * from {{ ref('int_appointments_derived_from_events') }}

),

latest_versions as (

    select
        *,
        row_number() over (partition by patient_id order by updated_at desc) as version_rank
    from patients

),

ages as (

    select
        patient_id,
        gender,
        has_insurance,
        registration_date,
        state,
        updated_at,
        -- Completed years: whole-year difference, minus one before the birthday in the as-of year.
        cast(floor((
            ({{ run_date_part('year') }} * 10000 + {{ run_date_part('month') }} * 100 + {{ run_date_part('day') }})
            - (
                {{ extract_date_part('year', 'date_of_birth') }} * 10000
                + {{ extract_date_part('month', 'date_of_birth') }} * 100
                + {{ extract_date_part('day', 'date_of_birth') }}
            )
        ) / 10000) as integer) as exact_age
    from latest_versions
    where version_rank = 1

),

known_patients as (

    select
        {{ dbt.hash('patient_id') }} as patient_key,
        patient_id,
        case
            when exact_age > {{ var('max_reported_age') }} then {{ var('max_reported_age') + 1 }}
            else exact_age
        end as age,
        case
            when exact_age is null then 'unknown'
            when exact_age < 18 then '0-17'
            when exact_age < 30 then '18-29'
            when exact_age < 45 then '30-44'
            when exact_age < 65 then '45-64'
            when exact_age <= {{ var('max_reported_age') }} then '65-{{ var("max_reported_age") }}'
            else '{{ var("max_reported_age") + 1 }}+'
        end as age_group,
        gender,
        has_insurance,
        registration_date,
        state,
        updated_at,
        false as is_inferred
    from ages

),

inferred_patients as (

    select distinct
        {{ dbt.hash('appointments.patient_id') }} as patient_key,
        appointments.patient_id,
        cast(null as integer) as age,
        'unknown' as age_group,
        cast(null as {{ dbt.type_string() }}) as gender,
        cast(null as boolean) as has_insurance,
        cast(null as date) as registration_date,
        cast(null as {{ dbt.type_string() }}) as state,
        cast(null as {{ dbt.type_timestamp() }}) as updated_at,
        true as is_inferred
    from appointments
    where
        appointments.patient_id is not null
        and not exists (
            select 1
            from patients
            where patients.patient_id = appointments.patient_id
        )

),

unknown_patient as (

    select
        {{ unknown_key('string') }} as patient_key,
        'unknown' as patient_id,
        cast(null as integer) as age,
        'unknown' as age_group,
        cast(null as {{ dbt.type_string() }}) as gender,
        cast(null as boolean) as has_insurance,
        cast(null as date) as registration_date,
        cast(null as {{ dbt.type_string() }}) as state,
        cast(null as {{ dbt.type_timestamp() }}) as updated_at,
        false as is_inferred

),

final as (

    select * from known_patients
    union all
    select * from inferred_patients
    union all
    select * from unknown_patient

)

select * from final
