{#- The KPI building blocks shared by the marts and the monitors, so a rate means the same everywhere. -#}

{#- Rows where `condition` holds (an aggregate): e.g. the completed or the closed appointments. -#}
{% macro count_where(condition) -%}
    sum(case when {{ condition }} then 1 else 0 end)
{%- endmacro %}

{#- The fraction (0..1) of rows where `condition` holds (an aggregate), e.g. a recommend rate. -#}
{% macro share_where(condition) -%}
    avg(case when {{ condition }} then 1.0 else 0.0 end)
{%- endmacro %}

{#- A rate: `numerator` / `denominator` as an exact numeric fraction, null when the denominator is 0
    (a day or provider without closed appointments has no completion rate rather than 0). -#}
{% macro rate(numerator, denominator) -%}
    cast({{ numerator }} as numeric) / nullif({{ denominator }}, 0)
{%- endmacro %}

{#- A mean from a rollup's sum and count of the non-null values (aggregates, e.g. sum(wait_minutes_sum)
    and sum(wait_count)): exactly avg() over the rows rolled up, null when there are none. -#}
{% macro mean_of(value_sum, value_count) -%}
    cast({{ value_sum }} as numeric) / nullif({{ value_count }}, 0)
{%- endmacro %}
