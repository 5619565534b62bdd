"""The demo's command line and make's front door: bad values stop before anything starts, `make help`
speaks plainly when piped, and a round of the demo sends only the event files that are new to the topic.
(The demo itself runs end to end with `make demo`; it takes minutes, so it is not part of the suite.)"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from demo.__main__ import SentRecord, parse_args
from runtime.settings import PROJECT_ROOT


def make(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["make", "--no-print-directory", *args],
        cwd=PROJECT_ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("SCALE", "abc", "SCALE=abc is not valid: SCALE must be a positive whole number of appointments"),
        ("SCALE", "0", "SCALE=0 is not valid"),
        ("SEED", "4x", "SEED=4x is not valid: SEED must be a whole number"),
        ("PYTEST_WORKERS", "two", "PYTEST_WORKERS=two is not valid"),
    ],
)
def test_a_bad_make_variable_stops_make_before_anything_starts(tmp_path, variable, value, expected):
    state = tmp_path / "state"
    done = make("demo", f"{variable}={value}", env={"TELEMED_STATE_DIR": str(state)})
    assert done.returncode == 2
    assert expected in done.stderr
    assert done.stdout == "", "no recipe ran"
    assert not state.exists(), "nothing was started or written"


def test_make_help_lists_the_everyday_targets_first_without_colour_codes_when_piped():
    done = make("help")
    assert done.returncode == 0, done.stderr
    assert "\x1b[" not in done.stdout
    lines = done.stdout.splitlines()
    assert lines[0] == "Everyday:"
    everyday = [line.split()[0] for line in lines[1 : lines.index("")]]
    assert everyday[:3] == ["demo", "status", "psql"]
    rest = [line.split()[0] for line in lines[lines.index("Everything else:") + 1 :]]
    assert "setup" in rest and "demo" not in rest
    assert len(everyday) + len(rest) == len(set(everyday + rest))


def test_the_demo_refuses_bad_options_before_starting(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "demo", "--scale", "abc"],
        cwd=PROJECT_ROOT,
        env={**os.environ, "TELEMED_STATE_DIR": str(tmp_path / "state")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "--scale: not a whole number: 'abc'" in done.stderr
    assert not (tmp_path / "state").exists()
    with pytest.raises(SystemExit):
        parse_args(["--as-of", "2026-11-07T00:00:00Z", "--late-as-of", "2026-11-01T00:00:00Z"])
    with pytest.raises(SystemExit):
        parse_args(["--late-as-of", "2026-11-07T00:00:00"])  # no UTC offset


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


def test_a_round_sends_only_files_new_to_the_topic(tmp_path):
    events = tmp_path / "events"
    events.mkdir()
    record_path = tmp_path / "sent.json"
    first = [write(events, "2026-10-30.jsonl", "a\n"), write(events, "2026-10-31.jsonl", "b\n")]

    record = SentRecord.load(record_path, "127.0.0.1:1", "topic", "id-1")
    new = record.new_files(first)
    assert [path.name for path, _ in new] == ["2026-10-30.jsonl", "2026-10-31.jsonl"]
    record.save(new, "id-1")

    # The late round: the same files again (byte-identical) plus a new day.
    late = [*first, write(events, "2026-11-01.jsonl", "c\n")]
    record = SentRecord.load(record_path, "127.0.0.1:1", "topic", "id-1")
    assert [path.name for path, _ in record.new_files(late)] == ["2026-11-01.jsonl"]
    record.save(record.new_files(late), "id-1")

    # A second demo: nothing new.
    assert SentRecord.load(record_path, "127.0.0.1:1", "topic", "id-1").new_files(late) == []
    # A file that changed is sent again.
    write(events, "2026-10-31.jsonl", "b\nb2\n")
    changed = SentRecord.load(record_path, "127.0.0.1:1", "topic", "id-1").new_files(late)
    assert [path.name for path, _ in changed] == ["2026-10-31.jsonl"]
    # The topic was recreated (the embedded broker forgets on restart), or is another one: everything.
    for broker, topic, topic_id in (("127.0.0.1:1", "topic", "id-2"), ("127.0.0.1:1", "other", "id-1")):
        assert len(SentRecord.load(record_path, broker, topic, topic_id).new_files(late)) == 3
    assert len(SentRecord.load(record_path, "127.0.0.1:1", "topic", None).new_files(late)) == 3
