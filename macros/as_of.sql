{#- The business clock: the moment this run counts as "now" for ages on the run date and for the recency
    of business data. The var `as_of` (ISO 8601 with a UTC offset; dbt_project.yml fills it from
    TELEMED_AS_OF) pins it, for a backfill or a test world with a fixed period; unset, it is the moment
    the dbt invocation started. Load times (`_loaded_at`) and source freshness keep the warehouse clock:
    they measure when rows arrived, not the world the rows describe. -#}
{% macro as_of() -%}
    {%- set text = var('as_of', '') | string | trim -%}
    {%- if not text -%}
        {{- return(run_started_at) -}}
    {%- endif -%}
    {%- set parsed = modules.datetime.datetime.fromisoformat(text.replace('Z', '+00:00')) -%}
    {%- if parsed.tzinfo is none -%}
        {{- exceptions.raise_compiler_error(
            "var as_of (TELEMED_AS_OF) needs a UTC offset, e.g. 2026-11-01T00:00:00Z: " ~ text) -}}
    {%- endif -%}
    {{- return(parsed.astimezone(modules.pytz.utc)) -}}
{%- endmacro %}
