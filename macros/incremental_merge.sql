{#-
    dbt-postgres's merge for incremental models, with the planner told that the target's index pages are in
    memory for this statement (random_page_cost 1.1, set local: the model's transaction ends with it).

    The merge's source is a run's few changed rows (20,006 appointments in the hourly bench at 1M), its
    target every row of history. At the default random_page_cost (4, priced for spinning disks) the planner
    hashed the whole target to join it (`int_appointments_derived_from_events`: 1M rows read and hashed,
    0.5-0.7 s of the hourly run, growing with the history) instead of probing the target's unique index
    once per source row (0.1 s). Set for the whole server the same value slowed full builds by 8% (large
    scans priced as index walks), so it is set here only.
-#}
{% macro postgres__get_incremental_merge_sql(arg_dict) -%}
    set local random_page_cost = 1.1;
    {{ dbt.default__get_incremental_merge_sql(arg_dict) }}
{%- endmacro %}
