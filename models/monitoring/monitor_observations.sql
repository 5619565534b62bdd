-- Grain: one row per monitor check: the value `python -m monitors` compares with monitors/thresholds.yml.
-- Business and quality values cover the trailing var('monitor_window_days') days of data, ending on the
-- latest day on which a call started (not the wall clock, which freshness watches; later days hold only
-- bookings that have not happened yet). Rates are over
-- closed appointments, technical values over started ones, as in ops_daily_kpis. The volume check
-- compares each window day with the median of the same weekday in the previous four weeks, holidays
-- left out on both sides, so the weekly cycle never alerts by itself.

with

daily as (

    select * from {{ ref('ops_daily_kpis') }}

),

appointments as (

    select * from {{ ref('fact_appointment') }}

),

feedback as (

    select * from {{ ref('fact_feedback') }}

),

events as (

    select * from {{ ref('stg_kafka__appointment_events') }}

),

events_rejected as (

    select * from {{ ref('stg_kafka__appointment_events_rejected') }}

),

forms as (

    select * from {{ ref('stg_feedback_forms__patient_feedback') }}

),

forms_rejected as (

    select * from {{ ref('stg_feedback_forms__patient_feedback_rejected') }}

),

files as (

    select * from {{ ref('stg_feedback_forms__feedback_files') }}

),

window_bounds as (

    select
        max(date) as window_end,
        cast({{ dbt.dateadd('day', 1 - var('monitor_window_days', 7), 'max(date)') }} as date) as window_start
    from daily
    where started > 0

),

window_days as (

    select daily.*
    from daily
    inner join window_bounds
        on daily.date between window_bounds.window_start and window_bounds.window_end

),

window_appointments as (

    select appointments.*
    from appointments
    inner join daily
        on appointments.date_id = daily.date_id
    inner join window_bounds
        on daily.date between window_bounds.window_start and window_bounds.window_end

),

window_feedback as (

    select feedback.*
    from feedback
    inner join daily
        on feedback.date_id = daily.date_id
    inner join window_bounds
        on daily.date between window_bounds.window_start and window_bounds.window_end

),

same_weekday_baseline as (

    select
        window_days.date,
        window_days.appointments,
        percentile_cont(0.5) within group (order by history.appointments) as baseline_appointments,
        count(history.date) as baseline_days
    from window_days
    inner join daily as history
        on
            history.date < window_days.date
            and history.date >= {{ dbt.dateadd('day', -28, 'window_days.date') }}
            and history.day_name = window_days.day_name
            and not history.is_holiday
    where not window_days.is_holiday
    group by window_days.date, window_days.appointments

),

newest_load as (

    select max(loaded_at) as loaded_at
    from events

),

recent_inputs as (

    select
        (select count(*) from events, newest_load
            where events.loaded_at > newest_load.loaded_at - interval '1 day' * {{ var('monitor_window_days', 7) }})
        + (select count(*) from forms, newest_load
            where forms.loaded_at > newest_load.loaded_at - interval '1 day' * {{ var('monitor_window_days', 7) }})
        as accepted,
        (select count(*) from events_rejected, newest_load
            where events_rejected.loaded_at
            > newest_load.loaded_at - interval '1 day' * {{ var('monitor_window_days', 7) }})
        + (select count(*) from forms_rejected, newest_load
            where forms_rejected.loaded_at
            > newest_load.loaded_at - interval '1 day' * {{ var('monitor_window_days', 7) }})
        + (select count(*) from files, newest_load
            where
                files.file_status = 'failed'
                and files.loaded_at > newest_load.loaded_at - interval '1 day' * {{ var('monitor_window_days', 7) }})
        as rejected

),

observations as (

    select
        'key_column_null_share' as check_name,
        greatest(
            avg(case when provider_key is null then 1.0 else 0.0 end),
            avg(case when patient_key is null then 1.0 else 0.0 end),
            avg(case when date_id is null then 1.0 else 0.0 end),
            avg(case when time_id is null then 1.0 else 0.0 end),
            avg(case when status_key is null then 1.0 else 0.0 end),
            avg(case when device_key is null then 1.0 else 0.0 end)
        ) as observed_value
    from window_appointments

    union all

    select
        'min_appointments_per_day' as check_name,
        min(appointments) as observed_value
    from window_days
    where not is_weekend and not is_holiday

    union all

    select
        'daily_volume_vs_same_weekday' as check_name,
        min(appointments / nullif(baseline_appointments, 0)) as observed_value
    from same_weekday_baseline
    where baseline_days >= 2

    union all

    select
        'rejected_input_share' as check_name,
        rejected / nullif(cast(accepted + rejected as numeric), 0) as observed_value
    from recent_inputs

    union all

    select
        'completion_rate' as check_name,
        sum(completed) / nullif(cast(sum(closed_appointments) as numeric), 0) as observed_value
    from window_days

    union all

    select
        'cancellation_rate' as check_name,
        sum(cancelled) / nullif(cast(sum(closed_appointments) as numeric), 0) as observed_value
    from window_days

    union all

    select
        'no_show_rate' as check_name,
        sum(no_shows) / nullif(cast(sum(closed_appointments) as numeric), 0) as observed_value
    from window_days

    union all

    select
        'avg_overall_satisfaction' as check_name,
        avg(overall_satisfaction) as observed_value
    from window_feedback

    union all

    select
        'technical_issue_share' as check_name,
        avg(case when had_technical_issues then 1.0 else 0.0 end) as observed_value
    from window_appointments
    where is_started

    union all

    select
        'avg_connection_quality' as check_name,
        avg(connection_quality) as observed_value
    from window_appointments

),

final as (

    select
        observations.check_name,
        cast(observations.observed_value as double precision) as observed_value,
        window_bounds.window_start,
        window_bounds.window_end,
        current_timestamp as observed_at
    from observations
    cross join window_bounds

)

select * from final
