"""Where the feedback loader finds its forms: a landing folder or an S3 prefix, behind one small interface.

A landing source lists its entries lazily, in a stable order, and reads a group of them (in one of the
loader's reader threads) into `ReadResult`s: the content and its sha256, or why the entry was left
unread. Everything after that (the known-file lookup, the quarantine rules, validation and the
exactly-once write) is loaders/feedback.py's, the same for both sources, and the ingest service's
watcher (loaders/serve.py) polls either through `LandingSource.signature`.

- `FolderLanding`: regular files under a folder, never through a symlink (loaders/CONTRACTS.md).
- `S3Landing`: the objects under ``s3://bucket/prefix/`` (AWS S3, MinIO, any S3-compatible store; the
  client is runtime/objectstore.py's). Each listed object carries its identity, key and ETag, before it
  is fetched: the loader skips those recorded in raw.feedback_files and fetches only the others, each
  ``If-Match`` its listed ETag, so the content, its sha256 and the ETag recorded are one version. An
  unreachable store (connection errors, 5xx, throttling) is retried with the loader's backoff up to its
  deadline; a missing bucket, refused credentials or a denied listing end the run with what to check.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import operator
import os
import stat
from collections.abc import Iterator
from typing import NamedTuple

from loaders.retry import Backoff, RetryDeadlineExceeded
from loaders.validation import NOT_A_REGULAR_FILE, TOO_LARGE, UNREADABLE
from runtime import objectstore
from runtime.objectstore import S3Location

log = logging.getLogger(__name__)

# Objects per listing request: S3's own maximum (smaller pages only in tests).
S3_PAGE_SIZE = 1000
# Objects fetched at once: each fetch is mostly a network round trip, so more of them than folder reads.
S3_READ_THREADS = 16

# (entry, content, sha256, refusal): content and sha256 None when the entry vanished before it was read;
# refusal (reason, error, size) for an entry left unread, whose sha256 is then a key of the refusal.
ReadResult = tuple[object, bytes | None, str | None, tuple[str, str, int] | None]


class LandingUnavailable(RuntimeError):
    """The landing cannot be listed (a folder that cannot be opened, a bucket that is not there or that
    the credentials may not list): the run fails with this message."""


class LandingSource:
    """One landing. Entries are opaque to the loader except through these methods."""

    url: str
    # The loader's reader threads and the entries each of their tasks reads (see FolderLanding, S3Landing).
    reader_threads = 4
    read_group = 32
    # Whether entries carry an identity (`lineage`) that the loader looks up before reading them.
    keyed_before_read = False

    def exists(self) -> bool:
        raise NotImplementedError

    def entries(self) -> Iterator[object]:
        """Every entry the loader considers, lazily, in a stable order."""
        raise NotImplementedError

    def read(self, entries: list[object], max_bytes: int) -> list[ReadResult]:
        """Each entry read and hashed; called in a reader thread, a group of entries per call."""
        raise NotImplementedError

    def name(self, entry: object) -> str:
        """The entry's path under the landing, as raw.feedback_files.path and the forms' source_path."""
        raise NotImplementedError

    def lineage(self, entry: object) -> tuple[str | None, str | None]:
        """(object URL, ETag) of an object; (None, None) for a file."""
        return None, None

    def signature(self) -> str:
        """A digest of every entry's identity: it changes when an entry is added, replaced or removed."""
        raise NotImplementedError

    def close(self) -> None:
        """Release what the source holds (connections)."""


def open_landing(
    landing: str | os.PathLike | LandingSource, backoff: Backoff | None = None, page_size: int | None = None
) -> LandingSource:
    """The source of a landing given as a folder, ``s3://bucket/prefix/`` or a source already made.
    ``backoff`` bounds the retries of an unreachable store; ``page_size`` is its listing's."""
    if isinstance(landing, LandingSource):
        return landing
    where = objectstore.parse_landing(landing if isinstance(landing, str) else os.fspath(landing))
    if isinstance(where, S3Location):
        return S3Landing(where, backoff or Backoff(), page_size or S3_PAGE_SIZE)
    return FolderLanding(where)


