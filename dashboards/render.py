"""The offline HTML dashboards: one page per definition plus an index, and one ``plotly.min.js`` beside
them (from the pinned ``plotly`` wheel) that every page loads: about 4.6 MB once instead of in each page.

Each page inlines its stylesheet, its script, the glossary and the rows of every card, so the folder opens
from disk with no network. Filters work client-side on those rows and live in the URL's hash.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import logging
from dataclasses import asdict
from functools import cache
from pathlib import Path

import plotly.offline

from dashboards import glossary
from dashboards.data import CardData
from dashboards.definitions import RATE_MIN_DENOMINATOR, Dashboard

log = logging.getLogger(__name__)

ASSETS = Path(__file__).parent / "assets"
FILTER_LABELS = {"specialty": "Specialty", "device": "Device"}
FILTER_WORDS = {"date_range": "date range", "specialty": "specialty", "device": "device"}
PLOTLY_FILE = "plotly.min.js"
# Series without a glossary colour take these, in order.
PALETTE = ["#2f6f9f", "#e0863d", "#5aa469", "#c8553d", "#8e6cb8", "#c9a227", "#4aa5b5", "#9c6644"]


@cache
def _plotly_js() -> str:
    return plotly.offline.get_plotlyjs()


def write_plotly(out_dir: Path) -> Path:
    """The one copy of Plotly the pages share, rewritten only when it differs (a new plotly wheel)."""
    path = out_dir / PLOTLY_FILE
    text = _plotly_js()
    if not path.exists() or path.stat().st_size != len(text.encode()) or path.read_text() != text:
        path.write_text(text)
    return path


def _script_json(payload: object) -> str:
    # Inside <script>, "</" would end the element early: escape it (and friends) as JSON unicode escapes.
    text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def page_name(dashboard: Dashboard) -> str:
    return f"{dashboard.key}.html"


def _card_spec(card, data: CardData, dataset: int) -> dict:
    viz = asdict(card.visualization)
    if data.left_out:
        viz["columns"] = [c for c in viz["columns"] if c not in data.left_out]
    return {
        "key": card.key,
        "title": card.title,
        "filters": card.filters,
        "rollup": card.rollup,
        "sort": [asdict(s) for s in card.sort],
        "limit": card.limit,
        "group_keys": card.group_keys,
        "summed": card.summed_columns,
        "ratios": {name: [r.numerator, r.denominator] for name, r in card.ratios.items()},
        "rates": list(card.rates),
        "daily": card.daily,
        "evidence": card.evidence_columns,
        "visualization": {k: list(v) if isinstance(v, tuple) else v for k, v in viz.items()},
        "columns": data.columns,
        "dataset": dataset,
        "state": data.state,
        "message": data.message,
        "truncated": data.truncated,
    }


def _filters_html(dashboard: Dashboard) -> str:
    parts = []
    for name in dashboard.filters:
        if name == "date_range":
            parts.append('<label>From<input type="date" data-filter="date_range" data-tag="date_from"></label>')
            parts.append('<label>To<input type="date" data-filter="date_range" data-tag="date_to"></label>')
        else:
            label = FILTER_LABELS[name]
            parts.append(
                f'<label>{label}<select data-filter="{name}" data-tag="{name}">'
                f'<option value="">All</option></select></label>'
            )
    if not parts:
        return ""
    parts.append('<button type="button" id="reset-filters">Reset</button>')
    return '<div class="filters" role="search">' + "".join(parts) + "</div>"


def _nav(dashboards: list[Dashboard], current: Dashboard | None) -> str:
    links = ['<a href="index.html"' + (' aria-current="page"' if current is None else "") + ">All dashboards</a>"]
    for other in dashboards:
        here = ' aria-current="page"' if other is current else ""
        links.append(f'<a href="{page_name(other)}"{here}>{html.escape(other.name)}</a>')
    return "<nav>" + "".join(links) + "</nav>"


def _card_html(card, dashboard: Dashboard, data: CardData) -> str:
    pos = card.position
    style = f"grid-column: {pos.col + 1} / span {pos.width}; grid-row: {pos.row + 1} / span {pos.height};"
    applies = [FILTER_WORDS[name] for name in dashboard.filters if name in card.filters]
    footer = "Filtered by " + ", ".join(applies) if applies else "Not affected by the filters"
    # A filter this card cannot take is said in its header, where a reader looks before reading the chart.
    unfiltered = "".join(
        f'<p class="unfiltered" data-filter="{name}">Not filtered by {FILTER_WORDS[name]}: '
        f"{html.escape(card.unfiltered[name])}</p>"
        for name in dashboard.filters
        if name in card.unfiltered
    )
    if data.truncated:
        footer += " · first rows only"
    if data.left_out:
        footer += f" · {', '.join(data.left_out)} left out (patient free text; --include-comments shows it)"
    return (
        f'<section class="card" id="card-{card.key}" style="{style}" data-type="{card.visualization.type}">'
        f'<div class="card-head"><h2>{html.escape(card.title)}</h2>{unfiltered}</div>'
        f'<p class="desc">{html.escape(card.description)}</p>'
        f'<div class="viz" id="viz-{card.key}"></div>'
        f"<footer>{html.escape(footer)}</footer></section>"
    )


def _document(title: str, body: str, *, scripts: str = "") -> str:
    css = (ASSETS / "dashboard.css").read_text()
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        # Everything is inline but Plotly, which is the file beside the page: the policy makes sure the page
        # never reaches for the network.
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "script-src 'self' 'unsafe-inline' 'unsafe-eval'; style-src 'unsafe-inline'; img-src data: blob:; "
        'font-src data:">'
        f"<title>{html.escape(title)}</title><style>{css}</style></head>"
        f"<body>{body}{scripts}</body></html>\n"
    )


def render_dashboard(
    dashboard: Dashboard, data: dict[str, CardData], dashboards: list[Dashboard], generated_at: str
) -> str:
    # Cards reading the same SQL share one copy of its rows (the Operations cards read one grain).
    datasets: list[list] = []
    index: dict[int, int] = {}
    for card in dashboard.cards:
        rows = data[card.key].rows
        if id(rows) not in index:
            index[id(rows)] = len(datasets)
            datasets.append(rows)
    spec = {
        "key": dashboard.key,
        "name": dashboard.name,
        "generated_at": generated_at,
        "glossary": glossary.load().as_json(),
        "palette": PALETTE,
        "rate_min_denominator": RATE_MIN_DENOMINATOR,
        "datasets": datasets,
        "cards": [_card_spec(card, data[card.key], index[id(data[card.key].rows)]) for card in dashboard.cards],
    }
    body = (
        f"<header><h1>{html.escape(dashboard.name)}</h1><p>{html.escape(dashboard.description)}</p>"
        f"{_nav(dashboards, dashboard)}</header>"
        f"{_filters_html(dashboard)}"
        '<main class="grid">' + "".join(_card_html(c, dashboard, data[c.key]) for c in dashboard.cards) + "</main>"
        f'<p class="meta">Generated {html.escape(generated_at)} from dashboards/definitions/'
        f"{html.escape(dashboard.source.name)}.</p>"
    )
    scripts = (
        f'<script src="{PLOTLY_FILE}"></script>'
        f'<script type="application/json" id="dashboard-data">{_script_json(spec)}</script>'
        f"<script>{(ASSETS / 'dashboard.js').read_text()}</script>"
    )
    return _document(f"{dashboard.name} · telemed-elt", body, scripts=scripts)


def render_index(dashboards: list[Dashboard], generated_at: str) -> str:
    tiles = "".join(
        f'<a class="card" href="{page_name(d)}"><h2>{html.escape(d.name)}</h2>'
        f'<p class="desc">{html.escape(d.description)}</p>'
        f"<footer>{len(d.cards)} cards · filters: {html.escape(', '.join(d.filters) or 'none')}</footer></a>"
        for d in dashboards
    )
    body = (
        "<header><h1>telemed-elt dashboards</h1>"
        "<p>The dashboards of dashboards/definitions/, rendered offline from the marts. "
        "The same definitions are provisioned to Metabase by <code>make dashboards</code>.</p>"
        f"{_nav(dashboards, None)}</header>"
        f'<main class="index">{tiles}</main><p class="meta">Generated {html.escape(generated_at)}.</p>'
    )
    return _document("telemed-elt dashboards", body)


def write_site(dashboards: list[Dashboard], data: dict[str, dict[str, CardData]], out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    write_plotly(out_dir)
    generated_at = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    written = []
    for dashboard in dashboards:
        path = out_dir / page_name(dashboard)
        path.write_text(render_dashboard(dashboard, data[dashboard.key], dashboards, generated_at))
        written.append(path)
    index = out_dir / "index.html"
    index.write_text(render_index(dashboards, generated_at))
    written.insert(0, index)
    log.info("wrote %d pages to %s", len(written), out_dir)
    return written
