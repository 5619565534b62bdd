"""Object storage plumbing shared by the feedback loader and the generator: landing URLs and the S3 client.

A landing is a folder or an S3 prefix, ``s3://bucket/prefix/``. The client is boto3, AWS's own SDK,
configured the standard way, so AWS S3, MinIO or any S3-compatible store works unchanged:
``AWS_ENDPOINT_URL`` (unset: AWS itself), ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` (or any other
credential source boto3 knows: profiles, instance roles), ``AWS_REGION``/``AWS_DEFAULT_REGION``.
boto3 is imported on first use: commands that never touch a bucket do not pay for it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from runtime.settings import SettingsError

# Requests botocore makes for one call: the loaders' own Backoff (loaders/retry.py) is the retry policy,
# up to their deadline, so botocore only retries once at once (a dropped keep-alive connection).
CLIENT_ATTEMPTS = 2
CONNECT_TIMEOUT_S = 5
READ_TIMEOUT_S = 30


_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")


@dataclass(frozen=True)
class S3Location:
    """``s3://bucket/prefix/``: ``prefix`` is empty (the whole bucket) or ends with a slash."""

    bucket: str
    prefix: str

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def key(self, name: str) -> str:
        """The object key of ``name``, a path relative to the prefix."""
        return self.prefix + name

    def object_url(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"


def parse_landing(value: str | Path) -> S3Location | Path:
    """A landing as given on the command line or in TELEMED_LANDING_URL: ``s3://bucket[/prefix]`` (the
    prefix taken as a folder: a trailing slash is added), ``file:///path`` or a plain path (resolved)."""
    if isinstance(value, Path):
        return value.resolve()
    if not _URL.match(value) and not value.startswith("s3:"):
        return Path(value).resolve()  # a folder, whatever characters its name holds
    parsed = urlparse(value)
    if parsed.scheme == "s3" and value.startswith("s3://"):
        if not parsed.netloc:
            raise SettingsError(f"an S3 landing needs a bucket: s3://bucket/prefix/, got {value!r}")
        prefix = parsed.path.lstrip("/")
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        return S3Location(parsed.netloc, prefix)
    if parsed.scheme == "file":
        return Path(parsed.path).resolve()
    raise SettingsError(f"a landing is a folder or s3://bucket/prefix/, got {value!r}")


def endpoint() -> str:
    """Where the client goes, for messages: the configured endpoint or AWS's own."""
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or "AWS S3"


def s3_client(max_connections: int = 10):
    """A boto3 S3 client from the standard AWS configuration (thread-safe: one is shared by the
    loader's reader threads, ``max_connections`` of them at once)."""
    import boto3
    from botocore.config import Config

    custom = endpoint() != "AWS S3"
    config = Config(
        retries={"mode": "standard", "total_max_attempts": CLIENT_ATTEMPTS},
        connect_timeout=CONNECT_TIMEOUT_S,
        read_timeout=READ_TIMEOUT_S,
        max_pool_connections=max_connections,
        # MinIO and most other S3-compatible stores address buckets by path (a host name per bucket needs
        # DNS set up for it); AWS keeps boto3's own choice.
        s3={"addressing_style": "path"} if custom else None,
    )
    # boto3 reads AWS_ENDPOINT_URL (and AWS_ENDPOINT_URL_S3), the keys and the region itself; a store
    # that is not AWS needs a region name all the same, so one is supplied when none is configured.
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    session = boto3.session.Session()
    return session.client("s3", region_name=region or session.region_name or "us-east-1", config=config)
