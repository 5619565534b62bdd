-- The reason code of a failed feedback file (not_json, invalid_json) apart from the free-text error,
-- so failures can be counted by reason like the rejected forms.
alter table raw.feedback_files add column if not exists reason text;
