"""``python -m loaders load`` (``make load``): every loader once, draining what is there, then exit.

Order: reference data first (dimensions before the facts that point at them), then the Kafka events in
drain mode, then the feedback files, then the video platform's call sessions (when TELEMED_VIDEO_API_URL
is configured or the embedded API of ``make up`` listens; otherwise the step is skipped and says so).
Each loader records its own raw.load_runs row; one failing does not stop the others, and the exit code
is non-zero when any failed.
"""

from __future__ import annotations

import argparse
import logging

from loaders import api, consume, feedback, reference
from runtime.settings import Settings

log = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loaders load", description=__doc__.split("\n\n")[0])
    parser.add_argument("--idle-seconds", type=float, default=5.0, help="consumer: idle time that ends the drain")
    parser.add_argument("--group", default=consume.DEFAULT_GROUP, help="consumer group id")
    parser.add_argument(
        "--max-retry-seconds",
        type=float,
        default=300.0,
        help="each loader gives up when Postgres or the broker stay unreachable this long (default 300)",
    )
    args = parser.parse_args(argv)
    retry = ["--max-retry-seconds", str(args.max_retry_seconds)]
    steps = [
        ("reference", reference.main, retry),
        ("consume", consume.main, ["--drain", "--idle-seconds", str(args.idle_seconds), "--group", args.group, *retry]),
        ("feedback", feedback.main, retry),
    ]
    settings = Settings.from_env()
    if not settings.video_api_embedded or api.embedded_api_listening(settings):
        steps.append(("api", api.main, retry))
    else:
        print(f"load: the embedded video API is not running on port {settings.video_api_port}: api skipped (make up)")
    failed = []
    for name, step, step_args in steps:
        log.info("load: %s", name)
        if step(step_args) != 0:
            failed.append(name)
    if failed:
        print(f"load: failed: {', '.join(failed)} (see raw.load_runs and the messages above)")
        return 1
    print("load: every loader succeeded")
    return 0
