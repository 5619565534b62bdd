"""``make scale`` (``python -m benchmarks.scale``): the whole pipeline at scale, stage by stage.

Generates ``--scale`` appointments (10M by default), sends their events through Kafka into raw with the
consumer, loads the clinic's tables and the feedback files with their loaders, builds the dbt project,
and prints for each stage its wall time, rows per second and the resident peak of its process tree, with
the embedded broker's and Postgres's peaks beside it. Everything runs in a database of its own, dropped
at the end (``--keep`` keeps it), on the services of ``make up``.

Memory stays bounded whatever the scale: the embedded broker (Tansu) keeps topics in memory, so the
events go through in slices of arrival-day files (``--slice-mb``), each produced compressed into a topic
of its own, drained by the consumer and deleted before the next is produced. A stage is stopped, and the
run with it, when the machine's available memory falls under ``--min-available-gib``.

Each stage is a child process running the project's own command (``python -m loaders ...``, dbt), so the
figures are those of the commands a user runs; the peaks are sampled from /proc every second (a stage run
by two processes side by side keeps the larger one's), and each stage's CPU time is the kernel's account of
its process tree. The stages run in three phases, generate, load and build; in the load phase the loaders
run side by side as they do in production (the file loaders beside the events, each slice's consumers, two
in one group by default, beside its producer; ``--one-at-a-time`` runs each loader alone). Each phase
reports the CPU-seconds of its stages, Postgres and the broker, and how many cores that kept busy; their
sum over the machine's cores is the floor no schedule of the same work can beat.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import psutil

from benchmarks.hourly import TARGET_CARD_SECONDS, CardTiming, time_cards
from runtime import db
from runtime.dbt_cli import command as dbt_command
from runtime.kafka import admin_client, ensure_topic
from runtime.settings import Settings

PROJECT_DIR = Path(__file__).resolve().parent.parent
DEFAULT_SCALE = 10_000_000
# Issue 20's targets: the whole run at 10M under 20 minutes; the generator at 100k event messages a second.
TARGET_SCALE = 10_000_000
TARGET_SECONDS = 20 * 60
GENERATOR_TARGET = 100_000
GIB = 1024**3
MIB = 1024**2


@dataclass
class Stage:
    """One command of the run (a stage), over all its runs: wall time from start to end, and the CPU time of
    its own process tree."""

    name: str
    rows: int = 0
    unit: str = "rows"
    seconds: float = 0.0
    peak_rss: int = 0  # the stage's own process tree
    broker_peak: int = 0
    postgres_peak: int = 0
    cpu: float = 0.0  # CPU-seconds (user + system) of its processes, from the kernel's account of each child
    runs: int = 0
    failed: list[str] = field(default_factory=list)
    _spans: list[tuple[float, float]] = field(default_factory=list, repr=False)

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0

    def ran(self, started: float, ended: float) -> None:
        """Count a run from ``started`` to ``ended``: the stage's seconds are the time any of its runs was
        running, so two consumers side by side count their common time once."""
        spans = sorted([*self._spans, (started, ended)])
        merged = [spans[0]]
        for begin, end in spans[1:]:
            if begin <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], end))
            else:
                merged.append((begin, end))
        self._spans = merged
        self.seconds = sum(end - begin for begin, end in merged)


@dataclass
class Phase:
    """Stages that run side by side (or one alone), with what Postgres and the broker did meanwhile: their
    CPU-seconds over the phase's wall time is how many of the machine's cores it kept busy."""

    name: str
    stages: list[str] = field(default_factory=list)
    seconds: float = 0.0
    cpu: float = 0.0  # the stages' own processes
    postgres_cpu: float = 0.0
    broker_cpu: float = 0.0

    @property
    def all_cpu(self) -> float:
        return self.cpu + self.postgres_cpu + self.broker_cpu

    @property
    def cores_busy(self) -> float:
        return self.all_cpu / self.seconds if self.seconds else 0.0


class MemoryStop(RuntimeError):
    """Available memory fell under the floor: the run stops rather than push the machine into swapless OOM."""


class StageFailed(RuntimeError):
    """A command whose failure would make the rest of the run meaningless failed (a slice's producer or
    consumer: its topic is kept, not deleted undrained); the run stops there."""


def _resident(member: psutil.Process) -> int:
    """A process's proportional set size (its own pages, plus each shared page divided among the processes
    that map it), so a tree's sum counts shared memory once: Postgres's shared buffers are mapped by every
    backend, and summing their RSS counted 4 GB of buffers once per backend (33 GiB "peak" at 10M while the
    machine's available memory fell by 7). The RSS where PSS cannot be read."""
    try:
        return member.memory_full_info().pss
    except (psutil.AccessDenied, AttributeError):
        return member.memory_info().rss


def _tree_rss(process: psutil.Process) -> int:
    """Resident bytes of a process and all its descendants (0 for any that ended meanwhile), shared pages
    counted once (_resident)."""
    total = 0
    try:
        members = [process, *process.children(recursive=True)]
    except psutil.Error:
        return 0
    for member in members:
        with contextlib.suppress(psutil.Error):
            total += _resident(member)
    return total


def server_cpu(process: psutil.Process | None) -> float:
    """CPU-seconds a server has used so far: its own, its ended children's (Postgres's backends, reaped by
    the postmaster) and its live children's. Sampled before and after a stage, the difference is the
    stage's share, a backend that ends meanwhile counted once (its time moves from live to reaped)."""
    if process is None:
        return 0.0
    try:
        own = process.cpu_times()
        total = own.user + own.system + own.children_user + own.children_system
        children = process.children()
    except psutil.Error:
        return 0.0
    for child in children:
        with contextlib.suppress(psutil.Error):
            times = child.cpu_times()
            total += times.user + times.system
    return total


def slice_files(files: list[Path], limit: int) -> list[list[Path]]:
    """Consecutive files (arrival days, in replay order) in groups of at most ``limit`` bytes; a file larger
    than the limit is a group of its own."""
    groups: list[list[Path]] = [[]]
    size = 0
    for path in files:
        length = path.stat().st_size
        if groups[-1] and size + length > limit:
            groups.append([])
            size = 0
        groups[-1].append(path)
        size += length
    return [group for group in groups if group]


def _listener(port: int) -> psutil.Process | None:
    """The process listening on a loopback TCP port (the embedded broker or Postgres)."""
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
            return psutil.Process(conn.pid)
    return None


class Child:
    """A stage's command, running: started with its output in a log file, sampled, and reaped with the
    kernel's account of its resources (the child's and its waited-for descendants')."""

    def __init__(self, stage: Stage, command: list[str], log_path: Path, env: dict[str, str], cwd: Path) -> None:
        self.stage = stage
        self.log_path = log_path
        self._log = log_path.open("a")
        self.started = time.perf_counter()
        self.popen = subprocess.Popen(command, cwd=cwd, env=env, stdout=self._log, stderr=subprocess.STDOUT)
        self.process = psutil.Process(self.popen.pid)
        self.ended_at: float | None = None
        self.returncode: int | None = None

    @property
    def ended(self) -> bool:
        return self.returncode is not None

    def reap(self, block: bool = False) -> None:
        """If the child has ended (or, with ``block``, once it has): charge its stage its wall time and CPU."""
        if self.ended:
            return
        pid, status, usage = os.wait4(self.popen.pid, 0 if block else os.WNOHANG)
        if pid == 0:
            return
        self.ended_at = time.perf_counter()
        self.returncode = self.popen.returncode = os.waitstatus_to_exitcode(status)
        self._log.close()
        stage = self.stage
        stage.ran(self.started, self.ended_at)
        stage.cpu += usage.ru_utime + usage.ru_stime
        stage.runs += 1
        if self.returncode != 0:
            stage.failed.append(f"exit {self.returncode}, see {self.log_path}")

    def stop(self, grace: float = 30.0) -> None:
        """Terminate the child, kill it after ``grace`` seconds, and reap it."""
        if self.ended:
            return
        self.popen.terminate()
        for _ in range(int(grace * 10)):
            self.reap()
            if self.ended:
                return
            time.sleep(0.1)
        self.popen.kill()
        self.reap(block=True)


class Sampler:
    """Samples the running stages' trees, the broker and Postgres every ``interval`` seconds, keeping peaks;
    stops the stages when available memory falls under the floor."""

    def __init__(self, broker: psutil.Process | None, postgres: psutil.Process | None, floor: int) -> None:
        self.broker = broker
        self.postgres = postgres
        self.floor = floor
        self.min_available = psutil.virtual_memory().available
        self.max_load = os.getloadavg()[0]

    def watch(self, children: list[Child], until: list[Child] | None = None, interval: float = 1.0) -> str | None:
        """Sample ``children`` until every one of ``until`` (all of them unless given) has ended; returns why
        they were stopped, or None. Each child that ends is reaped here, so its stage gets its wall time and
        the CPU time the kernel accounted to it and its descendants."""
        waiting = until if until is not None else children
        while True:
            for child in children:
                child.reap()
            if all(child.ended for child in waiting):
                return None
            for child in children:
                if not child.ended:
                    child.stage.peak_rss = max(child.stage.peak_rss, _tree_rss(child.process))
                    self.sample(child.stage)
            if self.min_available < self.floor:
                for child in children:
                    child.stop()
                return f"available memory fell to {self.min_available / GIB:.1f} GiB"
            time.sleep(interval)

    def sample(self, stage: Stage) -> None:
        if self.broker is not None:
            stage.broker_peak = max(stage.broker_peak, _tree_rss(self.broker))
        if self.postgres is not None:
            stage.postgres_peak = max(stage.postgres_peak, _tree_rss(self.postgres))
        self.min_available = min(self.min_available, psutil.virtual_memory().available)
        self.max_load = max(self.max_load, os.getloadavg()[0])

    def broker_rss(self) -> int:
        return _tree_rss(self.broker) if self.broker is not None else 0


class ScaleRun:
    def __init__(self, settings: Settings, args: argparse.Namespace, work: Path) -> None:
        self.args = args
        self.work = work
        self.database = f"telemed_scale_{uuid.uuid4().hex[:6]}"
        self.settings = dataclasses.replace(settings, pg_database=self.database)
        self.run_id = uuid.uuid4().hex[:8]
        self.stages: dict[str, Stage] = {}
        self.phases: dict[str, Phase] = {}
        self._phase: Phase | None = None  # the phase running, which the stages started are listed in
        # Each dashboard card on the built warehouse (None: it reads a table this run does not build, the
        # monitors' history); not a stage of the end-to-end time.
        self.card_times: dict[str, CardTiming | None] = {}
        self.notes: list[str] = []
        self.sampler = Sampler(
            _listener(int(settings.kafka_bootstrap_servers.rsplit(":", 1)[1])) if settings.kafka_embedded else None,
            _listener(settings.pg_port) if settings.pg_embedded else None,
            int(args.min_available_gib * GIB),
        )
        self.env = {
            **os.environ,
            "PGDATABASE": self.database,
            "TELEMED_LANDING_DIR": str(work / "landing"),
            "DBT_TARGET_PATH": str(work / "dbt-target"),
            "DBT_LOG_PATH": str(work / "dbt-logs"),
            "PYTHONUNBUFFERED": "1",
        }

    def stage(self, name: str, unit: str) -> Stage:
        return self.stages.setdefault(name, Stage(name, unit=unit))

    def start(self, name: str, unit: str, command: list[str], log_name: str | None = None) -> Child:
        """One run of a stage's command (output kept in the work folder), left running."""
        if self._phase is not None and name not in self._phase.stages:
            self._phase.stages.append(name)
        return Child(self.stage(name, unit), command, self.work / f"{log_name or name}.log", self.env, PROJECT_DIR)

    def wait(self, children: list[Child], until: list[Child] | None = None) -> None:
        """Sample and reap ``children`` until ``until`` (all unless given) have ended."""
        stopped = self.sampler.watch(children, until)
        if stopped:
            names = ", ".join(sorted({child.stage.name for child in children}))
            raise MemoryStop(f"{names}: {stopped}; stopped (see the logs in {self.work})")

    def run(self, name: str, unit: str, command: list[str], log_name: str | None = None) -> Stage:
        """One run of a stage's command, alone, to its end."""
        child = self.start(name, unit, command, log_name)
        self.wait([child])
        return child.stage

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[Phase]:
        """The stages run inside: the phase's wall time, their CPU time and the servers' meanwhile."""
        phase = self._phase = self.phases.setdefault(name, Phase(name))
        stages = sum(stage.cpu for stage in self.stages.values())
        postgres, broker = server_cpu(self.sampler.postgres), server_cpu(self.sampler.broker)
        started = time.perf_counter()
        try:
            yield phase
        finally:
            self._phase = None
            phase.seconds += time.perf_counter() - started
            phase.cpu += sum(stage.cpu for stage in self.stages.values()) - stages
            phase.postgres_cpu += server_cpu(self.sampler.postgres) - postgres
            phase.broker_cpu += server_cpu(self.sampler.broker) - broker

    def loaders(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "loaders", *args]

    # stages ---------------------------------------------------------------------------------------------
    def generate(self) -> dict:
        out = self.work / "generated"
        command = self.loaders("generate", "--scale", str(self.args.scale), "--seed", str(self.args.seed))
        command += ["--out", str(out), "--landing", str(self.work / "landing"), "--clean"]
        with self.phase("generate"):
            stage = self.run("generate", "messages", command)
        manifest = json.loads((out / "manifest.json").read_text())
        stage.rows = manifest["events"]["messages"]
        return manifest

    def load(self, manifest: dict) -> None:
        """The loaders: the events through Kafka slice by slice, the clinic's tables, the feedback files.

        By default they run as they do in production, side by side: the file loaders from the start, each
        slice's producer and consumers together (``--consumers`` members of one group share the topic's
        ``--partitions``, reading while the producer sends). With ``--one-at-a-time`` each loader runs alone,
        so each stage's figures are its own."""
        with self.phase("load"):
            files: list[Child] = []
            if not self.args.one_at_a_time:
                files = [self.start("reference", "rows", self.loaders("reference"))]
                files.append(self.start("feedback", "files", self.loaders("feedback")))
            try:
                self.events(manifest["events"]["messages"], manifest["events"]["valid_distinct"], files)
            except BaseException:
                for child in files:
                    child.stop()
                raise
            if self.args.one_at_a_time:
                self.run("reference", "rows", self.loaders("reference"))
                self.run("feedback", "files", self.loaders("feedback"))
            else:
                self.wait(files)
        self.stages["reference"].rows = self._count(
            "select (select count(*) from raw.providers) + (select count(*) from raw.patients)"
        )
        self.stages["feedback"].rows = manifest["feedback"]["files"]

    def events(self, messages: int, valid: int, beside: list[Child]) -> None:
        """Produce and drain slice after slice, each into a topic of its own deleted afterwards; ``beside``
        are other stages' children running meanwhile (sampled and reaped too)."""
        admin = admin_client(self.settings)
        slices = slice_files(sorted((self.work / "generated" / "events").glob("*.jsonl")), self.args.slice_mb * MIB)
        for index, files in enumerate(slices):
            folder = self.work / "slices" / f"{index:03d}"
            folder.mkdir(parents=True, exist_ok=True)
            for path in files:
                (folder / path.name).symlink_to(path)
            topic = f"telemed.scale.{self.run_id}.{index:03d}"
            produce = self.loaders("produce", "--from-jsonl", str(folder), "--topic", topic)
            produce += ["--compression", self.args.compression]
            # A group per slice (each slice is a topic of its own, and the consumers keep their offsets in
            # Postgres by group, topic and partition): the embedded broker let the next slice's consumers
            # join a group its previous members had just left only after 3 minutes, or not in 5.
            group = f"telemed-scale-{self.run_id}-{index:03d}"
            consume = self.loaders("consume", "--drain", "--topic", topic, "--group", group)
            consume += ["--idle-seconds", str(self.args.idle_seconds)]
            # The topic first, with the partitions the consumers share (drain mode ends at once on a missing topic).
            ensure_topic(admin, topic, self.args.partitions, timeout=60)
            producer = self.start("produce", "messages", produce)
            if self.args.one_at_a_time:
                self.wait([producer])
            consumers = [self.start("consume", "messages", consume) for _ in range(self.args.consumers)]
            self.wait([*beside, producer, *consumers], until=[producer, *consumers])
            if max(consumer.ended_at or 0.0 for consumer in consumers) < (producer.ended_at or 0.0):
                # They found the topic quiet for --idle-seconds before the producer was done (a slow start):
                # drain the rest, from the offsets they committed.
                self.notes.append(f"slice {index + 1}: the consumers ended before the producer; drained again")
                self.wait([*beside, again := self.start("consume", "messages", consume)], until=[again])
            for name in ("produce", "consume"):
                if self.stages[name].failed:
                    raise StageFailed(
                        f"slice {index + 1}: {name} failed ({self.stages[name].failed[-1]}); topic {topic} kept"
                    )
            before = self.sampler.broker_rss()
            admin.delete_topics([topic])[topic].result(timeout=60)
            time.sleep(2)
            after = self.sampler.broker_rss()
            self.notes.append(
                f"slice {index + 1}/{len(slices)}: {len(files)} files, broker RSS {before / MIB:.0f} MiB "
                f"before deleting its topic, {after / MIB:.0f} MiB after"
            )
            print(self.notes[-1], flush=True)
        loaded = self._count("select count(*) from raw.appointment_events")
        rejected = self._count("select count(*) from raw.appointment_events_rejected")
        self.notes.append(f"raw.appointment_events {loaded} rows (manifest: {valid} valid), {rejected} rejected")
        # Both count the messages sent: the consumer reads every one (duplicates it skips included).
        self.stages["produce"].rows = messages
        self.stages["consume"].rows = messages

    def build(self, appointments: int) -> None:
        command = self.loaders("env", "--", *dbt_command("build", "--exclude", "tag:monitor"))
        command += ["--project-dir", str(PROJECT_DIR), "--profiles-dir", str(PROJECT_DIR)]
        with self.phase("build"):
            build = self.run("build", "appointments", command, log_name="dbt")
        build.rows = appointments

    def cards(self) -> None:
        """Every dashboard card's SQL on the built warehouse, as the reporting role (benchmarks.hourly)."""
        if not self.stages["build"].failed:
            self.card_times = time_cards(self.settings)

    def _count(self, sql: str) -> int:
        conn = db.connect(self.settings)
        try:
            with conn.cursor() as cur:
                cur.execute(sql)
                return int(cur.fetchone()[0])
        finally:
            conn.close()


def _card_record(timing: CardTiming | None) -> dict | None:
    if timing is None:
        return None
    return {
        "ms": round(timing.seconds * 1000, 1),
        "html_ms": round(timing.plain_seconds * 1000, 1),
        "html_rows": timing.plain_rows,
    }


def _commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=PROJECT_DIR, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def card_lines(card_times: dict[str, CardTiming | None]) -> list[str]:
    """The cards' verdict against the target (as Metabase runs them), then each timed card, slowest first,
    with its own SQL's time and rows (what the HTML page embeds)."""
    timed = {name: timing for name, timing in card_times.items() if timing is not None}
    if not timed:
        return []
    slowest = max(timed, key=lambda name: timed[name].seconds)
    over = sorted(name for name, timing in timed.items() if timing.seconds >= TARGET_CARD_SECONDS)
    untimed = len(card_times) - len(timed)
    lines = [
        f"dashboard cards on this warehouse, as Metabase runs them: {len(timed)} timed"
        + (f" ({untimed} read tables this run does not build)" if untimed else "")
        + f", slowest {slowest} {timed[slowest].seconds * 1000:.0f} ms, target < {TARGET_CARD_SECONDS * 1000:.0f} ms"
        + " each: "
        + (f"missed by {', '.join(over)}" if over else "met")
    ]
    lines += [
        f"  {name:<50} {timing.seconds * 1000:>8.1f} ms   HTML: {timing.plain_rows:>8} rows"
        f" {timing.plain_seconds * 1000:>8.1f} ms"
        for name, timing in sorted(timed.items(), key=lambda item: -item[1].seconds)
    ]
    return lines


def cpu_lines(phases: list[Phase], scale: int, cores: int) -> list[str]:
    """What the phases' CPU time says about the end-to-end target: however the stages were scheduled or
    overlapped, ``cores`` cores cannot do their CPU-seconds in less than CPU-seconds / cores."""
    total = sum(phase.all_cpu for phase in phases)
    wall = sum(phase.seconds for phase in phases)
    if not total or not wall:
        return []
    at_target = total * TARGET_SCALE / scale
    floor = at_target / cores
    return [
        f"CPU: {total:,.0f} CPU-seconds in all ({sum(p.cpu for p in phases):,.0f} the stages' processes, "
        f"{sum(p.postgres_cpu for p in phases):,.0f} Postgres, {sum(p.broker_cpu for p in phases):,.0f} the "
        f"broker), {total / wall:.2f} of {cores} cores busy on average",
        ("at 10M:" if scale == TARGET_SCALE else f"extrapolated linearly to 10M: {at_target:,.0f} CPU-seconds, so")
        + f" no schedule on {cores} cores takes less than {floor:,.0f} s; the target (< {TARGET_SECONDS} s) "
        + (
            "is within that bound"
            if floor < TARGET_SECONDS
            else f"needs {at_target / (TARGET_SECONDS * cores):.2f} times less CPU"
        ),
    ]


def _print(run: ScaleRun, total: float, stopped: str | None) -> dict:
    args = run.args
    header = (
        f"{'stage':<10} {'seconds':>9} {'rows':>11} {'unit':<12} {'rows/s':>9} {'peak RSS':>9} {'broker':>8} "
        f"{'postgres':>9} {'CPU s':>8}"
    )
    print()
    print(header)
    print("-" * len(header))
    for stage in run.stages.values():
        flag = "  FAILED: " + "; ".join(stage.failed) if stage.failed else ""
        print(
            f"{stage.name:<10} {stage.seconds:>9.1f} {stage.rows:>11} {stage.unit:<12} {stage.rows_per_s:>9.0f} "
            f"{stage.peak_rss / MIB:>7.0f}Mi {stage.broker_peak / MIB:>6.0f}Mi "
            f"{stage.postgres_peak / MIB:>7.0f}Mi {stage.cpu:>8.1f}{flag}"
        )
    print("-" * len(header))
    print(f"{'phase':<10} {'seconds':>9}  CPU-seconds: {'stages':>8} {'Postgres':>9} {'broker':>7}  cores busy  stages")
    for phase in run.phases.values():
        print(
            f"{phase.name:<10} {phase.seconds:>9.1f}  {'':>12} {phase.cpu:>8.1f} {phase.postgres_cpu:>9.1f} "
            f"{phase.broker_cpu:>7.1f}  {phase.cores_busy:>10.2f}  {', '.join(phase.stages)}"
        )
    print("-" * len(header))
    extrapolated = total * TARGET_SCALE / args.scale
    verdict = "met" if extrapolated < TARGET_SECONDS else "missed"
    print(
        f"end to end {total:.0f} s for {args.scale} appointments; "
        + (
            f"target < {TARGET_SECONDS} s at 10M: {verdict}"
            if args.scale == TARGET_SCALE
            else f"{extrapolated:.0f} s extrapolated linearly to 10M, target < {TARGET_SECONDS} s: {verdict}"
        )
    )
    for line in cpu_lines(list(run.phases.values()), args.scale, os.cpu_count() or 1):
        print(line)
    generate = run.stages.get("generate")
    if generate is not None:
        verdict = "met" if generate.rows_per_s >= GENERATOR_TARGET else "missed"
        print(
            f"generator {generate.rows_per_s:,.0f} event messages/s of wall time, target >= {GENERATOR_TARGET:,}: "
            f"{verdict}"
        )
    print(
        f"machine: load average up to {run.sampler.max_load:.1f} on {os.cpu_count()} cores, available memory "
        f"down to {run.sampler.min_available / GIB:.1f} GiB"
    )
    for line in card_lines(run.card_times):
        print(line)
    if stopped:
        print(f"STOPPED: {stopped}")
    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": _commit(),
        "scale": args.scale,
        "seed": args.seed,
        "compression": args.compression,
        "slice_mb": args.slice_mb,
        "total_seconds": round(total, 1),
        "stopped": stopped,
        "max_load": round(run.sampler.max_load, 1),
        "min_available_gib": round(run.sampler.min_available / GIB, 1),
        "stages": [
            {
                "name": s.name,
                "seconds": round(s.seconds, 1),
                "rows": s.rows,
                "unit": s.unit,
                "rows_per_s": round(s.rows_per_s),
                "peak_rss_mib": round(s.peak_rss / MIB),
                "broker_peak_mib": round(s.broker_peak / MIB),
                "postgres_peak_mib": round(s.postgres_peak / MIB),
                "cpu_seconds": round(s.cpu, 1),
                "failed": s.failed,
            }
            for s in run.stages.values()
        ],
        "phases": [
            {
                "name": p.name,
                "stages": p.stages,
                "seconds": round(p.seconds, 1),
                "cpu_seconds": round(p.cpu, 1),
                "postgres_cpu_seconds": round(p.postgres_cpu, 1),
                "broker_cpu_seconds": round(p.broker_cpu, 1),
            }
            for p in run.phases.values()
        ],
        "one_at_a_time": args.one_at_a_time,
        "consumers": args.consumers,
        "partitions": args.partitions,
        "cards": {name: _card_record(timing) for name, timing in run.card_times.items()},
        "notes": run.notes,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.scale", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scale", type=int, default=DEFAULT_SCALE, help="appointments (default %(default)s)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--slice-mb", type=int, default=1024, help="JSONL per broker slice (default %(default)s)")
    parser.add_argument("--compression", default="lz4", help="producer compression (default %(default)s)")
    parser.add_argument("--idle-seconds", type=float, default=2.0, help="the consumer's drain idle wait")
    parser.add_argument(
        "--min-available-gib",
        type=float,
        default=4.0,
        help="stop when the machine's available memory falls under this (default %(default)s)",
    )
    parser.add_argument(
        "--consumers",
        type=int,
        default=2,
        help="consumers in the group, side by side on each slice's topic (default %(default)s)",
    )
    parser.add_argument(
        "--partitions", type=int, default=4, help="partitions of each slice's topic (default %(default)s)"
    )
    parser.add_argument(
        "--one-at-a-time",
        action="store_true",
        help="run each loader alone (by default the file loaders run beside the events, and each slice's "
        "consumer beside its producer)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the database and the generated files")
    parser.add_argument("--results", type=Path, default=Path(".local/bench/scale.jsonl"), help="appended to")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    work = settings.state_dir / "scale" / datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    work.mkdir(parents=True)
    run = ScaleRun(settings, args, work)
    print(f"scale run: {args.scale} appointments, database {run.database}, work folder {work}", flush=True)
    db.bootstrap(run.settings)
    stopped = None
    try:
        manifest = run.generate()
        events, files = manifest["events"]["messages"], manifest["feedback"]["files"]
        print(f"generated: {events} messages, {files} files", flush=True)
        run.load(manifest)
        run.build(manifest["appointments"]["total"])
        run.cards()
    except (MemoryStop, StageFailed) as exc:
        stopped = str(exc)
    # End to end: the phases (the cards are timed after them, not a stage of the pipeline).
    total = sum(phase.seconds for phase in run.phases.values())
    record = _print(run, total, stopped)
    args.results.parent.mkdir(parents=True, exist_ok=True)
    with args.results.open("a") as out:
        out.write(json.dumps(record) + "\n")
    print(f"appended to {args.results}")
    if not args.keep:
        db.drop_database(settings, run.database)
        shutil.rmtree(work, ignore_errors=True)
    failed = stopped or any(stage.failed for stage in run.stages.values())
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
