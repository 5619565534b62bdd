{{ config(tags=['static']) }}

-- Grain: one row per minute of the day (1,440 rows). time_id is the hhmm integer the facts carry
-- (09:05 -> 905); day_period buckets the clinic's day.

with

digits as (

    select 0 as digit
    {% for digit in range(1, 10) -%}
        union all
        select {{ digit }}
    {% endfor %}

),

minutes_of_day as (

    select tens.digit * 10 + ones.digit as minute_of_hour
    from digits as tens
    cross join digits as ones
    where tens.digit < 6

),

hours_of_day as (

    select tens.digit * 10 + ones.digit as hour_of_day
    from digits as tens
    cross join digits as ones
    where tens.digit * 10 + ones.digit < 24

),

final as (

    select
        hours_of_day.hour_of_day * 100 + minutes_of_day.minute_of_hour as time_id,
        {{ dbt.cast(
            dbt.concat([
                "lpad(cast(hours_of_day.hour_of_day as varchar), 2, '0')",
                "':'",
                "lpad(cast(minutes_of_day.minute_of_hour as varchar), 2, '0')",
                "':00'",
            ]),
            'time'
        ) }} as time_value,
        hours_of_day.hour_of_day as hour,
        minutes_of_day.minute_of_hour as minute,
        case when hours_of_day.hour_of_day < 12 then 'AM' else 'PM' end as am_pm,
        case
            when hours_of_day.hour_of_day % 12 = 0 then 12
            else hours_of_day.hour_of_day % 12
        end as hour_12,
        case
            when hours_of_day.hour_of_day < 6 then 'Night'
            when hours_of_day.hour_of_day < 12 then 'Morning'
            when hours_of_day.hour_of_day < 17 then 'Afternoon'
            when hours_of_day.hour_of_day < 21 then 'Evening'
            else 'Night'
        end as day_period
    from hours_of_day
    cross join minutes_of_day

)

select * from final
