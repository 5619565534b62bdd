"""``python -m loaders api``: the video platform's call sessions into raw, incremental and exactly once.

Reads ``GET <url>/v1/call-sessions?updated_since=...&cursor=...&limit=...`` (bearer token) page by page,
incremental on ``updated_at``: a scan starts a look-back below the newest ``updated_at`` committed, so a
record the platform committed late with an older stamp is still seen; versions already in raw are skipped
by the key (session_id, updated_at) and counted as duplicates. Every version seen is kept.

Exactly once: each page's rows, its quarantined records and the connector's position (watermark, the
scan's ``updated_since`` and the page's cursor, in raw.api_cursors) commit in one transaction. A killed
run resumes at the page after the last one committed; a page fetched again is harmless (the keys).

Like any client of a real API it is patient and bounded: ``Retry-After`` of a 429 is respected (up to
``--max-retry-after``), 5xx answers, timeouts and refused connections are retried with the loaders'
capped exponential backoff, every request at most ``--max-attempts`` times and none after
``--max-retry-seconds`` of continuous failure; a 4xx other than 429 (a bad token, a bad parameter) ends
the run at once with the API's own words. Records that break the contract (loaders/CONTRACTS.md, Call
sessions) land in raw.call_sessions_rejected with a reason; nothing stops the rest of the page.
"""

from __future__ import annotations

import argparse
import email.utils
import hashlib
import json
import logging
import math
import socket
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import httpx
import psycopg2

from loaders import validation as v
from loaders.rawwrite import PgSession, insert_values, is_data_error, refusal
from loaders.retry import Backoff, RetryGaveUp, RetryInterrupted, stop_on_signals
from loaders.runs import LoadRun, RunCounts, run_outcome
from runtime.progress import Progress
from runtime.settings import Settings

log = logging.getLogger(__name__)

LOADER_NAME = "api"
RESOURCE = "/v1/call-sessions"
DEFAULT_LIMIT = 500
DEFAULT_LOOKBACK_S = 3600.0

STATUSES = frozenset(("in_progress", "ended", "finalized"))
ROLES = frozenset(("patient", "provider"))
PLATFORMS = frozenset(("ios", "android", "web"))
RESOLUTIONS = frozenset(("240p", "360p", "480p", "720p", "1080p", "1440p", "2160p"))
# Network measures: (name, JSON types allowed, lowest, highest).
NETWORK_FIELDS = (
    ("packet_loss_pct", (int, float), 0.0, 100.0),
    ("jitter_ms", (int, float), 0.0, 10_000.0),
    ("bitrate_kbps", (int,), 0, 1_000_000),
)
MAX_RECONNECTS = 1000


class ApiError(RuntimeError):
    """The API refused the request for good (a 4xx other than 429): retrying cannot help."""


# --------------------------------------------------------------------------- the contract


def _ts(record: dict, name: str, nullable: bool = False) -> tuple[str, str] | None:
    value = record.get(name)
    if value is None:
        return None if nullable else (v.MISSING_FIELD, f"{name} is missing or null")
    parsed = v.parse_timestamp(value)
    if parsed is None:
        return v.INVALID_TIMESTAMP, f"{name} is not ISO 8601 with an offset"
    if not v.in_time_range(parsed):
        return v.OUT_OF_RANGE, f"{name} is outside the accepted time range"
    return None


def _number(value: object, types: tuple[type, ...]) -> bool:
    if type(value) is bool or type(value) not in types:
        return False
    return not (isinstance(value, float) and not math.isfinite(value))


