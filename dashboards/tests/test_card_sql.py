"""Every card's SQL runs on the marts as the reporting role and returns the columns its visualization
needs, unfiltered and with every filter of its dashboard set, exactly as Metabase would run it."""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import json

import pytest

from dashboards.data import fetch_card
from dashboards.definitions import load_all
from dashboards.query import FILTER_TAGS, bind, metabase_sql, plain_sql
from dashboards.tests import marts

CARDS = [(d, c) for d in load_all() for c in d.cards]
IDS = [f"{d.key}.{c.key}" for d, c in CARDS]


def _first_value(conn, card, column):
    """The value of `column` on most of the rows that hold something the card shows (ties: the first value),
    not whichever row the plan happens to return first: a device with no started appointment leaves a wait
    chart empty for want of data, not for a fault."""
    shown = " or ".join(f"coalesce(cast(card.{y} as numeric), 0) <> 0" for y in card.evidence_columns) or "true"
    with conn.cursor() as cur:
        cur.execute(
            f"select card.{column} from ({plain_sql(card)}) as card where card.{column} is not null and ({shown})"
            " group by 1 order by count(*) desc, 1 limit 1"
        )
        row = cur.fetchone()
    conn.commit()
    return row[0] if row else None


def _date_window(conn, card, column) -> tuple[dt.date, dt.date]:
    with conn.cursor() as cur:
        cur.execute(
            f"select min(cast(card.{column} as date)), max(cast(card.{column} as date)) from ({card.sql}) as card"
        )
        low, high = cur.fetchone()
    conn.commit()
    return low + (high - low) / 3, high


@pytest.mark.parametrize(("dashboard", "card"), CARDS, ids=IDS)
def test_card_sql_returns_what_its_visualization_needs(reporting_conn, dashboard, card):
    # The SQL's own result, free-text columns included (the offline HTML leaves them out: test_free_text.py).
    data = fetch_card(reporting_conn, card, include_free_text=True)
    assert data.state == "ok", data.message
    assert set(card.required_columns) <= set(data.columns)
    assert data.rows, f"{card.title}: no rows on the marts"

    with reporting_conn.cursor() as cur:
        unfiltered = bind(metabase_sql(card), {})
        cur.execute(unfiltered.sql, unfiltered.params)
        columns = [d.name for d in cur.description]
        rows = cur.fetchall()
    reporting_conn.commit()
    assert set(card.result_columns) <= set(columns)
    assert rows
    if card.limit:
        assert len(rows) <= card.limit


@pytest.mark.parametrize(
    ("dashboard", "card"),
    [(d, c) for d, c in CARDS if c.filters],
    ids=[i for i, (_, c) in zip(IDS, CARDS, strict=True) if c.filters],
)
def test_card_sql_with_every_filter_set(reporting_conn, dashboard, card):
    values: dict[str, object] = {}
    for name, column in card.filters.items():
        if name == "date_range":
            values["date_from"], values["date_to"] = _date_window(reporting_conn, card, column)
        else:
            values[name] = _first_value(reporting_conn, card, column)
    bound = bind(metabase_sql(card), values)
    # One parameter per filter variable; with undated_sql each date variable is read twice more, by the guards
    # that choose between the undated rows and the card's own.
    guards = 2 * len(FILTER_TAGS["date_range"]) if card.undated_sql else 0
    assert len(bound.params) == sum(2 if n == "date_range" else 1 for n in card.filters) + guards
    with reporting_conn.cursor() as cur:
        cur.execute(bound.sql, bound.params)
        rows = cur.fetchall()
        columns = [d.name for d in cur.description]
    reporting_conn.commit()
    assert set(card.result_columns) <= set(columns)
    assert rows, f"{card.title}: nothing left with {values}"


UNDATED = [(d, c) for d, c in CARDS if c.undated_sql]
SHORT_LIMIT = 3


