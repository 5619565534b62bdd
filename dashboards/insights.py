"""``python -m loaders insights``: the original design's Key Insights, computed from the marts.

The queries are the dbt analyses (`analyses/key_insight_*.sql`), compiled once by dbt and run here, each
printed under its own header comment (which states the original design's figures for comparison).
"""

from __future__ import annotations

import argparse
import os
import subprocess
from pathlib import Path

from runtime import db
from runtime.dbt_cli import command as dbt_command
from runtime.envcmd import child_env
from runtime.settings import PROJECT_ROOT, REPORTING_ROLE, Settings


def compile_analyses(settings: Settings, target: Path) -> list[Path]:
    done = subprocess.run(
        dbt_command("compile", "--select", "resource_type:analysis", "--target-path", str(target), "--quiet"),
        cwd=PROJECT_ROOT,
        env={**os.environ, **child_env(settings)},
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"dbt compile failed:\n{done.stdout[-3000:]}{done.stderr[-2000:]}")
    return sorted((target / "compiled" / "telemed" / "analyses").glob("*.sql"))


def render_table(columns: list[str], rows: list[tuple]) -> str:
    cells = [columns, *[["" if v is None else str(v) for v in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    lines = ["  ".join(value.ljust(widths[i]) for i, value in enumerate(row)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loaders insights", description=__doc__)
    parser.add_argument("--target-path", type=Path, default=PROJECT_ROOT / "target" / "insights")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    # Run as the reporting role: the insights read marts only, as a dashboard would.
    conn = db.connect(settings, role=REPORTING_ROLE)
    try:
        for path in compile_analyses(settings, args.target_path):
            text = path.read_text()
            header = [line[3:] for line in text.splitlines() if line.startswith("-- ")]
            with conn.cursor() as cur:
                cur.execute(text)
                columns = [d.name for d in cur.description]
                rows = cur.fetchall()
            conn.commit()
            print("\n".join(header))
            print(render_table(columns, rows))
            print()
    finally:
        conn.close()
    return 0