def check_call_session(record: object) -> tuple[str, str] | None:
    """None for a record that keeps the contract, else (reason, detail); the first failing rule wins."""
    if not isinstance(record, dict):
        return v.NOT_AN_OBJECT, f"a {type(record).__name__}, not an object"
    version = record.get("schema_version")
    if version is None:
        return v.MISSING_FIELD, "schema_version is missing or null"
    if version != v.SCHEMA_VERSION or type(version) is not int:
        return v.UNSUPPORTED_SCHEMA_VERSION, "schema_version is not 1"
    for name in ("session_id", "appointment_id", "status"):
        value = record.get(name)
        if value is None:
            return v.MISSING_FIELD, f"{name} is missing or null"
        if type(value) is not str:
            return v.INVALID_TYPE, f"{name} is not a string"
    if not record["session_id"] or len(record["session_id"]) > 200:
        return v.INVALID_FORMAT, "session_id is empty or longer than 200 characters"
    if not v.APPOINTMENT_ID.fullmatch(record["appointment_id"]):
        return v.INVALID_FORMAT, "appointment_id does not follow APT-<digits>"
    if record["status"] not in STATUSES:
        return v.UNKNOWN_ENUM, "status is not one of in_progress, ended, finalized"
    for name, nullable in (("updated_at", False), ("scheduled_start", False), ("started_at", False)):
        if found := _ts(record, name, nullable):
            return found
    if found := _ts(record, "ended_at", nullable=True):
        return found
    participants = record.get("participants")
    if participants is None:
        return v.MISSING_FIELD, "participants is missing or null"
    if type(participants) is not list:
        return v.INVALID_TYPE, "participants is not an array"
    roles = []
    for index, participant in enumerate(participants):
        if found := _check_participant(participant, f"participants[{index}]"):
            return found
        roles.append(participant["role"])
    if sorted(roles) != ["patient", "provider"]:
        return v.OUT_OF_RANGE, "participants must be one patient and one provider"
    return None


def _check_participant(participant: object, where: str) -> tuple[str, str] | None:
    if not isinstance(participant, dict):
        return v.INVALID_TYPE, f"{where} is not an object"
    for name, allowed in (("role", ROLES), ("platform", PLATFORMS)):
        value = participant.get(name)
        if value is None:
            return v.MISSING_FIELD, f"{where}.{name} is missing or null"
        if type(value) is not str:
            return v.INVALID_TYPE, f"{where}.{name} is not a string"
        if value not in allowed:
            return v.UNKNOWN_ENUM, f"{where}.{name} is outside the contract"
    app_version = participant.get("app_version")
    if app_version is not None and type(app_version) is not str:
        return v.INVALID_TYPE, f"{where}.app_version is not a string"
    if found := _ts(participant, "joined_at"):
        return v.MISSING_FIELD if found[0] == v.MISSING_FIELD else found[0], f"{where}.{found[1]}"
    if found := _ts(participant, "left_at", nullable=True):
        return found[0], f"{where}.{found[1]}"
    reconnects = participant.get("reconnects")
    if reconnects is not None:
        if not _number(reconnects, (int,)):
            return v.INVALID_TYPE, f"{where}.reconnects is not a whole number"
        if not 0 <= reconnects <= MAX_RECONNECTS:
            return v.OUT_OF_RANGE, f"{where}.reconnects is outside 0..{MAX_RECONNECTS}"
    network = participant.get("network")
    if network is None:
        return None
    if not isinstance(network, dict):
        return v.INVALID_TYPE, f"{where}.network is not an object"
    for name, types, low, high in NETWORK_FIELDS:
        value = network.get(name)
        if value is None:
            return v.MISSING_FIELD, f"{where}.network.{name} is missing or null"
        if not _number(value, types):
            return v.INVALID_TYPE, f"{where}.network.{name} is not a number of the right kind"
        if not low <= value <= high:
            return v.OUT_OF_RANGE, f"{where}.network.{name} is outside {low}..{high}"
    resolution = network.get("resolution")
    if resolution is not None and resolution not in RESOLUTIONS:
        return v.UNKNOWN_ENUM, f"{where}.network.resolution is outside the contract"
    return None


# --------------------------------------------------------------------------- the client


@dataclass
class ClientStats:
    requests: int = 0
    rate_limited: int = 0
    server_errors: int = 0
    transport_errors: int = 0

    def as_dict(self) -> dict:
        return {
            "requests": self.requests,
            "rate_limited": self.rate_limited,
            "server_errors": self.server_errors,
            "transport_errors": self.transport_errors,
        }


