"""The reference loader: incremental on updated_at, every version kept, late rows caught by the look-back."""

from __future__ import annotations

from loaders.tests.loader_support import loader_env, query, run_loader, scalar

DDL = """
create table clinic_ops.providers (
    provider_id text primary key, first_name text, last_name text, specialty text, state text,
    years_experience integer, hourly_rate numeric(8, 2), available_hours integer, active boolean,
    updated_at timestamptz not null
);
create table clinic_ops.patients (
    patient_id text primary key, first_name text, last_name text, email text, phone text, address text,
    date_of_birth date, gender text, has_insurance boolean, registration_date date, state text,
    updated_at timestamptz not null
);
insert into clinic_ops.providers values
    ('PRV-1', 'Ada', 'Byron', 'Cardiology', 'CA', 12, 150.50, 40, true, '2026-10-01 00:00+00'),
    ('PRV-2', 'Alan', 'Turing', 'Psychiatry', 'NY', 3, 99.00, 20, true, '2026-10-01 00:00+00');
insert into clinic_ops.patients values
    ('PAT-1', 'Grace', 'Hopper', 'g@example.com', '555-0100', '1 Main St', '1950-01-02', 'female', true,
     '2026-01-01', 'VA', '2026-10-01 00:00+00');
"""


def reference(env) -> str:
    done = run_loader(env, "reference")
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_versions_accumulate_incrementally(settings, pg):
    env = loader_env(settings)
    missing = run_loader(env, "reference")
    assert missing.returncode == 1
    assert "clinic_ops.providers does not exist" in missing.stderr

    with pg, pg.cursor() as cur:
        cur.execute(DDL)
    assert "read 3, loaded 3 new versions, duplicates skipped 0" in reference(env)
    payload = scalar(settings, "select payload from raw.providers where provider_id = 'PRV-1'")
    assert payload["hourly_rate"] == 150.5 and payload["specialty"] == "Cardiology"
    assert scalar(settings, "select date_of_birth::text from raw.patients") == "1950-01-02"

    with pg, pg.cursor() as cur:
        cur.execute(
            "update clinic_ops.providers set specialty = 'Oncology', updated_at = '2026-10-05 00:00+00'"
            " where provider_id = 'PRV-1';"
            "insert into clinic_ops.providers values"
            " ('PRV-3', 'Kurt', 'Godel', 'Neurology', 'NJ', 30, 200, 10, false, '2026-10-05 00:00+00')"
        )
    # The look-back (1 h) re-reads the rows at the old watermark; they are known versions.
    assert "read 4, loaded 2 new versions, duplicates skipped 2" in reference(env)
    assert query(settings, "select specialty from raw.providers where provider_id = 'PRV-1' order by updated_at") == [
        ("Cardiology",),
        ("Oncology",),
    ]
    assert "loaded 0 new versions" in reference(env)

    # A row committed late, with an updated_at a little below the watermark, is still picked up.
    with pg, pg.cursor() as cur:
        cur.execute(
            "insert into clinic_ops.providers values"
            " ('PRV-4', 'Late', 'Commit', 'Dermatology', 'TX', 1, 80, 8, true, '2026-10-04 23:30+00')"
        )
    assert "loaded 1 new versions" in reference(env)
    assert scalar(settings, "select count(*) from raw.providers") == 5
    watermarks = dict(query(settings, "select source_table, watermark::text from raw.reference_watermarks"))
    assert watermarks == {
        "clinic_ops.providers": "2026-10-05 00:00:00+00",
        "clinic_ops.patients": "2026-10-01 00:00:00+00",
    }
    runs = query(
        settings,
        "select status, rows_loaded, details->'tables'->'providers'->>'loaded' from raw.load_runs"
        " where loader = 'reference' order by run_id",
    )
    assert runs == [
        ("failed", 0, None),
        ("succeeded", 3, "2"),
        ("succeeded", 2, "2"),
        ("succeeded", 0, "0"),
        ("succeeded", 1, "1"),
    ]
