-- Feedback forms from object storage (loaders/landing.py): an object's URL (s3://bucket/key) and ETag as
-- listed, beside the path under the prefix and the sha256 of what was fetched. A run looks a listed
-- object up by its URL and ETag and fetches only those it has no row for; a file from a folder has
-- neither (null).
alter table raw.feedback_files add column if not exists object_url text;
alter table raw.feedback_files add column if not exists object_etag text;
create index if not exists feedback_files_object_url_idx on raw.feedback_files (object_url)
where object_url is not null;
