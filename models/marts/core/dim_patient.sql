{{
    config(
        materialized='incremental',
        unique_key='patient_key',
        incremental_strategy='merge',
        on_schema_change='append_new_columns',
        indexes=[{'columns': ['patient_key'], 'unique': True}, {'columns': ['last_loaded_at']}],
    )
}}

-- Grain: one row per patient (type 1: the latest version), plus inferred members for patient ids the
-- appointments name before the clinic data arrives, and the Unknown member (patient_key '-1').
-- No direct identifiers: no names, contacts, address or birth date. Age convention: completed years
-- on the day of the dbt run; ages above var max_reported_age (89) are shown as 90 and grouped "90+",
-- as HIPAA Safe Harbor requires. patient_key is a keyed hash (HMAC-SHA256, macro pseudonymous_key) of
-- patient_id, stable across runs while the key is, so facts never need rewriting when a patient's data
-- changes; without the key it cannot be reversed by hashing candidate ids.
-- Incremental (merge on patient_key); only rows that differ from this table are merged: new patients,
-- inferred ones now known, newer versions (updated_at or load time changed) and ages changed since the last
-- run (a birthday); inferred members only for patient ids not here yet. Which rows are derived:
--   * the scheduled run after a load (macro hourly_run): only the patients whose row can have changed, so
--     its cost follows the new data, not the number of patients: those with a version among the run's
--     recent loads (macro touched_loads_start, as the run's tests), those with a birthday on the as-of day
--     or the var lookback_days days before it (macro birthday_keys_since), and, for inferred members, the
--     patient ids of the appointments loaded within lookback_days of the newest appointment load; read
--     through indexes (runtime/migrations/008_patients_touched_indexes.sql). An erasure request empties
--     the age itself (stewardship/erasure.py), as the next build would;
--   * every other build (nightly, deploys): every patient, as a full refresh would, so whatever an hourly
--     run after a gap longer than lookback_days missed is caught up there.

{#- The columns of the inferred and Unknown members (macro dimension_member): no attributes. -#}
{%- set member_columns = [
    ('patient_key', dbt.type_string()),
    ('patient_id', dbt.type_string()),
    ('age', 'integer'),
    ('age_group', dbt.type_string()),
    ('gender', dbt.type_string()),
    ('has_insurance', 'boolean'),
    ('registration_date', 'date'),
    ('state', dbt.type_string()),
    ('updated_at', dbt.type_timestamp()),
    ('is_inferred', 'boolean'),
    ('last_loaded_at', 'timestamp with time zone'),
] -%}
{%- set member_values = {'age_group': "'unknown'"} %}

{{ refuse_full_refresh_after_purge() }}

{%- set touched_only = is_incremental() and hourly_run() %}

with

{% if touched_only %}
    {%- set patients_loaded_after = touched_loads_start(this) %}
    {%- set appointments_loaded_after = recent_loads_start(ref('int_appointments_derived_from_events')) %}
    candidate_patients as (

        -- Each part reads the staging view itself, not a CTE: Postgres materialises a CTE used twice in
        -- full, which would read every patient.
        select recent_versions.patient_id
        from {{ ref('stg_clinic_ops__patients') }} as recent_versions
        where recent_versions.loaded_at >= {{ patients_loaded_after or incremental_watermark('last_loaded_at') }}
        union
        select birthdays.patient_id
        from {{ ref('stg_clinic_ops__patients') }} as birthdays
        where
            {{ birthday_key('birthdays.date_of_birth') }}
            in ({{ birthday_keys_since(var('lookback_days')) }})

    ),

    touched_patient_ids as (

        select distinct recent_appointments.patient_id
        from {{ ref('int_appointments_derived_from_events') }} as recent_appointments
        where
            recent_appointments.patient_id is not null
            {%- if appointments_loaded_after is not none %}
                and recent_appointments.last_loaded_at >= {{ appointments_loaded_after }}
            {%- endif %}

    ),

    patient_ids_without_record as (

        -- Each list probes an index: the clinic's records by patient_id ...
        select touched_patient_ids.patient_id from touched_patient_ids
        except
        select clinic_records.patient_id
        from {{ ref('stg_clinic_ops__patients') }} as clinic_records
        where
            {{ in_subquery(
                'clinic_records.patient_id',
                'select touched_patient_ids.patient_id from touched_patient_ids'
            ) }}

    ),

    new_inferred_patient_ids as (

        -- ... and this table by patient_key, for the few without a record.
        select patient_ids_without_record.patient_id from patient_ids_without_record
        except
        select rows_here.patient_id
        from {{ this }} as rows_here
        where
            {{ in_subquery(
                'rows_here.patient_key',
                'select ' ~ pseudonymous_key('patient_ids_without_record.patient_id')
                ~ ' from patient_ids_without_record'
            ) }}

    ),
{% endif %}

patients as (

    select patient_versions.*
    from {{ ref('stg_clinic_ops__patients') }} as patient_versions
    {%- if touched_only %}
        where
            {{ in_subquery(
                'patient_versions.patient_id',
                'select candidate_patients.patient_id from candidate_patients'
            ) }}
    {%- endif %}

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
        loaded_at,
        -- Completed years: whole-year difference, minus one before the birthday in the as-of year.
        cast(floor(({{ run_date_id() }} - {{ date_id('date_of_birth') }}) / 10000) as integer) as exact_age
    from latest_versions
    where version_rank = 1

),

known_patients as (

    select
        {{ pseudonymous_key('patient_id') }} as patient_key,
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
        false as is_inferred,
        loaded_at as last_loaded_at
    from ages

),

changed_known_patients as (

    select known_patients.*
    from known_patients
    {% if is_incremental() -%}
        left join {{ this }} as this_model
            on known_patients.patient_key = this_model.patient_key
        where
            this_model.patient_key is null
            or this_model.is_inferred
            or this_model.last_loaded_at <> known_patients.last_loaded_at
            or coalesce(this_model.updated_at, cast('1900-01-01' as {{ dbt.type_timestamp() }}))
            <> coalesce(known_patients.updated_at, cast('1900-01-01' as {{ dbt.type_timestamp() }}))
            or coalesce(this_model.age, -1) <> coalesce(known_patients.age, -1)
    {%- endif %}

),

inferred_patients as (

    {% if touched_only -%}
        select
            {{ dimension_member(
                member_columns,
                member_values,
                patient_key=pseudonymous_key('new_inferred_patient_ids.patient_id'),
                patient_id='new_inferred_patient_ids.patient_id',
                is_inferred='true',
            ) }}
        from new_inferred_patient_ids
    {%- else -%}
        select
            {{ dimension_member(
                member_columns,
                member_values,
                patient_key=pseudonymous_key('appointments.patient_id'),
                patient_id='appointments.patient_id',
                is_inferred='true',
            ) }}
        from {{ ref('int_appointments_derived_from_events') }} as appointments
        where
            appointments.patient_id is not null
            and not exists (
                select 1
                from patients
                where patients.patient_id = appointments.patient_id
            )
            and (
                {% if is_incremental() -%}
                    not exists (
                        select 1
                        from {{ this }} as this_model
                        where this_model.patient_id = appointments.patient_id
                    )
                {%- else -%}
                    true
                {%- endif %}
            )
        group by appointments.patient_id
    {%- endif %}

),

unknown_patient as (

    select
        {{ dimension_member(
            member_columns,
            member_values,
            patient_key=unknown_key('string'),
            patient_id="'unknown'",
            is_inferred='false',
        ) }}

),

final as (

    select * from changed_known_patients
    union all
    select * from inferred_patients
    union all
    select * from unknown_patient

)

select * from final
