{#- The measures the two feedback rollups (feedback_daily, feedback_ratings_daily) keep for a group of forms:
    sums and counts, never averages, so that any total or mean over their rows is exact. One list, so the
    two rollups and the marts above them cannot drift apart. -#}
{% macro feedback_rating_names() -%}
    {{ return(['provider_rating', 'overall_satisfaction', 'ease_of_use_rating', 'audio_quality_rating',
        'video_quality_rating']) }}
{%- endmacro %}

{#- The aggregates of a group of forms of `alias`: the forms, each rating's sum and count, the recommending
    forms and, with answered_recommend, how many answered that question. -#}
{% macro feedback_rating_aggregates(alias='feedback', answered_recommend=false) -%}
    count(*) as feedback_forms,
    {%- for rating in feedback_rating_names() %}
    sum({{ alias }}.{{ rating }}) as {{ rating }}_sum,
    count({{ alias }}.{{ rating }}) as {{ rating }}_count,
    {%- endfor %}
    {{ count_where(alias ~ '.would_recommend') }} as would_recommend
    {%- if answered_recommend %},
    count({{ alias }}.would_recommend) as would_recommend_count
    {%- endif %}
{%- endmacro %}

{#- The same columns as the rollup stores them (bigint), in the same order; with zeros, the values of an
    emptied day's row instead (no forms: counts 0, sums null), which delete+insert needs to remove the day's
    old rows. -#}
{% macro feedback_rating_values(answered_recommend=false, zeros=false) -%}
    {%- set columns = [('feedback_forms', '0')] -%}
    {%- for rating in feedback_rating_names() -%}
        {%- do columns.append((rating ~ '_sum', 'null')) -%}
        {%- do columns.append((rating ~ '_count', '0')) -%}
    {%- endfor -%}
    {%- do columns.append(('would_recommend', '0')) -%}
    {%- if answered_recommend -%}
        {%- do columns.append(('would_recommend_count', '0')) -%}
    {%- endif -%}
    {%- for name, zero in columns %}
    {{ zero if zeros else 'cast(' ~ name ~ ' as bigint)' }} as {{ name }}{{ ',' if not loop.last }}
    {%- endfor %}
{%- endmacro %}
