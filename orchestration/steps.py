"""``python -m orchestration.steps <step>``: the two DAG steps that are more than one project command,
run in the project's environment (Airflow's own environment holds none of the project's packages).

- ``drain-events``: a drain of the event consumer, unless the ingest service is consuming the topic
  already (then exit 99, which Airflow records as skipped).
- ``load-call-sessions``: the video platform's call sessions (``python -m loaders api``) when an API is
  configured (TELEMED_VIDEO_API_URL) or the embedded one listens; otherwise it says so and succeeds (a
  skipped task would skip the dbt tasks after it).
- ``alert``: the failure alert of one task instance, sent through the monitors' channels (Slack webhook,
  SMTP; ``monitors.alerts.channels_from_env``), each retried with backoff as the monitors do.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
from dataclasses import dataclass

from loaders import api, consume
from monitors import alerts, checks, store
from runtime import db
from runtime.processes import pid_alive
from runtime.settings import Settings

log = logging.getLogger("orchestration.steps")

SKIPPED = 99  # BashOperator's skip_on_exit_code


def ingest_service_runs(settings: Settings, topic: str) -> int | None:
    """The run id of a consumer that follows ``topic`` now (the ingest service), else None.

    A follower records a ``running`` row in raw.load_runs with mode ``follow`` until it stops. On this
    host its pid must still be alive (a killed one leaves its row behind); a follower on another host is
    taken at its row's word, as there is no way to look at its process from here."""
    conn = db.connect(settings)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(
                "select run_id, details->>'host', (details->>'pid')::int from raw.load_runs"
                " where loader = %s and status = 'running' and details->>'mode' = 'follow'"
                " and details->>'topic' = %s order by run_id desc",
                (consume.LOADER_NAME, topic),
            )
            rows = cur.fetchall()
    finally:
        conn.close()
    here = socket.gethostname()
    for run_id, host, pid in rows:
        if host != here or (pid is not None and pid_alive(pid)):
            return run_id
    return None


def drain_events(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m orchestration.steps drain-events")
    parser.add_argument(
        "--group",
        default=os.environ.get("TELEMED_CONSUMER_GROUP") or consume.DEFAULT_GROUP,
        help=f"consumer group (TELEMED_CONSUMER_GROUP, default {consume.DEFAULT_GROUP})",
    )
    parser.add_argument("--idle-seconds", type=float, default=5.0, help="idle time that ends the drain")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    follower = ingest_service_runs(settings, settings.kafka_topic)
    if follower is not None:
        print(f"the ingest service consumes {settings.kafka_topic} (load run {follower}): no drain needed")
        return SKIPPED
    return consume.main(["--drain", "--idle-seconds", str(args.idle_seconds), "--group", args.group])


def load_call_sessions(argv: list[str]) -> int:
    settings = Settings.from_env()
    if settings.video_api_embedded and not api.embedded_api_listening(settings):
        print(f"no video API configured and none embedded on port {settings.video_api_port}: nothing to load")
        return 0
    return api.main(argv)


@dataclass
class TaskFailure(alerts.AlertMessage):
    """A failed task instance, in the shape the monitors' channels send (one error line, its context)."""

    error: str = ""
    log_url: str = ""

    @property
    def subject(self) -> str:
        return f"[{self.project}] Airflow: {self.transitions[0].result.check_name} failed"

    def text(self) -> str:
        result = self.transitions[0].result
        lines = [self.subject, f"run {self.run_id}", "", result.message]
        if self.error:
            lines.append(f"error: {self.error}")
        if self.log_url:
            lines.append(f"log: {self.log_url}")
        return "\n".join(lines) + "\n"


def task_failure(dag: str, task: str, run: str, tries: int, error: str, log_url: str) -> TaskFailure:
    result = checks.CheckResult(
        check_name=f"{dag}.{task}",
        check_type="orchestration",
        status="error",
        observed_value=float(tries),
        message=f"task {task} of {dag} failed after {tries} tr{'ies' if tries != 1 else 'y'}",
    )
    return TaskFailure(
        run_id=run,
        project="telemed-elt",
        transitions=[store.Transition("new", result, None)],
        error=error[-1500:],
        log_url=log_url,
    )


def alert(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m orchestration.steps alert")
    parser.add_argument("--dag", required=True)
    parser.add_argument("--task", required=True)
    parser.add_argument("--run", required=True, help="the DAG run id")
    parser.add_argument("--tries", type=int, required=True)
    parser.add_argument("--error", default="")
    parser.add_argument("--log-url", default="")
    args = parser.parse_args(argv)
    message = task_failure(args.dag, args.task, args.run, args.tries, args.error, args.log_url)
    channels = alerts.channels_from_env()
    if not channels:
        print("no alert channel configured (SLACK_WEBHOOK_URL, SMTP_HOST + ALERT_EMAIL_TO):\n" + message.text())
        return 0
    failed = [channel.name for channel in channels if alerts.deliver(channel, message) is not None]
    sent = [channel.name for channel in channels if channel.name not in failed]
    print(f"alert for {args.dag}.{args.task}: sent to {', '.join(sent) or 'none'}")
    return 1 if failed else 0


STEPS = {"drain-events": drain_events, "load-call-sessions": load_call_sessions, "alert": alert}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "INFO").upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if not argv or argv[0] not in STEPS:
        print(f"usage: python -m orchestration.steps {{{','.join(STEPS)}}} [options]", file=sys.stderr)
        return 2
    return STEPS[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main())
