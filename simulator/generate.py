"""``python -m loaders generate``: the outside world, simulated.

Writes the clinic's database (schema ``clinic_ops``), appointment events as JSONL for replay to Kafka
(``python -m loaders produce --from-jsonl``), feedback form files into the landing folder, and a
ground-truth manifest of what a correct pipeline must end with. The world is deterministic from
seed, scale and period; ``--as-of`` only decides how much of it has arrived.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import tempfile
import time
from datetime import date, datetime, timedelta
from pathlib import Path

from runtime import db, objectstore
from runtime.settings import Settings, SettingsError
from simulator import bucket, pipeline, reference
from simulator.dirty import Dirt
from simulator.emit import Emitter, Truth
from simulator.seasonality import EPOCH_DAY, ClinicClock
from simulator.video_api import CallSessions
from simulator.world import World

log = logging.getLogger(__name__)

DEFAULT_SCALE = 50_000
DEFAULT_SEED = 42
# A fixed period (not "the last 90 days"), so the same seed and scale give the same bytes any day.
DEFAULT_END = date(2026, 10, 31)
DEFAULT_DAYS = 90
DEFAULT_DIRTY_RATE = 0.01
# Below this scale a second process costs more (the fork, the pipe) than it saves.
PARALLEL_FROM = 20_000


EPILOG = """\
outputs:
  <out>/events/<arrival date>.jsonl   one event message per line, replay in file then line order
  <landing>/YYYY/MM/DD/*              feedback form files (and a few stray or broken ones)
  <out>/manifest.json                 ground truth: counts by status, device, day; rejections by reason;
                                      key insights; canary tokens (see loaders/CONTRACTS.md)
  <out>/video_api/call_sessions.jsonl the video platform's call sessions (served by `python -m loaders
                                      video-api`)
  clinic_ops.providers, .patients     the clinic's database as of --as-of (unless --no-db)

examples:
  python -m loaders generate --scale 5000 --no-db
  python -m loaders generate --as-of 2026-10-15T00:00:00Z    # then again without --as-of: the rest
  python -m loaders generate --no-dirty --seed 7
"""


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def _timestamp(text: str) -> int:
    try:
        if len(text) == 10:
            return (date.fromisoformat(text) - EPOCH_DAY).days * 86400
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 timestamp: {text!r}") from None
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"--as-of needs a UTC offset (e.g. 2026-11-01T00:00:00Z): {text!r}")
    return int(value.timestamp())


def _rate(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 0.5:
        raise argparse.ArgumentTypeError("--dirty-rate must be between 0 and 0.5")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be a positive integer")
    return value


ANOMALY_DEFAULTS = {"no_show_spike": 6.0, "low_volume": 0.1}


def _anomaly(text: str) -> tuple[str, date, float]:
    kind, _, rest = text.partition(":")
    day_text, _, factor_text = rest.partition(":")
    if kind not in ANOMALY_DEFAULTS:
        raise argparse.ArgumentTypeError(f"unknown anomaly {kind!r}: one of {', '.join(ANOMALY_DEFAULTS)}")
    try:
        day = date.fromisoformat(day_text)
        factor = float(factor_text) if factor_text else ANOMALY_DEFAULTS[kind]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected KIND:YYYY-MM-DD[:FACTOR], got {text!r}") from None
    if factor <= 0:
        raise argparse.ArgumentTypeError("an anomaly factor must be positive")
    return kind, day, factor


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m loaders generate",
        description=__doc__,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--scale",
        metavar="N",
        type=_positive,
        default=DEFAULT_SCALE,
        help="appointments scheduled in the period (default %(default)s); rebookings of the last days that "
        "fall after the period come on top",
    )
    parser.add_argument("--seed", metavar="S", type=int, default=DEFAULT_SEED, help="random seed (default %(default)s)")
    parser.add_argument(
        "--out",
        metavar="DIR",
        type=Path,
        help="output folder for events/*.jsonl and manifest.json (default $TELEMED_STATE_DIR/generated)",
    )
    parser.add_argument(
        "--landing",
        metavar="DIR|URL",
        help="feedback landing folder or s3://bucket/prefix/ (default TELEMED_LANDING_URL, else "
        "TELEMED_LANDING_DIR or $TELEMED_STATE_DIR/landing/feedback); a bucket is written through a staging "
        "folder with the standard AWS variables",
    )
    parser.add_argument(
        "--start-date",
        metavar="DATE",
        type=_date,
        help=f"first day of the period, YYYY-MM-DD (default: {DEFAULT_DAYS} days ending on the end date)",
    )
    parser.add_argument(
        "--end-date",
        metavar="DATE",
        type=_date,
        help=f"last day of the period, YYYY-MM-DD (default {DEFAULT_END.isoformat()}, or {DEFAULT_DAYS} days "
        "from --start-date)",
    )
    parser.add_argument(
        "--as-of",
        metavar="TS",
        type=_timestamp,
        help="emit only what has arrived by this time: ISO 8601 with offset, or a date for its 00:00 UTC "
        "(default: the end of the period); "
        "a later --as-of emits the rest, byte-identical for what was emitted before",
    )
    parser.add_argument(
        "--dirty-rate",
        metavar="R",
        type=_rate,
        default=DEFAULT_DIRTY_RATE,
        help="share of real events and forms that spawn one dirty extra (default %(default)s)",
    )
    parser.add_argument("--no-dirty", action="store_true", help="no dirty inputs at all (same as --dirty-rate 0)")
    parser.add_argument("--no-db", action="store_true", help="do not write the clinic_ops tables")
    parser.add_argument("--no-files", action="store_true", help="write no event or feedback files (manifest only)")
    parser.add_argument(
        "--anomaly",
        metavar="KIND:DATE[:FACTOR]",
        type=_anomaly,
        action="append",
        default=[],
        help="inject a business anomaly the monitors must catch (repeatable): "
        "no_show_spike:DATE[:FACTOR] multiplies that day's no-show probability "
        f"(default x{ANOMALY_DEFAULTS['no_show_spike']:g}), low_volume:DATE[:FACTOR] keeps that share of its "
        f"appointments (default {ANOMALY_DEFAULTS['low_volume']:g})",
    )
    parser.add_argument(
        "--workers",
        metavar="N",
        type=_positive,
        help="1: everything in this process; 2: the world, the video sessions and the clinic tables each in a "
        "child process while this one emits, the cores shared among them (more adds nothing: the world and the "
        "emission are one stream each); the bytes are the same either way "
        f"(default 2 on a machine with two or more cores at --scale {PARALLEL_FROM} or more, else 1)",
    )
    parser.add_argument(
        "--clean",
        action="store_true",
        help="empty the landing folder first (files of an earlier run with another seed would mix in)",
    )
    return parser


def _clean(folder: Path) -> None:
    if not folder.exists():
        return
    for path in sorted(folder.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if path.is_dir():
            path.rmdir()
        else:
            path.unlink()


def generate(
    *,
    scale: int,
    seed: int,
    start: date,
    end: date,
    as_of: int,
    dirty_rate: float,
    out_dir: Path,
    landing_dir: Path | None,
    write_files: bool,
    settings: Settings | None,
    anomalies: list[tuple[str, date, float]] | None = None,
    workers: int = 1,
    cpu: dict | None = None,
) -> dict:
    """Generate everything and return the manifest (also written to ``<out_dir>/manifest.json``).

    ``workers`` 2 or more simulates the world, plays the video platform's sessions and writes the clinic
    tables in child processes while this one renders and counts, and a thread writes the feedback files
    (simulator/pipeline.py); the output is byte-identical to one worker's. ``cpu``, if given, receives the
    CPU seconds of each child process (for the benchmark)."""
    started = time.perf_counter()
    anomalies = anomalies or []
    clock = ClinicClock()
    pools = reference.Pools.build(seed)
    start_epoch = (start - EPOCH_DAY).days * 86400
    providers = reference.build_providers(seed, scale, pools, start_epoch, (end - EPOCH_DAY).days * 86400 + 86400)
    patients = reference.Patients(seed, scale, pools, start, end)
    world = World(seed, scale, start, end, providers, patients.count, sorted(patients.canaries), anomalies=anomalies)
    out_dir.mkdir(parents=True, exist_ok=True)
    emitter = Emitter(
        events_dir=out_dir / "events" if write_files else None,
        landing_dir=landing_dir if write_files else None,
        as_of=as_of,
        clock=clock,
        dirt=Dirt(seed, dirty_rate) if dirty_rate > 0 else None,
        file_thread=workers > 1,
    )
    sessions_path = out_dir / "video_api" / "call_sessions.jsonl" if write_files else None

    def make_sessions() -> CallSessions:
        # The video platform's sessions watch the same appointments with a random stream of their own.
        return CallSessions(seed, as_of, dirty_rate, clock, sessions_path)

    def clinic_tables() -> int:
        return _clinic_tables_as_of(providers, patients, as_of, clock, settings)

    try:
        appointments, sessions_block, patient_versions = pipeline.play(
            world, workers, emitter.add, make_sessions, clinic_tables, cpu
        )
    finally:
        emitter.close()
    truth = emitter.truth
    manifest = {
        "generator": {
            "seed": seed,
            "scale": scale,
            "as_of": clock.iso(as_of),
            "start_date": start.isoformat(),
            "end_date": end.isoformat(),
            "dirty_rate": dirty_rate,
            "world_appointments": appointments,
            "anomalies": [{"kind": kind, "date": day.isoformat(), "factor": factor} for kind, day, factor in anomalies],
        },
        **_truth_blocks(truth),
        "reference": _reference_counts(providers, patients, as_of, patient_versions),
        "video_api": sessions_block,
        "key_insights": truth.key_insights(),
        "canaries": [
            {"patient_id": c.patient_id, "column": c.column, "token": c.token}
            for _, c in sorted(patients.canaries.items())
        ],
    }
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    log.info(
        "generated %d appointments, %d event messages, %d feedback files in %.1f s",
        appointments,
        truth.messages,
        truth.files,
        time.perf_counter() - started,
    )
    return manifest


def _clinic_tables_as_of(
    providers: list[reference.Provider],
    patients: reference.Patients,
    as_of: int,
    clock: ClinicClock,
    settings: Settings | None,
) -> int:
    """Write the clinic's providers and patients as of ``as_of`` (unless ``settings`` is None, then only
    count); returns how many patient versions exist by then."""
    patient_versions = 0

    def provider_rows():
        for provider in providers:
            yield provider.row(provider.version_at(as_of), clock)

    def patient_rows():
        nonlocal patient_versions
        for index in range(patients.count):
            current = None
            for updated_at, row in patients.versions(index, clock):
                if updated_at <= as_of:
                    current = row
                    patient_versions += 1
            yield current

    if settings is not None:
        conn = db.connect(settings)
        try:
            reference.write_clinic_tables(conn, provider_rows(), patient_rows())
        finally:
            conn.close()
    else:
        for _ in patient_rows():
            pass
    return patient_versions


def _reference_counts(
    providers: list[reference.Provider], patients: reference.Patients, as_of: int, patient_versions: int
) -> dict:
    """How many providers and patients the clinic's tables hold as of ``as_of``, and their versions."""
    return {
        "providers": len(providers),
        "provider_versions": sum(1 for p in providers for v in p.versions if v.updated_at <= as_of),
        "patients": patients.count,
        "patient_versions": patient_versions,
    }


def _truth_blocks(truth: Truth) -> dict:
    """The manifest's ground truth of what was emitted: appointments, events, feedback, rejections."""
    return {
        "appointments": truth.appointments_block(),
        "events": {
            "messages": truth.messages,
            "valid_distinct": truth.valid,
            "duplicate_deliveries": truth.duplicates,
            "out_of_order": truth.out_of_order,
            "non_utc_offset": truth.non_utc,
            "late": truth.late,
            "not_yet_arrived": truth.not_yet_arrived,
        },
        "feedback": {
            "files": truth.files,
            "forms_valid": truth.forms_valid,
            "forms_unknown_appointment": truth.forms_unknown,
            "forms_resubmitted": truth.forms_resubmitted,
            "forms_not_yet_arrived": truth.forms_not_yet_arrived,
        },
        "rejected": {
            "events": dict(sorted(truth.rejected_events.items())),
            "feedback_forms": dict(sorted(truth.rejected_forms.items())),
            "feedback_files": dict(sorted(truth.rejected_files.items())),
        },
    }


def _default_workers(scale: int) -> int:
    return 2 if scale >= PARALLEL_FROM and (os.cpu_count() or 1) >= 2 else 1


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    end = args.end_date or (DEFAULT_END if args.start_date is None else args.start_date + timedelta(DEFAULT_DAYS - 1))
    start = args.start_date or end - timedelta(days=DEFAULT_DAYS - 1)
    if start > end:
        print("--start-date must not be after --end-date", file=sys.stderr)
        return 2
    as_of = args.as_of if args.as_of is not None else (end - EPOCH_DAY).days * 86400 + 86400
    out_dir = args.out or settings.state_dir / "generated"
    try:
        target = objectstore.parse_landing(args.landing or settings.landing_url)
    except SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    with contextlib.ExitStack() as stack:
        if isinstance(target, Path):
            landing = target
        else:  # generated into a staging folder, then put into the bucket (simulator/bucket.py)
            settings.state_dir.mkdir(parents=True, exist_ok=True)
            staging = stack.enter_context(tempfile.TemporaryDirectory(prefix="generate-", dir=settings.state_dir))
            landing = Path(staging)
        return _generate_into(args, settings, start, end, as_of, out_dir, landing, target)


def _generate_into(args, settings, start, end, as_of, out_dir: Path, landing: Path, target) -> int:
    if args.clean and not args.no_files and target == landing:
        _clean(landing)
    manifest = generate(
        scale=args.scale,
        seed=args.seed,
        start=start,
        end=end,
        as_of=as_of,
        dirty_rate=0.0 if args.no_dirty else args.dirty_rate,
        out_dir=out_dir,
        landing_dir=landing,
        write_files=not args.no_files,
        settings=None if args.no_db else settings,
        anomalies=args.anomaly,
        workers=args.workers or _default_workers(args.scale),
    )
    if target != landing and not args.no_files:
        bucket.upload(landing, target, clean=args.clean)
    appointments = manifest["appointments"]
    where = landing if target == landing else target.url
    print(
        f"generated {appointments['total']} appointments as of {manifest['generator']['as_of']}: "
        f"{manifest['events']['messages']} event messages in {out_dir / 'events'}, "
        f"{manifest['feedback']['files']} feedback files in {where}, manifest {out_dir / 'manifest.json'}"
    )
    print("key insights: " + json.dumps(manifest["key_insights"]["appointment_status_share_pct"]))
    return 0


__all__ = ["generate", "main"]
