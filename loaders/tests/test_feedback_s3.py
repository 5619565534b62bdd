"""The feedback loader on an S3 prefix (issue 17), against an S3-compatible server on loopback: moto in
server mode, an emulator (testkit/s3.py). The loader goes through the same boto3 code, configured by the
same AWS variables, as against AWS S3 or MinIO.

What a bucket adds to a folder: a paginated listing, an identity (key and ETag) known before the fetch,
so objects loaded before are not fetched again, and a store that can be unreachable mid-run.
"""

from __future__ import annotations

import json
import threading

import pytest

from loaders.feedback import FeedbackLoader
from loaders.landing import S3Landing
from loaders.retry import Backoff
from loaders.tests.loader_support import loader_env, query, run_loader, scalar, start_loader, stop, valid_form, wait_for
from runtime import objectstore
from runtime.objectstore import S3Location


def form_bytes(*ids: str) -> bytes:
    forms = [valid_form(i) for i in ids]
    return json.dumps(forms[0] if len(forms) == 1 else forms, indent=2).encode()


class Fetches:
    """Counts the GetObject calls of a real client (a botocore event hook: nothing is stubbed)."""

    def __init__(self, client):
        self.keys: list[str] = []
        client.meta.events.register("before-parameter-build.s3.GetObject", self._count)

    def _count(self, params, **_):
        self.keys.append(params["Key"])


def load(settings, bucket: str, prefix: str = "forms/", page_size: int = 1000, max_retry_seconds: float = 300, **kw):
    """One in-process run over s3://bucket/prefix/: (loader, status, error, the keys it fetched)."""
    client = objectstore.s3_client()
    fetches = Fetches(client)
    on_commit = kw.pop("on_commit", None)
    source = S3Landing(S3Location(bucket, prefix), Backoff(max_retry_seconds), page_size, client=client)
    loader = FeedbackLoader(settings, source, max_retry_seconds=max_retry_seconds, **kw)
    loader.on_commit = on_commit
    try:
        status, error = loader.run_once()
    finally:
        source.close()
    return loader, status, error, sorted(fetches.keys)


def file_rows(settings, bucket: str) -> list[tuple]:
    return query(
        settings,
        "select path, status, reason, forms_loaded, forms_duplicate, object_url, object_etag is not null"
        " from raw.feedback_files where object_url like %s order by file_id",
        (f"s3://{bucket}/%",),
    )


def test_a_listing_of_several_pages_loads_each_object_once_and_a_second_run_fetches_nothing(settings, s3_emulator):
    bucket = s3_emulator.new_bucket()
    s3 = s3_emulator.client()
    objects = {f"forms/2026/10/{1 + i % 3:02d}/f-{i}.json": form_bytes(f"FBK-3100{i:03d}") for i in range(9)}
    objects["forms/2026/10/01/scan.pdf"] = b"%PDF-1.4 not a form"
    objects["forms/2026/10/02/big.json"] = form_bytes("FBK-3100900") + b" " * 2000
    objects["forms/.staging/f-x.json"] = form_bytes("FBK-3100901")  # hidden: a writer's staging area
    objects["forms/2026/"] = b""  # a folder marker
    objects["elsewhere/f-y.json"] = form_bytes("FBK-3100902")  # outside the prefix
    for key, body in objects.items():
        s3.put_object(Bucket=bucket, Key=key, Body=body)

    loader, status, error, fetched = load(settings, bucket, page_size=4, max_file_bytes=1000)
    assert (status, error) == ("succeeded", None)
    assert loader.files == {"seen": 11, "loaded": 9, "failed": 2, "skipped": 0}
    assert (loader.counts.read, loader.counts.loaded) == (9, 9)
    # The object over the size limit is judged by its listed size: never fetched.
    assert fetched == sorted(k for k in objects if k.startswith("forms/2026/10/") and "big" not in k)
    rows = {row[0]: row[1:] for row in file_rows(settings, bucket)}
    assert rows["2026/10/01/scan.pdf"] == ("failed", "not_json", 0, 0, f"s3://{bucket}/forms/2026/10/01/scan.pdf", True)
    assert rows["2026/10/02/big.json"][:2] == ("failed", "too_large")
    assert rows["2026/10/01/f-0.json"] == ("loaded", None, 1, 0, f"s3://{bucket}/forms/2026/10/01/f-0.json", True)
    assert len(rows) == 11
    lineage = query(
        settings,
        "select f.source_path, f.source_sha256 = files.sha256 from raw.patient_feedback f"
        " join raw.feedback_files files on files.sha256 = f.source_sha256 where f.feedback_id = 'FBK-3100004'",
    )
    assert lineage == [("2026/10/02/f-4.json", True)]

    again, status, _, fetched = load(settings, bucket, page_size=4, max_file_bytes=1000)
    assert status == "succeeded"
    assert fetched == [], "objects recorded under their key and ETag must not be fetched again"
    assert again.files == {"seen": 11, "loaded": 0, "failed": 0, "skipped": 11}
    assert len(file_rows(settings, bucket)) == 11


