"""``python -m loaders feedback``: feedback form files from the landing folder into raw.

Every file under the landing folder is considered (a stray non-JSON file is recorded as failed, not
ignored), except hidden ones, where writers stage files before renaming them into place. Files are
listed and loaded in batches, so 100k files cost no more memory than one batch; each batch is one
transaction, so a run killed midway leaves no file half loaded, and the next run goes on:

- a file whose sha256 is in raw.feedback_files was loaded before and is skipped;
- a file that is not JSON, or not valid JSON, gets a ``failed`` row with the reason; the others load;
- each form is validated: valid forms go to raw.patient_feedback (a feedback_id already there is skipped
  and counted as a duplicate), invalid ones to raw.patient_feedback_rejected with the reason.
"""

from __future__ import annotations

import argparse
import errno
import functools
import hashlib
import logging
import os
import re
import stat
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

from loaders.pgcopy import copy_rows, escape, existing_keys, stage_tables_ddl
from loaders.rawwrite import BackgroundWriter, PgSession, RawTable, insert_values
from loaders.retry import Backoff, RetryGaveUp, RetryInterrupted, stop_on_signals
from loaders.runs import LoadRun, RunCounts
from loaders.validation import (
    INVALID_JSON,
    JSON_DECODER,
    NOT_A_REGULAR_FILE,
    NOT_JSON,
    TOO_LARGE,
    UNDECODABLE,
    UNREADABLE,
    UNSTORABLE,
    check_form,
    storable_json_text,
    storable_text,
)
from runtime.progress import Progress
from runtime.settings import DEFAULT_FEEDBACK_MAX_FILE_BYTES, Settings

log = logging.getLogger(__name__)

LOADER_NAME = "feedback"
# A batch ends at this much file content (or at --batch-files files), whichever comes first.
BATCH_BYTES = 4 << 20
# Files are read by READ_THREADS threads, READ_GROUP files per task.
READ_THREADS = 4
READ_GROUP = 32

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


@dataclass
class LandedFile:
    """One file of a batch and what became of it."""

    path: str  # relative to the landing folder
    size: int
    sha256: str
    status: str = "loaded"
    reason: str | None = None
    error: str | None = None
    read: int = 0
    valid: int = 0
    loaded: int = 0
    rejected: int = 0
    unstorable: int = 0  # valid forms Postgres refused (set by the write)
    duplicates: int = 0


@dataclass
class FileBatch:
    files: list[LandedFile] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)  # COPY-escaped feedback_id of each line
    # The file, form index and feedback_id of each line
    sources: list[tuple[LandedFile, int, str]] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)
    rejects: list[tuple] = field(default_factory=list)


def list_files(root: Path) -> Iterator[str]:
    """Every entry under ``root`` that is not a folder, depth first in name order (stable across runs), lazily.

    Hidden entries (a leading dot) are left out: writers stage files there and rename them into place,
    so a file being written is never read half way. Symbolic links (to files or folders), FIFOs and the
    like are listed, never followed: the reader records them as failed, unread. A subfolder that cannot
    be listed (EACCES ...) is listed itself, so the reader records it as unreadable; the landing folder
    itself not being listable raises.
    """
    stack = [str(root)]
    while stack:
        folder = stack.pop()
        try:
            entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
        except FileNotFoundError:
            continue
        except OSError:
            if folder == str(root):
                raise
            yield folder
            continue
        subfolders = []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if entry.is_dir(follow_symlinks=False):
                subfolders.append(entry.path)
            else:
                yield entry.path
        stack.extend(reversed(subfolders))


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


def read_file(batch: FileBatch, landed: LandedFile, data: bytes, tail: str) -> None:
    """Validate one file's forms into the batch (or mark the file failed)."""
    stripped = data.lstrip(b" \t\r\n\xef\xbb\xbf")
    if not landed.path.endswith(".json") or stripped[:1] not in (b"{", b"["):
        landed.status, landed.reason = "failed", NOT_JSON
        landed.error = "not a .json file" if not landed.path.endswith(".json") else "content is not a JSON object/array"
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
        feedback_id = escape(form["feedback_id"])
        if feedback_id in batch.seen:
            landed.duplicates += 1
            continue
        batch.seen.add(feedback_id)
        landed.valid += 1
        batch.ids.append(feedback_id)
        batch.sources.append((landed, index, form["feedback_id"]))
        batch.lines.append(
            f"{feedback_id}\t{escape(form['appointment_id'])}\t{submitted_at}\t{escape(form_text)}\t"
            f"{path}\t{sha}\t{index}{tail}"
        )


