{#- dbt-expectations compatible: every non-null value matches the POSIX regular expression `regex`
    (Postgres and Redshift both spell it `~`). Returns the failing values. -#}
{% test expect_column_values_to_match_regex(model, column_name, regex, row_condition=none) %}
select {{ column_name }} as failing_value
from {{ model }}
where
    {{ column_name }} is not null
    {% if row_condition %}and ({{ row_condition }}){% endif %}
    and not ({{ column_name }} ~ '{{ regex }}')
{% endtest %}
