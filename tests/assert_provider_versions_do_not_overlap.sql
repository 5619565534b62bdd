-- SCD2 integrity: the versions of one provider tile time without gaps or overlaps, and exactly the last
-- one is current.
{{ config(severity='error') }}

with

versions as (

    select * from {{ ref('dim_provider') }}
    where not is_inferred and provider_key <> {{ unknown_key('string') }}

),

versions_with_next as (

    select
        provider_id,
        provider_key,
        valid_from,
        valid_to,
        is_current,
        lead(valid_from) over (partition by provider_id order by valid_from) as next_valid_from
    from versions

)

select *
from versions_with_next
where
    (next_valid_from is not null and valid_to <> next_valid_from)
    or (next_valid_from is null and not is_current)
    or (next_valid_from is not null and is_current)
    or valid_from >= valid_to
