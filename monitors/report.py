"""The monitors' health report: one self-contained HTML page (no network, no script) from
monitoring.monitor_results and the last run's dbt manifest.

What needs attention comes first: errors, then warnings, each with its observed value formatted for a
reader, the thresholds beside it, what the check means, how long it has been in that state, its recent
history, and for a failed dbt test a few of its failing rows (kept by ``dbt build --store-failures`` in
schema ``monitoring_failures``). Below, every check by family, passing data tests folded away. The page
fits a 1,366 px window without horizontal scrolling."""

from __future__ import annotations

import html
import json
import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from psycopg2 import sql

COLORS = {"pass": "#2e7d32", "warn": "#b45f06", "error": "#c62828"}
STATUS_RANK = {"error": 0, "warn": 1, "pass": 2}
STATUS_WORD = {"error": "Error", "warn": "Warning", "pass": "Pass"}
FAMILIES = {
    "freshness": "Freshness of the raw sources",
    "data_quality": "Data quality",
    "business": "Business metrics",
    "technical": "Call quality",
    "performance": "Pipeline performance",
    "dbt_test": "dbt data tests",
}
HISTORY_RUNS = 30
SAMPLE_ROWS = 5
SAMPLE_CELL_CHARS = 80

# The configured checks (monitors/thresholds.yml): a reader's name, what the value means, and its unit.
KNOWN_CHECKS: dict[str, tuple[str, str, str]] = {
    "key_column_null_share": (
        "Missing keys in appointments",
        "Largest share of window appointments with a null key (provider, patient, date, time, status, device).",
        "share",
    ),
    "min_appointments_per_day": (
        "Fewest appointments on a working day",
        "Appointments on the quietest weekday (holidays left out) of the monitor window.",
        "count",
    ),
    "daily_volume_vs_same_weekday": (
        "Day volume against its usual weekday",
        "Lowest ratio of a window day's appointments to the median of the same weekday in the four weeks before.",
        "ratio",
    ),
    "rejected_input_share": (
        "Rejected input",
        "Share of events, forms and feedback files loaded in the window that the loaders quarantined.",
        "share",
    ),
    "completion_rate": ("Completion rate", "Completed appointments over closed ones in the monitor window.", "share"),
    "cancellation_rate": ("Cancellation rate", "Cancelled appointments over closed ones in the window.", "share"),
    "no_show_rate": ("No-show rate", "No-shows over closed appointments in the window.", "share"),
    "avg_overall_satisfaction": (
        "Overall satisfaction",
        "Mean overall satisfaction (1-5) of the feedback forms for window appointments.",
        "score",
    ),
    "technical_issue_share": (
        "Calls with technical issues",
        "Share of started appointments in the window with at least one technical issue.",
        "share",
    ),
    "avg_connection_quality": (
        "Connection quality",
        "Mean connection quality (1-5) of the started appointments in the window.",
        "score",
    ),
    "wait_disagreement_share": (
        "Reported against measured wait",
        "Share of window call sessions whose wait, as the video platform measured it, differs from the wait the "
        "started event reported by more than the tolerance (var call_wait_tolerance_minutes); 0 without sessions.",
        "share",
    ),
    "pipeline_run_seconds": (
        "Pipeline run time",
        "Seconds of the latest run of every loader plus the last dbt build.",
        "seconds",
    ),
    "slowest_model_seconds": ("Slowest dbt model", "Seconds the slowest model of the last dbt build took.", "seconds"),
}

GENERIC_TESTS = {
    "not_null": "{column} is never null",
    "unique": "{column} is unique",
    "accepted_values": "{column} is one of {values}",
    "relationships": "every {column} exists in {to}.{field}",
    "expect_column_values_to_be_between": "{column} is {range}",
    "expect_column_mean_to_be_between": "the mean of {column} is {range}",
    "expect_table_row_count_to_be_between": "the row count{per} is {range}",
    "expect_compound_columns_to_be_unique": "({columns}) is unique",
    "expect_column_values_to_match_regex": "{column} matches {regex}",
    "expect_column_proportion_of_unique_values_to_be_between": "the share of distinct {column} values is {range}",
    "expect_row_values_to_have_recent_data": "the newest {column} is recent, measured from the as-of",
}


# --------------------------------------------------------------------------- data


@dataclass
class Point:
    at: datetime
    status: str
    value: float | None


