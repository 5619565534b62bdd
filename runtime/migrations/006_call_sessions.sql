-- The video platform's call sessions (python -m loaders api): every version the connector saw, keyed on
-- (session_id, updated_at); the records that break the contract, unique on their content's sha256 so a
-- look-back re-read quarantines nothing twice; and the connector's position, written in the same
-- transaction as each page's rows (exactly once, like raw.kafka_offsets).
create table if not exists raw.call_sessions (
    session_id text not null,
    updated_at timestamptz not null,
    appointment_id text not null,
    status text not null,
    schema_version integer not null,
    payload jsonb not null,
    api_url text not null,
    _load_run_id bigint,
    _loaded_at timestamptz not null default now(),
    primary key (session_id, updated_at)
);
create index if not exists call_sessions_loaded_at_idx on raw.call_sessions (_loaded_at);
create index if not exists call_sessions_appointment_idx on raw.call_sessions (appointment_id);

create table if not exists raw.call_sessions_rejected (
    rejected_id bigserial primary key,
    reason text not null,
    error_detail text,
    session_id text,
    payload jsonb,
    record_sha256 text not null unique,
    api_url text not null,
    _load_run_id bigint,
    _loaded_at timestamptz not null default now()
);

-- One row per API and resource. watermark: the newest updated_at committed; scan_since and page_cursor:
-- the scan in progress (null between scans), so a killed run resumes at the page after the last committed.
create table if not exists raw.api_cursors (
    source text primary key,
    watermark timestamptz,
    scan_since timestamptz,
    page_cursor text,
    updated_at timestamptz not null default now()
);