_FILE_COLUMNS = (
    "path, size_bytes, sha256, status, reason, error, forms_read, forms_loaded, forms_rejected, forms_duplicate,"
    " _load_run_id"
)
_STAGE_FILES_DDL = stage_tables_ddl("_stage_files", "raw.feedback_files", _FILE_COLUMNS, "sha256")
_INSERT_FILES = f"""
insert into raw.feedback_files ({_FILE_COLUMNS})
select {_FILE_COLUMNS} from _stage_files
on conflict (sha256) do nothing
"""


def _text_or_null(value: str | None) -> str:
    return "\\N" if value is None else escape(value)


class FeedbackLoader:
    """Reads, hashes and validates batch N+1 in the caller's thread while a background writer commits batch N."""

    def __init__(
        self,
        settings: Settings,
        landing: Path,
        batch_files: int = 1000,
        max_retry_seconds: float = 300,
        max_file_bytes: int | None = None,
    ):
        self.settings = settings
        self.landing = landing
        self.batch_files = batch_files
        self.max_file_bytes = max_file_bytes or settings.feedback_max_file_bytes
        self.run = LoadRun(LOADER_NAME)
        self.backoff = Backoff(max_retry_seconds)
        self.counts = RunCounts()
        self.files = {"seen": 0, "loaded": 0, "failed": 0, "skipped": 0}
        self.forms = RawTable("raw.patient_feedback", _COLUMNS, "feedback_id", "_stage_feedback")
        setup = self.forms.ddl + ";" + _STAGE_FILES_DDL
        # One session per thread: the caller looks up known files, the writer writes batches.
        self.reader_session = PgSession(settings, self.backoff, setup)
        self.writer_session = PgSession(settings, self.backoff, setup)
        self._seen_shas: set[str] = set()
        self._readers = ThreadPoolExecutor(max_workers=READ_THREADS, thread_name_prefix="feedback-reader")
        # The ingest service's metrics (loaders/serve.py): told each batch's counts and the seconds its
        # transaction took, once it is committed.
        self.on_commit: Callable[[RunCounts, float], None] | None = None

    def run_once(self) -> tuple[str, str | None]:
        details = {"landing": str(self.landing)}
        status, error = "succeeded", None
        progress = Progress("feedback", "files")
        writer: BackgroundWriter[FileBatch, RunCounts] = BackgroundWriter(self._write_batch, "feedback-writer")
        try:
            self.reader_session.run("opening the load run", lambda conn: self.run.open(conn, details))
            if not self.landing.is_dir():
                log.info("landing folder %s does not exist: nothing to load", self.landing)
            else:
                listing = list_files(self.landing)
                while True:
                    paths, hashed = self._read_some(listing)
                    if not paths:
                        break
                    batch = self._prepare(hashed)
                    if batch.files:
                        self._finish(writer.submit(batch))
                    progress.update(len(paths))
                self._finish(writer.finished(block=True))
        except RetryInterrupted as exc:
            status, error = "interrupted", str(exc)
        except KeyboardInterrupt:
            status, error = "interrupted", "interrupted by a signal"
        except RetryGaveUp as exc:
            status, error = "failed", str(exc)
            log.error("%s", error)
        except OSError as exc:  # the landing folder itself cannot be listed
            status, error = "failed", f"cannot list the landing folder {self.landing}: {exc.strerror}"
            log.error("%s", error)
        finally:
            writer.close()
            self._readers.shutdown(wait=True)
            progress.close()
        final = {**details, "files": self.files}
        if self.run.run_id is not None:
            try:
                self.reader_session.run("closing the load run", lambda conn: self.run.close(conn, status, error, final))
            except RetryGaveUp as exc:
                log.error("could not record the end of run %s: %s", self.run.run_id, exc)
        self.reader_session.close()
        self.writer_session.close()
        return status, error

    def _read_some(self, listing: Iterator[str]) -> tuple[list[str], list[ReadResult]]:
        """The next batch: up to ``batch_files`` files or ``BATCH_BYTES`` of content, read and hashed.

        Files are read by a few threads, a group of them per task (os.read releases the GIL), so a
        folder that is not in the page cache is read with several requests in flight.
        """
        paths: list[str] = []
        hashed: list[ReadResult] = []
        size = 0
        read = functools.partial(_read_files, max_bytes=self.max_file_bytes)
        while len(paths) < self.batch_files and size < BATCH_BYTES:
            chunk = list(islice(listing, READ_GROUP * READ_THREADS))
            if not chunk:
                break
            paths.extend(chunk)
            groups = [chunk[i : i + READ_GROUP] for i in range(0, len(chunk), READ_GROUP)]
            for group in self._readers.map(read, groups):
                for found in group:
                    if found[2] is None:
                        log.warning("%s vanished before it was read", found[0])
                        continue
                    hashed.append(found)
                    size += len(found[1]) if found[1] is not None else 0
        return paths, hashed

    def _prepare(self, hashed: list[ReadResult]) -> FileBatch:
        """Validate a batch of read files, leaving out those loaded before."""
        self.files["seen"] += len(hashed)

        def known(cur) -> set[str]:
            shas = [found[2] for found in hashed]
            return set(existing_keys(cur, "_stage_files", "raw.feedback_files", "sha256", shas))

        already = self.reader_session.transaction("looking up loaded files", known) if hashed else set()
        batch = FileBatch()
        tail = f"\t1\t{self.run.run_id}\n"
        prefix = len(str(self.landing)) + 1
        seen = self._seen_shas
        for path, data, sha, refused in hashed:
            # Known to raw, or the same content earlier in this run (a copy under another name).
            if sha in already or sha in seen:
                self.files["skipped"] += 1
                continue
            seen.add(sha)
            if refused is not None:
                reason, error, size = refused
                batch.files.append(LandedFile(storable_path(path[prefix:]), size, sha, "failed", reason, error))
                continue
            landed = LandedFile(storable_path(path[prefix:]), len(data), sha)
            batch.files.append(landed)
            read_file(batch, landed, data, tail)
        return batch

    def _finish(self, done: list[tuple[FileBatch, RunCounts]]) -> None:
        for batch, counts in done:
            self.counts.add(counts)
            for landed in batch.files:
                self.files["loaded" if landed.status == "loaded" else "failed"] += 1

    def _write_batch(self, batch: FileBatch) -> RunCounts:
        started = time.monotonic()
        what = f"writing {len(batch.files)} files"
        counts = self.writer_session.transaction(what, lambda cur: self._write(cur, batch))
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
        file_lines = []
        for landed in batch.files:
            duplicates = landed.duplicates + landed.valid - landed.loaded - landed.unstorable
            file_lines.append(
                f"{escape(landed.path)}\t{landed.size}\t{landed.sha256}\t{landed.status}\t"
                f"{_text_or_null(landed.reason)}\t{_text_or_null(landed.error)}\t{landed.read}\t"
                f"{landed.loaded}\t{landed.rejected + landed.unstorable}\t{duplicates}\t{run_id}\n"
            )
            counts.read += landed.read
            counts.loaded += landed.loaded
            counts.duplicates += duplicates
        copy_rows(cur, "_stage_files", _FILE_COLUMNS, "".join(file_lines).encode())
        cur.execute(_INSERT_FILES)
        self.run.advance(cur, counts)
        return counts


