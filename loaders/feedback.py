"""``python -m loaders feedback``: feedback form files from the landing (a folder or an S3 prefix) into raw.

Every file under the landing folder, or object under ``s3://bucket/prefix/`` (loaders/landing.py), is
considered (a stray non-JSON file is recorded as failed, not ignored), except hidden ones, where writers
stage files before renaming them into place. Files are listed and loaded in batches, so 100k files cost
no more memory than one batch; each batch is one transaction, so a run killed midway leaves no file half
loaded, and the next run goes on:

- an object whose key and ETag are in raw.feedback_files was loaded before and is not even fetched;
- a file whose sha256 is in raw.feedback_files was loaded before and is skipped;
- a file that is not JSON, or not valid JSON, gets a ``failed`` row with the reason; the others load;
- each form is validated: valid forms go to raw.patient_feedback (a feedback_id already there is skipped
  and counted as a duplicate), invalid ones to raw.patient_feedback_rejected with the reason.

Three stages overlap: a read-ahead thread lists the landing, has a few reader threads read and hash each
group of files, and looks the batch up in raw.feedback_files; the caller's thread validates the forms of
the batch before; a background writer commits the one before that. Many small files cost their open,
read, hash, decode and record in Python, all under one GIL: the per-file path is kept short (see
`one_form`, `landing.read_files`), and during a run `prompt_handoffs` has a thread that computes hand
the GIL over within 0.5 ms, so the writer's statements follow each other without waiting 5 ms each.
"""

from __future__ import annotations

import argparse
import functools
import logging
import queue
import re
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

from pydantic_core import from_json

from loaders.landing import S3_PAGE_SIZE, LandingSource, LandingUnavailable, ReadResult, open_landing
from loaders.pgcopy import escape
from loaders.rawwrite import BackgroundWriter, PgSession, RawTable, insert_values, prompt_handoffs
from loaders.retry import Backoff, stop_on_signals
from loaders.runs import LoadRun, RunCounts, run_outcome
from loaders.validation import (
    INVALID_JSON,
    JSON_DECODER,
    NOT_JSON,
    UNDECODABLE,
    UNSTORABLE,
    check_form,
    storable_json_text,
    storable_text,
)
from runtime import objectstore
from runtime.processes import fewer_collections
from runtime.progress import Progress
from runtime.settings import DEFAULT_FEEDBACK_MAX_FILE_BYTES, Settings, SettingsError

log = logging.getLogger(__name__)

LOADER_NAME = "feedback"
# A batch ends at this much file content or at BATCH_FILES files (--batch-files), whichever comes first.
# One-form files of the patient portal are about 400 bytes, so the count ends their batches: each batch
# costs a commit and a few statements, which 5,000 files share (1,000 left the loader at 0.2x COPY).
BATCH_BYTES = 4 << 20
BATCH_FILES = 5000
# The first batch ends at this many files, each next one at twice the one before, up to BATCH_FILES: the
# writer starts once a tenth of a full batch is read and validated, not idle while a whole one is.
FIRST_BATCH_FILES = 500
# Batches read ahead of the one being validated.
READ_AHEAD = 2

_COLUMNS = (
    "feedback_id, appointment_id, submitted_at, payload, source_path, source_sha256, form_index,"
    " schema_version, _load_run_id"
)
_INSERT_REJECTED = """
insert into raw.patient_feedback_rejected (
    reason, error_detail, feedback_id, payload, source_path, source_sha256, form_index, _load_run_id
) values %s
on conflict (source_sha256, form_index) do nothing
"""
_WHITESPACE = re.compile(r"[ \t\n\r]*")


@dataclass(slots=True)
class LandedFile:
    """One file of a batch and what became of it."""

    path: str  # relative to the landing folder or prefix
    size: int
    sha256: str
    status: str = "loaded"
    reason: str | None = None
    error: str | None = None
    object_url: str | None = None  # an object's s3://bucket/key and ETag; None for a file
    etag: str | None = None
    read: int = 0
    valid: int = 0
    loaded: int = 0
    rejected: int = 0
    unstorable: int = 0  # valid forms Postgres refused (set by the write)
    duplicates: int = 0
    copy_path: str = ""  # path, COPY-escaped (set by read_file, used again by the file record)


@dataclass
class FileBatch:
    files: list[LandedFile] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)  # COPY-escaped feedback_id of each line
    # The file, form index and feedback_id of each line
    sources: list[tuple[LandedFile, int, str]] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)
    rejects: list[tuple] = field(default_factory=list)


