"""The project's one command line: ``python -m loaders <command> [options]``.

Commands live in their own packages (runtime, simulator, loaders, dashboards, stewardship); this names each by module
path and imports only the one asked for, so the loaders never import the services supervisor."""

from __future__ import annotations

import importlib
import logging
import os
import sys

# command -> (module, one-line help). Each module exposes main(argv) -> int.
COMMANDS: dict[str, tuple[str, str]] = {
    "services": ("runtime.services", "start, stop or report the embedded Postgres and broker"),
    "env": ("runtime.envcmd", "print the effective connection settings, or run a command with them"),
    "db": ("runtime.dbcli", "bootstrap the database (roles, schemas, raw tables) or drop a test database"),
    "generate": ("simulator.generate", "make synthetic clinic data, events, feedback files and a manifest"),
    "produce": ("simulator.produce", "send appointment events to Kafka"),
    "video-api": ("simulator.api_server", "serve the video platform's call-sessions API from the generated world"),
    "consume": ("loaders.consume", "load appointment events from Kafka into raw, exactly once"),
    "feedback": ("loaders.feedback", "load feedback form files from the landing folder"),
    "reference": ("loaders.reference", "copy new and changed clinic reference rows into raw"),
    "api": ("loaders.api", "load the video platform's call sessions from its API, incremental, exactly once"),
    "load": ("loaders.load", "run every loader once, draining what is there"),
    "serve": ("loaders.serve", "ingest as a service: consumer and feedback watcher, supervised, with metrics"),
    "insights": ("dashboards.insights", "print the original design's Key Insights computed from the marts"),
    "retention": ("stewardship.retention", "show (or --apply) what retention.yml says is due for deletion"),
    "erase": ("stewardship.erasure", "remove a patient's identifiers from every table that holds them"),
}


def _usage() -> str:
    lines = ["usage: python -m loaders <command> [options]", "", "commands:"]
    lines += [f"  {name:<10} {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "`python -m loaders <command> --help` documents each command."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    return module.main(rest)


if __name__ == "__main__":
    sys.exit(main())
