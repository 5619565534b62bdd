{#- The look-back start of an incremental run: the newest `column` already built, minus var lookback_days,
    as a literal. A literal (rather than a subquery) lets the planner see how few raw rows are that recent,
    so it reads them through the _loaded_at and appointment_id indexes instead of scanning everything. -#}
{% macro incremental_watermark(column='last_loaded_at') -%}
    {%- set fallback = "cast('1900-01-01 00:00:00+00' as timestamp with time zone)" -%}
    {%- if execute and is_incremental() -%}
        {%- set sql -%}
            select {{ dbt.dateadd('day', -var('lookback_days'), 'max(' ~ column ~ ')') }} from {{ this }}
        {%- endset -%}
        {%- set value = run_query(sql).columns[0].values()[0] -%}
        {%- if value is none -%}
            {{ fallback }}
        {%- else -%}
            cast('{{ value.isoformat() }}' as timestamp with time zone)
        {%- endif -%}
    {%- else -%}
        {{ fallback }}
    {%- endif -%}
{%- endmacro %}
