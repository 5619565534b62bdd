"""The feedback loader over JSON files in the landing folder.

Layouts (stated, as the issue asks):
- ``feedback_loader``, the main case: ``--events`` forms (500k by default) as exports of a form service,
  one JSON array of 100 forms per file (5,000 files), spread over ``YYYY/MM/DD/`` folders;
- ``feedback_loader_one_form_per_file``: the generator's patient-portal layout, one pretty-printed form
  per file, with up to 100k files (the number the loader must cope with). Here the cost per file
  (open, read, sha256, one raw.feedback_files row) dominates, not the cost per form.
Writing the files is not timed; the loader run is, from listing the folder to the last commit.
"""

from __future__ import annotations

import json
import random
import time

from benchmarks.harness import BenchContext, Result
from loaders.feedback import FeedbackLoader

FORMS_PER_EXPORT = 100


def _forms(count: int, seed: int = 11):
    rng = random.Random(seed)  # noqa: S311 - synthetic data, reproducible by seed
    for i in range(count):
        yield {
            "schema_version": 1,
            "feedback_id": f"FBK-{i:09d}",
            "appointment_id": f"APT-{rng.randrange(10**8):08d}",
            "submitted_at": f"2026-10-{1 + i % 28:02d}T{i % 24:02d}:{i % 60:02d}:00Z",
            "provider_rating": rng.randint(1, 5),
            "ease_of_use_rating": rng.randint(1, 5),
            "audio_quality_rating": rng.randint(1, 5),
            "video_quality_rating": rng.randint(1, 5),
            "overall_satisfaction": rng.randint(1, 5),
            "would_recommend": rng.random() < 0.8,
            "comments": rng.choice((None, "Great visit.", "The video froze twice.", "Doctor was very kind")),
        }


def write_landing(root, count: int, per_file: int) -> None:
    if root.exists():
        return
    batch: list[dict] = []
    for i, form in enumerate(_forms(count)):
        batch.append(form)
        if len(batch) < per_file and i < count - 1:
            continue
        day = f"2026/10/{1 + (i // per_file) % 28:02d}"
        folder = root / day
        folder.mkdir(parents=True, exist_ok=True)
        if per_file == 1:
            (folder / f"feedback-{form['feedback_id']}.json").write_text(json.dumps(form, indent=2) + "\n")
        else:
            (folder / f"export-{i // per_file:06d}.json").write_text(json.dumps(batch) + "\n")
        batch = []


def _measure(ctx: BenchContext, name: str, forms: int, per_file: int, note: str) -> Result:
    landing = ctx.work_dir / f"landing_{per_file}_{forms}"
    write_landing(landing, forms, per_file)
    with ctx.database(f"feedback{per_file}") as settings:
        loader = FeedbackLoader(settings, landing)
        started = time.monotonic()
        status, error = loader.run_once()
        seconds = time.monotonic() - started
    if status != "succeeded" or loader.counts.loaded != forms:
        raise RuntimeError(f"feedback run {status} ({error}): loaded {loader.counts.loaded} of {forms}")
    return Result(name, loader.counts.loaded, seconds, note=note)


ONE_FORM_FILES = 100_000


def run(ctx: BenchContext) -> list[Result]:
    exports = -(-ctx.events // FORMS_PER_EXPORT)
    single = min(ctx.events, ONE_FORM_FILES)
    return [
        _measure(ctx, "feedback_loader", ctx.events, FORMS_PER_EXPORT, f"{exports} files of {FORMS_PER_EXPORT} forms"),
        _measure(ctx, "feedback_loader_one_form_per_file", single, 1, f"{single} files, one form each; target >= 0.35"),
    ]
