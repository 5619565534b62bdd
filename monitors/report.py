"""The monitoring dashboard: one self-contained HTML page from monitoring.monitor_results, with every
check's current state and the trend of its observed value over recent runs (inline SVG, no network)."""

from __future__ import annotations

import html
from collections import defaultdict
from datetime import datetime
from pathlib import Path

COLORS = {"pass": "#2e7d32", "warn": "#ef6c00", "error": "#c62828"}


def fetch_history(conn, runs: int = 50) -> list[tuple]:
    with conn.cursor() as cur:
        cur.execute(
            """
            with recent_runs as (
                select run_id, started_at from monitoring.monitor_runs order by started_at desc limit %s
            )
            select results.check_name, results.check_type, results.status, results.observed_value,
                   results.warn_threshold, results.error_threshold, results.message, recent_runs.started_at
            from monitoring.monitor_results as results
            inner join recent_runs on results.run_id = recent_runs.run_id
            order by results.check_name, recent_runs.started_at
            """,
            (runs,),
        )
        rows = cur.fetchall()
    conn.commit()
    return rows


def sparkline(points: list[tuple[float | None, str]], width: int = 160, height: int = 28) -> str:
    values = [value for value, _ in points if value is not None]
    if not values:
        return ""
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    step = width / max(len(points) - 1, 1)
    coords, dots = [], []
    for i, (value, status) in enumerate(points):
        if value is None:
            continue
        x = i * step
        y = height - 3 - (value - low) / span * (height - 6)
        coords.append(f"{x:.1f},{y:.1f}")
        dots.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2" fill="{COLORS[status]}"/>')
    return (
        f'<svg class="trend" width="{width}" height="{height}" viewBox="0 0 {width} {height}">'
        f'<polyline fill="none" stroke="#607d8b" stroke-width="1.2" points="{" ".join(coords)}"/>'
        f"{''.join(dots)}</svg>"
    )


def render(rows: list[tuple], generated_at: datetime) -> str:
    by_check: dict[str, list[tuple]] = defaultdict(list)
    for row in rows:
        by_check[row[0]].append(row)
    body = []
    order = {"error": 0, "warn": 1, "pass": 2}
    latest = sorted(by_check.values(), key=lambda history: (order[history[-1][2]], history[-1][0]))
    for history in latest:
        name, check_type, status, value, warn, error, message, at = history[-1]
        trend = sparkline([(h[3], h[2]) for h in history])
        shown = "" if value is None else f"{value:g}"
        body.append(
            f'<tr class="check {status}"><td>{html.escape(name)}</td><td>{html.escape(check_type)}</td>'
            f'<td><span class="badge" style="background:{COLORS[status]}">{status}</span></td>'
            f"<td>{html.escape(shown)}</td><td>{html.escape(warn or '')}</td><td>{html.escape(error or '')}</td>"
            f"<td>{trend}</td><td>{html.escape(message or '')}</td>"
            f"<td>{at:%Y-%m-%d %H:%M} UTC</td></tr>"
        )
    counts = {s: sum(1 for h in latest if h[-1][2] == s) for s in order}
    summary = " · ".join(f"{counts[s]} {s}" for s in order)
    empty = '<p class="empty">No monitor runs yet: run <code>make monitor</code>.</p>' if not rows else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>telemed-elt monitors</title>
<style>
body {{ font: 14px system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; width: 100%; }}
th, td {{ border-bottom: 1px solid #ddd; padding: 6px 8px; text-align: left; vertical-align: middle; }}
th {{ background: #f5f5f5; }}
.badge {{ color: #fff; border-radius: 3px; padding: 2px 6px; font-size: 12px; }}
</style></head>
<body><h1>Data health: monitors</h1>
<p>{summary} &nbsp; (generated {generated_at:%Y-%m-%d %H:%M} UTC)</p>{empty}
<table><thead><tr><th>check</th><th>type</th><th>status</th><th>observed</th><th>warn</th><th>error</th>
<th>trend (recent runs)</th><th>message</th><th>last run</th></tr></thead>
<tbody>{"".join(body)}</tbody></table></body></html>
"""


def write_report(conn, path: Path, generated_at: datetime) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(fetch_history(conn), generated_at))
    return path