@dataclass
class Check:
    name: str
    check_type: str
    status: str
    value: float | None
    warn: str | None
    error: str | None
    message: str
    details: dict[str, Any]
    at: datetime
    history: list[Point] = field(default_factory=list)
    title: str = ""
    description: str = ""
    unit: str = "number"
    sample: Sample | None = None

    @property
    def runs_in_state(self) -> int:
        count = 0
        for point in reversed(self.history):
            if point.status != self.status:
                break
            count += 1
        return count


@dataclass
class Sample:
    columns: list[str]
    rows: list[tuple]
    hidden: list[str]
    relation: str


def fetch_history(conn, runs: int = HISTORY_RUNS) -> tuple[tuple | None, list[tuple]]:
    """(the latest run's row, every result of the last ``runs`` runs in run order)."""
    with conn.cursor() as cur:
        cur.execute(
            "select run_id, started_at, finished_at, checks, warnings, errors from monitoring.monitor_runs"
            " order by started_at desc limit 1"
        )
        latest = cur.fetchone()
        cur.execute(
            """
            with recent_runs as (
                select run_id, started_at from monitoring.monitor_runs order by started_at desc limit %s
            )
            select results.run_id, results.check_name, results.check_type, results.status, results.observed_value,
                   results.warn_threshold, results.error_threshold, results.message, results.details,
                   recent_runs.started_at
            from monitoring.monitor_results as results
            inner join recent_runs on results.run_id = recent_runs.run_id
            order by recent_runs.started_at, results.check_name
            """,
            (runs,),
        )
        rows = cur.fetchall()
    conn.commit()
    return latest, rows


def build_checks(latest: tuple | None, rows: list[tuple]) -> list[Check]:
    """The latest run's checks, each with its history over the runs read."""
    history: dict[str, list[Point]] = defaultdict(list)
    current: dict[str, Check] = {}
    for run_id, name, check_type, status, value, warn, error, message, details, at in rows:
        history[name].append(Point(at, status, value))
        if latest is not None and run_id == latest[0]:
            current[name] = Check(name, check_type, status, value, warn, error, message or "", details or {}, at)
    for name, check in current.items():
        check.history = history[name]
    return sorted(current.values(), key=sort_key)


def sort_key(check: Check) -> tuple:
    families = list(FAMILIES)
    family = families.index(check.check_type) if check.check_type in families else len(families)
    return (STATUS_RANK.get(check.status, 0), family, check.name)


def load_manifest(path: Path | None) -> dict:
    if path is None or not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def sensitive_columns(manifest: dict) -> set[str]:
    """Every column name the project flags ``meta: {sensitive: true}``, in sources and models: hidden from
    the samples of failing rows, whichever table the rows come from."""
    names = set()
    for group in ("nodes", "sources"):
        for node in manifest.get(group, {}).values():
            for column, spec in (node.get("columns") or {}).items():
                meta = {**(spec.get("meta") or {}), **((spec.get("config") or {}).get("meta") or {})}
                if meta.get("sensitive"):
                    names.add(column.lower())
    return names


# --------------------------------------------------------------------------- words


def _model_name(node: dict, nodes: dict) -> str:
    attached = node.get("attached_node") or ""
    if attached:
        return attached.split(".")[-1]
    depends = (node.get("depends_on") or {}).get("nodes") or []
    return depends[0].split(".")[-1] if depends else ""


def _ref_name(text: str) -> str:
    found = re.search(r"""(?:ref|source)\(\s*['"]([^'"]+)['"](?:\s*,\s*['"]([^'"]+)['"])?""", text or "")
    if not found:
        return text or "?"
    return ".".join(part for part in found.groups() if part)


def _range(kwargs: dict) -> str:
    low, high = kwargs.get("min_value"), kwargs.get("max_value")
    if low is not None and high is not None:
        return f"between {low} and {high}"
    if low is not None:
        return f"at least {low}"
    if high is not None:
        return f"at most {high}"
    return "in range"


def _singular_description(raw_code: str) -> str:
    lines = []
    for line in (raw_code or "").splitlines():
        stripped = line.strip()
        if not stripped.startswith("--"):
            break
        lines.append(stripped.lstrip("-").strip())
    return " ".join(lines)


