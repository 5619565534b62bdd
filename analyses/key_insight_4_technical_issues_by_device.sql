-- Key Insight 4: share (%) of started appointments with at least one technical issue, by device.
-- Original design: Tablet 17.04, Mobile Phone 16.90, Desktop 16.54, Laptop 16.33.

select
    device_type,
    started_appointments,
    with_technical_issues,
    round(100 * technical_issue_share, 2) as technical_issue_share_pct,
    round(avg_connection_quality, 2) as avg_connection_quality
from {{ ref('device_quality') }}
order by technical_issue_share desc
