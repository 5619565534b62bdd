-- Every appointment points at the provider version valid at its time (valid_from <= timestamp < valid_to)
-- of its own provider; an appointment of a provider with known versions never points at a placeholder.
-- The hourly run checks the appointments it touched (macro touched_rows), the nightly build all of them.
{{ config(severity='error') }}

with

appointments as (

    select * from {{ ref('fact_appointment') }}
    where {{ touched_rows(ref('fact_appointment')) }}

),

providers as (

    select * from {{ ref('dim_provider') }}

)

select
    appointments.appointment_id,
    appointments.provider_id,
    providers.provider_id as dim_provider_id,
    appointments.timestamp,
    providers.valid_from,
    providers.valid_to
from appointments
inner join providers
    on appointments.provider_key = providers.provider_key
where
    providers.provider_key <> {{ unknown_key('string') }}
    and (
        appointments.provider_id <> providers.provider_id
        or appointments.timestamp < providers.valid_from
        or appointments.timestamp >= providers.valid_to
    )
