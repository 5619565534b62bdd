-- Grain: one row per provider (provider_id), described by its current version; the measures cover all
-- of the provider's appointments and feedback, whichever version was valid at the time. Rates are
-- fractions (0..1) of closed appointments; ratings are over forms of known appointments.

with

providers as (

    select * from {{ ref('dim_provider') }}

),

appointments as (

    select * from {{ ref('fact_appointment') }}

),

statuses as (

    select * from {{ ref('dim_status') }}

),

feedback as (

    select * from {{ ref('fact_feedback') }}

),

current_providers as (

    select *
    from providers
    where is_current and provider_key <> {{ unknown_key('string') }}

),

appointments_by_provider as (

    select
        appointments.provider_id,
        count(*) as appointments,
        {{ count_where('statuses.is_terminal') }} as closed_appointments,
        {{ count_where("appointments.status = 'completed'") }} as completed,
        {{ count_where("appointments.status = 'no_show'") }} as no_shows,
        {{ count_where("appointments.status = 'cancelled'") }} as cancelled,
        avg(appointments.wait_time_minutes) as avg_wait_minutes,
        avg(appointments.duration_minutes) as avg_duration_minutes,
        avg(appointments.connection_quality) as avg_connection_quality
    from appointments
    inner join statuses
        on appointments.status_key = statuses.status_key
    group by appointments.provider_id

),

feedback_by_provider as (

    select
        providers.provider_id,
        count(*) as feedback_forms,
        avg(feedback.provider_rating) as avg_provider_rating,
        avg(feedback.overall_satisfaction) as avg_overall_satisfaction,
        {{ share_where('feedback.would_recommend') }} as recommend_rate
    from feedback
    inner join providers
        on feedback.provider_key = providers.provider_key
    group by providers.provider_id

),

final as (

    select
        current_providers.provider_id,
        current_providers.provider_key,
        {{ dbt.concat(['current_providers.first_name', "' '", 'current_providers.last_name']) }} as provider_name,
        current_providers.specialty,
        current_providers.state,
        current_providers.years_experience,
        current_providers.active,
        current_providers.is_inferred,
        cast(coalesce(appointments_by_provider.appointments, 0) as bigint) as appointments,
        cast(coalesce(appointments_by_provider.completed, 0) as bigint) as completed,
        cast(coalesce(appointments_by_provider.no_shows, 0) as bigint) as no_shows,
        cast(coalesce(appointments_by_provider.cancelled, 0) as bigint) as cancelled,
        {{ rate('appointments_by_provider.completed', 'appointments_by_provider.closed_appointments') }}
            as completion_rate,
        {{ rate('appointments_by_provider.no_shows', 'appointments_by_provider.closed_appointments') }}
            as no_show_rate,
        {{ rate('appointments_by_provider.cancelled', 'appointments_by_provider.closed_appointments') }}
            as cancellation_rate,
        cast(appointments_by_provider.avg_wait_minutes as numeric) as avg_wait_minutes,
        cast(appointments_by_provider.avg_duration_minutes as numeric) as avg_duration_minutes,
        cast(appointments_by_provider.avg_connection_quality as numeric) as avg_connection_quality,
        cast(coalesce(feedback_by_provider.feedback_forms, 0) as bigint) as feedback_forms,
        cast(feedback_by_provider.avg_provider_rating as numeric) as avg_provider_rating,
        cast(feedback_by_provider.avg_overall_satisfaction as numeric) as avg_overall_satisfaction,
        cast(feedback_by_provider.recommend_rate as numeric) as recommend_rate
    from current_providers
    left join appointments_by_provider
        on current_providers.provider_id = appointments_by_provider.provider_id
    left join feedback_by_provider
        on current_providers.provider_id = feedback_by_provider.provider_id

)

select * from final
