-- Forms by appointment: dbt's incremental fact_feedback re-reads the forms of the appointments that
-- changed since its last run (late events, a provider version that moved), by this index.
create index if not exists patient_feedback_appointment_idx on raw.patient_feedback (appointment_id);
