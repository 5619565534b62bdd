"""``python -m loaders video-api``: the video platform's call-sessions API, served from the generated world.

A real HTTP server on loopback (the standard library's threading server) over the generator's
``<out>/video_api/call_sessions.jsonl``:

    GET /v1/call-sessions?updated_since=<ISO 8601>&cursor=<opaque>&limit=<1..1000>
    Authorization: Bearer <token>
    -> 200 {"data": [record, ...], "next_cursor": "..." | null, "has_more": true | false}

Each session is shown as it stands at the server's clock (``--as-of``, default the generator's): the
latest of its versions by then, with that version's ``updated_at``. Records come in (``updated_at``,
key) order, ``updated_since`` inclusive; the cursor names the last record of the page, so a page is the
same whatever changed before it, and a record revised during a scan shows up again later in it.

Like a real API it misbehaves, at rates and from a seed of its own so tests can inject faults
deterministically: HTTP 429 with ``Retry-After``, 500/502/503, responses delayed by seconds; the data
file's dirty records break the contract. A missing or wrong token gets 401, a bad parameter 400. The
file is read again when it changes (the generator's late round replaces it), so the embedded server
started by ``make up`` serves whatever was generated last.

``python -m loaders video-api run -- COMMAND`` serves on a free port for the length of one command, with
TELEMED_VIDEO_API_URL and TELEMED_VIDEO_API_TOKEN set for it (``make dbt-test`` loads its world so).
"""

from __future__ import annotations

import argparse
import base64
import bisect
import json
import logging
import os
import secrets
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from runtime.settings import Settings
from simulator.randomness import seeded
from simulator.seasonality import ClinicClock
from simulator.video_api import FILE_NAME, STATUSES

log = logging.getLogger(__name__)

PATH = "/v1/call-sessions"
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


@dataclass
class Faults:
    """How the server misbehaves: shares of requests answered 429 or 5xx, or delayed by ``slow_s``."""

    rate_429: float = 0.0
    rate_5xx: float = 0.0
    rate_slow: float = 0.0
    slow_s: float = 2.0
    retry_after_s: int = 1
    seed: int = 0


class SessionStore:
    """The data file, read again when it changes, and the sessions' state at the server's clock."""

    def __init__(self, path: Path, as_of: int | None = None):
        self.path = path
        self.as_of_override = as_of
        self.clock = ClinicClock()
        self._lock = threading.Lock()
        self._stamp: tuple | None = None
        self._entries: list[tuple[list[int], object, str]] = []  # (times, record, key)
        self._file_as_of: int | None = None
        self._view: tuple[int | None, list[tuple[int, str]], list[tuple[int, str, object]]] | None = None

    def set_as_of(self, as_of: int | None) -> None:
        """Move the server's clock (tests: records revised after a first load)."""
        with self._lock:
            self.as_of_override = as_of
            self._view = None

    def _reload(self) -> None:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            if self._stamp is not None or self._view is None:
                self._stamp, self._entries, self._file_as_of, self._view = None, [], None, None
            return
        stamp = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        if stamp == self._stamp:
            return
        entries, file_as_of = [], None
        with self.path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle):
                item = json.loads(line)
                if item.get("kind") == "header":
                    file_as_of = _epoch(item["as_of"])
                    continue
                record = item["record"]
                key = record.get("session_id") if isinstance(record, dict) else None
                entries.append((item["times"], record, key if isinstance(key, str) else f"~line-{number}"))
        self._stamp, self._entries, self._file_as_of, self._view = stamp, entries, file_as_of, None
        log.info("video API: %d sessions from %s", len(entries), self.path)

    def view(self) -> tuple[list[tuple[int, str]], list[tuple[int, str, object]]]:
        """(sort keys, rows) of every session at the server's clock, in (updated_at, key) order."""
        with self._lock:
            self._reload()
            as_of = self.as_of_override if self.as_of_override is not None else self._file_as_of
            if self._view is None or self._view[0] != as_of:
                rows = []
                for times, record, key in self._entries:
                    shown = [t for t in times if as_of is None or t <= as_of]
                    if shown:
                        rows.append((shown[-1], key, self._render(record, len(shown) - 1, shown[-1], len(times))))
                rows.sort(key=lambda row: (row[0], row[1]))
                self._view = (as_of, [(t, key) for t, key, _ in rows], rows)
            return self._view[1], self._view[2]

    def _render(self, record: object, version: int, at: int, versions: int) -> object:
        """A real session as it stood at its ``version`` (0 in progress, 1 ended, 2 finalized)."""
        if versions == 1 or not isinstance(record, dict):
            return record  # a dirty record: served as written
        shown = json.loads(json.dumps(record))
        shown["status"] = STATUSES[version]
        shown["updated_at"] = self.clock.iso(at)
        if version < 2:
            for participant in shown["participants"]:
                participant["network"] = None
        if version < 1:
            shown["ended_at"] = None
            for participant in shown["participants"]:
                participant["left_at"] = None
                participant["reconnects"] = None
        return shown


