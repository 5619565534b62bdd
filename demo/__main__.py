"""``python -m demo`` (``make demo``): the whole pipeline on a generated clinic, one line per step.

Services up, a generated world sent to Kafka and dropped in the landing folder, the loaders, ``dbt build``;
then a week later the late events and late feedback forms arrive (only they are sent), the loaders and an
incremental build again; the monitors, the dashboards and the Key Insights. Every command's full output
goes to ``.local/logs/demo-<time>.log``; the console gets a summary, the warnings explained, and what to
open or run next.

The business clock (``TELEMED_AS_OF``, dbt's var ``as_of``) is pinned to the day after the world's period,
so ages and data recency are measured where the world ends, whatever day the demo runs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import re
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from runtime import db
from runtime.dbt_cli import command as dbt_command
from runtime.settings import DBT_ROLE, PROJECT_ROOT, Settings, SettingsError

# The generator's default period ends on 2026-10-31: the world's "now" is the next midnight, and a week
# later every late event and form of the period has arrived.
DEMO_AS_OF = "2026-11-01T00:00:00Z"
LATE_AS_OF = "2026-11-07T00:00:00Z"

# Warnings a correct pipeline shows on the demo's data, and why. Anything else is worth a look.
EXPECTED = {
    "dbt_test:assert_feedback_forms_match_an_appointment": (
        "the generator plants valid feedback forms for appointments that never existed ({unknown} in its "
        "manifest); they stay in raw and out of fact_feedback"
    ),
    "dbt_test:assert_completed_appointments_have_complete_measures": (
        "a `completed` event arrived before its `started` event (late, out-of-order delivery); the next "
        "build after the rest arrives fills the measures in"
    ),
    "dbt_test:assert_rescheduled_appointments_have_a_successor": (
        "a rebooked appointment's own events are still on their way (late delivery)"
    ),
}

# At most this many failing checks are listed on the console; the report has them all.
SHOWN_CHECKS = 10

log = logging.getLogger("demo")


class StepFailed(RuntimeError):
    pass


def _as_of(text: str) -> str:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 timestamp: {text!r}") from None
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"needs a UTC offset, e.g. 2026-11-01T00:00:00Z: {text!r}")
    return text


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
    return value


def _seed(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=_positive, default=50_000, help="appointments (default %(default)s)")
    parser.add_argument("--seed", type=_seed, default=42, help="random seed (default %(default)s)")
    parser.add_argument(
        "--as-of", type=_as_of, default=DEMO_AS_OF, help="the business clock, TELEMED_AS_OF (default %(default)s)"
    )
    parser.add_argument(
        "--late-as-of", type=_as_of, default=LATE_AS_OF, help="when the late round happens (default %(default)s)"
    )
    parser.add_argument("--out", type=Path, help="generator output (default $TELEMED_STATE_DIR/generated)")
    parser.add_argument("--log", type=Path, help="full log file (default .local/logs/demo-<time>.log)")
    args = parser.parse_args(argv)
    if datetime.fromisoformat(args.late_as_of.replace("Z", "+00:00")) <= datetime.fromisoformat(
        args.as_of.replace("Z", "+00:00")
    ):
        parser.error("--late-as-of must be after --as-of")
    return args


# --------------------------------------------------------------------------- sending only what is new


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class SentRecord:
    """Which event files the demo has sent to which topic, so a round sends only what is new: the late
    round the week's arrivals, a second demo nothing it already sent (the quarantine would double)."""

    path: Path
    broker: str
    topic: str
    topic_id: str | None
    files: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path, broker: str, topic: str, topic_id: str | None) -> SentRecord:
        try:
            saved = json.loads(path.read_text())
        except (OSError, ValueError):
            saved = {}
        same_log = topic_id is not None and saved.get("topic_id") == topic_id
        if saved.get("broker") == broker and saved.get("topic") == topic and same_log:
            return cls(path, broker, topic, topic_id, dict(saved.get("files") or {}))
        # Another broker or topic, or the topic was recreated (the embedded broker forgets on restart).
        return cls(path, broker, topic, topic_id)

    def new_files(self, files: list[Path]) -> list[tuple[Path, str]]:
        out = []
        for path in files:
            digest = sha256(path)
            if self.files.get(path.name) != digest:
                out.append((path, digest))
        return out

    def save(self, sent: list[tuple[Path, str]], topic_id: str | None) -> None:
        self.files.update({path.name: digest for path, digest in sent})
        self.topic_id = topic_id
        self.path.parent.mkdir(parents=True, exist_ok=True)
        payload = {"broker": self.broker, "topic": self.topic, "topic_id": topic_id, "files": self.files}
        self.path.write_text(json.dumps(payload, indent=1, sort_keys=True))