# --------------------------------------------------------------------------- a folder


class FolderLanding(LandingSource):
    """Every regular file under a folder (see `list_files` for what is listed and what is left out).

    Two reader threads, 256 files a task: a file in the page cache costs microseconds of system calls,
    each of which hands the GIL over, so four threads with small tasks spent more on handing it around
    (and on the executor) than they overlapped; two still keep a read in flight while one thread is in
    Python, for a folder that is not in the page cache.
    """

    reader_threads = 2
    read_group = 256

    def __init__(self, root: os.PathLike | str):
        self.root = os.fspath(root)
        self.url = self.root
        self._prefix = len(self.root) + 1

    def exists(self) -> bool:
        return os.path.isdir(self.root)

    def entries(self) -> Iterator[str]:
        return list_files(self.root)

    def read(self, entries: list[str], max_bytes: int) -> list[ReadResult]:
        return read_files(entries, max_bytes)

    def name(self, entry: str) -> str:
        return storable_path(entry[self._prefix :])

    def signature(self) -> str:
        digest = hashlib.sha256()
        for path in list_files(self.root):
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                continue
            digest.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ino}\n".encode("utf-8", "surrogateescape"))
        return digest.hexdigest()


_by_name = operator.attrgetter("name")


def list_files(root: os.PathLike | str) -> Iterator[str]:
    """Every entry under ``root`` that is not a folder, depth first in name order (stable across runs), lazily.

    Hidden entries (a leading dot) are left out: writers stage files there and rename them into place,
    so a file being written is never read half way. Symbolic links (to files or folders), FIFOs and the
    like are listed, never followed: the reader records them as failed, unread. A subfolder that cannot
    be listed (EACCES ...) is listed itself, so the reader records it as unreadable; the landing folder
    itself not being listable raises.
    """
    root = os.fspath(root)
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            entries = sorted(os.scandir(folder), key=_by_name)
        except FileNotFoundError:
            continue
        except OSError:
            if folder == root:
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


def storable_path(path: str) -> str:
    """A landing path as Postgres text. A name that is not UTF-8 comes from os.scandir with its bytes as
    surrogate escapes, which no text column holds: those bytes are written as ``\\xNN`` instead."""
    if path.isascii():  # most names, and cheaper to tell than to encode
        return path
    try:
        path.encode()
    except UnicodeEncodeError:
        return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return path


def _read_rest(fd: int, start: bytes, limit: int) -> bytes:
    """A file that grew after its fstat: ``start`` and what follows it, but never more than ``limit`` bytes."""
    chunks = [start]
    left = limit - len(start)
    while left > 0:
        chunk = os.read(fd, min(1 << 16, left))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _unreadable(path: str, exc: OSError) -> ReadResult:
    """A file (or a subfolder) the loader may not open or could not read: recorded failed with the errno.
    Not a verdict on its content, so it is keyed on this attempt: every run tries it again."""
    try:
        size = os.lstat(path).st_size
    except OSError:
        size = 0
    name = errno.errorcode.get(exc.errno or 0, str(exc.errno))
    return path, None, attempt_key(path), (UNREADABLE, f"cannot be read: {name} ({exc.strerror})", size)


def attempt_key(where: str) -> str:
    """The raw.feedback_files key of an entry that could not be read this time: unique to the attempt."""
    return hashlib.sha256(f"unreadable\0{where}\0{os.urandom(16).hex()}".encode("utf-8", "surrogateescape")).hexdigest()


def refusal_key(reason: str, where: str, version: str) -> str:
    """raw.feedback_files is keyed on sha256: an entry left unread is keyed on what it is, where, and which
    version of it (a file's size and mtime, an object's ETag), so the next run knows it, and the same
    entry changed is judged again."""
    return hashlib.sha256(f"refused\0{reason}\0{where}\0{version}".encode("utf-8", "surrogateescape")).hexdigest()


def _refused(path: str, reason: str, error: str, st: os.stat_result) -> ReadResult:
    return path, None, refusal_key(reason, path, f"{st.st_size}\0{st.st_mtime_ns}"), (reason, error, st.st_size)