def split_forms(text: str) -> list[tuple[object, str]]:
    """The forms of a file as (decoded value, its exact JSON text); ValueError when the file is not valid JSON.

    A file holds one object or an array of them. For an array each element's own text is cut out of the
    file with raw_decode positions, so a form's payload is its original text without re-serialising it.
    """
    raw_decode = JSON_DECODER.raw_decode
    ws = _WHITESPACE.match
    start = ws(text, 0).end()
    if text.startswith("[", start):
        forms = []
        pos = ws(text, start + 1).end()
        if text.startswith("]", pos):
            pos += 1
        else:
            while True:
                value, end = raw_decode(text, pos)
                forms.append((value, text[pos:end]))
                pos = ws(text, end).end()
                if text.startswith(",", pos):
                    pos = ws(text, pos + 1).end()
                    continue
                if text.startswith("]", pos):
                    pos += 1
                    break
                raise ValueError(f"expected ',' or ']' at character {pos}")
    else:
        value, pos = raw_decode(text, start)
        forms = [(value, text[start:pos])]
    if ws(text, pos).end() != len(text):
        raise ValueError(f"extra data after the JSON value at character {pos}")
    return forms


_BOM = b"\xef\xbb\xbf"


def one_form(data: bytes) -> tuple[object, str] | None:
    """The common file's shortcut: (value, exact JSON text) when the file is one JSON object with only
    whitespace around it (and an optional byte order mark), the one form `split_forms` of its decoded
    text would return; None otherwise, and `read_file` takes the general path, which also words whatever
    is wrong.

    The object is decoded by pydantic-core's parser (about three times as fast as the json module's on a
    form), which accepts no text the json module refuses and decodes what both accept to equal values:
    it refuses NaN and Infinity (allow_inf_nan=False), unpaired surrogates and anything nested deeper
    than about 200 levels, all of which the json module's path then judges (a property test,
    loaders/tests/properties/test_feedback_properties.py, holds the two to the same answers).
    """
    try:
        text = (data[3:] if data.startswith(_BOM) else data).decode()
    except UnicodeDecodeError:
        return None
    body = text.strip(" \t\n\r")
    if not body.startswith("{"):
        return None
    try:
        return from_json(body, allow_inf_nan=False, cache_strings="keys"), body
    except Exception:  # noqa: BLE001 - the general path meets it again and records why
        return None


def read_file(batch: FileBatch, landed: LandedFile, data: bytes, tail: str) -> None:
    """Validate one file's forms into the batch (or mark the file failed)."""
    single = one_form(data) if landed.path.endswith(".json") else None
    if single is not None:
        forms: list[tuple[object, str]] | tuple[tuple[object, str]] = (single,)
    else:
        stripped = data.lstrip(b" \t\r\n\xef\xbb\xbf")
        if not landed.path.endswith(".json") or stripped[:1] not in (b"{", b"["):
            landed.status, landed.reason = "failed", NOT_JSON
            landed.error = (
                "not a .json file" if not landed.path.endswith(".json") else "content is not a JSON object/array"
            )
            return
        try:
            text = data.decode("utf-8-sig")
            forms = split_forms(text)
        except (UnicodeDecodeError, ValueError) as exc:
            landed.status, landed.reason = "failed", INVALID_JSON
            landed.error = f"not valid UTF-8 JSON: {str(exc).splitlines()[0][:200]}"
            return
        except Exception as exc:  # noqa: BLE001 - whatever else the decoder raises (RecursionError on deep nesting)
            landed.status, landed.reason = "failed", UNDECODABLE
            landed.error = f"the JSON decoder raised {type(exc).__name__}"
            return
    path, sha = escape(landed.path), landed.sha256
    landed.copy_path = path
    seen, lines = batch.seen, batch.lines
    for index, (form, form_text) in enumerate(forms):
        landed.read += 1
        try:
            problem, submitted_at = check_form(form)
            storable = storable_json_text(form_text)
        except Exception as exc:  # noqa: BLE001 - whatever a check raises about one form
            problem, storable = (UNDECODABLE, f"the validator raised {type(exc).__name__}"), False
        else:
            if problem is None and not storable:
                problem = INVALID_JSON, "holds a NUL character or an unpaired surrogate"
        if problem is not None:
            feedback_id = form.get("feedback_id") if type(form) is dict else None
            payload = form_text if storable else None
            batch.rejects.append(
                (
                    problem[0],
                    problem[1],
                    feedback_id if storable_text(feedback_id) else None,
                    payload,
                    landed.path,
                    sha,
                    index,
                )
            )
            landed.rejected += 1
            continue
        raw_id = form["feedback_id"]
        feedback_id = escape(raw_id)
        if feedback_id in seen:
            landed.duplicates += 1
            continue
        seen.add(feedback_id)
        landed.valid += 1
        batch.ids.append(feedback_id)
        batch.sources.append((landed, index, raw_id))
        lines.append(
            f"{feedback_id}\t{escape(form['appointment_id'])}\t{submitted_at}\t{escape(form_text)}\t"
            f"{path}\t{sha}\t{index}{tail}"
        )


