-- Feedback for an appointment that never arrived is valid input but cannot be attributed: it stays out
-- of fact_feedback. Warn (not error) so the monitors report it without blocking the build; each row is
-- one unmatched form.
{{ config(severity='warn') }}

select
    feedback_id,
    appointment_id,
    submitted_at
from {{ ref('int_feedback_joined_to_appointments') }}
where not is_known_appointment
