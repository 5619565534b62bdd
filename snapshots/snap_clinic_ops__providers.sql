{% snapshot snap_clinic_ops__providers %}

{{
    config(
        unique_key='provider_id',
        strategy='timestamp',
        updated_at='updated_at',
        hard_deletes='invalidate',
    )
}}

-- What the warehouse saw of each provider at each run: the latest version per provider. dim_provider is
-- derived from the full history in raw instead (exact even for versions written between two runs);
-- this snapshot is the audit trail that cross-checks it and the fallback should raw stop keeping history.

    with

    providers as (

        select * from {{ ref('stg_clinic_ops__providers') }}

    ),

    latest_versions as (

        select
            *,
            row_number() over (partition by provider_id order by updated_at desc) as version_rank
        from providers

    )

    select
        provider_id,
        first_name,
        last_name,
        specialty,
        years_experience,
        state,
        hourly_rate,
        available_hours,
        is_active,
        updated_at
    from latest_versions
    where version_rank = 1

{% endsnapshot %}