def test_the_same_object_twice_and_a_changed_object(settings, s3_emulator):
    bucket = s3_emulator.new_bucket()
    s3 = s3_emulator.client()
    first = form_bytes("FBK-3200001")
    s3.put_object(Bucket=bucket, Key="forms/a.json", Body=first)
    assert load(settings, bucket)[1] == "succeeded"

    # The same bytes again under the same key (same ETag) and under another key (same sha256).
    s3.put_object(Bucket=bucket, Key="forms/a.json", Body=first)
    s3.put_object(Bucket=bucket, Key="forms/copy-of-a.json", Body=first)
    loader, status, _, fetched = load(settings, bucket)
    assert status == "succeeded"
    assert fetched == ["forms/copy-of-a.json"], "a.json's key and ETag are known: only the copy is fetched"
    assert loader.files == {"seen": 2, "loaded": 0, "failed": 0, "skipped": 2}
    assert scalar(settings, "select count(*) from raw.patient_feedback where feedback_id = 'FBK-3200001'") == 1

    # a.json replaced: a new ETag, so it is fetched; its old form is a duplicate, the new one loads.
    s3.put_object(Bucket=bucket, Key="forms/a.json", Body=form_bytes("FBK-3200001", "FBK-3200002"))
    loader, status, _, fetched = load(settings, bucket)
    assert status == "succeeded"
    assert "forms/a.json" in fetched
    assert (loader.counts.loaded, loader.counts.duplicates) == (1, 1)
    rows = [row for row in file_rows(settings, bucket) if row[0] == "a.json"]
    assert [row[1:5] for row in rows] == [("loaded", None, 1, 0), ("loaded", None, 1, 1)]
    etags = query(settings, "select distinct object_etag from raw.feedback_files where path = 'a.json'")
    assert len(etags) == 2
    ids = query(
        settings, "select feedback_id from raw.patient_feedback where feedback_id like %s order by 1", ("FBK-32%",)
    )
    assert ids == [("FBK-3200001",), ("FBK-3200002",)]


@pytest.mark.slow  # 1,000 keys through the emulator: 3-4 s alone, 15 s on the loaded machine
def test_a_listing_over_a_thousand_keys_takes_two_pages(settings, s3_emulator):
    """S3's own page size, 1,000 keys: a writer staged 1,000 objects (hidden: listed, never fetched) under
    the prefix, and the five it published sort after them, on the second page."""
    bucket = s3_emulator.new_bucket()
    published = {f"forms/2026/10/01/p-{i}.json": form_bytes(f"FBK-33{i:05d}") for i in range(5)}
    s3_emulator.seed(bucket, {**{f"forms/.staging/s-{i:04d}.json": b"{}" for i in range(1000)}, **published})
    pages = []
    client = objectstore.s3_client()
    client.meta.events.register("before-parameter-build.s3.ListObjectsV2", lambda params, **_: pages.append(params))
    fetches = Fetches(client)
    source = S3Landing(S3Location(bucket, "forms/"), Backoff(), client=client)
    loader = FeedbackLoader(settings, source)
    try:
        status, error = loader.run_once()
    finally:
        source.close()
    assert (status, error) == ("succeeded", None)
    assert len(pages) == 2 and "ContinuationToken" in pages[1]
    assert sorted(fetches.keys) == sorted(published)
    assert (loader.files["seen"], loader.counts.loaded) == (5, 5)


def _stop_after_first_commit(s3_emulator, restart_after: float | None):
    stopped = threading.Event()

    def on_commit(_counts, _seconds):
        if not stopped.is_set():
            stopped.set()
            s3_emulator.stop()
            if restart_after is not None:
                threading.Timer(restart_after, s3_emulator.start).start()

    return on_commit, stopped


