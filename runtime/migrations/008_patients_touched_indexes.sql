-- dbt's dim_patient, in the scheduled run after a load, re-derives only the patients whose row can have
-- changed (models/marts/core/dim_patient.sql): those with a version loaded since its last run, read by
-- load time, and those with a birthday on one of the run's last days (their age changes), read by the day
-- of the year they were born on. The expression is macro birthday_key's, character for character: the
-- planner matches an index expression only when the query's is the same.
create index if not exists patients_loaded_at_idx on raw.patients (_loaded_at);
create index if not exists patients_birthday_idx on raw.patients
((cast(extract(month from date_of_birth) * 100 + extract(day from date_of_birth) as integer)));
