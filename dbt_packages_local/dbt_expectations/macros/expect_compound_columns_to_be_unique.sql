{#- dbt-expectations compatible: the combination of column_list is unique (rows with a null in any of
    them are ignored, as in dbt-expectations' default). Returns the duplicated combinations. -#}
{% test expect_compound_columns_to_be_unique(model, column_list, row_condition=none) %}
select
    {{ column_list | join(', ') }},
    count(*) as occurrences
from {{ model }}
where
    true
    {% for column in column_list %}and {{ column }} is not null {% endfor %}
    {% if row_condition %}and ({{ row_condition }}){% endif %}
group by {{ column_list | join(', ') }}
having count(*) > 1
{% endtest %}
