{#- Dimension keys of the "unknown" members facts point to when a fact has no known member yet
    (an appointment that never started has no device). One place, so facts and dimensions agree. -#}
{% macro unknown_key(kind='integer') -%}
    {%- if kind == 'integer' -%}-1{%- else -%}'-1'{%- endif -%}
{%- endmacro %}

{#- The select list of a placeholder row of a dimension: its Unknown member, or an inferred member for a
    natural key the facts name before the source record arrives. `columns`: the dimension's columns in
    the order of its other rows, as (name, type) pairs; each is the SQL value given for it in `values` or
    as a keyword argument (keywords win), else a null of its type. -#}
{% macro dimension_member(columns, values={}) -%}
    {%- set given = {} -%}
    {%- do given.update(values) -%}
    {%- do given.update(kwargs) -%}
    {%- set select_list = [] -%}
    {%- for name, data_type in columns -%}
        {%- do select_list.append((given[name] if name in given else 'cast(null as ' ~ data_type ~ ')') ~ ' as ' ~ name) -%}
    {%- endfor -%}
    {{ select_list | join(',\n        ') }}
{%- endmacro %}
