"""The feedback loader over JSON files in the landing folder.

Layout (stated, as the issue asks): the patient portal of the generator writes one form per file,
pretty-printed, under ``YYYY/MM/DD/``; that is the main case, with ``--events`` forms (500k by default)
in as many files. A second case loads the same forms as hourly exports, JSON arrays of 100 forms, the
other shape the contract allows. Writing the files is not timed; the loader run is, from listing the
folder to the last commit (sha256, validation, raw.feedback_files, forms and run counters).
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


def _measure(ctx: BenchContext, name: str, per_file: int, note: str) -> Result:
    landing = ctx.work_dir / f"landing_{per_file}_{ctx.events}"
    write_landing(landing, ctx.events, per_file)
    with ctx.database(f"feedback{per_file}") as settings:
        loader = FeedbackLoader(settings, landing)
        started = time.monotonic()
        status, error = loader.run_once()
        seconds = time.monotonic() - started
    if status != "succeeded" or loader.counts.loaded != ctx.events:
        raise RuntimeError(f"feedback run {status} ({error}): loaded {loader.counts.loaded} of {ctx.events}")
    return Result(name, loader.counts.loaded, seconds, note=note)


def run(ctx: BenchContext) -> list[Result]:
    files = ctx.events
    return [
        _measure(ctx, "feedback_loader", 1, f"{files} files, one pretty-printed form each (the portal's layout)"),
        _measure(
            ctx,
            "feedback_loader_hourly_exports",
            FORMS_PER_EXPORT,
            f"{-(-files // FORMS_PER_EXPORT)} files, JSON arrays of {FORMS_PER_EXPORT} forms",
        ),
    ]
