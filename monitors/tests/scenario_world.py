"""The monitor scenarios' worlds: generated (at the pinned period end), produced to a topic of their own,
loaded and built in a database of their own, with alerts going to the loopback receivers
(conftest.py `receivers`). Used by test_scenarios.py (a clean world through stale data and recovery) and
test_business_alerts.py (a world with injected anomalies), two work units that run on different workers.
"""

from __future__ import annotations

import dataclasses
import email
import email.policy
import os
import subprocess
import sys
import uuid
from pathlib import Path

import yaml

from monitors.checks import THRESHOLDS_FILE
from monitors.tests.conftest import MailSink, WebhookReceiver
from runtime import db
from runtime.settings import PROJECT_ROOT, Settings
from testkit.clock import PERIOD_END
from testkit.dbt import dbt_ok_as_child

# The worlds end on the pinned period end, the day before the as-of every test process is given.
LAST_DAY = PERIOD_END
SCALE = 6000


def run(args: list[str], env: dict[str, str], timeout: int = 600) -> subprocess.CompletedProcess:
    done = subprocess.run(args, env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=timeout)
    return done


def must(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    done = run(args, env)
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@dataclasses.dataclass
class Pipeline:
    settings: Settings
    env: dict[str, str]
    work: Path

    def monitor(self, *extra: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        return run(
            [
                sys.executable,
                "-m",
                "monitors",
                "--dbt-target",
                str(self.work / "target"),
                "--thresholds",
                str(self.work / "thresholds.yml"),
                "--report",
                str(self.work / "monitoring.html"),
                *extra,
            ],
            env or self.env,
        )

    def sql(self, statement: str) -> list[tuple]:
        conn = db.connect(self.settings)
        try:
            with conn, conn.cursor() as cur:
                cur.execute(statement)
                return cur.fetchall() if cur.description else []
        finally:
            conn.close()


def build_pipeline(base: Settings, work: Path, receivers: tuple, generate_args: list[str]) -> Pipeline:
    webhook, smtp = receivers
    name = f"telemed_pytest_mon_{uuid.uuid4().hex[:8]}"
    settings = dataclasses.replace(base, pg_database=name)
    db.bootstrap(settings)
    work.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        **settings.libpq_env(),
        **settings.role_password_env(),  # PGHOST set: the children see a configured server
        "PGDATABASE": name,
        "TELEMED_TOPIC": f"test.monitors.{uuid.uuid4().hex[:8]}",
        "TELEMED_LANDING_DIR": str(work / "landing"),
        "SLACK_WEBHOOK_URL": webhook.url,
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(smtp.port),
        "ALERT_EMAIL_FROM": "monitors@clinic.test",
        "ALERT_EMAIL_TO": "oncall@clinic.test",
    }
    if not base.pg_embedded:
        env.pop("TELEMED_PG_PORT", None)
    # The default bounds, widened where a small test world is noisier than a real clinic's week.
    thresholds = yaml.safe_load(THRESHOLDS_FILE.read_text())
    thresholds["checks"]["avg_overall_satisfaction"] = {"warn": {"min": 2.9}, "error": {"min": 2.5}}
    thresholds["checks"]["completion_rate"] = {"warn": {"min": 0.65}, "error": {"min": 0.55}}
    (work / "thresholds.yml").write_text(yaml.safe_dump(thresholds))
    py = sys.executable
    must(
        [py, "-m", "loaders", "generate", "--scale", str(SCALE), "--end-date", LAST_DAY.isoformat(), "--no-dirty",
         "--out", str(work / "generated"), *generate_args],
        env,
    )  # fmt: skip
    must([py, "-m", "loaders", "produce", "--from-jsonl", str(work / "generated" / "events")], env)
    # A group of its own, like its topic: worlds built at once on one broker must not share a group.
    must([py, "-m", "loaders", "load", "--group", f"{env['TELEMED_TOPIC']}.loader"], env)
    # Seeds, snapshots and models only: every monitor run below runs the data tests itself, so the build's
    # own run of them would be the same work twice. dbt runs in this process, with the environment `python
    # -m loaders env` gives a child (testkit/dbt.py).
    build = ["build", "--exclude-resource-type", "test", "unit_test", "--target-path", str(work / "target")]
    dbt_ok_as_child(env, *build, tail=3000)
    return Pipeline(settings, env, work)


def slack_texts(webhook: WebhookReceiver) -> list[str]:
    return [r["body"]["blocks"][1]["text"]["text"] for r in webhook.requests]


def mail_bodies(sink: MailSink) -> list[str]:
    out = []
    for envelope in sink.messages:
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        out.append(next(p for p in parsed.walk() if p.get_content_type() == "text/plain").get_content())
    return out
