"""The call-sessions connector (`python -m loaders api`) against the generator's API on loopback: a real
HTTP server (simulator/api_server.py) and the real Postgres, counted against the generator's manifest.

One small world for the module (a few hundred appointments, generated in-process, no clinic tables); each
test gets a server of its own over it, with the faults it needs, and empty raw tables."""

from __future__ import annotations

import dataclasses
import itertools
import json
import signal
import time
from datetime import datetime, timedelta

import pytest

from loaders import api
from loaders.retry import Backoff
from loaders.tests.loader_support import loader_env, query, scalar, start_loader, wait_for
from simulator.api_server import ApiServer, Faults, SessionStore
from simulator.generate import generate
from simulator.video_api import FILE_NAME
from testkit.clock import AS_OF, PERIOD_END

TOKEN = "test-token-of-the-platform"
SCALE = 300
SEED = 11
DIRTY_RATE = 0.1
# The server's clock for a first load while calls run and measures are pending: a Friday afternoon (New York).
MIDDAY = datetime.fromisoformat("2026-10-30T19:00:00+00:00")


def fast_backoff() -> Backoff:
    """The loaders' backoff, with short waits: the tests count retries, they do not wait them out."""
    return Backoff(deadline_s=60, first_s=0.01, cap_s=0.05)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("api-world")
    manifest = generate(
        scale=SCALE,
        seed=SEED,
        start=PERIOD_END - timedelta(days=89),
        end=PERIOD_END,
        as_of=int(AS_OF.timestamp()),
        dirty_rate=DIRTY_RATE,
        out_dir=out,
        landing_dir=out / "landing",
        write_files=True,
        settings=None,
    )
    return out / "video_api" / FILE_NAME, manifest["video_api"]


@pytest.fixture
def server(world, settings):
    """A server of the test's own over the module's world; raw's API tables emptied first."""
    with settings_conn(settings) as cur:
        cur.execute(
            "delete from raw.call_sessions; delete from raw.call_sessions_rejected; delete from raw.api_cursors;"
            " delete from raw.load_runs where loader = 'api'"
        )
    srv = ApiServer(SessionStore(world[0]), TOKEN)
    srv.start()
    yield srv
    srv.stop()


class settings_conn:
    """A cursor as the bootstrap user (which may delete from raw), committed on exit."""

    def __init__(self, settings):
        from runtime import db

        self.conn = db.connect(settings)

    def __enter__(self):
        return self.conn.cursor()

    def __exit__(self, *exc):
        self.conn.commit()
        self.conn.close()


def pointed(settings, srv: ApiServer, token: str = TOKEN):
    return dataclasses.replace(settings, video_api_url=srv.url, video_api_embedded=False, video_api_token=token)


def rejected_by_reason(settings) -> dict[str, int]:
    return dict(query(settings, "select reason, count(*) from raw.call_sessions_rejected group by 1"))


def assert_matches_manifest(settings, truth: dict) -> None:
    """Nothing lost, nothing twice: every session once in its current version, every dirty record once."""
    assert scalar(settings, "select count(distinct session_id) from raw.call_sessions") == truth["sessions"]
    assert rejected_by_reason(settings) == truth["rejected"]
    statuses = dict(
        query(
            settings,
            "select status, count(*) from (select distinct on (session_id) status from raw.call_sessions"
            " order by session_id, updated_at desc) as latest group by 1",
        )
    )
    assert statuses == {status: n for status, n in truth["by_status"].items() if n}


def test_the_world_has_every_kind_of_dirt(world):
    """The tests below are only as good as the dirt in their world."""
    _, truth = world
    assert set(truth["rejected"]) == {
        "missing_field",
        "invalid_type",
        "invalid_timestamp",
        "out_of_range",
        "unknown_enum",
        "not_an_object",
    }
    assert truth["records_at_as_of"] == truth["sessions"] + sum(truth["rejected"].values())


