"""The generator's feedback forms into a bucket (``python -m loaders generate --landing s3://bucket/prefix/``).

The world is generated into a local staging folder exactly as into a landing folder, then each file is
put under the prefix, its path under the folder as the rest of its key: the objects are byte for byte
the files a folder run writes. An object already there with the same content is left alone (a single
PUT's ETag is the MD5 of its content), as an identical file is, so a re-run with a later as-of adds
only what arrived since and the loader fetches nothing twice.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from runtime import objectstore
from runtime.objectstore import S3Location

PUT_THREADS = 8


def upload(folder: Path, location: S3Location, clean: bool = False) -> int:
    """Put every file under ``folder`` (hidden ones aside) under ``location``; with ``clean``, delete every
    object under the prefix first. Returns the number of objects written."""
    client = objectstore.s3_client(max_connections=PUT_THREADS)
    try:
        existing = {} if clean else _etags(client, location)
        if clean:
            _delete_all(client, location)
        names = sorted(_files(folder))

        def put(name: str) -> int:
            content = (folder / name).read_bytes()
            key = location.key(name)
            if existing.get(key) == f'"{hashlib.md5(content, usedforsecurity=False).hexdigest()}"':
                return 0
            client.put_object(Bucket=location.bucket, Key=key, Body=content, ContentType="application/json")
            return 1

        with ThreadPoolExecutor(max_workers=PUT_THREADS, thread_name_prefix="generate-put") as pool:
            return sum(pool.map(put, names))
    finally:
        client.close()


def _files(folder: Path):
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            if not name.startswith("."):
                yield os.path.relpath(os.path.join(root, name), folder).replace(os.sep, "/")


def _etags(client, location: S3Location) -> dict[str, str]:
    found = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=location.bucket, Prefix=location.prefix):
        for item in page.get("Contents", ()):
            found[item["Key"]] = item["ETag"]
    return found


def _delete_all(client, location: S3Location) -> None:
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=location.bucket, Prefix=location.prefix):
        keys = [{"Key": item["Key"]} for item in page.get("Contents", ())]
        if keys:
            client.delete_objects(Bucket=location.bucket, Delete={"Objects": keys, "Quiet": True})