def _read_all(fd: int, size: int, limit: int) -> bytes:
    """The file behind ``fd``, ``size`` bytes by its fstat, but never more than ``limit``: os.read without
    the io stack, which is most of a small file's cost. One read is enough unless the file grew."""
    data = os.read(fd, min(size + 1, limit))
    if len(data) <= size:
        return data
    chunks = [data]
    left = limit - len(data)
    while left > 0:
        chunk = os.read(fd, min(1 << 16, left))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


# (path, content, sha256, refusal): content and sha256 None when the file vanished before it was read;
# refusal (reason, error, size) for an entry left unread, whose sha256 is then a key of the refusal.
ReadResult = tuple[str, bytes | None, str | None, tuple[str, str, int] | None]


def storable_path(path: str) -> str:
    """A landing path as Postgres text. A name that is not UTF-8 comes from os.scandir with its bytes as
    surrogate escapes, which no text column holds: those bytes are written as ``\\xNN`` instead."""
    try:
        path.encode()
    except UnicodeEncodeError:
        return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return path


def _unreadable(path: str, exc: OSError) -> ReadResult:
    """A file (or a subfolder) the loader may not open or could not read: recorded failed with the errno.
    Not a verdict on its content, so it is keyed on this attempt: every run tries it again."""
    try:
        size = os.lstat(path).st_size
    except OSError:
        size = 0
    name = errno.errorcode.get(exc.errno or 0, str(exc.errno))
    key = f"unreadable\0{path}\0{os.urandom(16).hex()}".encode("utf-8", "surrogateescape")
    return path, None, hashlib.sha256(key).hexdigest(), (UNREADABLE, f"cannot be read: {name} ({exc.strerror})", size)


