{#- dbt-expectations compatible: the newest value of the column is within `interval` `datepart`s of now
    (UTC). A table with no rows fails too: no data is not recent data. -#}
{% test expect_row_values_to_have_recent_data(model, column_name, datepart, interval, row_condition=none) %}
with latest as (
    select max({{ column_name }}) as latest_value
    from {{ model }}
    {% if row_condition %}where {{ row_condition }}{% endif %}
)

select latest_value
from latest
where
    latest_value is null
    or cast(latest_value as {{ dbt.type_timestamp() }})
    < {{ dbt.dateadd(datepart, -1 * interval, dbt_expectations.utc_now()) }}
{% endtest %}
