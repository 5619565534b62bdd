-- Key Insight 2: average wait (minutes) by device, over appointments that started.
-- Original design: Tablet 14.17, Desktop 14.04, Laptop 13.91, Mobile Phone 13.60.

select
    device_type,
    started_appointments,
    round(avg_wait_minutes, 2) as avg_wait_minutes,
    round(p90_wait_minutes, 2) as p90_wait_minutes
from {{ ref('device_quality') }}
order by avg_wait_minutes desc