def _epoch(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp())


def encode_cursor(t: int, key: str) -> str:
    return base64.urlsafe_b64encode(f"{t}|{key}".encode()).decode().rstrip("=")


def decode_cursor(text: str) -> tuple[int, str]:
    raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
    t, _, key = raw.partition("|")
    return int(t), key


class ApiServer(ThreadingHTTPServer):
    """The call-sessions API on ``(host, port)``; ``start()`` serves in a background thread."""

    daemon_threads = True

    def __init__(self, store: SessionStore, token: str, faults: Faults | None = None, host="127.0.0.1", port=0):
        self.store, self.token = store, token
        self.faults = faults or Faults()
        self._rng = seeded(self.faults.seed)
        self._rng_lock = threading.Lock()
        self.requests = 0
        self.answered: dict[int, int] = {}
        super().__init__((host, port), _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def set_faults(self, faults: Faults) -> None:
        with self._rng_lock:
            self.faults = faults
            self._rng = seeded(faults.seed)

    def draw(self) -> tuple[float, float]:
        """Two uniform draws for the next request's fate, in request order."""
        with self._rng_lock:
            self.requests += 1
            return self._rng.random(), self._rng.random()

    def count(self, status: int) -> None:
        with self._rng_lock:
            self.answered[status] = self.answered.get(status, 0) + 1

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, args=(0.05,), name="video-api", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    server: ApiServer
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes: without this, Nagle's algorithm and the client's delayed ACK
    # hold every response back by some 40 ms.
    disable_nagle_algorithm = True

    def log_message(self, format, *args) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def _send(self, status: int, body: dict, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body, separators=(",", ":")).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)
        self.server.count(status)

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path != PATH:
            self._send(404, {"error": "not_found", "detail": f"no resource {url.path}"})
            return
        if not secrets.compare_digest(self.headers.get("Authorization", ""), f"Bearer {self.server.token}"):
            self._send(401, {"error": "unauthorized", "detail": "a valid bearer token is required"})
            return
        faults = self.server.faults
        fate, slow = self.server.draw()
        if fate < faults.rate_429:
            self._send(
                429, {"error": "rate_limited", "detail": "slow down"}, {"Retry-After": str(faults.retry_after_s)}
            )
            return
        if fate < faults.rate_429 + faults.rate_5xx:
            status = (500, 502, 503)[int(slow * 3)]
            self._send(status, {"error": "server_error", "detail": "the platform had a problem"})
            return
        if slow < faults.rate_slow:
            time.sleep(faults.slow_s)
        try:
            page = self._page(parse_qs(url.query))
        except ValueError as exc:
            self._send(400, {"error": "bad_request", "detail": str(exc)})
            return
        self._send(200, page)

    def _page(self, query: dict[str, list[str]]) -> dict:
        def one(name: str) -> str | None:
            values = query.get(name)
            return values[-1] if values else None

        limit_text = one("limit")
        try:
            limit = DEFAULT_LIMIT if limit_text is None else int(limit_text)
        except ValueError:
            raise ValueError("limit must be a whole number") from None
        if not 1 <= limit <= MAX_LIMIT:
            raise ValueError(f"limit must be between 1 and {MAX_LIMIT}")
        since = one("updated_since")
        since_t = None
        if since is not None:
            try:
                parsed = datetime.fromisoformat(since.replace("Z", "+00:00"))
            except ValueError:
                raise ValueError("updated_since must be ISO 8601 with an offset") from None
            if parsed.tzinfo is None:
                raise ValueError("updated_since must be ISO 8601 with an offset")
            since_t = int(parsed.timestamp()) if parsed.microsecond == 0 else int(parsed.timestamp()) + 1
        keys, rows = self.server.store.view()
        start = 0 if since_t is None else bisect.bisect_left(keys, (since_t, ""))
        cursor = one("cursor")
        if cursor:
            try:
                after = decode_cursor(cursor)
            except ValueError:
                raise ValueError("cursor is not one this API gave out") from None
            start = max(start, bisect.bisect_right(keys, after))
        chosen = rows[start : start + limit]
        has_more = start + limit < len(rows)
        next_cursor = encode_cursor(chosen[-1][0], chosen[-1][1]) if chosen else cursor
        return {"data": [row[2] for row in chosen], "next_cursor": next_cursor, "has_more": has_more}


