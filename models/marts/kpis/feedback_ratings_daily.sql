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
-- Grain: one row per day a form was submitted, specialty (of the provider version valid at the appointment
-- time; null when that version has none) and device of the rated appointment (Unknown until it started),
-- over the forms of known appointments: ratings as sums and counts (never averages), so any set of rows
-- adds up exactly. The daily rollup behind the dashboards' feedback cards, which filter by day, specialty
-- and device (a few dozen rows a day, where fact_feedback has hundreds of forms).
-- Incremental (delete+insert by day) as feedback_daily: the days of forms rebuilt since the watermark (a
-- form is rebuilt when its appointment is, which is when its device can change) and of the forms of a
-- provider with a new version (macro changed_feedback_days) are recomputed from all of their forms.

with

feedback as (

    select * from {{ ref('fact_feedback') }}

),

appointments as (

    select * from {{ ref('fact_appointment') }}

),

providers as (

    select * from {{ ref('dim_provider') }}

),

devices as (

    select * from {{ ref('dim_device') }}

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
        providers.specialty,
        appointments.device_key,
        devices.device_type,
        {{ feedback_rating_aggregates('feedback', answered_recommend=true) | indent(8) }},
        max(feedback.last_loaded_at) as last_loaded_at
    from feedback
    inner join appointments
        on feedback.appointment_id = appointments.appointment_id
    left join providers
        on feedback.provider_key = providers.provider_key
    left join devices
        on appointments.device_key = devices.device_key
    {% if is_incremental() -%}
        where {{ in_subquery('feedback.date_id', 'select changed_days.date_id from changed_days') }}
    {%- endif %}
    group by feedback.date_id, providers.specialty, appointments.device_key, devices.device_type

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
        specialty,
        device_key,
        device_type,
        {{ feedback_rating_values(answered_recommend=true) | indent(8) }},
        last_loaded_at
    from forms_by_day
    {% if is_incremental() -%}
        union all
        select
            emptied_days.date_id,
            null as specialty,
            null as device_key,
            null as device_type,
            {{ feedback_rating_values(answered_recommend=true, zeros=true) | indent(12) }},
            null as last_loaded_at
        from emptied_days
    {%- endif %}

)

select * from final
