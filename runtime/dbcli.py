"""``python -m loaders db``: bootstrap or drop a database."""

from __future__ import annotations

import argparse
import sys

import psycopg2

from runtime import db
from runtime.settings import Settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loaders db", description=__doc__)
    sub = parser.add_subparsers(dest="action", required=True)
    init = sub.add_parser("init", help="create the database, roles, schemas and raw tables (idempotent)")
    init.add_argument("--database", help="database name (default: PGDATABASE or telemed)")
    drop = sub.add_parser("drop", help="drop a database (used for the isolated test database)")
    drop.add_argument("--database", required=True)
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    try:
        if args.action == "init":
            db.bootstrap(settings, database=args.database)
            print(f"database ready: {settings.describe()}")
        else:
            if args.database == settings.pg_database and not args.database.endswith("_test"):
                parser.error("refusing to drop the configured database; only *_test databases")
            db.drop_database(settings, args.database)
            print(f"dropped database {args.database}")
    except psycopg2.OperationalError as exc:
        print(f"error: cannot reach Postgres ({settings.describe()}): {exc}".rstrip(), file=sys.stderr)
        return 1
    return 0
