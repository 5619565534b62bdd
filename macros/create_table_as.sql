{#- A table under an enforced contract, filled in parallel.

    dbt-postgres creates such a table with its columns and constraints, then fills it with `insert ...
    select`, and Postgres runs no `insert ... select` in parallel: `fact_appointment` (10M rows) took 102 s
    on one core while the other had nothing to do. Here the table is created by `create table ... as`,
    which Postgres can run in parallel, selecting every contract column cast to its declared type in the
    contract's order (what the insert's assignment would give), then the constraints are added: one scan
    checks the not-null columns and the primary key's index is built from the sorted rows, not grown row by
    row. The same table, the same constraints, the same contract check first (`get_assert_columns_equivalent`);
    a violation fails the build as before, with Postgres's message for an ALTER.

    Only not_null and primary_key column constraints (dbt allows one primary key column), and data types
    whose explicit cast behaves as the insert's assignment: a contract with anything else (model-level
    constraints, checks, foreign keys, char(n) / varchar(n), which an explicit cast would truncate), a
    temporary table or a model without an enforced contract takes dbt-postgres's own path unchanged. -#}
{% macro postgres__create_table_as(temporary, relation, sql) -%}
    {%- set contract_config = config.get('contract') -%}
    {%- set added = none if temporary or not contract_config.enforced else telemed_contract_constraints_to_add() -%}
    {%- if added is none -%}
        {{ return(dbt.postgres__create_table_as(temporary, relation, sql)) }}
    {%- endif -%}
    {%- set sql_header = config.get('sql_header', none) %}
    {{ sql_header if sql_header is not none }}
    {{ get_assert_columns_equivalent(sql) }}
    create {% if config.get('unlogged', default=false) %}unlogged {% endif %}table {{ relation }} as (
        select
        {%- for name, data_type in added.columns %}
            cast({{ name }} as {{ data_type }}) as {{ name }}{{ "," if not loop.last }}
        {%- endfor %}
        from (
            {{ sql }}
        ) as model_subq
    );
    {%- if added.not_null or added.primary_key %}
    alter table {{ relation }}
        {%- for name in added.not_null %}
        alter column {{ name }} set not null{{ "," if not loop.last or added.primary_key }}
        {%- endfor %}
        {%- if added.primary_key %}
        add primary key ({{ added.primary_key }})
        {%- endif %};
    {%- endif %}
{%- endmacro %}

{#- What `postgres__create_table_as` above adds after the fact, read once from the model's contract: its
    columns as (name, data_type) in order, the not-null column names and the primary key column (none);
    none when the contract holds anything else. -#}
{% macro telemed_contract_constraints_to_add() -%}
    {%- if model.get('constraints') -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set added = {'columns': [], 'not_null': [], 'primary_key': none} -%}
    {%- for column in model['columns'].values() -%}
        {%- if not column.get('data_type') or 'char' in column['data_type'] | lower -%}
            {{ return(none) }}
        {%- endif -%}
        {%- set name = adapter.quote(column['name']) if column.get('quote') else column['name'] -%}
        {%- do added['columns'].append((name, column['data_type'])) -%}
        {%- for constraint in column.get('constraints', []) -%}
            {%- if constraint['type'] not in ('not_null', 'primary_key') or constraint.get('expression') -%}
                {{ return(none) }}
            {%- elif constraint['type'] == 'not_null' -%}
                {%- do added['not_null'].append(name) -%}
            {%- else -%}
                {#- One at most: dbt refuses a second column-level primary key when it parses the project. -#}
                {%- do added.update({'primary_key': name}) -%}
            {%- endif -%}
        {%- endfor -%}
    {%- endfor -%}
    {{ return(added) }}
{%- endmacro %}
