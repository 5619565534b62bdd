"""Landing entries the feedback loader cannot take at face value: a name that is not UTF-8, a file it may
not open or read. Each is recorded with a reason and the run goes on (issue 15); none stops the run."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys

import pytest

from loaders import landing as landing_source
from loaders.tests.loader_support import loader_env, query, run_loader, valid_form
from loaders.tests.test_poison_input import files
from loaders.validation import UNREADABLE
from runtime.settings import PROJECT_ROOT

# The capabilities that let root open any file whatever its mode; without them root meets EACCES like anyone.
DAC_CAPABILITIES = "-dac_override,-dac_read_search"


def test_a_file_name_that_is_not_utf8_is_recorded_with_an_escaped_name_and_its_forms_load(settings, tmp_path):
    landing = tmp_path / "landing"
    day = landing / "2026/10/05"
    day.mkdir(parents=True)
    # Names are bytes to the kernel; these are Latin-1 and a lone UTF-8 continuation byte.
    with open(os.fsencode(day) + b"/caf\xe9.json", "w") as out:
        json.dump(valid_form("FBK-2100001"), out)
    with open(os.fsencode(day) + b"/\x80broken.txt", "w") as out:
        out.write("not a form")
    (day / "plain.json").write_text(json.dumps(valid_form("FBK-2100002")))

    done = run_loader(loader_env(settings), "feedback", "--landing", str(landing))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert files(settings, "2026/10/05/%") == {
        "2026/10/05/caf\\xe9.json": ("loaded", None, 1, 1, 0),
        "2026/10/05/\\x80broken.txt": ("failed", "not_json", 0, 0, 0),
        "2026/10/05/plain.json": ("loaded", None, 1, 1, 0),
    }
    assert query(settings, "select source_path from raw.patient_feedback where feedback_id = 'FBK-2100001'") == [
        ("2026/10/05/caf\\xe9.json",)
    ]
    again = run_loader(loader_env(settings), "feedback", "--landing", str(landing))
    assert again.returncode == 0, again.stderr[-3000:]
    assert "0 loaded, 0 failed, 3 already loaded" in again.stdout, again.stdout


def without_dac_override() -> list[str]:
    """The command prefix under which opening a mode-000 file fails with EACCES: none for a user other
    than root; for root, setpriv (util-linux) dropping the capabilities that bypass file modes."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    assert setpriv, "running as root, the test needs util-linux's setpriv to meet a file it may not open"
    return [setpriv, "--bounding-set", DAC_CAPABILITIES, "--inh-caps", DAC_CAPABILITIES]


def test_a_file_the_loader_may_not_open_is_recorded_unreadable_and_the_run_goes_on(settings, tmp_path):
    landing = tmp_path / "landing"
    day = landing / "2026/10/06"
    day.mkdir(parents=True)
    locked = day / "locked.json"
    locked.write_text(json.dumps(valid_form("FBK-1600001")))
    locked.chmod(0)
    (day / "open.json").write_text(json.dumps(valid_form("FBK-1600002")))
    sealed = day / "sealed"  # a subfolder it may not list
    sealed.mkdir()
    (sealed / "inside.json").write_text(json.dumps(valid_form("FBK-1600003")))
    sealed.chmod(0)
    prefix = without_dac_override()
    # The loader's process really is refused (not a stand-in): the same prefix cannot read the file either.
    probe = run_command([*prefix, sys.executable, "-c", f"open({str(locked)!r}).read()"], settings)
    assert probe.returncode != 0 and "PermissionError" in probe.stderr, probe.stderr

    done = run_command([*prefix, sys.executable, "-m", "loaders", "feedback", "--landing", str(landing)], settings)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    found = files(settings, "2026/10/06/%")
    assert found == {
        "2026/10/06/locked.json": ("failed", "unreadable", 0, 0, 0),
        "2026/10/06/open.json": ("loaded", None, 1, 1, 0),
        "2026/10/06/sealed": ("failed", "unreadable", 0, 0, 0),
    }
    (error,) = query(settings, "select error from raw.feedback_files where path = '2026/10/06/locked.json'")[0]
    assert "EACCES" in error, error
    status = query(settings, "select status from raw.load_runs where loader = 'feedback' order by run_id desc limit 1")
    assert status == [("succeeded",)]

    # Not a verdict on its content: every run tries it again (and records it again) until it can be read.
    again = run_command([*prefix, sys.executable, "-m", "loaders", "feedback", "--landing", str(landing)], settings)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "0 loaded, 2 failed, 1 already loaded" in again.stdout, again.stdout
    locked.chmod(0o644)
    sealed.chmod(0o755)
    third = run_command([*prefix, sys.executable, "-m", "loaders", "feedback", "--landing", str(landing)], settings)
    assert third.returncode == 0, third.stderr[-3000:]
    assert "2 loaded, 0 failed, 1 already loaded" in third.stdout, third.stdout
    loaded = query(
        settings, "select feedback_id from raw.patient_feedback where feedback_id like %s order by 1", ("FBK-16%",)
    )
    assert loaded == [("FBK-1600001",), ("FBK-1600002",), ("FBK-1600003",)]


def run_command(command: list[str], settings) -> subprocess.CompletedProcess:
    return subprocess.run(
        command, env=loader_env(settings), cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.mark.parametrize("code", [errno.EIO, errno.EACCES])
def test_a_read_that_fails_is_classified_unreadable_not_raised(tmp_path, monkeypatch, code):
    """Unit test of the classification with a stand-in: the kernel's EIO cannot be had on demand here, so
    os.read is replaced by one that fails (a mock, named as such) for one file of two."""
    bad, good = tmp_path / "bad.json", tmp_path / "good.json"
    bad.write_text("{}")
    good.write_text("[]")
    real_read = os.read
    bad_inode = bad.stat().st_ino

    def failing_read(fd, size):
        if os.fstat(fd).st_ino == bad_inode:
            raise OSError(code, os.strerror(code))
        return real_read(fd, size)

    monkeypatch.setattr(landing_source.os, "read", failing_read)
    results = landing_source.read_files([str(bad), str(good)], max_bytes=1000)
    (bad_path, bad_data, bad_sha, refusal), good_result = results
    assert (bad_path, bad_data) == (str(bad), None)
    assert refusal[0] == UNREADABLE and errno.errorcode[code] in refusal[1]
    assert len(bad_sha) == 64
    assert good_result[1:3] == (b"[]", landing_source.hashlib.sha256(b"[]").hexdigest())
