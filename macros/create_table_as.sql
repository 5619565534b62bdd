{#- A table under an enforced contract, filled in parallel.

    dbt-postgres creates such a table with its columns and constraints, then fills it with `insert ...
    select`, and Postgres runs no `insert ... select` in parallel: `fact_appointment` (10M rows) took 102 s
    on one core while the other had nothing to do. Here the table is created by `create table ... as`,
    which Postgres can run in parallel, selecting every contract column cast to its declared type in the
    contract's order (what the insert's assignment would give), then the constraints are added: one scan
    checks the not-null columns and the primary key's index is built from the sorted rows, not grown row by
    row. The same table, the same constraints, the same contract check first (`get_assert_columns_equivalent`);
    a violation fails the build as before, with Postgres's message for an ALTER.

    Only not_null and primary_key column constraints (one primary key column at most), and data types
    whose explicit cast behaves as the insert's assignment: a contract with anything else (model-level
    constraints, checks, foreign keys, char(n) / varchar(n), which an explicit cast would truncate), a
    temporary table or a model without an enforced contract takes dbt-postgres's own path unchanged. -#}
{% macro postgres__create_table_as(temporary, relation, sql) -%}
    {%- set contract_config = config.get('contract') -%}
    {%- if temporary or not contract_config.enforced or not telemed_contract_fits_create_as() -%}
        {{ return(dbt.postgres__create_table_as(temporary, relation, sql)) }}
    {%- endif -%}
    {%- set sql_header = config.get('sql_header', none) -%}
    {%- set columns = model['columns'].values() | list -%}
    {%- set not_null, primary_key = [], [] -%}
    {%- for column in columns -%}
        {%- set name = adapter.quote(column['name']) if column.get('quote') else column['name'] -%}
        {%- for constraint in column.get('constraints', []) -%}
            {%- do (primary_key if constraint['type'] == 'primary_key' else not_null).append(name) -%}
        {%- endfor -%}
    {%- endfor %}
    {{ sql_header if sql_header is not none }}
    {{ get_assert_columns_equivalent(sql) }}
    create {% if config.get('unlogged', default=false) %}unlogged {% endif %}table {{ relation }} as (
        select
        {%- for column in columns %}
            {%- set name = adapter.quote(column['name']) if column.get('quote') else column['name'] %}
            cast({{ name }} as {{ column['data_type'] }}) as {{ name }}{{ "," if not loop.last }}
        {%- endfor %}
        from (
            {{ sql }}
        ) as model_subq
    );
    {%- if not_null or primary_key %}
    alter table {{ relation }}
        {%- for name in not_null %}
        alter column {{ name }} set not null{{ "," if not loop.last or primary_key }}
        {%- endfor %}
        {%- if primary_key %}
        add primary key ({{ primary_key | join(', ') }})
        {%- endif %};
    {%- endif %}
{%- endmacro %}

{#- True when the model's contract has only what `postgres__create_table_as` above adds after the fact. -#}
{% macro telemed_contract_fits_create_as() -%}
    {%- if model.get('constraints') -%}
        {{ return(false) }}
    {%- endif -%}
    {%- set primary_keys = [] -%}
    {%- for column in model['columns'].values() -%}
        {%- if not column.get('data_type') or 'char' in column['data_type'] | lower -%}
            {{ return(false) }}
        {%- endif -%}
        {%- for constraint in column.get('constraints', []) -%}
            {%- if constraint['type'] not in ('not_null', 'primary_key') or constraint.get('expression') -%}
                {{ return(false) }}
            {%- endif -%}
            {%- if constraint['type'] == 'primary_key' -%}
                {%- do primary_keys.append(column['name']) -%}
            {%- endif -%}
        {%- endfor -%}
    {%- endfor -%}
    {#- Two columns each marked primary_key are dbt-postgres's error to give (two primary keys), not a
        composite key to make up here. -#}
    {{ return(primary_keys | length <= 1) }}
{%- endmacro %}
