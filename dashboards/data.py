"""Run each card's SQL as the reporting role, the same role Metabase connects as, and keep its rows for
the HTML page. A card whose table does not exist yet (the monitors' history before the first
``make monitor``) or is not readable becomes a notice with the reason, never a failed build."""

from __future__ import annotations

import datetime as dt
import decimal
import logging
from dataclasses import dataclass, field

import psycopg2
import psycopg2.errors

from dashboards.definitions import Card, Dashboard
from dashboards.query import plain_sql

log = logging.getLogger(__name__)

# Cards are at KPI grain; a card beyond this many rows is cut, and the page says so.
MAX_ROWS = 20_000
STATEMENT_TIMEOUT_MS = 60_000


@dataclass
class CardData:
    columns: list[str] = field(default_factory=list)
    rows: list[list] = field(default_factory=list)
    state: str = "ok"  # ok | missing (table absent) | denied (no privilege) | error
    message: str | None = None
    truncated: bool = False
    left_out: list[str] = field(default_factory=list)  # free-text columns not fetched into the page


def _json_value(value):
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
        return value.isoformat(sep=" ", timespec="seconds")
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    return value


def fetch_card(conn, card: Card, include_free_text: bool = False) -> CardData:
    """One card's rows; the connection is left usable whatever happens. The card's free-text columns are
    dropped here, before anything is rendered, unless ``include_free_text``."""
    try:
        with conn.cursor() as cur:
            cur.execute(f"set local statement_timeout = {STATEMENT_TIMEOUT_MS}")
            cur.execute(plain_sql(card))
            columns = [d.name for d in cur.description]
            rows = cur.fetchmany(MAX_ROWS + 1)
        conn.commit()
    except psycopg2.errors.UndefinedTable as exc:
        conn.rollback()
        log.warning("card %r: %s", card.title, str(exc).splitlines()[0])
        return CardData(state="missing", message=card.missing_message or f"Not built yet: {str(exc).splitlines()[0]}")
    except psycopg2.errors.InsufficientPrivilege as exc:
        conn.rollback()
        log.warning("card %r: %s", card.title, str(exc).splitlines()[0])
        return CardData(state="denied", message=f"The reporting role may not read this: {str(exc).splitlines()[0]}")
    except psycopg2.Error as exc:
        conn.rollback()
        log.error("card %r failed: %s", card.title, str(exc).strip())
        return CardData(state="error", message=f"Query failed: {str(exc).splitlines()[0]}")
    truncated = len(rows) > MAX_ROWS
    if truncated:
        log.warning("card %r: more than %d rows, the page shows the first %d", card.title, MAX_ROWS, MAX_ROWS)
        rows = rows[:MAX_ROWS]
    missing = [c for c in card.required_columns if c not in columns]
    if missing:
        return CardData(columns=columns, state="error", message=f"The SQL does not return {', '.join(missing)}")
    left_out = [] if include_free_text else [c for c in card.free_text if c in columns]
    keep = [i for i, c in enumerate(columns) if c not in left_out]
    return CardData(
        columns=[columns[i] for i in keep],
        rows=[[_json_value(row[i]) for i in keep] for row in rows],
        truncated=truncated,
        left_out=left_out,
    )


def fetch_dashboard(conn, dashboard: Dashboard, include_free_text: bool = False) -> dict[str, CardData]:
    """Every card's rows; cards with the same SQL (and columns) share one fetch, and the page embeds those
    rows once."""
    fetched: dict[tuple, CardData] = {}
    out = {}
    for card in dashboard.cards:
        key = (plain_sql(card), tuple(card.required_columns), card.free_text, card.missing_message)
        if key not in fetched:
            fetched[key] = fetch_card(conn, card, include_free_text)
        out[card.key] = fetched[key]
    return out