def describe_test(node: dict, nodes: dict) -> tuple[str, str]:
    """(a reader's title, what the test checks) from the test's manifest node."""
    meta = node.get("test_metadata") or {}
    model = _model_name(node, nodes)
    if not meta:  # a singular test: its leading comment is its description
        title = node.get("name", "").removeprefix("assert_").replace("_", " ").capitalize()
        return title, node.get("description") or _singular_description(node.get("raw_code", ""))
    kwargs = meta.get("kwargs") or {}
    column = kwargs.get("column_name") or node.get("column_name") or ""
    values = kwargs.get("values") or []
    shown_values = ", ".join(str(v) for v in values[:6]) + (f" (+{len(values) - 6})" if len(values) > 6 else "")
    template = GENERIC_TESTS.get(meta.get("name", ""))
    qualified = f"{model}.{column}" if column else model
    if template is None:
        text = f"{meta.get('name', 'test').replace('_', ' ')} on {qualified}"
    else:
        group = kwargs.get("group_by")
        text = template.format(
            column=qualified,
            values=shown_values,
            to=_ref_name(str(kwargs.get("to", ""))),
            field=kwargs.get("field", ""),
            range=_range(kwargs),
            per=f" per {', '.join(group)}" if group else "",
            columns=", ".join(kwargs.get("column_list") or []),
            regex=kwargs.get("regex", ""),
        )
        if not text.startswith(model) and model:
            text = f"{model}: {text}"
    name = node.get("name", "")
    test = meta.get("name", "")
    if name and not name.startswith((test, f"{meta.get('namespace')}_{test}")):
        # A test given a name of its own: that name is the title, the generated sentence its description.
        return name.replace("_", " ").capitalize(), node.get("description") or text
    return text, node.get("description") or ""


def describe(check: Check, nodes: dict) -> None:
    if check.name in KNOWN_CHECKS:
        check.title, check.description, check.unit = KNOWN_CHECKS[check.name]
    elif check.check_type == "freshness":
        table = check.name.split(":", 1)[-1]
        check.title, check.unit = f"Freshness of {table}", "hours"
        check.description = f"Hours since the newest row of {table} landed in raw (dbt source freshness)."
    elif check.check_type == "dbt_test":
        node = nodes.get(check.details.get("unique_id", ""), {})
        check.unit = "rows"
        if node:
            check.title, check.description = describe_test(node, nodes)
        else:
            check.title = check.name.split(":", 1)[-1].replace("_", " ").capitalize()
    else:
        check.title = check.name.replace("_", " ").replace(":", ": ").capitalize()
    if not check.title:
        check.title = check.name


# --------------------------------------------------------------------------- numbers


def _number(value: float, digits: int = 2) -> str:
    if value == int(value) and abs(value) < 1e15:
        return f"{int(value):,}"
    return f"{value:,.{digits}f}"


def format_value(value: float | None, unit: str) -> str:
    if value is None:
        return "no data"
    if unit == "share":
        return f"{value * 100:.2f}%"
    if unit == "ratio":
        return f"{value * 100:.0f}% of usual"
    if unit == "score":
        return f"{value:.2f} of 5"
    if unit == "seconds":
        return f"{value:,.1f} s" if value < 120 else f"{int(value // 60)} min {int(value % 60)} s"
    if unit == "hours":
        return f"{value * 60:.0f} min" if value < 1 else f"{value:,.1f} h"
    if unit == "rows":
        count = int(value)
        return "0 failing rows" if count == 0 else f"{count:,} failing row{'s' if count != 1 else ''}"
    if unit == "count":
        return _number(value)
    return f"{value:,.4g}"


RAW_BOUND_MESSAGE = re.compile(r"^\S+ is outside the (warn|error) bound")
DBT_RESULT_MESSAGE = re.compile(r"^Got \d+ results?, configured to (warn|fail) if")
BOUND = re.compile(r"^(<=|>=)\s*(-?[0-9.eE+-]+)\s*(\w+)?$")


def format_bound(text: str | None, unit: str) -> str:
    """A pass condition as stored (``<= 0.03``, ``>= 50``, ``<= 2 hours``) as the condition that fires."""
    if not text:
        return ""
    if text == "0 failing rows":
        return "any failing row"
    parts = []
    for part in text.split(" and "):
        found = BOUND.match(part.strip())
        if not found:
            parts.append(part)
            continue
        op, number, period = found.groups()
        value = float(number)
        if period:  # freshness: "2 hours"
            shown = f"{_number(value)} {period}"
        elif unit == "rows":
            shown = _number(value)
        else:
            shown = format_value(value, unit).removesuffix(" of usual").removesuffix(" of 5")
        parts.append(f"{'above' if op == '<=' else 'below'} {shown}")
    return " or ".join(parts)


