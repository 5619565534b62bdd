-- The snapshot (what each run saw) and the history-derived SCD2 agree on each provider's current
-- version. Warn: a disagreement means raw lost history or the snapshot missed a run, worth a look but
-- not a reason to stop the marts.
{{ config(severity='warn') }}

with

snapshot_current as (

    select
        provider_id,
        specialty,
        updated_at
    from {{ ref('snap_clinic_ops__providers') }}
    where dbt_valid_to is null

),

history_current as (

    select
        provider_id,
        specialty,
        valid_from,
        version_number
    from {{ ref('dim_provider') }}
    where is_current and not is_inferred and provider_key <> {{ unknown_key('string') }}

)

select
    coalesce(snapshot_current.provider_id, history_current.provider_id) as provider_id,
    snapshot_current.specialty as snapshot_specialty,
    history_current.specialty as history_specialty
from snapshot_current
full outer join history_current
    on snapshot_current.provider_id = history_current.provider_id
where
    snapshot_current.provider_id is null
    or history_current.provider_id is null
    or snapshot_current.specialty <> history_current.specialty