def read_files(paths: list[str], max_bytes: int) -> list[ReadResult]:
    """Each path read and hashed: regular files of at most ``max_bytes`` only, never through a symlink.

    Four system calls a file (open, fstat, one read of the size fstat gave, close); the os functions are
    looked up once a call, not once a file, since a small file's Python overhead is as much as its reads.
    """
    out: list[ReadResult] = []
    append = out.append
    sha256 = hashlib.sha256
    os_open, fstat, read, close, is_regular = os.open, os.fstat, os.read, os.close, stat.S_ISREG
    # O_NOFOLLOW: a symlink fails with ELOOP; O_NONBLOCK: opening a FIFO does not wait for a writer.
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK
    for path in paths:
        try:
            fd = os_open(path, flags)
        except FileNotFoundError:
            append((path, None, None, None))
            continue
        except OSError as exc:
            if exc.errno not in (errno.ELOOP, errno.ENXIO):  # ENXIO: a socket
                append(_unreadable(path, exc))
                continue
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                append((path, None, None, None))
                continue
            kind = "a symbolic link, not followed" if stat.S_ISLNK(st.st_mode) else "not a regular file"
            append(_refused(path, NOT_A_REGULAR_FILE, kind, st))
            continue
        try:
            st = fstat(fd)
            size = st.st_size
            if not is_regular(st.st_mode):
                append(_refused(path, NOT_A_REGULAR_FILE, "not a regular file (a FIFO, device or socket)", st))
                continue
            if size > max_bytes:
                append(_refused(path, TOO_LARGE, f"{size} bytes, over the limit of {max_bytes}", st))
                continue
            data = read(fd, size + 1)  # one byte more than fstat said: a file that grew meanwhile shows it
            if len(data) > size:
                data = _read_rest(fd, data, max_bytes + 1)
        except OSError as exc:  # EIO and the like, while reading
            append(_unreadable(path, exc))
            continue
        finally:
            close(fd)
        if len(data) > max_bytes:  # it grew after the fstat
            append(_refused(path, TOO_LARGE, f"over the limit of {max_bytes} bytes", st))
            continue
        append((path, data, sha256(data).hexdigest(), None))
    return out


# --------------------------------------------------------------------------- an S3 prefix


class S3Object(NamedTuple):
    key: str
    size: int
    etag: str