def thresholds_html(check: Check) -> str:
    lines = []
    for level, text in (("warn", check.warn), ("error", check.error)):
        shown = format_bound(text, check.unit)
        if shown:
            lines.append(f'<span class="lvl {level}">{level}</span> {html.escape(shown)}')
    return "<br>".join(lines) or '<span class="muted">none</span>'


# --------------------------------------------------------------------------- history


def trend_svg(history: list[Point], unit: str, width: int = 132, height: int = 30) -> str:
    """The observed value over the recent runs, each run a dot in its status colour; a flat line when the
    value never changed, and the range as text beside it."""
    if not history:
        return ""
    values = [p.value for p in history if p.value is not None]
    step = (width - 8) / max(len(history) - 1, 1)
    low, high = (min(values), max(values)) if values else (0.0, 0.0)
    span = (high - low) or 1.0
    coords, dots = [], []
    for i, point in enumerate(history):
        x = 4 + i * step
        if point.value is None:
            y = height - 4
        elif high == low:
            y = height / 2
        else:
            y = height - 4 - (point.value - low) / span * (height - 8)
        if point.value is not None:
            coords.append(f"{x:.1f},{y:.1f}")
        label = f"{point.at:%Y-%m-%d %H:%M} UTC: {STATUS_WORD.get(point.status, point.status)}, " + format_value(
            point.value, unit
        )
        dots.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.6" fill="{COLORS.get(point.status, "#555")}">'
            f"<title>{html.escape(label)}</title></circle>"
        )
    line = (
        f'<polyline fill="none" stroke="#90a4ae" stroke-width="1.2" points="{" ".join(coords)}"/>'
        if len(coords) > 1
        else ""
    )
    if not values:
        caption = "no data"
    elif high == low:
        caption = f"steady over {len(history)} run{'s' if len(history) != 1 else ''}"
    else:
        caption = f"{format_value(low, unit)} to {format_value(high, unit)}"
    return (
        f'<svg class="trend" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img"'
        f' aria-label="history of {len(history)} runs">{line}{"".join(dots)}</svg>'
        f'<div class="muted small">{html.escape(caption)}</div>'
    )


def state_age(check: Check) -> str:
    runs = check.runs_in_state
    total = len(check.history)
    word = STATUS_WORD.get(check.status, check.status).lower()
    if total == 1:
        return "first recorded run"
    if runs >= total:
        return f"{word} in all {total} recorded runs"
    return f"{word} for {runs} run{'s' if runs != 1 else ''}, {check.history[-runs - 1].status} before"


# --------------------------------------------------------------------------- failing rows


def read_samples(conn, checks: list[Check], nodes: dict, hidden_names: set[str]) -> None:
    """A few failing rows of each failed dbt test whose rows dbt stored; sensitive columns left out."""
    for check in checks:
        if check.check_type != "dbt_test" or check.status == "pass":
            continue
        node = nodes.get(check.details.get("unique_id", ""), {})
        relation = node.get("relation_name")
        if not relation:
            continue
        parts = [p.strip('"') for p in relation.split(".")]
        if len(parts) < 2:
            continue
        schema, table = parts[-2], parts[-1]
        try:
            with conn.cursor() as cur:
                cur.execute(sql.SQL("select * from {} limit %s").format(sql.Identifier(schema, table)), (SAMPLE_ROWS,))
                columns = [d.name for d in cur.description]
                rows = cur.fetchall()
            conn.commit()
        except Exception:  # noqa: BLE001 - the table may be gone (no --store-failures run): no sample
            conn.rollback()
            continue
        keep = [i for i, c in enumerate(columns) if c.lower() not in hidden_names]
        check.sample = Sample(
            columns=[columns[i] for i in keep],
            rows=[tuple(row[i] for i in keep) for row in rows],
            hidden=[c for c in columns if c.lower() in hidden_names],
            relation=f"{schema}.{table}",
        )


def _cell(value: Any) -> str:
    if value is None:
        return '<span class="muted">null</span>'
    if isinstance(value, float):
        text = f"{value:,.4g}"
    elif isinstance(value, (dict, list)):
        text = json.dumps(value, default=str)
    else:
        text = str(value)
    if len(text) > SAMPLE_CELL_CHARS:
        text = text[: SAMPLE_CELL_CHARS - 1] + "\u2026"
    return html.escape(text)


