"""The feedback loader on recorded edge-case files, twice, and through a kill -9."""

from __future__ import annotations

import hashlib
import json
import shutil
import signal

from loaders.feedback import READ_AHEAD, FeedbackLoader, split_forms
from loaders.landing import list_files
from loaders.tests.loader_support import (
    FIXTURES,
    loader_env,
    query,
    run_loader,
    scalar,
    start_loader,
    valid_form,
    wait_for,
)


def test_split_forms_cuts_each_form_out_of_an_array():
    text = ' [ {"a": 1},\n{"b": [1, 2]} ,{"c": "]"}]\n'
    assert split_forms(text) == [({"a": 1}, '{"a": 1}'), ({"b": [1, 2]}, '{"b": [1, 2]}'), ({"c": "]"}, '{"c": "]"}')]
    assert split_forms("[]") == []
    assert split_forms('{"x": 1}\n') == [({"x": 1}, '{"x": 1}')]
    for broken in ('[{"a": 1}', '[{"a": 1},]', '{"a": 1} {"b": 2}', '[{"a": 1}] x'):
        try:
            split_forms(broken)
        except ValueError:
            continue
        raise AssertionError(f"{broken!r} must be rejected")


def test_listing_is_lazy_sorted_and_skips_hidden_entries(tmp_path):
    for name in ("b/2.json", "a/1.json", "a/0.txt", ".tmp/x.json", "a/.hidden.json"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("{}")
    listing = list_files(tmp_path)
    assert iter(listing) is listing, "the listing must be a generator, not a list of 100k paths"
    assert [p[len(str(tmp_path)) + 1 :] for p in listing] == ["a/0.txt", "a/1.json", "b/2.json"]


def test_edge_case_files_then_the_same_folder_again(settings, tmp_path):
    landing = tmp_path / "landing"
    shutil.copytree(FIXTURES / "landing", landing)
    env = loader_env(settings)
    first = run_loader(env, "feedback", "--landing", str(landing), "--batch-files", "4")
    assert first.returncode == 0, first.stderr
    assert (
        "files 14 seen, 8 loaded, 5 failed, 1 already loaded; forms read 13, loaded 5, rejected 7, duplicates skipped 1"
        in first.stdout
    ), first.stdout

    files = {
        row[0]: row[1:]
        for row in query(
            settings,
            "select path, status, reason, forms_read, forms_loaded, forms_rejected, forms_duplicate"
            " from raw.feedback_files",
        )
    }
    assert files == {
        "2026/10/01/batch-2.json": ("loaded", None, 3, 2, 1, 0),
        "2026/10/01/form-1.json": ("loaded", None, 1, 1, 0, 0),
        "2026/10/01/not-an-object.json": ("loaded", None, 1, 0, 1, 0),
        "2026/10/02/empty.json": ("loaded", None, 0, 0, 0, 0),
        "2026/10/02/export.json": ("failed", "not_json", 0, 0, 0, 0),
        "2026/10/02/notes.txt": ("failed", "not_json", 0, 0, 0, 0),
        "2026/10/02/resubmitted.json": ("loaded", None, 1, 0, 0, 1),
        "2026/10/02/scan.pdf": ("failed", "not_json", 0, 0, 0, 0),
        "2026/10/02/truncated.json": ("failed", "invalid_json", 0, 0, 0, 0),
        "2026/10/03/bom.json": ("loaded", None, 1, 1, 0, 0),
        "2026/10/03/invalid-forms.json": ("loaded", None, 5, 0, 5, 0),
        "2026/10/03/nan.json": ("failed", "invalid_json", 0, 0, 0, 0),
        "2026/10/03/unicode.json": ("loaded", None, 1, 1, 0, 0),
    }
    sha = hashlib.sha256((landing / "2026/10/01/form-1.json").read_bytes()).hexdigest()
    assert scalar(settings, "select sha256 from raw.feedback_files where path = '2026/10/01/form-1.json'") == sha

    forms = dict(query(settings, "select feedback_id, payload from raw.patient_feedback"))
    assert sorted(forms) == ["FBK-000000001", "FBK-000000002", "FBK-000000003", "FBK-000000006", "FBK-000000007"]
    # The first submission wins; the resubmission is counted as a duplicate, not loaded over it.
    assert forms["FBK-000000001"]["overall_satisfaction"] == 5
    assert forms["FBK-000000007"]["comments"] == "tab\there\nnew line, back\\slash, caf\u00e9 \u2603"
    origin = query(
        settings,
        "select source_path, source_sha256, form_index from raw.patient_feedback where feedback_id = 'FBK-000000003'",
    )
    batch_sha = hashlib.sha256((landing / "2026/10/01/batch-2.json").read_bytes()).hexdigest()
    assert origin == [("2026/10/01/batch-2.json", batch_sha, 1)]

    rejected = query(
        settings,
        "select reason, feedback_id, source_path, form_index, payload is not null"
        " from raw.patient_feedback_rejected order by source_path, form_index",
    )
    assert rejected == [
        ("out_of_range", "FBK-000000004", "2026/10/01/batch-2.json", 2, True),
        ("not_an_object", None, "2026/10/01/not-an-object.json", 0, True),
        ("missing_field", "FBK-000000008", "2026/10/03/invalid-forms.json", 0, True),
        ("invalid_type", "FBK-000000009", "2026/10/03/invalid-forms.json", 1, True),
        ("invalid_timestamp", "FBK-000000010", "2026/10/03/invalid-forms.json", 2, True),
        ("unsupported_schema_version", "FBK-000000011", "2026/10/03/invalid-forms.json", 3, True),
        # jsonb cannot hold a NUL character: the reason says so and the payload stays empty.
        ("invalid_json", "FBK-000000012", "2026/10/03/invalid-forms.json", 4, False),
    ]

    tables = (
        "select (select count(*) from raw.patient_feedback), (select count(*) from raw.patient_feedback_rejected),"
        " (select count(*) from raw.feedback_files)"
    )
    before = query(settings, tables)
    second = run_loader(env, "feedback", "--landing", str(landing))
    assert second.returncode == 0, second.stderr
    assert "files 14 seen, 0 loaded, 0 failed, 14 already loaded; forms read 0" in second.stdout
    assert query(settings, tables) == before
    runs = query(
        settings,
        "select rows_read, rows_loaded, rows_rejected, duplicates_skipped, status, details->'files'"
        " from raw.load_runs where loader = 'feedback' order by run_id",
    )
    assert runs[-2:] == [
        (13, 5, 7, 1, "succeeded", {"seen": 14, "loaded": 8, "failed": 5, "skipped": 1}),
        (0, 0, 0, 0, "succeeded", {"seen": 14, "loaded": 0, "failed": 0, "skipped": 14}),
    ]


def test_kill_9_mid_run_leaves_no_partial_file(settings, tmp_path):
    landing = tmp_path / "landing"
    total_files = 3000
    for i in range(total_files):
        folder = landing / "2026" / "10" / f"{1 + i % 28:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        forms = [valid_form(f"FBK-11{i:06d}{j}", f"APT-{i:08d}") for j in range(3)]
        (folder / f"kill-{i:06d}.json").write_text(json.dumps(forms))
    env = loader_env(settings)
    files_done = "select count(*) from raw.feedback_files where path like '2026/10/%%/kill-%%'"
    proc = start_loader(env, tmp_path / "feedback.log", "feedback", "--landing", str(landing), "--batch-files", "50")
    try:
        wait_for(lambda: scalar(settings, files_done) >= 100, 60, "the first batches of files")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    assert scalar(settings, files_done) < total_files, "the loader finished before it could be killed"

    done = run_loader(env, "feedback", "--landing", str(landing))
    assert done.returncode == 0, done.stderr
    assert scalar(settings, files_done) == total_files
    assert (
        scalar(settings, "select count(*) from raw.patient_feedback where feedback_id like 'FBK-11%%'")
        == 3 * total_files
    )
    partial = query(
        settings,
        "select files.path from raw.feedback_files as files"
        " left join raw.patient_feedback as forms on forms.source_sha256 = files.sha256"
        " where files.path like '2026/10/%%/kill-%%'"
        " group by files.path, files.forms_loaded having count(forms.feedback_id) <> 3 or files.forms_loaded <> 3",
    )
    assert partial == []


def test_copies_are_skipped_near_or_far_while_memory_holds_a_few_batches(settings, tmp_path):
    """A file's content again under another name is skipped wherever it lies: in the same batch (the run's
    own memory of sha256 catches it), a batch or two later (not committed yet when looked up: the memory
    again), or hundreds of files later, long after its first was committed (raw answers). Meanwhile the
    loader remembers the sha256 of the batches in flight only: a run of millions of files must not keep one
    string per file."""
    landing = tmp_path / "landing"
    contents = {}
    for i in range(300):
        name = f"2026/10/{1 + i // 100:02d}/feedback-{i:04d}.json"
        contents[name] = json.dumps(valid_form(f"FBK-77{i:06d}", f"APT-{i:08d}"))
    copies = {
        "2026/10/01/feedback-0000_copy.json": "2026/10/01/feedback-0000.json",  # the same batch of five
        "2026/10/01/feedback-0007_copy.json": "2026/10/01/feedback-0004.json",  # the next batch
        "2026/10/03/zz-copy-of-0000.json": "2026/10/01/feedback-0000.json",  # 57 batches later
        "2026/10/03/zz-copy-of-0150.json": "2026/10/02/feedback-0150.json",
    }
    for name, original in copies.items():
        contents[name] = contents[original]
    for name, text in contents.items():
        (landing / name).parent.mkdir(parents=True, exist_ok=True)
        (landing / name).write_text(text)

    loader = FeedbackLoader(settings, landing, batch_files=5)
    remembered = []
    prepare = loader._prepare

    def watched(*args):
        batch = prepare(*args)
        remembered.append(len(loader._seen_shas))
        return batch

    loader._prepare = watched
    assert loader.run_once() == ("succeeded", None)
    assert loader.files == {"seen": 304, "loaded": 300, "failed": 0, "skipped": 4}
    assert (loader.counts.read, loader.counts.loaded, loader.counts.duplicates) == (300, 300, 0), loader.counts
    run = loader.run.run_id
    recorded = {
        row[0] for row in query(settings, "select path from raw.feedback_files where _load_run_id = %s", (run,))
    }
    assert recorded == set(contents) - set(copies)
    assert scalar(settings, "select count(*) from raw.patient_feedback where _load_run_id = %s", (run,)) == 300
    # What may be uncommitted when a batch is looked up: READ_AHEAD batches queued before it, one in the
    # caller's hands, two waiting for the writer and the one it writes; with the batch itself, five files
    # each. Without forgetting, the last batch would find 300 remembered.
    assert len(remembered) >= 60
    assert max(remembered) <= 5 * (READ_AHEAD + 5), remembered
