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

call_sessions as (

    select * from {{ ref('fact_call_session') }}

),

window_bounds as (

    select
        max(date) as window_end,
        cast({{ dbt.dateadd('day', 1 - var('monitor_window_days'), 'max(date)') }} as date) as window_start
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
    inner join window_days
        on appointments.date_id = window_days.date_id

),

window_call_sessions as (

    select call_sessions.*
    from call_sessions
    inner join window_days
        on call_sessions.date_id = window_days.date_id
    where call_sessions.wait_difference_minutes is not null

),

window_feedback as (

    select feedback.*
    from feedback
    inner join window_days
        on feedback.date_id = window_days.date_id

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
            window_days.day_name = history.day_name
            and window_days.date > history.date
            and {{ dbt.dateadd('day', -28, 'window_days.date') }} <= history.date
            and not history.is_holiday
    where not window_days.is_holiday
    group by window_days.date, window_days.appointments

),

input_cutoff as (

    select {{ dbt.dateadd('day', -var('monitor_window_days'), 'max(loaded_at)') }} as cutoff
    from events

),

received_inputs as (

    select
        events.loaded_at,
        0 as is_rejected
    from events

    union all

    select
        forms.loaded_at,
        0 as is_rejected
    from forms

    union all

    select
        events_rejected.loaded_at,
        1 as is_rejected
    from events_rejected

    union all

    select
        forms_rejected.loaded_at,
        1 as is_rejected
    from forms_rejected

    union all

    select
        files.loaded_at,
        1 as is_rejected
    from files
    where files.file_status = 'failed'

),

recent_inputs as (

    select
        sum(received_inputs.is_rejected) as rejected,
        count(*) as received
    from received_inputs
    inner join input_cutoff
        on received_inputs.loaded_at > input_cutoff.cutoff

),

observations as (

    select
        'key_column_null_share' as check_name,
        greatest(
            {{ share_where('provider_key is null') }},
            {{ share_where('patient_key is null') }},
            {{ share_where('date_id is null') }},
            {{ share_where('time_id is null') }},
            {{ share_where('status_key is null') }},
            {{ share_where('device_key is null') }}
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
        {{ rate('rejected', 'received') }} as observed_value
    from recent_inputs

    union all

    select
        'completion_rate' as check_name,
        {{ rate('sum(completed)', 'sum(closed_appointments)') }} as observed_value
    from window_days

    union all

    select
        'cancellation_rate' as check_name,
        {{ rate('sum(cancelled)', 'sum(closed_appointments)') }} as observed_value
    from window_days

    union all

    select
        'no_show_rate' as check_name,
        {{ rate('sum(no_shows)', 'sum(closed_appointments)') }} as observed_value
    from window_days

    union all

    select
        'avg_overall_satisfaction' as check_name,
        avg(overall_satisfaction) as observed_value
    from window_feedback

    union all

    select
        'technical_issue_share' as check_name,
        {{ share_where('had_technical_issues') }} as observed_value
    from window_appointments
    where is_started

    union all

    select
        'avg_connection_quality' as check_name,
        avg(connection_quality) as observed_value
    from window_appointments

    union all

    -- 0 without sessions: no video API configured is no disagreement (its freshness says whether it loads).
    select
        'wait_disagreement_share' as check_name,
        coalesce(
            {{ share_where('abs(wait_difference_minutes) > ' ~ var('call_wait_tolerance_minutes')) }}, 0
        ) as observed_value
    from window_call_sessions

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
