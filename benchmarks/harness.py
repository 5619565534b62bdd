"""The pieces every benchmark case shares: an isolated database, results, the report."""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from runtime import db
from runtime.settings import Settings

RESULTS_FILE = Path(".local/bench/results.json")


@dataclass
class Result:
    name: str
    rows: int
    seconds: float
    # Which measured case this one is compared with (the COPY reference by default), and how:
    # by throughput (ratio = rows_per_s / reference's) or by time (ratio = seconds / reference's).
    reference: str | None = "copy_reference"
    compare_by: str = "rows_per_s"
    note: str = ""

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


@dataclass
class BenchContext:
    settings: Settings
    events: int
    work_dir: Path
    results: dict[str, Result] = field(default_factory=dict)

    @contextmanager
    def database(self, label: str) -> Iterator[Settings]:
        """A fresh, bootstrapped database for one case, dropped afterwards."""
        name = f"telemed_bench_{label}_{uuid.uuid4().hex[:6]}"
        scoped = dataclasses.replace(self.settings, pg_database=name)
        db.bootstrap(scoped)
        try:
            yield scoped
        finally:
            db.drop_database(self.settings, name)

    def ratio(self, result: Result) -> float | None:
        ref = self.results.get(result.reference or "")
        if ref is None or ref is result:
            return None
        if result.compare_by == "seconds":
            return result.seconds / ref.seconds if ref.seconds else None
        return result.rows_per_s / ref.rows_per_s if ref.rows_per_s else None


@contextmanager
def timed() -> Iterator[list[float]]:
    """``with timed() as t: ...`` then ``t[0]`` is the elapsed seconds."""
    box: list[float] = []
    start = time.perf_counter()
    try:
        yield box
    finally:
        box.append(time.perf_counter() - start)


def report(ctx: BenchContext) -> list[dict]:
    rows = []
    for result in ctx.results.values():
        ratio = ctx.ratio(result)
        rows.append(
            {
                "name": result.name,
                "rows": result.rows,
                "seconds": round(result.seconds, 3),
                "rows_per_s": round(result.rows_per_s, 1),
                "ratio_to_copy": round(ratio, 3)
                if ratio is not None and result.reference == "copy_reference"
                else None,
                "ratio": round(ratio, 3) if ratio is not None else None,
                "reference": result.reference if ratio is not None else None,
                "note": result.note,
            }
        )
    return rows


def print_table(rows: list[dict]) -> None:
    header = f"{'case':<34} {'rows':>10} {'seconds':>9} {'rows/s':>11} {'ratio':>7}  reference / note"
    print(header)
    print("-" * len(header))
    for row in rows:
        ratio = f"{row['ratio']:.3f}" if row["ratio"] is not None else "-"
        tail = " ".join(part for part in (row["reference"] or "", row["note"]) if part)
        print(
            f"{row['name']:<34} {row['rows']:>10} {row['seconds']:>9.3f} {row['rows_per_s']:>11.0f} {ratio:>7}  {tail}"
        )


def write(rows: list[dict], path: Path = RESULTS_FILE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows, indent=2) + "\n")
    return path
