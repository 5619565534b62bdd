{#- dbt-expectations compatible: the table's row count (optionally per group_by columns) lies in
    [min_value, max_value]. Returns the failing counts. -#}
{% test expect_table_row_count_to_be_between(model, min_value=none, max_value=none, group_by=none, row_condition=none, strictly=false) %}
    {%- set low = '>' if strictly else '>=' -%}
    {%- set high = '<' if strictly else '<=' -%}
with row_counts as (
    select
        {% if group_by %}{{ group_by | join(', ') }},{% endif %}
        count(*) as row_count
    from {{ model }}
    {% if row_condition %}where {{ row_condition }}{% endif %}
    {% if group_by %}group by {{ group_by | join(', ') }}{% endif %}
)

select *
from row_counts
where not (
    true
    {% if min_value is not none %}and row_count {{ low }} {{ min_value }}{% endif %}
    {% if max_value is not none %}and row_count {{ high }} {{ max_value }}{% endif %}
)
{% endtest %}
