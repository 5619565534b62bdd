"""``python -m benchmarks [--events N] [--only CASE ...]``"""

from __future__ import annotations

import argparse
import importlib
import logging
import tempfile
from pathlib import Path

from benchmarks import CASES
from benchmarks.harness import BenchContext, print_table, report, write
from runtime.settings import Settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--events", type=int, default=500_000, help="rows for the loader cases (default 500k)")
    parser.add_argument("--only", nargs="*", help="run only these case modules (short names)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    settings = Settings.from_env()
    with tempfile.TemporaryDirectory(prefix="telemed-bench-") as work:
        ctx = BenchContext(settings=settings, events=args.events, work_dir=Path(work))
        for case in CASES:
            short = case.rsplit(".", 1)[-1]
            if args.only and short not in args.only and short != "copy_reference":
                continue
            module = importlib.import_module(case)
            for result in module.run(ctx):
                ctx.results[result.name] = result
        rows = report(ctx)
    print_table(rows)
    print(f"\nwritten to {write(rows)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
