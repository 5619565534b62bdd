-- Key Insight 3: provider rating and overall satisfaction by specialty (forms of known appointments,
-- specialty of the provider version valid at the visit).
-- Original design: Cardiology 3.91 / 3.51, Internal Medicine 3.61 / 3.42, Family Medicine 3.77 / 3.35.

select
    specialty,
    feedback_forms,
    round(avg_provider_rating, 2) as avg_provider_rating,
    round(avg_overall_satisfaction, 2) as avg_overall_satisfaction,
    round(100 * recommend_rate, 1) as recommend_pct
from {{ ref('specialty_satisfaction') }}
order by avg_provider_rating desc
