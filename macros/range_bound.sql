{#- The first (bound='min') or last (bound='max') value of `column` over all of `relations`: for a model
    whose rows span that range, e.g. one row per day from the first to the last day with facts. Each
    min/max reads its relation's index on `column`. -#}
{% macro range_bound(bound, column, relations) -%}
    {{ 'least' if bound == 'min' else 'greatest' }}(
        {%- for relation in relations %}
        (select {{ bound }}(bound_source.{{ column }}) from {{ relation }} as bound_source)
        {{- "," if not loop.last }}
        {%- endfor %}
    )
{%- endmacro %}

{#- Post-hook of an incremental model whose rows span `range_bound` of `column` over `relations`: deletes
    the rows that fell outside it, which a merge cannot do. A no-op after a full refresh. -#}
{% macro delete_outside_range(column, relations) -%}
    delete from {{ this }}
    where
        {{ column }} < {{ range_bound('min', column, relations) }}
        or {{ column }} > {{ range_bound('max', column, relations) }}
{%- endmacro %}