@dataclass
class ApiClient:
    """GETs of the resource, retried the way the module's docstring says; one `httpx.Client` (keep-alive)."""

    url: str
    token: str | None
    backoff: Backoff
    timeout_s: float = 30.0
    max_attempts: int = 8
    max_retry_after_s: float = 60.0
    stats: ClientStats = field(default_factory=ClientStats)

    def __post_init__(self) -> None:
        headers = {"Accept": "application/json", "User-Agent": "telemed-elt-api-loader"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        self._client = httpx.Client(base_url=self.url, headers=headers, timeout=self.timeout_s)

    def close(self) -> None:
        self._client.close()

    def page(self, params: dict[str, str]) -> dict:
        what = f"GET {self.url}{RESOURCE}"
        for attempt in range(1, self.max_attempts + 1):
            last = attempt == self.max_attempts
            self.stats.requests += 1
            try:
                response = self._client.get(RESOURCE, params=params)
            except httpx.TransportError as exc:  # refused, reset, timed out (a slow response is this)
                self.stats.transport_errors += 1
                if last:
                    raise RetryGaveUp(f"{what} failed {attempt} times; last: {type(exc).__name__}: {exc}") from exc
                self.backoff.wait(what, exc, self.url)
                continue
            if response.status_code == 429:
                self.stats.rate_limited += 1
                if last:
                    raise RetryGaveUp(f"{what} was rate limited {attempt} times in a row")
                delay = retry_after(response.headers.get("Retry-After"), self.max_retry_after_s)
                log.warning("%s: 429 rate limited; waiting %.1fs (Retry-After)", what, delay)
                if self.backoff.stopping.wait(delay):
                    raise RetryInterrupted(f"interrupted by a signal while waiting out a 429 of {what}")
                continue
            if response.status_code >= 500:
                self.stats.server_errors += 1
                error = httpx.HTTPStatusError(
                    f"HTTP {response.status_code}", request=response.request, response=response
                )
                if last:
                    raise RetryGaveUp(f"{what} answered HTTP {response.status_code} {attempt} times in a row")
                self.backoff.wait(what, error, None)
                continue
            if response.status_code != 200:
                raise ApiError(f"{what} answered HTTP {response.status_code}: {_error_text(response)}")
            try:
                body = response.json()
            except ValueError as exc:  # a broken page is the server's fault: fetch it again
                self.stats.server_errors += 1
                if last:
                    raise RetryGaveUp(f"{what} answered a page that is not JSON {attempt} times") from exc
                self.backoff.wait(what, exc, None)
                continue
            if not isinstance(body, dict) or not isinstance(body.get("data"), list):
                raise ApiError(f"{what} answered a page without a data array")
            self.backoff.reset()
            return body
        raise AssertionError("unreachable")  # pragma: no cover


def retry_after(header: str | None, cap_s: float) -> float:
    """Seconds to wait for a ``Retry-After`` (seconds or an HTTP date); 1 s when absent or unreadable."""
    if header is None:
        return 1.0
    try:
        seconds = float(header)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(header)
        except (TypeError, ValueError):
            return 1.0
        seconds = (when - datetime.now(timezone.utc)).total_seconds()
    if not math.isfinite(seconds):
        return 1.0
    return min(max(seconds, 0.0), cap_s)


def _error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
        return str(body.get("detail") or body.get("error") or body)[:300]
    except ValueError:
        return response.text[:300]


# --------------------------------------------------------------------------- the load


@dataclass
class Position:
    """The connector's stored position in raw.api_cursors."""

    watermark: datetime | None = None
    scan_since: datetime | None = None
    page_cursor: str | None = None


def source_name(url: str) -> str:
    """The cursor row's key: the resource at this API (another platform's position is not ours)."""
    return f"call_sessions@{url}"


def read_position(cur, source: str) -> Position:
    cur.execute("select watermark, scan_since, page_cursor from raw.api_cursors where source = %s", (source,))
    found = cur.fetchone()
    return Position(*found) if found else Position()


def _write_position(cur, source: str, position: Position) -> None:
    cur.execute(
        "insert into raw.api_cursors (source, watermark, scan_since, page_cursor) values (%s, %s, %s, %s)"
        " on conflict (source) do update set watermark = excluded.watermark, scan_since = excluded.scan_since,"
        " page_cursor = excluded.page_cursor, updated_at = now()",
        (source, position.watermark, position.scan_since, position.page_cursor),
    )


_INSERT_ROWS = (
    "insert into raw.call_sessions (session_id, updated_at, appointment_id, status, schema_version, payload,"
    " api_url, _load_run_id) values %s on conflict (session_id, updated_at) do nothing"
)
_INSERT_REJECTED = (
    "insert into raw.call_sessions_rejected (reason, error_detail, session_id, payload, record_sha256, api_url,"
    " _load_run_id) values %s on conflict (record_sha256) do nothing"
)


@dataclass
class Page:
    rows: list[tuple]
    rejected: list[tuple]
    newest: datetime | None


def _payload_text(record: object) -> tuple[str | None, tuple[str, str] | None]:
    """The record as the JSON text raw stores, or the reason Postgres could not store it."""
    try:
        text = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        text.encode()
    except ValueError:  # NaN or Infinity; UnicodeEncodeError (an unpaired surrogate) is a ValueError too
        return None, (v.INVALID_JSON, "a number or a character that Postgres's jsonb cannot hold")
    except RecursionError:
        return None, (v.UNDECODABLE, "the record is nested too deep to store")
    if "\\u0000" in text:
        return None, (v.INVALID_JSON, "a \\u0000 character, which Postgres's jsonb cannot hold")
    return text, None


def split_page(records: list, url: str, run_id: int) -> Page:
    """The page's records as raw rows and quarantine rows, and the newest valid ``updated_at``."""
    rows, rejected, newest = [], [], None
    for record in records:
        text, problem = _payload_text(record)
        if problem is None:
            try:
                problem = check_call_session(record)
            except RecursionError:
                problem = (v.UNDECODABLE, "the record is nested too deep to check")
        if problem is not None:
            # The quarantine key: the record's content (a look-back re-read finds it again, unchanged).
            shown = text if text is not None else repr(record)
            session_id = record.get("session_id") if isinstance(record, dict) else None
            rejected.append(
                (
                    problem[0],
                    problem[1],
                    session_id if isinstance(session_id, str) else None,
                    text,
                    hashlib.sha256(shown.encode(errors="backslashreplace")).hexdigest(),
                    url,
                    run_id,
                )
            )
            continue
        updated = v.parse_timestamp(record["updated_at"])
        newest = updated if newest is None or updated > newest else newest
        rows.append(
            (
                record["session_id"],
                v.timestamp_for_postgres(record["updated_at"], updated),
                record["appointment_id"],
                record["status"],
                record["schema_version"],
                text,
                url,
                run_id,
            )
        )
    return Page(rows, rejected, newest)


def _insert_versions(cur, rows: list[tuple]) -> tuple[int, list[tuple]]:
    """Insert the page's valid versions; a row Postgres refuses on its data (SQLSTATE class 22, 23, 54)
    is quarantined as ``unstorable`` instead of failing the page. Returns (inserted, quarantine rows)."""
    cur.execute("savepoint call_sessions")
    try:
        inserted = insert_values(cur, _INSERT_ROWS, rows)
    except psycopg2.Error as exc:
        if not is_data_error(exc):
            raise
        cur.execute("rollback to savepoint call_sessions")
    else:
        cur.execute("release savepoint call_sessions")
        return inserted, []
    inserted, refused = 0, []
    for row in rows:
        try:
            inserted += insert_values(cur, _INSERT_ROWS, [row])
        except psycopg2.Error as exc:
            if not is_data_error(exc):
                raise
            cur.execute("rollback to savepoint call_sessions")
            digest = hashlib.sha256(row[5].encode()).hexdigest()
            refused.append((v.UNSTORABLE, refusal(exc), row[0], None, digest, row[6], row[7]))
        cur.execute("release savepoint call_sessions")
        cur.execute("savepoint call_sessions")
    cur.execute("release savepoint call_sessions")
    return inserted, refused


def _commit_page(cur, run: LoadRun, source: str, page: Page, position: Position) -> RunCounts:
    """One transaction: the page's versions, its quarantined records, the position and the run's counters."""
    # A session seen twice on one page (a revision during the scan) is one row per version already; a
    # duplicate key within the statement would make Postgres refuse the whole insert.
    unique = list({(row[0], row[1]): row for row in page.rows}.values())
    loaded, refused = _insert_versions(cur, unique)
    rejected = page.rejected + refused
    quarantined = insert_values(cur, _INSERT_REJECTED, rejected, droppable=(3,))
    _write_position(cur, source, position)
    counts = RunCounts(
        read=len(page.rows) + len(page.rejected),
        loaded=loaded,
        rejected=quarantined,
        duplicates=len(page.rows) - len(refused) - loaded + len(rejected) - quarantined,
    )
    run.advance(cur, counts)
    return counts


def run_api(
    settings: Settings,
    *,
    limit: int = DEFAULT_LIMIT,
    lookback_s: float = DEFAULT_LOOKBACK_S,
    timeout_s: float = 30.0,
    max_attempts: int = 8,
    max_retry_after_s: float = 60.0,
    max_retry_seconds: float = 300.0,
    backoff: Backoff | None = None,
    max_pages: int | None = None,
) -> tuple[str, dict]:
    """One incremental scan of the API into raw; returns (status, summary). ``max_pages`` stops early (tests)."""
    url = settings.video_api_url
    source = source_name(url)
    backoff = backoff or Backoff(max_retry_seconds)
    run = LoadRun(LOADER_NAME)
    session = PgSession(settings, backoff)
    client = ApiClient(url, settings.video_api_bearer(), backoff, timeout_s, max_attempts, max_retry_after_s)
    progress = Progress("call sessions", "records")
    summary: dict = {"api_url": url, "pages": 0}
    try:
        with run_outcome(ApiError) as outcome:
            session.run("opening the load run", lambda conn: run.open(conn, {"api_url": url, "lookback_s": lookback_s}))
            position = session.transaction("reading the API position", lambda cur: read_position(cur, source))
            if position.page_cursor is None:
                since = position.watermark - timedelta(seconds=lookback_s) if position.watermark else None
                position = Position(position.watermark, since, None)
            else:
                log.info("resuming the scan since %s after the last committed page", position.scan_since)
            summary["scan_since"] = position.scan_since.isoformat() if position.scan_since else None
            while max_pages is None or summary["pages"] < max_pages:
                params = {"limit": str(limit)}
                if position.scan_since is not None:
                    params["updated_since"] = position.scan_since.isoformat()
                if position.page_cursor:
                    params["cursor"] = position.page_cursor
                body = client.page(params)
                page = split_page(body["data"], url, run.run_id)
                more = bool(body.get("has_more")) and bool(body["data"])
                newest = position.watermark
                if page.newest is not None and (newest is None or page.newest > newest):
                    newest = page.newest
                after = Position(
                    newest, position.scan_since if more else None, body.get("next_cursor") if more else None
                )
                counts = session.transaction(
                    "writing a page of call sessions",
                    lambda cur, page=page, after=after: _commit_page(cur, run, source, page, after),
                )
                run.counts.add(counts)
                summary["pages"] += 1
                progress.update(counts.read)
                position = after
                if not more:
                    break
            summary["watermark"] = position.watermark.isoformat() if position.watermark else None
    finally:
        progress.close()
        client.close()
    summary["http"] = client.stats.as_dict()
    status, error = outcome.status, outcome.error
    run.finish(session, status, error, summary)
    session.close()
    summary.update(status=status, error=error, run_id=run.run_id, counts=run.counts)
    return status, summary


def embedded_api_listening(settings: Settings) -> bool:
    """Whether the embedded API (``make up``) listens; `python -m loaders load` skips the API without it."""
    try:
        with socket.create_connection(("127.0.0.1", settings.video_api_port), timeout=1.0):
            return True
    except OSError:
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loaders api", description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=DEFAULT_LIMIT, help="records per page (default %(default)s)")
    parser.add_argument(
        "--lookback-seconds",
        type=float,
        default=DEFAULT_LOOKBACK_S,
        help="each scan starts this far below the newest updated_at loaded (default 1 h)",
    )
    parser.add_argument("--timeout-seconds", type=float, default=30.0, help="one request's timeout (default 30)")
    parser.add_argument("--max-attempts", type=int, default=8, help="tries per request (default 8)")
    parser.add_argument(
        "--max-retry-after", type=float, default=60.0, help="the longest Retry-After waited out (default 60 s)"
    )
    parser.add_argument(
        "--max-retry-seconds", type=float, default=300.0, help="give up on Postgres or the API after this"
    )
    args = parser.parse_args(argv)
    if not 1 <= args.limit <= 1000:
        parser.error("--limit must be between 1 and 1000")
    settings = Settings.from_env()
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request would drown the run's own
    started = time.monotonic()
    backoff = Backoff(args.max_retry_seconds)
    with stop_on_signals(backoff):
        status, summary = run_api(
            settings,
            limit=args.limit,
            lookback_s=args.lookback_seconds,
            timeout_s=args.timeout_seconds,
            max_attempts=args.max_attempts,
            max_retry_after_s=args.max_retry_after,
            backoff=backoff,
        )
    c, http = summary["counts"], summary["http"]
    print(
        f"api {status}: read {c.read}, loaded {c.loaded}, rejected {c.rejected}, duplicates skipped "
        f"{c.duplicates} in {summary['pages']} pages, {http['requests']} requests ({http['rate_limited']} rate "
        f"limited, {http['server_errors']} server errors, {http['transport_errors']} transport errors) in "
        f"{time.monotonic() - started:.1f}s (run {summary['run_id']})"
    )
    if summary["error"]:
        print(f"error: {summary['error']}", file=sys.stderr)
    return 0 if status == "succeeded" else 1