# Error codes of a store that is there but busy or failing for a while: retried like an outage.
_TRANSIENT_CODES = frozenset(
    {"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "InternalError", "ServiceUnavailable"}
)


def is_transient(exc: BaseException) -> bool:
    """An error a later attempt can cure: no connection, a dropped one, a timeout, 5xx, throttling."""
    from botocore.exceptions import ClientError, HTTPClientError, IncompleteReadError
    from botocore.exceptions import ConnectionError as BotoConnectionError

    if isinstance(exc, (BotoConnectionError, HTTPClientError, IncompleteReadError)):
        return True
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        return status >= 500 or exc.response.get("Error", {}).get("Code") in _TRANSIENT_CODES
    return False


def _store_error(exc: BaseException) -> bool:
    """An error of the client or the store (not of this program): credentials, permissions, a missing key."""
    from botocore.exceptions import BotoCoreError, ClientError

    return isinstance(exc, (BotoCoreError, ClientError))


def _error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", type(exc).__name__))


class S3Landing(LandingSource):
    """The objects under an S3 prefix. Folder markers (keys ending in a slash) are not entries, and a key
    with a hidden segment (``.tmp/x.json``, ``2026/.x.json``) is left out as a hidden file is."""

    keyed_before_read = True
    reader_threads = S3_READ_THREADS

    def __init__(self, location: S3Location, backoff: Backoff, page_size: int = S3_PAGE_SIZE, client=None):
        self.location = location
        self.url = location.url
        self.backoff = backoff
        self.page_size = page_size
        self.target = f"the object store at {objectstore.endpoint()} (bucket {location.bucket})"
        self._client = client or objectstore.s3_client(max_connections=S3_READ_THREADS)
        self._prefix = len(location.prefix)

    def exists(self) -> bool:
        return True  # a bucket that is not there fails the listing, with its name

    def _call(self, what: str, backoff: Backoff, call):
        """``call()`` until it succeeds, waiting out transient errors with ``backoff`` up to its deadline."""
        while True:
            try:
                result = call()
            except Exception as exc:
                if not is_transient(exc):
                    raise
                try:
                    backoff.wait(what, exc)
                except RetryDeadlineExceeded as gave_up:
                    hint = "is it up, and is AWS_ENDPOINT_URL right?"
                    raise RetryDeadlineExceeded(f"cannot reach {self.target}: {hint} {gave_up}") from exc
                continue
            backoff.reset()
            return result

    def entries(self) -> Iterator[S3Object]:
        client, location = self._client, self.location
        backoff = self.backoff.fork()
        token = None
        while True:
            args = {"Bucket": location.bucket, "Prefix": location.prefix, "MaxKeys": self.page_size}
            if token:
                args["ContinuationToken"] = token
            try:
                page = self._call(f"listing {self.url}", backoff, lambda args=args: client.list_objects_v2(**args))
            except Exception as exc:
                if is_transient(exc) or not _store_error(exc):
                    raise
                where = f"{self.url} at {objectstore.endpoint()}"
                raise LandingUnavailable(f"cannot list {where}: {_describe(exc)}") from exc
            for item in page.get("Contents", ()):
                key = item["Key"]
                name = key[self._prefix :]
                if not name or name.endswith("/") or name.startswith(".") or "/." in name:
                    continue
                yield S3Object(key, item["Size"], item["ETag"])
            if not page.get("IsTruncated"):
                return
            token = page["NextContinuationToken"]

    def name(self, entry: S3Object) -> str:
        return entry.key[self._prefix :]

    def lineage(self, entry: S3Object) -> tuple[str, str]:
        return self.location.object_url(entry.key), entry.etag

    def read(self, entries: list[S3Object], max_bytes: int) -> list[ReadResult]:
        backoff = self.backoff.fork()  # this thread's own: a wait here does not disturb another's count
        out: list[ReadResult] = []
        for entry in entries:
            where = self.location.object_url(entry.key)
            if entry.size > max_bytes:
                error = f"{entry.size} bytes, over the limit of {max_bytes}"
                out.append((entry, None, refusal_key(TOO_LARGE, where, entry.etag), (TOO_LARGE, error, entry.size)))
                continue
            try:
                data = self._call(f"fetching {where}", backoff, lambda entry=entry: self._fetch(entry, max_bytes))
            except Exception as exc:
                if is_transient(exc) or not _store_error(exc):
                    raise
                code = _error_code(exc)
                if code in ("NoSuchKey", "PreconditionFailed", "412", "404"):
                    # Deleted, or replaced since it was listed: the next listing shows what is there now.
                    out.append((entry, None, None, None))
                    continue
                refusal = (UNREADABLE, f"cannot be read: {_describe(exc)}", entry.size)
                out.append((entry, None, attempt_key(where), refusal))
                continue
            if len(data) > max_bytes:
                error = f"over the limit of {max_bytes} bytes"
                out.append((entry, None, refusal_key(TOO_LARGE, where, entry.etag), (TOO_LARGE, error, len(data))))
                continue
            out.append((entry, data, hashlib.sha256(data).hexdigest(), None))
        return out

    def _fetch(self, entry: S3Object, max_bytes: int) -> bytes:
        response = self._client.get_object(Bucket=self.location.bucket, Key=entry.key, IfMatch=entry.etag)
        body = response["Body"]
        try:
            return body.read(max_bytes + 1)
        finally:
            body.close()

    def signature(self) -> str:
        digest = hashlib.sha256()
        for entry in self.entries():
            digest.update(f"{entry.key}\0{entry.size}\0{entry.etag}\n".encode())
        return digest.hexdigest()

    def close(self) -> None:
        self._client.close()


def _describe(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if not response:
        return f"{type(exc).__name__}: {exc}"
    error = response.get("Error", {})
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return f"{error.get('Code', 'error')} (HTTP {status}): {error.get('Message', '')}".rstrip(": ")
