{#- Post-hook of an incremental model keyed by `column` whose rows span the range of that column over
    `relations` (e.g. one row per day from the first to the last day with facts): deletes the rows that
    fell outside it, which a merge cannot do. A no-op after a full refresh. -#}
{% macro delete_outside_range(column, relations) -%}
    delete from {{ this }}
    where
        {{ column }} < least(
            {%- for relation in relations %}
            (select min({{ column }}) from {{ relation }}){{ "," if not loop.last }}
            {%- endfor %}
        )
        or {{ column }} > greatest(
            {%- for relation in relations %}
            (select max({{ column }}) from {{ relation }}){{ "," if not loop.last }}
            {%- endfor %}
        )
{%- endmacro %}