def test_a_clean_load_matches_the_manifest_and_a_second_run_adds_nothing(settings, server, world):
    _, truth = world
    target = pointed(settings, server)
    status, summary = api.run_api(target, limit=50, backoff=fast_backoff())
    assert status == "succeeded", summary["error"]
    assert_matches_manifest(settings, truth)
    assert scalar(settings, "select count(*) from raw.call_sessions") == truth["sessions"]
    counts = summary["counts"]
    assert (counts.read, counts.loaded, counts.rejected, counts.duplicates) == (
        truth["records_at_as_of"],
        truth["sessions"],
        sum(truth["rejected"].values()),
        0,
    )
    assert summary["pages"] == -(-truth["records_at_as_of"] // 50)
    # One raw.load_runs row, its counters those of the run, the position stored with the last page.
    run = query(
        settings,
        "select status, rows_read, rows_loaded, rows_rejected, duplicates_skipped from raw.load_runs"
        " where loader = 'api'",
    )
    assert run == [("succeeded", counts.read, counts.loaded, counts.rejected, 0)]
    watermark, page_cursor = query(settings, "select watermark, page_cursor from raw.api_cursors")[0]
    newest = scalar(settings, "select max(updated_at) from raw.call_sessions")
    assert (watermark, page_cursor) == (newest, None)

    again_status, again = api.run_api(target, limit=50, backoff=fast_backoff())
    assert again_status == "succeeded"
    assert again["counts"].loaded == 0 and again["counts"].rejected == 0
    assert again["counts"].read == again["counts"].duplicates > 0, "the look-back re-reads the last hour"
    assert_matches_manifest(settings, truth)


def test_429_5xx_and_slow_responses_lose_nothing_and_duplicate_nothing(settings, server, world):
    _, truth = world
    server.set_faults(Faults(rate_429=0.15, rate_5xx=0.15, rate_slow=0.15, slow_s=0.6, retry_after_s=1, seed=3))
    arrivals: list[tuple[float, int]] = []
    original = server.count

    def count(status: int) -> None:
        arrivals.append((time.monotonic(), status))
        original(status)

    server.count = count
    status, summary = api.run_api(
        pointed(settings, server), limit=100, timeout_s=0.4, max_attempts=10, backoff=fast_backoff()
    )
    assert status == "succeeded", summary["error"]
    http = summary["http"]
    # The faults happened, and the client saw each one.
    assert http["rate_limited"] == server.answered.get(429, 0) > 0
    assert http["server_errors"] == sum(server.answered.get(code, 0) for code in (500, 502, 503)) > 0
    assert http["transport_errors"] > 0, "a response slower than the timeout is retried"
    # Retry-After is respected: the request after a 429 comes at least a second later.
    for (at, code), (next_at, _) in itertools.pairwise(arrivals):
        if code == 429:
            assert next_at - at >= 0.95
    assert_matches_manifest(settings, truth)
    assert summary["counts"].duplicates == 0
    assert summary["counts"].read == truth["records_at_as_of"]


def test_retries_are_bounded_and_the_run_fails_clearly(settings, server):
    server.set_faults(Faults(rate_5xx=1.0))
    status, summary = api.run_api(pointed(settings, server), max_attempts=3, backoff=fast_backoff())
    assert status == "failed"
    assert "answered HTTP 50" in summary["error"] and "3 times in a row" in summary["error"]
    assert server.requests == 3
    assert query(settings, "select status, error from raw.load_runs where loader = 'api'") == [
        ("failed", summary["error"])
    ]
    assert scalar(settings, "select count(*) from raw.call_sessions") == 0


def test_a_wrong_token_fails_at_once_with_the_apis_words(settings, server):
    status, summary = api.run_api(pointed(settings, server, token="not-the-token"), backoff=fast_backoff())
    assert status == "failed"
    assert "HTTP 401" in summary["error"] and "bearer token" in summary["error"]
    assert server.requests == 0, "a refused token is not a request the server counts against the rate"


def test_records_revised_after_a_first_load_are_loaded_as_new_versions(settings, server, world):
    _, truth = world

    def valid_versions() -> dict[str, int]:
        """session key -> updated_at (epoch) of every valid record the server shows now."""
        return {key: t for t, key, record in server.store.view()[1] if api.check_call_session(record) is None}

    server.store.set_as_of(int(MIDDAY.timestamp()))
    first = valid_versions()
    status, first_run = api.run_api(pointed(settings, server), limit=50, backoff=fast_backoff())
    assert status == "succeeded"
    assert first_run["counts"].loaded == len(first)
    pending = scalar(settings, "select count(*) from raw.call_sessions where status <> 'finalized'")
    assert pending > 0, "the first load must see calls whose measures are not final yet"

    server.store.set_as_of(None)  # the platform's clock moves on to the generator's as-of
    last = valid_versions()
    revised = sum(1 for key, t in last.items() if key in first and t != first[key])
    new = sum(1 for key in last if key not in first)
    assert revised > 0 and new > 0
    status, second = api.run_api(pointed(settings, server), limit=50, backoff=fast_backoff())
    assert status == "succeeded"
    # Every version seen is kept: the first load's, and one more for each session revised or new since.
    assert second["counts"].loaded == revised + new
    assert scalar(settings, "select count(*) from raw.call_sessions") == len(first) + revised + new
    assert_matches_manifest(settings, truth)
    histories = query(
        settings,
        "select array_agg(status order by updated_at) from raw.call_sessions group by session_id having count(*) > 1",
    )
    assert len(histories) == revised
    assert all(statuses[-1] == "finalized" and statuses[0] != "finalized" for (statuses,) in histories)


def test_a_kill_mid_page_and_a_restart_load_every_record_exactly_once(settings, server, world, tmp_path):
    _, truth = world
    # Every page slow, so the kill lands while a page is in flight, after some pages have committed.
    server.set_faults(Faults(rate_slow=1.0, slow_s=0.15))
    env = loader_env(settings, TELEMED_VIDEO_API_URL=server.url, TELEMED_VIDEO_API_TOKEN=TOKEN)
    proc = start_loader(env, tmp_path / "first.log", "api", "--limit", "20")
    try:
        wait_for(lambda: scalar(settings, "select count(*) from raw.call_sessions") >= 60, 60, "three pages")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    cursor = scalar(settings, "select page_cursor from raw.api_cursors")
    assert cursor is not None, "the killed scan's position is stored with its last committed page"
    killed_read = scalar(settings, "select rows_read from raw.load_runs where loader = 'api'")
    assert 0 < killed_read < truth["records_at_as_of"]

    server.set_faults(Faults())
    status, summary = api.run_api(pointed(settings, server), limit=20, backoff=fast_backoff())
    assert status == "succeeded", summary["error"]
    assert_matches_manifest(settings, truth)
    # Resumed after the last committed page: nothing read twice, nothing skipped.
    assert summary["counts"].duplicates == 0
    assert killed_read + summary["counts"].read == truth["records_at_as_of"]
    assert query(settings, "select status from raw.load_runs where loader = 'api' order by run_id") == [
        ("interrupted",),
        ("succeeded",),
    ]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda r: r.pop("appointment_id"), "missing_field"),
        (lambda r: r.update(schema_version=2), "unsupported_schema_version"),
        (lambda r: r.update(appointment_id="A-1"), "invalid_format"),
        (lambda r: r.update(status="lost"), "unknown_enum"),
        (lambda r: r.update(updated_at="2026-10-01T10:00:00"), "invalid_timestamp"),
        (lambda r: r.update(participants="both"), "invalid_type"),
        (lambda r: r["participants"].pop(), "out_of_range"),
        (lambda r: r["participants"][0].update(platform="symbian"), "unknown_enum"),
        (lambda r: r["participants"][0].update(reconnects=-1), "out_of_range"),
        (lambda r: r["participants"][0]["network"].update(packet_loss_pct="2%"), "invalid_type"),
        (lambda r: r["participants"][0]["network"].update(packet_loss_pct=140), "out_of_range"),
        (lambda r: r["participants"][0]["network"].update(jitter_ms=float("nan")), "invalid_json"),
        (lambda r: r["participants"][0]["network"].update(resolution="8k"), "unknown_enum"),
    ],
)
def test_the_contract_names_the_reason(world, change, reason):
    path, _ = world
    lines = path.read_text().splitlines()
    record = next(json.loads(line)["record"] for line in lines[1:] if "dirty" not in json.loads(line))
    assert api.check_call_session(record) is None
    change(record)
    page = api.split_page([record], "http://test", 1)
    assert not page.rows and [row[0] for row in page.rejected] == [reason]


def test_a_version_postgres_refuses_is_quarantined_and_the_rest_of_the_page_lands(settings, server, world):
    """Unreachable through the contract (it bounds every timestamp), so the page is built by hand: one
    version whose updated_at Postgres cannot hold beside a valid one."""
    path, _ = world
    record = next(json.loads(line)["record"] for line in path.read_text().splitlines()[1:] if "dirty" not in line)
    page = api.split_page([record], "http://test", None)
    bad = (*page.rows[0][:1], "294277-01-01T00:00:00Z", *page.rows[0][2:])
    page.rows.append(("another-session", *bad[1:]))
    with settings_conn(settings) as cur:
        counts = api._commit_page(cur, api.LoadRun(api.LOADER_NAME), "test", page, api.Position())
    assert (counts.read, counts.loaded, counts.rejected, counts.duplicates) == (2, 1, 1, 0)
    assert query(settings, "select reason, session_id, payload from raw.call_sessions_rejected") == [
        ("unstorable", "another-session", None)
    ]
    assert "SQLSTATE 22" in scalar(settings, "select error_detail from raw.call_sessions_rejected")
