{#- One row per day from start_date to end_date (inclusive), column `date_day`.
    Built from a cross join of digit rows rather than generate_series, which Redshift only runs on the
    leader node; the number of digit joins is sized in Jinja from the span. -#}
{% macro date_spine(start_date, end_date) -%}
    {%- set start = modules.datetime.date.fromisoformat(start_date) -%}
    {%- set stop = modules.datetime.date.fromisoformat(end_date) -%}
    {%- set days = (stop - start).days + 1 -%}
    {%- if days < 1 -%}
        {{ exceptions.raise_compiler_error("date_spine: end_date " ~ end_date ~ " is before start_date " ~ start_date) }}
    {%- endif -%}
    {%- set positions = (days | string) | length -%}
    with digits as (
        {% for digit in range(10) -%}
            select {{ digit }} as digit{% if not loop.last %} union all{% endif %}
        {% endfor %}
    ),

    day_offsets as (
        select
            {% for position in range(positions) -%}
                digits_{{ position }}.digit * {{ 10 ** position }}{% if not loop.last %} +{% endif %}
            {% endfor %} as day_offset
        from digits as digits_0
        {% for position in range(1, positions) -%}
            cross join digits as digits_{{ position }}
        {% endfor %}
    )

    select cast({{ dbt.dateadd('day', 'day_offset', "cast('" ~ start_date ~ "' as date)") }} as date) as date_day
    from day_offsets
    where day_offset < {{ days }}
{%- endmacro %}


{#- The last day of dim_date: 31 December of the year var date_spine_years_ahead after the as-of's year, or
    after the run's year when that is later (a backfill pinned in the past still loads events stamped by
    today's clock). The loaders accept timestamps up to the load time plus two years (loaders/CONTRACTS.md),
    and the load happens before the run, so three years ahead always covers them, with a year to spare. -#}
{% macro date_spine_end() -%}
    {%- set years_ahead = var('date_spine_years_ahead') | int -%}
    {%- if years_ahead < 3 -%}
        {{ exceptions.raise_compiler_error(
            "var date_spine_years_ahead must be at least 3: the loaders accept timestamps up to the load time"
            ~ " plus two years, got " ~ years_ahead) }}
    {%- endif -%}
    {%- set base_year = [as_of().year, run_started_at.year] | max -%}
    {{- return((base_year + years_ahead) ~ '-12-31') -}}
{%- endmacro %}
