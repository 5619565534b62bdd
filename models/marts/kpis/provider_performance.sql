-- Grain: one row per provider (provider_id), described by its current version; the measures cover all
-- of the provider's appointments and feedback, whichever version was valid at the time. Rates are
-- fractions (0..1) of closed appointments; ratings are over forms of known appointments.
-- Added up from the daily rollups provider_activity_daily and feedback_daily (sums and counts, so exactly
-- the averages over the facts): a table of providers, rebuilt in each run without reading a fact table.
-- Beside each rate and mean it keeps the sums and counts it is made of (and computes it from them), which the
-- provider cards add up on a dashboard without a date range (a row per provider, in place of one per day).

with

providers as (

    select * from {{ ref('dim_provider') }}

),

activity as (

    select * from {{ ref('provider_activity_daily') }}

),

forms as (

    select * from {{ ref('feedback_daily') }}

),

current_providers as (

    select *
    from providers
    where is_current and provider_key <> {{ unknown_key('string') }}

),

appointments_by_provider as (

    select
        provider_id,
        sum(appointments) as appointments,
        sum(closed_appointments) as closed_appointments,
        sum(completed) as completed,
        sum(no_shows) as no_shows,
        sum(cancelled) as cancelled,
        sum(wait_minutes_sum) as wait_minutes_sum,
        sum(wait_count) as wait_count,
        sum(duration_minutes_sum) as duration_minutes_sum,
        sum(duration_count) as duration_count,
        sum(connection_quality_sum) as connection_quality_sum,
        sum(connection_quality_count) as connection_quality_count
    from activity
    group by provider_id

),

feedback_by_provider as (

    select
        provider_id,
        sum(feedback_forms) as feedback_forms,
        sum(provider_rating_sum) as provider_rating_sum,
        sum(provider_rating_count) as provider_rating_count,
        sum(overall_satisfaction_sum) as overall_satisfaction_sum,
        sum(overall_satisfaction_count) as overall_satisfaction_count,
        sum(would_recommend) as would_recommend
    from forms
    group by provider_id

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
        {{ mean_of('appointments_by_provider.wait_minutes_sum', 'appointments_by_provider.wait_count') }}
            as avg_wait_minutes,
        {{ mean_of('appointments_by_provider.duration_minutes_sum', 'appointments_by_provider.duration_count') }}
            as avg_duration_minutes,
        {{ mean_of(
            'appointments_by_provider.connection_quality_sum',
            'appointments_by_provider.connection_quality_count'
        ) }} as avg_connection_quality,
        cast(coalesce(feedback_by_provider.feedback_forms, 0) as bigint) as feedback_forms,
        {{ mean_of('feedback_by_provider.provider_rating_sum', 'feedback_by_provider.provider_rating_count') }}
            as avg_provider_rating,
        {{ mean_of(
            'feedback_by_provider.overall_satisfaction_sum',
            'feedback_by_provider.overall_satisfaction_count'
        ) }} as avg_overall_satisfaction,
        {{ rate('feedback_by_provider.would_recommend', 'feedback_by_provider.feedback_forms') }} as recommend_rate,
        cast(coalesce(appointments_by_provider.closed_appointments, 0) as bigint) as closed_appointments,
        cast(appointments_by_provider.wait_minutes_sum as numeric) as wait_minutes_sum,
        cast(coalesce(appointments_by_provider.wait_count, 0) as bigint) as wait_count,
        cast(appointments_by_provider.duration_minutes_sum as numeric) as duration_minutes_sum,
        cast(coalesce(appointments_by_provider.duration_count, 0) as bigint) as duration_count,
        cast(appointments_by_provider.connection_quality_sum as bigint) as connection_quality_sum,
        cast(coalesce(appointments_by_provider.connection_quality_count, 0) as bigint) as connection_quality_count,
        cast(feedback_by_provider.provider_rating_sum as bigint) as provider_rating_sum,
        cast(coalesce(feedback_by_provider.provider_rating_count, 0) as bigint) as provider_rating_count,
        cast(feedback_by_provider.overall_satisfaction_sum as bigint) as overall_satisfaction_sum,
        cast(coalesce(feedback_by_provider.overall_satisfaction_count, 0) as bigint) as overall_satisfaction_count,
        cast(coalesce(feedback_by_provider.would_recommend, 0) as bigint) as would_recommend
    from current_providers
    left join appointments_by_provider
        on current_providers.provider_id = appointments_by_provider.provider_id
    left join feedback_by_provider
        on current_providers.provider_id = feedback_by_provider.provider_id

)

select * from final