def token_from(path: Path) -> str:
    """The token in ``path``, made (and kept private) on first use."""
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(24)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token + "\n")
    return token


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m loaders video-api", description=__doc__.split("\n\n")[0])
    parser.add_argument("action", nargs="?", choices=("serve", "run"), default="serve", help="run: ... -- COMMAND")
    parser.add_argument("--data", type=Path, help="folder of call_sessions.jsonl (default: TELEMED_VIDEO_API_DATA)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, help="serve: default TELEMED_VIDEO_API_PORT; run: a free port")
    parser.add_argument("--token-file", type=Path, help="the bearer token (made if missing); default in the state dir")
    parser.add_argument("--as-of", help="the server's clock, ISO 8601 (default: the generator's --as-of)")
    parser.add_argument("--rate-429", type=float, default=0.0, help="share of requests answered 429")
    parser.add_argument("--rate-5xx", type=float, default=0.0, help="share of requests answered 500/502/503")
    parser.add_argument("--rate-slow", type=float, default=0.0, help="share of responses delayed by --slow-seconds")
    parser.add_argument("--slow-seconds", type=float, default=2.0)
    parser.add_argument("--retry-after", type=int, default=1, help="the Retry-After of a 429, in seconds")
    parser.add_argument("--fault-seed", type=int, default=0)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # `run [options] -- COMMAND`: everything after the first -- is the command, never an option of ours.
    command = argv[argv.index("--") + 1 :] if "--" in argv else []
    args = build_parser().parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    settings = Settings.from_env()
    data = args.data or settings.video_api_data_dir
    store = SessionStore(data / FILE_NAME, _epoch(args.as_of) if args.as_of else None)
    faults = Faults(args.rate_429, args.rate_5xx, args.rate_slow, args.slow_seconds, args.retry_after, args.fault_seed)
    token = token_from(args.token_file or settings.video_api_token_file)
    if args.action == "run":
        if not command:
            print("video-api run needs a command after --", file=sys.stderr)
            return 2
        server = ApiServer(store, token, faults, args.host, args.port or 0)
        server.start()
        try:
            env = {**os.environ, "TELEMED_VIDEO_API_URL": server.url, "TELEMED_VIDEO_API_TOKEN": token}
            return subprocess.call(command, env=env)
        finally:
            server.stop()
    server = ApiServer(store, token, faults, args.host, args.port or settings.video_api_port)
    log.info("video API serving %s on %s%s", data, server.url, PATH)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "INFO").upper())
    sys.exit(main())