_FILE_COLUMNS = (
    "path, size_bytes, sha256, status, reason, error, forms_read, forms_loaded, forms_rejected, forms_duplicate,"
    " object_url, object_etag, _load_run_id"
)


def _text_or_null(value: str | None) -> str:
    return "\\N" if value is None else escape(value)


class FeedbackLoader:
    """Reads ahead, validates batch N+1 in the caller's thread while a background writer commits batch N.

    ``landing`` is a folder, ``s3://bucket/prefix/`` or a `LandingSource` (the caller's to close).
    """

    def __init__(
        self,
        settings: Settings,
        landing: Path | str | LandingSource,
        batch_files: int = BATCH_FILES,
        max_retry_seconds: float = 300,
        max_file_bytes: int | None = None,
        page_size: int = S3_PAGE_SIZE,
    ):
        self.settings = settings
        self.batch_files = batch_files
        self.max_file_bytes = max_file_bytes or settings.feedback_max_file_bytes
        self.run = LoadRun(LOADER_NAME)
        self.backoff = Backoff(max_retry_seconds)
        self._owns_source = not isinstance(landing, LandingSource)
        self.source = open_landing(landing, self.backoff, page_size)
        self.landing = self.source.url
        self.counts = RunCounts()
        self.files = {"seen": 0, "loaded": 0, "failed": 0, "skipped": 0}
        self.forms = RawTable("raw.patient_feedback", _COLUMNS, "feedback_id", "_stage_feedback")
        # File records go in like forms: COPY straight into the table, keyed on sha256 (a file another
        # loader recorded meanwhile takes the general path, insert ... on conflict do nothing).
        self.file_records = RawTable("raw.feedback_files", _FILE_COLUMNS, "sha256", "_stage_files")
        setup = self.forms.ddl + ";" + self.file_records.ddl
        # One session per thread: the read-ahead looks up known files, the writer writes batches.
        self.reader_session = PgSession(settings, self.backoff, setup)
        self.writer_session = PgSession(settings, self.backoff, setup)
        # The sha256 of this run's files in batches that may not be committed yet, so a copy under another
        # name is skipped before raw can tell; each batch's are forgotten once a lookup began after its
        # commit (raw answers for it from then on), so memory holds a few batches, not every file of the run.
        self._seen_shas: set[str] = set()
        self._seen_batches: deque[tuple[int, list[str]]] = deque()  # (batch number, its sha256)
        self._submitted = 0  # batches handed to the writer in this run, numbered from 0 in order
        self._committed = 0  # of those, how many the writer has committed (it commits them in order)
        self._read_files = self._read_bytes = 0  # files read in this loader's runs, and their bytes
        self._readers = ThreadPoolExecutor(max_workers=self.source.reader_threads, thread_name_prefix="feedback-reader")
        # The ingest service's metrics (loaders/serve.py): told each batch's counts and the seconds its
        # transaction took, once it is committed.
        self.on_commit: Callable[[RunCounts, float], None] | None = None

    def run_once(self) -> tuple[str, str | None]:
        # A run starts with nothing in flight: an earlier run's batches are in raw, or were never committed
        # (that run failed) and must be read again, not skipped as copies.
        self._seen_shas.clear()
        self._seen_batches.clear()
        self._submitted = self._committed = 0
        details = {"landing": self.source.url}
        progress = Progress("feedback", "files")
        writer: BackgroundWriter[FileBatch, RunCounts] = BackgroundWriter(self._write_batch, "feedback-writer")
        reading = _ReadAhead(self)
        try:
            with run_outcome(LandingUnavailable) as outcome:
                self.reader_session.run("opening the load run", lambda conn: self.run.open(conn, details))
                try:
                    self._load(reading, writer, progress)
                except OSError as exc:  # the landing folder itself cannot be listed
                    raise LandingUnavailable(
                        f"cannot list the landing folder {self.source.url}: {exc.strerror}"
                    ) from exc
        finally:
            reading.stop()
            writer.close()
            self._readers.shutdown(wait=True)
            if self._owns_source:
                self.source.close()
            progress.close()
        final = {**details, "files": self.files}
        self.run.finish(self.reader_session, outcome.status, outcome.error, final)
        self.reader_session.close()
        self.writer_session.close()
        return outcome.status, outcome.error

    def _load(self, reading: _ReadAhead, writer: BackgroundWriter[FileBatch, RunCounts], progress: Progress) -> None:
        """Every batch of the landing: read ahead, validated here, written in the background."""
        if not self.source.exists():
            log.info("landing folder %s does not exist: nothing to load", self.source.url)
            return
        # The garbage collector every 50,000 allocations while batches are read: a batch keeps thousands of
        # files' objects alive, which each older collection walked (one-form files: about 5% faster).
        with prompt_handoffs(), fewer_collections():
            for listed, hashed, already, skipped, committed in reading.start():
                self.files["seen"] += skipped
                self.files["skipped"] += skipped
                batch = self._prepare(hashed, already, committed)
                if batch.files:
                    self._finish(writer.submit(batch))
                    # Every file of the batch brought a digest new to the run: remembered under the batch's
                    # number until a lookup begins after its commit (`_forget_committed`).
                    self._seen_batches.append((self._submitted, [landed.sha256 for landed in batch.files]))
                    self._submitted += 1
                progress.update(listed)
            self._finish(writer.finished(block=True))

    def _read_some(self, listing: Iterator[object], files: int) -> tuple[int, list[ReadResult], int]:
        """The next batch: up to ``files`` entries or ``BATCH_BYTES`` of content, read and hashed;
        with the number of entries listed, and of those left out unread: objects whose key and ETag
        raw.feedback_files holds.

        Files are read by the source's threads, a group of them per task (os.read and the network release
        the GIL), so a folder that is not in the page cache, or a bucket, has several requests in flight.
        """
        listed = skipped = 0
        hashed: list[ReadResult] = []
        size = 0
        source = self.source
        threads, per_task = source.reader_threads, source.read_group
        read = functools.partial(source.read, max_bytes=self.max_file_bytes)
        while listed < files and size < BATCH_BYTES:
            # As many entries as the files read so far say fit in what is left of BATCH_BYTES (32 a thread
            # before any is read), so a batch of large files does not overshoot it by a whole chunk.
            want = min(per_task * threads, files - listed)
            if self._read_files:
                fit = (BATCH_BYTES - size) * self._read_files // max(self._read_bytes, 1) + 1
                want = min(want, max(fit, threads))
            else:
                want = min(want, 32 * threads)
            chunk = list(islice(listing, want))
            if not chunk:
                break
            listed += len(chunk)
            if source.keyed_before_read:
                fresh = self._not_recorded(chunk)
                skipped += len(chunk) - len(fresh)
                chunk = fresh
            step = min(per_task, -(-len(chunk) // threads)) or 1  # every thread has a share of a short chunk
            groups = [chunk[i : i + step] for i in range(0, len(chunk), step)]
            for group in self._readers.map(read, groups):
                for found in group:
                    if found[2] is None:
                        log.warning("%s vanished before it was read", source.name(found[0]))
                        continue
                    hashed.append(found)
                    if found[1] is not None:
                        size += len(found[1])
                        self._read_files += 1
                        self._read_bytes += len(found[1])
        return listed, hashed, skipped

    def _not_recorded(self, entries: list[object]) -> list[object]:
        """The objects raw.feedback_files has no row for under their key and ETag (a row for an object that
        could not be read does not count: it is tried again)."""
        lineage = self.source.lineage
        urls = sorted({lineage(entry)[0] for entry in entries})

        def recorded(cur) -> set[tuple[str, str]]:
            cur.execute(
                "select object_url, object_etag from raw.feedback_files"
                " where object_url = any(%s) and reason is distinct from 'unreadable'",
                (urls,),
            )
            return set(cur.fetchall())

        known = self.reader_session.transaction("looking up loaded objects", recorded)
        return [entry for entry in entries if lineage(entry) not in known]

    def _known(self, hashed: list[ReadResult]) -> set[str]:
        """The sha256 of ``hashed`` that raw.feedback_files holds already."""

        def known(cur) -> set[str]:
            # One array literal (hex digests need no quoting): one statement, no temporary table to fill.
            cur.execute(
                "select sha256 from raw.feedback_files where sha256 = any(%s::text[])",
                ("{" + ",".join(found[2] for found in hashed) + "}",),
            )
            return {row[0] for row in cur.fetchall()}

        return self.reader_session.transaction("looking up loaded files", known) if hashed else set()

    def _prepare(self, hashed: list[ReadResult], already: set[str], committed: int) -> FileBatch:
        """Validate a batch of read files, leaving out those loaded before: ``already`` holds the sha256 that
        raw held when the batch was looked up, by which time the first ``committed`` batches of the run were
        committed."""
        self.files["seen"] += len(hashed)
        self._forget_committed(committed)
        batch = FileBatch()
        tail = f"\t1\t{self.run.run_id}\n"
        name, lineage = self.source.name, self.source.lineage
        keyed = self.source.keyed_before_read
        seen = self._seen_shas
        for entry, data, sha, refused in hashed:
            # Known to raw, or the same content earlier in this run (a copy under another name).
            if sha in already or sha in seen:
                self.files["skipped"] += 1
                continue
            seen.add(sha)
            if refused is not None:
                reason, error, size = refused
                landed = LandedFile(name(entry), size, sha, "failed", reason, error)
            else:
                landed = LandedFile(name(entry), len(data), sha)
            if keyed:
                landed.object_url, landed.etag = lineage(entry)
            batch.files.append(landed)
            if refused is None:
                read_file(batch, landed, data, tail)
        return batch

    def _forget_committed(self, committed: int) -> None:
        """Drop the sha256 of the batches among the first ``committed``: every later lookup finds them in raw
        (the lookups run in batch order, each after the one before)."""
        while self._seen_batches and self._seen_batches[0][0] < committed:
            self._seen_shas.difference_update(self._seen_batches.popleft()[1])

    def _finish(self, done: list[tuple[FileBatch, RunCounts]]) -> None:
        for batch, counts in done:
            self.counts.add(counts)
            for landed in batch.files:
                self.files["loaded" if landed.status == "loaded" else "failed"] += 1

    def _write_batch(self, batch: FileBatch) -> RunCounts:
        started = time.monotonic()
        what = f"writing {len(batch.files)} files"
        counts = self.writer_session.transaction(what, lambda cur: self._write(cur, batch))
        self._committed += 1  # only this thread writes it; the read-ahead reads it before each lookup
        if self.on_commit is not None:
            self.on_commit(counts, time.monotonic() - started)
        return counts

    def _write(self, cur, batch: FileBatch) -> RunCounts:
        # Counted afresh by each attempt: a transaction retried after a reconnect starts from zero.
        for landed in batch.files:
            landed.loaded = landed.unstorable = 0
        run_id = self.run.run_id
        rows = [(*reject, run_id) for reject in batch.rejects]
        if batch.lines:
            inserted, refused = self.forms.insert(cur, batch.ids, batch.lines)
            sources = batch.sources
            for i in inserted:
                sources[i][0].loaded += 1
            for i, detail in refused:
                landed, index, feedback_id = sources[i]
                landed.unstorable += 1
                rows.append((UNSTORABLE, detail, feedback_id, None, landed.path, landed.sha256, index, run_id))
        counts = RunCounts(rejected=insert_values(cur, _INSERT_REJECTED, rows, droppable=(3,)))
        file_lines, shas = [], []
        read = loaded = all_duplicates = 0
        for landed in batch.files:
            duplicates = landed.duplicates + landed.valid - landed.loaded - landed.unstorable
            file_lines.append(
                f"{landed.copy_path or escape(landed.path)}\t{landed.size}\t{landed.sha256}\t{landed.status}\t"
                f"{_text_or_null(landed.reason)}\t{_text_or_null(landed.error)}\t{landed.read}\t"
                f"{landed.loaded}\t{landed.rejected + landed.unstorable}\t{duplicates}\t"
                f"{_text_or_null(landed.object_url)}\t{_text_or_null(landed.etag)}\t{run_id}\n"
            )
            shas.append(landed.sha256)
            read += landed.read
            loaded += landed.loaded
            all_duplicates += duplicates
        counts.read, counts.loaded, counts.duplicates = read, loaded, all_duplicates
        _, refused = self.file_records.insert(cur, shas, file_lines)
        if refused:  # nothing in a file record comes from the file's content: a bug, not bad input
            i, detail = refused[0]
            raise RuntimeError(f"the record of {batch.files[i].path} was refused: {detail}")
        self.run.advance(cur, counts)
        return counts


_END = object()


class _ReadAhead:
    """The loader's batches, listed, read, hashed and looked up in a thread of their own, up to READ_AHEAD
    batches ahead of the caller, who validates them. An exception there is raised again in the caller."""

    def __init__(self, loader: FeedbackLoader):
        self.loader = loader
        self._queue: queue.Queue = queue.Queue(maxsize=READ_AHEAD)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Iterator[tuple[int, list[ReadResult], set[str], int, int]]:
        """(entries listed, read results, the sha256 among them raw holds, entries skipped unread, batches
        committed before that lookup began) per batch."""
        self._thread = threading.Thread(target=self._run, name="feedback-read-ahead", daemon=True)
        self._thread.start()
        while True:
            try:
                item = self._queue.get(timeout=0.5)
            except queue.Empty:
                if not self._thread.is_alive() and self._queue.empty():
                    raise RuntimeError("the read-ahead thread stopped unexpectedly") from None
                continue
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def _run(self) -> None:
        loader = self.loader
        try:
            listing = iter(loader.source.entries())
            files = min(FIRST_BATCH_FILES, loader.batch_files)
            while not self._stop.is_set():
                listed, hashed, skipped = loader._read_some(listing, files)
                if not listed:
                    break
                committed = loader._committed  # read first: the lookup then sees at least these batches
                self._put((listed, hashed, loader._known(hashed), skipped, committed))
                files = min(2 * files, loader.batch_files)
            self._put(_END)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller, which ends the run with it
            self._put(exc)

    def _put(self, item: object) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.25)
                return
            except queue.Full:
                continue

    def stop(self, timeout: float = 60) -> None:
        """End the thread: it finishes the batch in hand (a stop request also ends a wait for Postgres or
        the store) and is waited for, so the caller's session is free again."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout)


def main(argv: list[str] | None = None) -> int:
    settings = Settings.from_env()
    parser = argparse.ArgumentParser(prog="python -m loaders feedback", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--landing",
        default=settings.landing_url,
        help="landing folder or s3://bucket/prefix/ (default TELEMED_LANDING_URL, else TELEMED_LANDING_DIR or "
        "$TELEMED_STATE_DIR/landing/feedback); a bucket is reached with the standard AWS variables",
    )
    parser.add_argument(
        "--batch-files", type=int, default=BATCH_FILES, help=f"files per transaction, at most (default {BATCH_FILES})"
    )
    parser.add_argument(
        "--page-size", type=int, default=S3_PAGE_SIZE, help=f"objects per S3 listing request (default {S3_PAGE_SIZE})"
    )
    parser.add_argument("--max-retry-seconds", type=float, default=300.0, help="give up on Postgres after this")
    parser.add_argument(
        "--max-file-bytes",
        type=int,
        default=settings.feedback_max_file_bytes,
        help="larger files are recorded as failed (too_large), unread "
        f"(default TELEMED_FEEDBACK_MAX_FILE_BYTES or {DEFAULT_FEEDBACK_MAX_FILE_BYTES})",
    )
    args = parser.parse_args(argv)
    try:
        landing = objectstore.parse_landing(args.landing)
    except SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    loader = FeedbackLoader(
        settings,
        landing if isinstance(landing, Path) else landing.url,
        args.batch_files,
        args.max_retry_seconds,
        args.max_file_bytes,
        page_size=args.page_size,
    )
    started = time.monotonic()
    # SIGTERM ends the run like Ctrl-C: the open batch's transaction rolls back, the run is "interrupted";
    # either also cuts short a wait for Postgres, in this thread or the writer's.
    with stop_on_signals(loader.backoff):
        status, error = loader.run_once()
    c, f = loader.counts, loader.files
    print(
        f"feedback {status}: files {f['seen']} seen, {f['loaded']} loaded, {f['failed']} failed, "
        f"{f['skipped']} already loaded; forms read {c.read}, loaded {c.loaded}, rejected {c.rejected}, "
        f"duplicates skipped {c.duplicates} in {time.monotonic() - started:.1f}s (run {loader.run.run_id})"
    )
    if error:
        print(f"error: {error}", file=sys.stderr)
    return 0 if status == "succeeded" else 1
