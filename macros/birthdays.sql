{#- A birth date's day of the year as month * 100 + day (an integer: 1 May is 501), so the patients born on
    given days of the year are found through an index. runtime/migrations/008_patients_touched_indexes.sql
    indexes raw.patients on this very expression: keep the two identical, or the planner stops using it. -#}
{% macro birthday_key(expression) -%}
    cast(extract(month from {{ expression }}) * 100 + extract(day from {{ expression }}) as integer)
{%- endmacro %}

{#- The birthday keys (macro birthday_key) on which an age can change from the as-of date `days` days back
    to the as-of date itself (macro as_of), as a comma-separated list of integers. Ages are whole years
    between date_ids (dim_patient), so someone born on 29 February turns a year older on 1 March in a
    common year: 229 is in the list whenever 1 March is. -#}
{% macro birthday_keys_since(days) -%}
    {%- set today = as_of().date() -%}
    {%- set keys = [] -%}
    {%- for back in range(days, -1, -1) -%}
        {%- set day = today - modules.datetime.timedelta(days=back) -%}
        {%- do keys.append(day.month * 100 + day.day) -%}
        {%- if day.month == 3 and day.day == 1 -%}
            {%- do keys.append(229) -%}
        {%- endif -%}
    {%- endfor -%}
    {{ keys | unique | sort | join(', ') }}
{%- endmacro %}
