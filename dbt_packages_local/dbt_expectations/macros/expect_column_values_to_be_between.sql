{#- dbt-expectations compatible: every non-null value of the column lies in [min_value, max_value]
    (exclusive bounds with strictly=true). Failing rows are returned. -#}
{% test expect_column_values_to_be_between(model, column_name, min_value=none, max_value=none, row_condition=none, strictly=false) %}
    {%- if min_value is none and max_value is none -%}
        {{ exceptions.raise_compiler_error("expect_column_values_to_be_between needs min_value or max_value") }}
    {%- endif -%}
    {%- set low = '>' if strictly else '>=' -%}
    {%- set high = '<' if strictly else '<=' -%}
select {{ column_name }} as failing_value
from {{ model }}
where
    {{ column_name }} is not null
    {% if row_condition %}and ({{ row_condition }}){% endif %}
    and not (
        true
        {% if min_value is not none %}and {{ column_name }} {{ low }} {{ min_value }}{% endif %}
        {% if max_value is not none %}and {{ column_name }} {{ high }} {{ max_value }}{% endif %}
    )
{% endtest %}
