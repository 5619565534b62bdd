{{
    config(
        materialized='incremental',
        unique_key='date_id',
        incremental_strategy='delete+insert',
        on_schema_change='append_new_columns',
        indexes=[{'columns': ['date_id']}, {'columns': ['last_loaded_at']}],
        post_hook=["{{ delete_emptied_days('feedback_forms') }}"],
    )
}}

-- depends_on: {{ ref('int_provider_versions_validity') }}
-- depends_on: {{ ref('fact_appointment') }}
-- Grain: one row per day a form was submitted, provider_id and specialty (of the provider version valid at
-- the appointment time, 'Unknown' when that version has none), over the forms of known appointments: the
-- daily rollup behind provider_performance's and specialty_satisfaction's ratings. Sums and counts (never
-- averages), so any set of days adds up exactly.
-- Incremental (delete+insert by day): the days of forms rebuilt since the watermark and of the forms of a
-- provider with a new version (macro changed_feedback_days) are recomputed from all of their forms; a form's
-- day never changes.

with

feedback as (

    select * from {{ ref('fact_feedback') }}

),

providers as (

    select * from {{ ref('dim_provider') }}

),

{% if is_incremental() %}
    {%- set loaded_after = incremental_watermark('last_loaded_at') %}
    changed_days as (

        {{ changed_feedback_days(loaded_after, provider_versions=true) | indent(8) }}

    ),
{% endif %}

forms_by_day as (

    select
        feedback.date_id,
        providers.provider_id,
        coalesce(providers.specialty, 'Unknown') as specialty,
        {{ feedback_rating_aggregates('feedback') | indent(8) }},
        max(feedback.last_loaded_at) as last_loaded_at
    from feedback
    inner join providers
        on feedback.provider_key = providers.provider_key
    {% if is_incremental() -%}
        where {{ in_subquery('feedback.date_id', 'select changed_days.date_id from changed_days') }}
    {%- endif %}
    group by feedback.date_id, providers.provider_id, coalesce(providers.specialty, 'Unknown')

),

{% if is_incremental() %}
    emptied_days as (

        -- A recomputed day without forms left: one zero row, so delete+insert removes its old rows.
        select changed_days.date_id
        from changed_days
        where not exists (
            select 1
            from forms_by_day
            where forms_by_day.date_id = changed_days.date_id
        )

    ),
{% endif %}

final as (

    select
        date_id,
        provider_id,
        specialty,
        {{ feedback_rating_values() | indent(8) }},
        last_loaded_at
    from forms_by_day
    {% if is_incremental() -%}
        union all
        select
            emptied_days.date_id,
            null as provider_id,
            null as specialty,
            {{ feedback_rating_values(zeros=true) | indent(12) }},
            null as last_loaded_at
        from emptied_days
    {%- endif %}

)

select * from final