def sample_html(check: Check) -> str:
    sample = check.sample
    if sample is None:
        return ""
    total = int(check.value or 0)
    shown = len(sample.rows)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in sample.columns)
    body = "".join("<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in row) + "</tr>" for row in sample.rows)
    hidden = f"; columns left out as sensitive: {html.escape(', '.join(sample.hidden))}" if sample.hidden else ""
    return (
        f'<div class="sample"><div class="muted small">{shown} of {total:,} failing rows, from '
        f"<code>{html.escape(sample.relation)}</code>{hidden}</div>"
        f'<table class="rows"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'
    )


# --------------------------------------------------------------------------- page


def _row(check: Check, detailed: bool) -> str:
    color = COLORS.get(check.status, "#555")
    name = html.escape(check.name)
    description = f'<div class="desc">{html.escape(check.description)}</div>' if check.description and detailed else ""
    # dbt's "Got 13 results, configured to warn if != 0" says no more than the value and threshold do.
    said = DBT_RESULT_MESSAGE.match(check.message) or RAW_BOUND_MESSAGE.match(check.message)
    message = (
        f'<div class="msg">{html.escape(check.message)}</div>'
        if check.message and check.status != "pass" and detailed and not said
        else ""
    )
    extra = sample_html(check) if detailed else ""
    return (
        f'<tr class="check {check.status}" data-check="{name}" data-status="{check.status}">'
        f'<td class="status"><span class="badge" style="background:{color}">'
        f"{STATUS_WORD.get(check.status, check.status)}</span>"
        f'<div class="muted small">{html.escape(state_age(check))}</div></td>'
        f'<td class="value">{html.escape(format_value(check.value, check.unit))}</td>'
        f'<td class="bounds">{thresholds_html(check)}</td>'
        f'<td class="what"><div class="title">{html.escape(check.title)}</div>'
        f'<div class="name"><code>{name}</code> \u00b7 {html.escape(FAMILIES.get(check.check_type, check.check_type))}'
        f"</div>{description}{message}{extra}</td>"
        f'<td class="trend-cell">{trend_svg(check.history, check.unit)}</td></tr>'
    )


def _table(checks: list[Check], table_id: str, detailed: bool) -> str:
    rows = "".join(_row(c, detailed) for c in checks)
    return (
        f'<table id="{table_id}" class="checks"><colgroup><col class="c-status"><col class="c-value">'
        '<col class="c-bounds"><col class="c-what"><col class="c-trend"></colgroup>'
        "<thead><tr><th>status</th><th>observed</th><th>fires when</th><th>check</th>"
        f"<th>recent runs</th></tr></thead><tbody>{rows}</tbody></table>"
    )


STYLE = """
* { box-sizing: border-box; }
body { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0; color: #1f2933; }
body { background: #fafafa; }
header, main { max-width: 1320px; margin: 0 auto; padding: 0 20px; }
header { padding-top: 18px; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 17px; margin: 26px 0 8px; }
.tiles { display: flex; flex-wrap: wrap; gap: 10px; margin: 12px 0; }
.tile { background: #fff; border: 1px solid #e0e0e0; border-left: 6px solid #999; border-radius: 4px; }
.tile { padding: 8px 14px; }
.tile b { font-size: 22px; display: block; }
.tile.error { border-left-color: #c62828; } .tile.warn { border-left-color: #b45f06; }
.tile.pass { border-left-color: #2e7d32; }
table.checks { width: 100%; table-layout: fixed; border-collapse: collapse; background: #fff; }
table.checks { border: 1px solid #e0e0e0; }
col.c-status { width: 150px; } col.c-value { width: 150px; }
col.c-bounds { width: 180px; } col.c-trend { width: 170px; }
table.checks th { text-align: left; background: #f0f2f4; padding: 6px 8px; font-weight: 600; }
table.checks td { border-top: 1px solid #e8e8e8; padding: 8px; vertical-align: top; overflow-wrap: anywhere; }
tr.error td.status { box-shadow: inset 4px 0 #c62828; } tr.warn td.status { box-shadow: inset 4px 0 #b45f06; }
td.value { font-size: 16px; font-weight: 600; font-variant-numeric: tabular-nums; }
.badge { color: #fff; border-radius: 3px; padding: 2px 8px; font-size: 12px; font-weight: 600; }
.lvl { display: inline-block; min-width: 38px; font-size: 11px; text-transform: uppercase; color: #666; }
.lvl.error { color: #c62828; } .lvl.warn { color: #b45f06; }
.title { font-weight: 600; }
.name { font-size: 12px; color: #52606d; }
.desc { margin-top: 4px; } .msg { margin-top: 4px; color: #52606d; font-style: italic; }
.muted { color: #6b7780; } .small { font-size: 12px; }
code { font: 12px ui-monospace, SFMono-Regular, Menlo, monospace; }
.sample { margin-top: 8px; }
table.rows { width: 100%; table-layout: fixed; border-collapse: collapse; font: 12px ui-monospace, Menlo, monospace; }
table.rows th, table.rows td { border: 1px solid #e3e3e3; padding: 3px 5px; text-align: left; overflow-wrap: anywhere; }
table.rows th { background: #f7f7f7; }
details { margin: 10px 0; } summary { cursor: pointer; font-weight: 600; padding: 6px 0; }
p.ok { background: #e8f5e9; border: 1px solid #c8e6c9; padding: 10px 14px; border-radius: 4px; }
footer { max-width: 1320px; margin: 24px auto; padding: 0 20px; color: #6b7780; font-size: 12px; }
"""


def render(latest: tuple | None, checks: list[Check], generated_at: datetime, report_note: str = "") -> str:
    if latest is None:
        body = '<p class="empty">No monitor runs yet: run <code>make monitor</code>.</p>'
        counts = dict.fromkeys(STATUS_RANK, 0)
        run_line = ""
    else:
        counts = {s: sum(1 for c in checks if c.status == s) for s in STATUS_RANK}
        run_id, started_at, finished_at, *_ = latest
        run_line = f"run <code>{html.escape(run_id)}</code>, started {started_at:%Y-%m-%d %H:%M} UTC" + (
            f", took {(finished_at - started_at).total_seconds():,.0f} s" if finished_at else ""
        )
        attention = [c for c in checks if c.status != "pass"]
        passing_monitors = [c for c in checks if c.status == "pass" and c.check_type != "dbt_test"]
        passing_tests = [c for c in checks if c.status == "pass" and c.check_type == "dbt_test"]
        if attention:
            first = f"<h2>Needs attention ({len(attention)})</h2>{_table(attention, 'attention', True)}"
        else:
            first = '<p class="ok" id="attention">Every check passes.</p>'
        body = (
            f"{first}<h2>Passing monitors ({len(passing_monitors)})</h2>"
            f"{_table(passing_monitors, 'monitors', True)}"
            f"<details><summary>Passing dbt data tests ({len(passing_tests)})</summary>"
            f"{_table(passing_tests, 'tests', False)}</details>"
        )
    tiles = "".join(
        f'<div class="tile {s}"><b>{counts[s]:,}</b>{STATUS_WORD[s].lower()}{"s" if s != "pass" else "ing"}</div>'
        for s in STATUS_RANK
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>telemed-elt data health</title><style>{STYLE}</style></head>
<body><header><h1>Data health: monitors</h1>
<div class="muted">{run_line}; report generated {generated_at:%Y-%m-%d %H:%M} UTC. {report_note}</div>
<div class="tiles">{tiles}</div></header>
<main>{body}</main>
<footer>Thresholds: <code>monitors/thresholds.yml</code> and dbt_project.yml's freshness vars. Failing rows of dbt
tests: schema <code>monitoring_failures</code>. History: <code>monitoring.monitor_results</code>.</footer>
</body></html>
"""


def write_report(conn, path: Path, generated_at: datetime, manifest_path: Path | None = None) -> Path:
    """Write the report of the latest run; ``manifest_path`` (the run's dbt manifest) gives the data tests
    their descriptions and where their failing rows are."""
    latest, rows = fetch_history(conn)
    checks = build_checks(latest, rows)
    manifest = load_manifest(manifest_path)
    nodes = manifest.get("nodes", {})
    for check in checks:
        describe(check, nodes)
    read_samples(conn, checks, nodes, sensitive_columns(manifest))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(latest, checks, generated_at))
    return path


def plain_message(result) -> str:
    """A check's outcome in words for the console: the value formatted and the threshold it crossed
    (``13 failing rows (warn threshold: any failing row)``), or dbt's own message when there is no value."""
    check = Check(
        result.check_name,
        result.check_type,
        result.status,
        result.observed_value,
        result.warn_threshold,
        result.error_threshold,
        result.message or "",
        result.details or {},
        datetime.min,
    )
    describe(check, {})
    bound = format_bound(check.error if check.status == "error" else check.warn, check.unit)
    if check.value is None or not bound:
        return check.message
    level = "error" if check.status == "error" else "warn"
    return f"{format_value(check.value, check.unit)} ({level} threshold: {bound})"