# --------------------------------------------------------------------------- the run


@dataclass
class Demo:
    args: argparse.Namespace
    settings: Settings
    log_path: Path
    out_dir: Path
    steps_total: int
    step_no: int = 0
    build_warnings: set[str] = field(default_factory=set)
    monitor_rows: list[tuple] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "TELEMED_AS_OF": self.args.as_of, "DBT_USE_COLORS": "false", "PYTHONUNBUFFERED": "1"}

    def say(self, text: str = "") -> None:
        print(text, flush=True)
        log.info("%s", text)

    def run(self, command: list[str], may_fail: bool = False) -> subprocess.CompletedProcess:
        """A command with its output appended to the log; StepFailed if it fails (unless it ``may_fail``)."""
        log.info("$ %s", " ".join(command))
        for handler in logging.getLogger().handlers:
            handler.flush()
        with self.log_path.open("a") as sink:
            done = subprocess.run(command, cwd=PROJECT_ROOT, env=self.env, stdout=sink, stderr=subprocess.STDOUT)
        if done.returncode != 0 and not may_fail:
            shown = " ".join(command[1:] if command[0] == sys.executable else command)
            raise StepFailed(f"`{shown}` exited with {done.returncode}")
        return done

    def captured(self, command: list[str]) -> str:
        """A command whose output the demo prints: kept in the log as well."""
        log.info("$ %s", " ".join(command))
        done = subprocess.run(command, cwd=PROJECT_ROOT, env=self.env, capture_output=True, text=True)
        log.info("%s%s", done.stdout, done.stderr)
        if done.returncode != 0:
            raise StepFailed(f"`{' '.join(command)}` exited with {done.returncode}")
        return done.stdout

    def step(self, label: str, action) -> None:
        self.step_no += 1
        started = time.monotonic()
        log.info("== step %d: %s", self.step_no, label)
        summary = action()
        seconds = time.monotonic() - started
        self.say(f"[{self.step_no:>2}/{self.steps_total}] {label:<18} {summary}  ({seconds:,.0f} s)")

    # -- steps ---------------------------------------------------------------------------------------

    def loaders(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "loaders", *args]

    def services(self) -> str:
        self.run(self.loaders("services", "up"))
        self.run(self.loaders("db", "init"))
        return self.settings.describe()

    def generate(self, as_of: str) -> str:
        self.run(
            self.loaders(
                "generate", "--scale", str(self.args.scale), "--seed", str(self.args.seed),
                "--out", str(self.out_dir), "--as-of", as_of,
            )
        )  # fmt: skip
        manifest = self.manifest()
        return (
            f"{manifest['appointments']['total']:,} appointments as of {as_of}: "
            f"{manifest['events']['messages']:,} event messages, {manifest['feedback']['files']:,} feedback files"
        )

    def manifest(self) -> dict:
        return json.loads((self.out_dir / "manifest.json").read_text())

    def send_new_events(self) -> str:
        from runtime.kafka import admin_client, topic_id
        from simulator.produce import jsonl_files, produce

        settings = self.settings
        admin = admin_client(settings)
        record = SentRecord.load(
            settings.state_dir / "demo" / "sent-events.json",
            settings.kafka_bootstrap_servers,
            settings.kafka_topic,
            topic_id(admin, settings.kafka_topic),
        )
        files = jsonl_files(self.out_dir / "events")
        new = record.new_files(files)
        if not new:
            return f"nothing new: all {len(files)} files were sent to {settings.kafka_topic} before"
        result = produce(settings, [path for path, _ in new])
        if result.failed:
            raise StepFailed(f"{result.failed} of {result.sent} messages were not delivered")
        record.save(new, topic_id(admin, settings.kafka_topic))
        return f"{result.delivered:,} messages from {len(new)} new file(s) of {len(files)} to {settings.kafka_topic}"

    def load(self) -> str:
        before = self.log_path.stat().st_size
        self.run(self.loaders("load"))
        with self.log_path.open() as handle:
            handle.seek(before)
            text = handle.read()
        events = re.search(r"consume succeeded: read \d+, loaded (\d+), rejected (\d+)", text)
        forms = re.search(r"forms read \d+, loaded (\d+), rejected (\d+)", text)
        reference = re.search(r"reference succeeded: read \d+, loaded (\d+)", text)
        sessions = re.search(r"api succeeded: read \d+, loaded (\d+), rejected (\d+)", text)
        parts = []
        if events:
            parts.append(f"events +{int(events[1]):,} (quarantined {int(events[2]):,})")
        if forms:
            parts.append(f"forms +{int(forms[1]):,} (quarantined {int(forms[2]):,})")
        if reference:
            parts.append(f"clinic versions +{int(reference[1]):,}")
        if sessions:
            parts.append(f"call sessions +{int(sessions[1]):,} (quarantined {int(sessions[2]):,})")
        return "; ".join(parts) or "every loader succeeded"

    def dbt_build(self) -> str:
        done = self.run(self.loaders("env", "--", *dbt_command("build")), may_fail=True)
        results = json.loads((PROJECT_ROOT / "target" / "run_results.json").read_text())
        counts = Counter(str(r["status"]).lower() for r in results["results"])
        warned = sorted(r["unique_id"].split(".")[2] for r in results["results"] if r["status"] == "warn")
        self.build_warnings.update(f"dbt_test:{name}" for name in warned)
        line = (
            f"{counts['success'] + counts['pass']:,} ok, {counts['warn']} warn, "
            f"{counts['error'] + counts['fail']} error, {counts['skipped']} skipped"
        )
        if done.returncode != 0:
            raise StepFailed(f"dbt build failed: {line}")
        if warned:
            line += " (warnings: " + ", ".join(warned) + ")"
        return line

    def monitors(self) -> str:
        self.run([sys.executable, "-m", "monitors"], may_fail=True)
        conn = db.connect(self.settings, role=DBT_ROLE)
        try:
            with conn.cursor() as cur:
                cur.execute(
                    "select status, check_name, observed_value, message from monitoring.monitor_results"
                    " where run_id = (select run_id from monitoring.monitor_runs order by started_at desc limit 1)"
                )
                self.monitor_rows = cur.fetchall()
            conn.commit()
        finally:
            conn.close()
        counts = Counter(row[0] for row in self.monitor_rows)
        return f"{len(self.monitor_rows)} checks: {counts['pass']} pass, {counts['warn']} warn, {counts['error']} error"

    def dashboards(self) -> str:
        self.run([sys.executable, "-m", "dashboards"])
        pages = sorted((self.settings.state_dir / "dashboards").glob("*.html"))
        return f"{len(pages) - 1} dashboards and an index as offline HTML"

    # -- the end ---------------------------------------------------------------------------------------

    def explain_checks(self) -> list[str]:
        unknown = self.manifest()["feedback"].get("forms_unknown_appointment", "?")
        lines = []
        failing = sorted((r for r in self.monitor_rows if r[0] != "pass"), key=lambda r: (r[0] != "error", r[1]))
        skipped = [r for r in failing if r[3].startswith("skipped:")]
        failing = [r for r in failing if not r[3].startswith("skipped:")]
        for status, name, value, message in failing[:SHOWN_CHECKS]:
            shown = f"{value:g}" if isinstance(value, float) else "no value"
            message = message.splitlines()[0] if message else ""
            reason = EXPECTED.get(name)
            if reason:
                lines.append(f"  {status.upper():5} {name} ({shown}): expected: {reason.format(unknown=unknown)}.")
            else:
                lines.append(f"  {status.upper():5} {name} ({shown}): NOT expected: {message}")
        if len(failing) > SHOWN_CHECKS:
            lines.append(f"  ... and {len(failing) - SHOWN_CHECKS} more")
        if skipped:
            lines.append(f"  {len(skipped)} tests skipped because a node they depend on failed")
        if failing or skipped:
            lines.append(f"  every check, with failing rows: {self.report_uri}")
        passed_later = sorted(self.build_warnings - {row[1] for row in self.monitor_rows if row[0] != "pass"})
        for name in passed_later:
            reason = EXPECTED.get(name, "")
            why = f": {reason.format(unknown=unknown)}" if reason else ""
            lines.append(f"  fixed {name} warned in the first build and passes now{why}.")
        return lines

    @property
    def report_uri(self) -> str:
        return (self.settings.state_dir / "monitoring" / "index.html").as_uri()

    def what_next(self) -> list[str]:
        state = self.settings.state_dir
        py = os.path.relpath(sys.executable, Path.cwd()) if sys.executable.startswith(str(Path.cwd())) else "python"
        return [
            "What next",
            f"  health report   {self.report_uri}",
            f"  dashboards      {(state / 'dashboards' / 'index.html').as_uri()}",
            "  dbt docs        make docs-serve, then http://127.0.0.1:8080 (lineage, tests, exposures)",
            f"  SQL             make psql   (or: {py} -m loaders env -- psql)",
            "  monitors again  make monitor            every target: make help",
            f"  full log        {self.log_path}",
            "  The services keep running (make status); make down stops them.",
        ]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    started_at = datetime.now(timezone.utc)
    log_path = args.log or settings.state_dir / "logs" / f"demo-{started_at:%Y%m%dT%H%M%SZ}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(log_path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    demo = Demo(args, settings, log_path, args.out or settings.state_dir / "generated", steps_total=11)

    demo.say(
        f"telemed-elt demo: {args.scale:,} appointments (seed {args.seed}), business clock {args.as_of}, "
        f"late round {args.late_as_of}"
    )
    demo.say(f"full output: {log_path}")
    try:
        demo.step("services", demo.services)
        demo.step("generate", lambda: demo.generate(args.as_of))
        demo.step("send events", demo.send_new_events)
        demo.step("load", demo.load)
        demo.step("dbt build", demo.dbt_build)
        demo.say(f"-- a week later ({args.late_as_of}): late events and forms arrive, only they are sent")
        demo.step("generate", lambda: demo.generate(args.late_as_of))
        demo.step("send events", demo.send_new_events)
        demo.step("load", demo.load)
        demo.step("dbt build", demo.dbt_build)
        demo.step("monitors", demo.monitors)
        demo.step("dashboards", demo.dashboards)
        insights = demo.captured(demo.loaders("insights"))
    except (StepFailed, OSError, ValueError) as exc:
        demo.say(f"demo FAILED at step {demo.step_no + 1}: {exc}")
        demo.say(f"the full output is in {log_path}; the last lines:")
        tail = log_path.read_text(errors="replace").splitlines()[-15:]
        for line in tail:
            print(f"  | {line}")
        return 1
    demo.say()
    explained = demo.explain_checks()
    demo.say("Checks that did not pass, and why" if explained else "Every check passes.")
    for line in explained:
        demo.say(line)
    demo.say()
    demo.say(insights.rstrip())
    demo.say()
    for line in demo.what_next():
        demo.say(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
