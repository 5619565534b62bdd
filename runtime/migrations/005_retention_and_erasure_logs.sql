-- Stewardship bookkeeping (python -m loaders retention / erase). One row per table a retention run
-- looked at (dry runs too), and one row per table an erasure request touched. The erasure log names the
-- patient by patient_key (the keyed hash the marts use), never by patient_id.
create table if not exists raw.retention_log (
    log_id bigserial primary key,
    run_id uuid not null,
    logged_at timestamptz not null default now(),
    as_of timestamptz not null,
    policy text not null,
    table_name text not null,
    keep_days integer not null,
    cutoff timestamptz not null,
    clock text not null check (clock in ('business', 'load')),
    applied boolean not null,
    rows_due bigint not null,
    rows_deleted bigint not null default 0,
    batches integer not null default 0
);
create index if not exists retention_log_applied_idx on raw.retention_log (table_name) where applied and rows_deleted > 0;

create table if not exists raw.erasure_log (
    log_id bigserial primary key,
    request_id uuid not null,
    logged_at timestamptz not null default now(),
    patient_key text not null,
    request_ref text,
    table_name text not null,
    rows_changed bigint not null
);