@pytest.mark.faults  # stops the store mid-run
def test_a_store_unreachable_mid_run_is_retried_then_fails_the_run_clearly(settings, s3_emulator):
    """Batches of two objects: when the first commits (and the store stops), at most eight batches were
    read ahead (the read-ahead queue, the batch being validated, the writer's queue), so most are still
    to fetch."""
    bucket = s3_emulator.new_bucket()
    s3_emulator.seed(bucket, {f"forms/u-{i:03d}.json": form_bytes(f"FBK-34{i:05d}") for i in range(40)})

    # Back within the deadline: the run waits it out and loads everything.
    on_commit, stopped = _stop_after_first_commit(s3_emulator, restart_after=1.5)
    loader, status, error, _ = load(settings, bucket, batch_files=2, max_retry_seconds=60, on_commit=on_commit)
    assert stopped.is_set()
    assert (status, error) == ("succeeded", None)
    assert loader.counts.loaded == 40

    # Gone for good: bounded retries, then a clear failure in raw.load_runs; the next run finishes the rest.
    s3_emulator.seed(bucket, {f"forms/v-{i:03d}.json": form_bytes(f"FBK-35{i:05d}") for i in range(40)})
    on_commit, stopped = _stop_after_first_commit(s3_emulator, restart_after=None)
    try:
        loader, status, error, _ = load(settings, bucket, batch_files=2, max_retry_seconds=2, on_commit=on_commit)
    finally:
        if not stopped.is_set():
            pytest.fail("the emulator was never stopped")
        s3_emulator.start()
    assert status == "failed"
    assert f"cannot reach the object store at {s3_emulator.endpoint} (bucket {bucket})" in error
    recorded = query(settings, "select status, error from raw.load_runs where run_id = %s", (loader.run.run_id,))
    assert recorded == [("failed", error)]
    partly = scalar(settings, "select count(*) from raw.patient_feedback where feedback_id like %s", ("FBK-35%",))
    assert 2 <= partly <= 40 - 20

    _, status, _, fetched = load(settings, bucket)
    assert status == "succeeded"
    assert len(fetched) == 40 - partly
    assert scalar(settings, "select count(*) from raw.patient_feedback where feedback_id like %s", ("FBK-35%",)) == 40
    assert scalar(settings, "select count(*) from raw.feedback_files where path like %s", ("v-%",)) == 40


@pytest.mark.slow  # the generator and two loaders as processes
def test_the_command_line_reads_a_bucket_the_generator_wrote(settings, s3_emulator, tmp_path):
    bucket = s3_emulator.new_bucket()
    env = loader_env(settings, **s3_emulator.env)
    generated = run_loader(
        env,
        "generate",
        "--scale", "60",
        "--seed", "7",
        "--no-db",
        "--out", str(tmp_path / "generated"),
        "--landing", f"s3://{bucket}/landing/",
    )  # fmt: skip
    assert generated.returncode == 0, generated.stderr[-3000:]
    manifest = json.loads((tmp_path / "generated" / "manifest.json").read_text())
    keys = [o["Key"] for o in s3_emulator.client().list_objects_v2(Bucket=bucket)["Contents"]]
    assert len(keys) == manifest["feedback"]["files"] > 0
    assert all(key.startswith("landing/20") for key in keys)

    done = run_loader({**env, "TELEMED_LANDING_URL": f"s3://{bucket}/landing"}, "feedback")
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"files {len(keys)} seen" in done.stdout
    loaded = scalar(settings, "select count(*) from raw.feedback_files where object_url like %s", (f"s3://{bucket}/%",))
    assert loaded == len(keys)
    files_by_reason = dict(
        query(
            settings,
            "select reason, count(*) from raw.feedback_files where object_url like %s and status = 'failed' group by 1",
            (f"s3://{bucket}/%",),
        )
    )
    assert files_by_reason == manifest["rejected"]["feedback_files"]

    missing = run_loader(env, "feedback", "--landing", "s3://no-such-bucket/x/")
    assert missing.returncode == 1
    assert "cannot list s3://no-such-bucket/x/" in missing.stderr and "NoSuchBucket" in missing.stderr


@pytest.mark.slow  # a service process, polled
def test_the_ingest_service_watcher_polls_a_bucket(settings, s3_emulator, tmp_path):
    """The feedback child of `python -m loaders serve` on s3://: an object put while it runs lands in raw
    without a restart; SIGTERM ends it cleanly."""
    bucket = s3_emulator.new_bucket()
    s3 = s3_emulator.client()
    s3.put_object(Bucket=bucket, Key="in/a.json", Body=form_bytes("FBK-3600001"))
    (tmp_path / "metrics").mkdir()
    env = loader_env(settings, **s3_emulator.env, PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "metrics"))
    args = ("serve", "--child", "feedback", "--landing", f"s3://{bucket}/in/", "--poll-seconds", "0.3")
    proc = start_loader(env, tmp_path / "watch.log", *args)
    try:
        forms = "select count(*) from raw.patient_feedback where feedback_id like %s"
        wait_for(lambda: scalar(settings, forms, ("FBK-36%",)) == 1, 60, "the object there at the start")
        s3.put_object(Bucket=bucket, Key="in/b.json", Body=form_bytes("FBK-3600002"))
        wait_for(lambda: scalar(settings, forms, ("FBK-36%",)) == 2, 60, "the object put while it watches")
    finally:
        code = stop(proc)
    assert code == 0, (tmp_path / "watch.log").read_text()[-3000:]
    assert f"watching s3://{bucket}/in/" in (tmp_path / "watch.log").read_text()
