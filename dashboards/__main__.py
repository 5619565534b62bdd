"""``python -m dashboards [build|exposures|queries] [options]``: the dashboards as code.

build (default): render the offline HTML dashboards from the marts into ``.local/dashboards/`` (patients'
free-text comments left out unless ``--include-comments``: the pages travel by e-mail) and, when
``METABASE_URL`` is set, provision the same dashboards in Metabase (idempotent: a rerun updates in place).
exposures: write the dbt exposures generated from the definitions (``--check`` only compares).
queries: print every card's two queries as JSON (the benchmarks time them): ``metabase``, what Metabase
runs on an unfiltered dashboard (the card's SQL summed per group in the database), and ``plain``, the
card's own SQL, whose every row the HTML page embeds.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

import psycopg2

from dashboards import exposures
from dashboards.definitions import DefinitionError, load_all
from runtime.settings import REPORTING_ROLE, Settings

log = logging.getLogger("dashboards")


# Set to 1 to put patients' free text (feedback comments) in the offline pages, like --include-comments.
COMMENTS_ENV = "TELEMED_DASHBOARD_COMMENTS"


def build_html(settings: Settings, out_dir: Path, include_comments: bool = False) -> list[Path]:
    from dashboards.data import fetch_dashboard
    from dashboards.render import write_site
    from runtime import db

    dashboards = load_all()
    # The reporting role, as Metabase connects: the pages show exactly what the dashboards may read.
    conn = db.connect(settings, role=REPORTING_ROLE)
    try:
        data = {d.key: fetch_dashboard(conn, d, include_comments) for d in dashboards}
    finally:
        conn.close()
    return write_site(dashboards, data, out_dir)


def provision_metabase(settings: Settings) -> int:
    from dashboards.metabase import MetabaseConfig, MetabaseError, provision

    try:
        config = MetabaseConfig.from_env(settings)
        report = provision(config, load_all())
    except MetabaseError as exc:
        print(f"metabase provisioning failed: {exc}", file=sys.stderr)
        return 1
    print(report.summary())
    return 0


def card_queries(dashboards) -> list[dict[str, str]]:
    from dashboards.query import bind, metabase_sql

    queries = []
    for dashboard in dashboards:
        for card in dashboard.cards:
            # No filter value: Metabase drops every optional clause. No parameter is left to bind, so the
            # %-escaping bind does for psycopg2 is undone: the text runs as it is.
            unfiltered = bind(metabase_sql(card), {})
            queries.append(
                {
                    "card": f"{dashboard.key}.{card.key}",
                    "metabase": unfiltered.sql.replace("%%", "%"),
                    "plain": card.sql,
                }
            )
    return queries


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dashboards", description=__doc__)
    parser.add_argument("command", nargs="?", choices=("build", "exposures", "queries"), default="build")
    parser.add_argument("--out", type=Path, help="HTML output folder (default: <state dir>/dashboards)")
    parser.add_argument("--html-only", action="store_true", help="skip Metabase even when METABASE_URL is set")
    parser.add_argument("--check", action="store_true", help="exposures: fail when the file is out of date")
    parser.add_argument(
        "--include-comments",
        action="store_true",
        default=os.environ.get(COMMENTS_ENV, "") == "1",
        help=f"put patients' feedback comments in the offline HTML (default: left out; or {COMMENTS_ENV}=1)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        dashboards = load_all()
    except DefinitionError as exc:
        print(f"dashboard definitions: {exc}", file=sys.stderr)
        return 2

    if args.command == "queries":
        print(json.dumps(card_queries(dashboards), indent=1))
        return 0

    if args.command == "exposures":
        if args.check:
            if exposures.is_current(dashboards):
                print(f"{exposures.EXPOSURES_PATH.relative_to(exposures.PROJECT_ROOT)} is up to date")
                return 0
            print("dbt exposures are out of date: run `python -m dashboards exposures`", file=sys.stderr)
            return 1
        path = exposures.write(dashboards)
        print(f"wrote {len(dashboards)} exposures to {path.relative_to(exposures.PROJECT_ROOT)}")
        return 0

    settings = Settings.from_env()
    out_dir = args.out or settings.state_dir / "dashboards"
    try:
        pages = build_html(settings, out_dir, args.include_comments)
    except psycopg2.OperationalError as exc:
        print(
            f"cannot read the marts ({settings.describe()}): {str(exc).strip()}; is the database up?", file=sys.stderr
        )
        return 1
    print(f"html: {len(pages) - 1} dashboards and an index in {out_dir} (open {pages[0]})")
    if args.html_only:
        return 0
    if not os.environ.get("METABASE_URL"):
        print("metabase: METABASE_URL is not set, so only the HTML dashboards were built")
        return 0
    return provision_metabase(settings)


if __name__ == "__main__":
    sys.exit(main())
