"""The monitors start from the last build's parsed project (monitors/__main__.py reuse_build_parse)."""

from __future__ import annotations

import os

from monitors.__main__ import PARTIAL_PARSE, reuse_build_parse


def test_a_newer_build_parse_replaces_ours_and_an_older_one_does_not(tmp_path):
    target, monitor = tmp_path / "target", tmp_path / "target" / "monitor"
    target.mkdir()
    reuse_build_parse(target, monitor)
    assert not (monitor / PARTIAL_PARSE).exists(), "no build parse yet: nothing to copy, dbt parses in full"

    (target / PARTIAL_PARSE).write_bytes(b"build 1")
    reuse_build_parse(target, monitor)
    assert (monitor / PARTIAL_PARSE).read_bytes() == b"build 1"

    # dbt rewrote ours since (a monitor run after the build): it stays.
    (monitor / PARTIAL_PARSE).write_bytes(b"monitor's own")
    os.utime(monitor / PARTIAL_PARSE, (2_000_000_000, 2_000_000_000))
    os.utime(target / PARTIAL_PARSE, (1_000_000_000, 1_000_000_000))
    reuse_build_parse(target, monitor)
    assert (monitor / PARTIAL_PARSE).read_bytes() == b"monitor's own"

    # A new build (the project may have changed): its parse is the newer one.
    (target / PARTIAL_PARSE).write_bytes(b"build 2")
    os.utime(target / PARTIAL_PARSE, (3_000_000_000, 3_000_000_000))
    reuse_build_parse(target, monitor)
    assert (monitor / PARTIAL_PARSE).read_bytes() == b"build 2"
