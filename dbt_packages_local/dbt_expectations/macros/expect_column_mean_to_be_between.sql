{#- dbt-expectations compatible: the column's mean (optionally per group_by columns) lies in
    [min_value, max_value]. Returns the failing means. -#}
{% test expect_column_mean_to_be_between(model, column_name, min_value=none, max_value=none, group_by=none, row_condition=none, strictly=false) %}
    {%- set low = '>' if strictly else '>=' -%}
    {%- set high = '<' if strictly else '<=' -%}
with means as (
    select
        {% if group_by %}{{ group_by | join(', ') }},{% endif %}
        avg(cast({{ column_name }} as {{ dbt.type_float() }})) as column_mean
    from {{ model }}
    {% if row_condition %}where {{ row_condition }}{% endif %}
    {% if group_by %}group by {{ group_by | join(', ') }}{% endif %}
)

select *
from means
where
    column_mean is not null
    and not (
        true
        {% if min_value is not none %}and column_mean {{ low }} {{ min_value }}{% endif %}
        {% if max_value is not none %}and column_mean {{ high }} {{ max_value }}{% endif %}
    )
{% endtest %}
