-- Raw landing tables, owned by the loader role. Every row keeps its original payload and lineage.
-- Versions are immutable once applied: change the schema with a new numbered file.

create table if not exists raw.load_runs (
    run_id bigserial primary key,
    loader text not null,
    started_at timestamptz not null default now(),
    finished_at timestamptz,
    rows_read bigint not null default 0,
    rows_loaded bigint not null default 0,
    rows_rejected bigint not null default 0,
    duplicates_skipped bigint not null default 0,
    status text not null default 'running'
        check (status in ('running', 'succeeded', 'failed', 'interrupted')),
    error text,
    details jsonb not null default '{}'::jsonb
);

create table if not exists raw.appointment_events (
    event_id text primary key,
    appointment_id text not null,
    event_type text not null,
    event_ts timestamptz not null,
    schema_version integer not null,
    payload jsonb not null,
    kafka_topic text not null,
    kafka_partition integer not null,
    kafka_offset bigint not null,
    kafka_timestamp timestamptz,
    _load_run_id bigint,
    _loaded_at timestamptz not null default now()
);
create index if not exists appointment_events_loaded_at_idx on raw.appointment_events (_loaded_at);
create index if not exists appointment_events_appointment_idx on raw.appointment_events (appointment_id);

create table if not exists raw.appointment_events_rejected (
    rejected_id bigserial primary key,
    reason text not null,
    error_detail text,
    event_id text,
    raw_text text,
    raw_bytes bytea,
    kafka_topic text not null,
    kafka_partition integer not null,
    kafka_offset bigint not null,
    kafka_key text,
    kafka_timestamp timestamptz,
    _load_run_id bigint,
    _loaded_at timestamptz not null default now(),
    unique (kafka_topic, kafka_partition, kafka_offset)
);

create table if not exists raw.kafka_offsets (
    consumer_group text not null,
    topic text not null,
    partition integer not null,
    next_offset bigint not null,
    updated_at timestamptz not null default now(),
    primary key (consumer_group, topic, partition)
);

create table if not exists raw.feedback_files (
    file_id bigserial primary key,
    path text not null,
    size_bytes bigint not null,
    sha256 text not null unique,
    status text not null check (status in ('loaded', 'failed')),
    forms_read integer not null default 0,
    forms_loaded integer not null default 0,
    forms_rejected integer not null default 0,
    forms_duplicate integer not null default 0,
    error text,
    _load_run_id bigint,
    _loaded_at timestamptz not null default now()
);

create table if not exists raw.patient_feedback (
    feedback_id text primary key,
    appointment_id text not null,
    submitted_at timestamptz not null,
    schema_version integer not null,
    payload jsonb not null,
    source_path text not null,
    source_sha256 text not null,
    form_index integer not null,
    _load_run_id bigint,
    _loaded_at timestamptz not null default now()
);
create index if not exists patient_feedback_loaded_at_idx on raw.patient_feedback (_loaded_at);

create table if not exists raw.patient_feedback_rejected (
    rejected_id bigserial primary key,
    reason text not null,
    error_detail text,
    feedback_id text,
    payload jsonb,
    source_path text not null,
    source_sha256 text not null,
    form_index integer not null,
    _load_run_id bigint,
    _loaded_at timestamptz not null default now(),
    unique (source_sha256, form_index)
);

-- Reference data: every version of a row is kept, keyed on (id, updated_at).
create table if not exists raw.providers (
    provider_id text not null,
    first_name text,
    last_name text,
    specialty text,
    state text,
    years_experience integer,
    hourly_rate numeric(10, 2),
    available_hours integer,
    active boolean,
    updated_at timestamptz not null,
    payload jsonb not null,
    _load_run_id bigint,
    _loaded_at timestamptz not null default now(),
    primary key (provider_id, updated_at)
);

create table if not exists raw.patients (
    patient_id text not null,
    first_name text,
    last_name text,
    email text,
    phone text,
    address text,
    date_of_birth date,
    gender text,
    has_insurance boolean,
    registration_date date,
    state text,
    updated_at timestamptz not null,
    payload jsonb not null,
    _load_run_id bigint,
    _loaded_at timestamptz not null default now(),
    primary key (patient_id, updated_at)
);

create table if not exists raw.reference_watermarks (
    source_table text primary key,
    watermark timestamptz not null,
    updated_at timestamptz not null default now()
);
