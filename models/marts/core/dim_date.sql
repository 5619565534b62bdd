{{ config(tags=['static']) }}

-- Grain: one row per calendar day from var date_spine_start (2000-01-01) to macro date_spine_end (31 December,
-- var date_spine_years_ahead years after the as-of's year): every day a timestamp the loaders accept can fall on.
-- date_id is the yyyymmdd integer the facts carry; holidays come from the holidays seed.

with

date_spine as (

    {{ date_spine(var('date_spine_start'), date_spine_end()) }}

),

holidays as (

    select * from {{ ref('holidays') }}

),

days as (

    select
        date_day,
        {{ extract_date_part('year', 'date_day') }} as year_number,
        {{ extract_date_part('month', 'date_day') }} as month_number,
        {{ extract_date_part('day', 'date_day') }} as day_number,
        {{ extract_date_part('quarter', 'date_day') }} as quarter_number,
        -- ISO day of week: Monday 1 .. Sunday 7, the same on every warehouse.
        {{ extract_date_part('isodow', 'date_day') }} as iso_day_of_week
    from date_spine

),

final as (

    select
        {{ date_id('days.date_day') }} as date_id,
        days.date_day as date,
        days.day_number as day,
        days.month_number as month,
        days.year_number as year,
        days.quarter_number as quarter,
        days.iso_day_of_week as day_of_week,
        case days.iso_day_of_week
            when 1 then 'Monday'
            when 2 then 'Tuesday'
            when 3 then 'Wednesday'
            when 4 then 'Thursday'
            when 5 then 'Friday'
            when 6 then 'Saturday'
            else 'Sunday'
        end as day_name,
        case days.month_number
            when 1 then 'January'
            when 2 then 'February'
            when 3 then 'March'
            when 4 then 'April'
            when 5 then 'May'
            when 6 then 'June'
            when 7 then 'July'
            when 8 then 'August'
            when 9 then 'September'
            when 10 then 'October'
            when 11 then 'November'
            else 'December'
        end as month_name,
        days.iso_day_of_week in (6, 7) as is_weekend,
        holidays.holiday_date is not null as is_holiday,
        holidays.holiday_name
    from days
    left join holidays
        on days.date_day = holidays.holiday_date

)

select * from final