def _rows(conn, native: str, values: dict[str, object]) -> list[tuple]:
    bound = bind(native, values)
    with conn.cursor() as cur:
        cur.execute(bound.sql, bound.params)
        rows = cur.fetchall()
    conn.commit()
    return rows


@pytest.mark.parametrize(("dashboard", "card"), UNDATED, ids=[f"{d.key}.{c.key}" for d, c in UNDATED] or None)
def test_undated_sql_shows_what_the_card_s_own_rows_show(reporting_conn, dashboard, card):
    """Metabase reads a card's undated rows while no date range is set: with no filter, either end of the date
    range, the other filters, or all of them set, it shows exactly what the card's own rows give (same rows,
    same values, same order)."""
    with reporting_conn.cursor() as cur:
        columns = []
        for sql in (card.sql, card.undated_sql):
            cur.execute(f"select * from ({sql}) as rows limit 0")
            columns.append([d.name for d in cur.description])
    reporting_conn.commit()
    assert columns[1] == columns[0], "undated_sql returns the card's columns, in the same order"

    # This world has fewer comments per specialty than a card's limit: the same card cut to its first rows
    # (undated_sql's own limit with it) makes every limit bind.
    variants = [card]
    if card.limit:
        undated = card.undated_sql.replace(f"limit {card.limit}", f"limit {SHORT_LIMIT}")
        variants.append(dataclasses.replace(card, limit=SHORT_LIMIT, undated_sql=undated))
    values: dict[str, object] = {}
    for name, column in card.filters.items():
        if name == "date_range":
            values["date_from"], values["date_to"] = _date_window(reporting_conn, card, column)
        else:
            values[FILTER_TAGS[name][0][0]] = _first_value(reporting_conn, card, column)
    assert all(value is not None for value in values.values()), values
    for variant in variants:
        own_rows = dataclasses.replace(variant, undated_sql=None)
        for size in range(len(values) + 1):
            for tags in itertools.combinations(values, size):
                state = {tag: values[tag] for tag in tags}
                expected = _rows(reporting_conn, metabase_sql(own_rows), state)
                assert _rows(reporting_conn, metabase_sql(variant), state) == expected, (variant.limit, state)
                assert expected or tags, "the unfiltered card shows rows"


def test_the_reporting_role_cannot_read_raw(reporting_conn):
    """The dashboards see what Metabase's connection sees: marts (and the monitors' history), not raw."""
    import psycopg2.errors

    with pytest.raises(psycopg2.errors.InsufficientPrivilege), reporting_conn.cursor() as cur:
        cur.execute("select 1 from raw.load_runs limit 1")
    reporting_conn.rollback()


def test_a_missing_monitor_history_is_a_notice_not_a_failure(marts_settings, reporting_conn):
    card = next(c for d in load_all() for c in d.cards if c.key == "current_checks")
    marts.drop_monitor_history(marts_settings)
    try:
        data = fetch_card(reporting_conn, card)
    finally:
        marts.add_monitor_history(marts_settings)
    assert data.state == "missing"
    assert data.message.startswith("No monitor runs yet")


def test_the_queries_command_gives_what_metabase_runs_and_the_plain_sql(reporting_conn, capsys):
    """`python -m dashboards queries` (what the benchmarks time): per card, the query Metabase runs on an
    unfiltered dashboard, ready to run as printed, and the card's own SQL."""
    from dashboards.__main__ import main

    assert main(["queries"]) == 0
    printed = {entry["card"]: entry for entry in json.loads(capsys.readouterr().out)}
    assert list(printed) == IDS
    for (_dashboard, card), name in zip(CARDS, IDS, strict=True):
        assert printed[name]["plain"] == plain_sql(card)
        unfiltered = bind(metabase_sql(card), {})
        with reporting_conn.cursor() as cur:
            cur.execute(unfiltered.sql, unfiltered.params)
            expected = cur.fetchall()
            cur.execute(printed[name]["metabase"])
            assert cur.fetchall() == expected, name
        reporting_conn.commit()
