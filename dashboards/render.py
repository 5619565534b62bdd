"""The offline HTML dashboards: one self-contained page per definition plus an index.

Each page inlines Plotly (plotly.min.js from the pinned ``plotly`` wheel), its stylesheet, its script and
the rows of every card, so it opens from disk with no network. Filters work client-side on those rows.
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

from dashboards.data import CardData
from dashboards.definitions import Dashboard

log = logging.getLogger(__name__)

ASSETS = Path(__file__).parent / "assets"
FILTER_LABELS = {"specialty": "Specialty", "device": "Device"}


@cache
def _plotly_js() -> str:
    return plotly.offline.get_plotlyjs()


def _script_json(payload: object) -> str:
    # Inside <script>, "</" would end the element early: escape it (and friends) as JSON unicode escapes.
    text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def page_name(dashboard: Dashboard) -> str:
    return f"{dashboard.key}.html"


def _card_spec(card, data: CardData) -> dict:
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
        "visualization": {k: list(v) if isinstance(v, tuple) else v for k, v in viz.items()},
        "columns": data.columns,
        "rows": data.rows,
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
    applies = [name.replace("_", " ") for name in dashboard.filters if name in card.filters]
    footer = "Filtered by " + ", ".join(applies) if applies else "Not affected by the filters"
    if data.truncated:
        footer += " · first rows only"
    if data.left_out:
        footer += f" · {', '.join(data.left_out)} left out (patient free text; --include-comments shows it)"
    return (
        f'<section class="card" id="card-{card.key}" style="{style}" data-type="{card.visualization.type}">'
        f"<h2>{html.escape(card.title)}</h2>"
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
        # Everything is inline; the policy makes sure the page never reaches for the network.
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "script-src 'unsafe-inline' 'unsafe-eval'; style-src 'unsafe-inline'; img-src data: blob:; "
        'font-src data:">'
        f"<title>{html.escape(title)}</title><style>{css}</style></head>"
        f"<body>{body}{scripts}</body></html>\n"
    )


def render_dashboard(
    dashboard: Dashboard, data: dict[str, CardData], dashboards: list[Dashboard], generated_at: str
) -> str:
    spec = {
        "key": dashboard.key,
        "name": dashboard.name,
        "generated_at": generated_at,
        "cards": [_card_spec(card, data[card.key]) for card in dashboard.cards],
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
        f"<script>{_plotly_js()}</script>"
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