def _refused(path: str, reason: str, error: str, st: os.stat_result) -> ReadResult:
    # raw.feedback_files is keyed on sha256: an entry left unread is keyed on what it is and where, so the
    # next run knows it, and the same entry changed (another size or mtime) is judged again.
    key = f"refused\0{reason}\0{path}\0{st.st_size}\0{st.st_mtime_ns}".encode("utf-8", "surrogateescape")
    return path, None, hashlib.sha256(key).hexdigest(), (reason, error, st.st_size)


def _read_files(paths: list[str], max_bytes: int) -> list[ReadResult]:
    """Each path read and hashed: regular files of at most ``max_bytes`` only, never through a symlink."""
    out: list[ReadResult] = []
    for path in paths:
        try:
            # O_NOFOLLOW: a symlink fails with ELOOP; O_NONBLOCK: opening a FIFO does not wait for a writer.
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except FileNotFoundError:
            out.append((path, None, None, None))
            continue
        except OSError as exc:
            if exc.errno not in (errno.ELOOP, errno.ENXIO):  # ENXIO: a socket
                out.append(_unreadable(path, exc))
                continue
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                out.append((path, None, None, None))
                continue
            kind = "a symbolic link, not followed" if stat.S_ISLNK(st.st_mode) else "not a regular file"
            out.append(_refused(path, NOT_A_REGULAR_FILE, kind, st))
            continue
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                out.append(_refused(path, NOT_A_REGULAR_FILE, "not a regular file (a FIFO, device or socket)", st))
                continue
            if st.st_size > max_bytes:
                out.append(_refused(path, TOO_LARGE, f"{st.st_size} bytes, over the limit of {max_bytes}", st))
                continue
            data = _read_all(fd, st.st_size, max_bytes + 1)
        except OSError as exc:  # EIO and the like, while reading
            out.append(_unreadable(path, exc))
            continue
        finally:
            os.close(fd)
        if len(data) > max_bytes:  # it grew after the fstat
            out.append(_refused(path, TOO_LARGE, f"over the limit of {max_bytes} bytes", st))
            continue
        out.append((path, data, hashlib.sha256(data).hexdigest(), None))
    return out


def main(argv: list[str] | None = None) -> int:
    settings = Settings.from_env()
    parser = argparse.ArgumentParser(prog="python -m loaders feedback", description=__doc__.split("\n\n")[0])
    parser.add_argument("--landing", type=Path, default=settings.landing_dir, help="landing folder")
    parser.add_argument("--batch-files", type=int, default=1000, help="files per transaction")
    parser.add_argument("--max-retry-seconds", type=float, default=300.0, help="give up on Postgres after this")
    parser.add_argument(
        "--max-file-bytes",
        type=int,
        default=settings.feedback_max_file_bytes,
        help="larger files are recorded as failed (too_large), unread "
        f"(default TELEMED_FEEDBACK_MAX_FILE_BYTES or {DEFAULT_FEEDBACK_MAX_FILE_BYTES})",
    )
    args = parser.parse_args(argv)
    loader = FeedbackLoader(
        settings, args.landing.resolve(), args.batch_files, args.max_retry_seconds, args.max_file_bytes
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
