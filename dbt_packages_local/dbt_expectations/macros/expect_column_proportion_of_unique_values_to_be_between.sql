{#- dbt-expectations compatible: distinct non-null values / rows lies in [min_value, max_value].
    1.0 means every value is unique; a low bound catches a key that collapsed to a few values. -#}
{% test expect_column_proportion_of_unique_values_to_be_between(model, column_name, min_value=none, max_value=none, group_by=none, row_condition=none, strictly=false) %}
    {%- set low = '>' if strictly else '>=' -%}
    {%- set high = '<' if strictly else '<=' -%}
with proportions as (
    select
        {% if group_by %}{{ group_by | join(', ') }},{% endif %}
        cast(count(distinct {{ column_name }}) as {{ dbt.type_float() }}) / nullif(count(*), 0) as unique_proportion
    from {{ model }}
    {% if row_condition %}where {{ row_condition }}{% endif %}
    {% if group_by %}group by {{ group_by | join(', ') }}{% endif %}
)

select *
from proportions
where not (
    true
    {% if min_value is not none %}and unique_proportion {{ low }} {{ min_value }}{% endif %}
    {% if max_value is not none %}and unique_proportion {{ high }} {{ max_value }}{% endif %}
)
{% endtest %}
