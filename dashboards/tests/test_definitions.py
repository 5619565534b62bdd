"""The definitions load, and malformed ones are refused with a message that names the problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from dashboards.definitions import GRID_COLUMNS, DefinitionError, load_all, load_dashboard
from dashboards.query import bind, metabase_sql

EXPECTED = {
    "operations_overview": "Operations overview",
    "quality_of_service": "Quality of service",
    "patient_satisfaction": "Patient satisfaction",
    "provider_performance": "Provider performance",
    "data_health": "Data health",
    # issue 17: what the video platform measured of each call
    "call_quality": "Call quality",
}

GOOD_CARD = """
  - key: total
    title: Total
    sql: select kpis.date, kpis.appointments from marts.ops_daily_kpis as kpis
    visualization: {type: scalar, y: appointments}
    rollup: sum
    filters: {date_range: date}
    position: {row: 0, col: 0, width: 6, height: 3}
"""


def test_the_five_dashboards_of_the_issue_are_defined():
    dashboards = load_all()
    assert {d.key: d.name for d in dashboards} == EXPECTED
    for dashboard in dashboards:
        assert dashboard.cards
        for card in dashboard.cards:
            assert card.position.col + card.position.width <= GRID_COLUMNS
            assert all(schema in ("marts", "monitoring") for schema, _ in card.tables)


def test_filters_are_the_issue_s_where_the_data_allows():
    by_key = {d.key: d for d in load_all()}
    assert "date_range" in by_key["operations_overview"].filters
    assert {"date_range", "device"} <= set(by_key["quality_of_service"].filters)
    assert {"date_range", "specialty"} <= set(by_key["patient_satisfaction"].filters)
    assert "specialty" in by_key["provider_performance"].filters
    assert {"date_range", "device"} <= set(by_key["call_quality"].filters)


def _write(tmp_path: Path, cards: str, filters: str = "[date_range]") -> Path:
    path = tmp_path / "x.yml"
    path.write_text(f"key: test_dash\nname: Test\nfilters: {filters}\ncards:{cards}")
    return path


def test_a_good_minimal_definition_loads(tmp_path):
    dashboard = load_dashboard(_write(tmp_path, GOOD_CARD))
    assert dashboard.cards[0].required_columns == ["appointments", "date"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("marts.ops_daily_kpis", "raw.appointment_events"), "cards read only marts, monitoring"),
        (("marts.ops_daily_kpis", "ops_daily_kpis"), "schema-qualified"),
        (("width: 6", "width: 30"), "overflows the 24-column grid"),
        (("{date_range: date}", "{specialty: specialty}"), "not a filter of this dashboard"),
        (("type: scalar", "type: gauge"), "is not one of"),
        (("    rollup: sum\n", ""), "a scalar needs 'rollup: sum'"),
    ],
)
def test_malformed_definitions_are_refused(tmp_path, change, message):
    with pytest.raises(DefinitionError, match=message):
        load_dashboard(_write(tmp_path, GOOD_CARD.replace(*change)))


def test_a_refusal_names_the_file_the_dashboard_the_card_and_the_field(tmp_path):
    with pytest.raises(DefinitionError) as refused:
        load_dashboard(_write(tmp_path, GOOD_CARD.replace("y: appointments", "y: [appointments, Total]")))
    assert str(refused.value) == (
        "x.yml: dashboard 'test_dash', card 'total', visualization.y[1]: 'Total' must be lower_snake_case"
    )


def test_every_problem_of_a_definition_is_reported_at_once(tmp_path):
    card = GOOD_CARD.replace("width: 6", "width: 30").replace("    title: Total\n", "    colour: red\n")
    with pytest.raises(DefinitionError) as refused:
        load_dashboard(_write(tmp_path, card))
    problems = str(refused.value).splitlines()
    assert "x.yml: dashboard 'test_dash', card 'total', title: missing" in problems
    assert "x.yml: dashboard 'test_dash', card 'total', colour: unknown key" in problems
    assert "x.yml: dashboard 'test_dash', card 'total', position: card overflows the 24-column grid" in problems


def test_comments_and_string_literals_are_not_mistaken_for_tables(tmp_path):
    sql = (
        "select kpis.date, 'from raw.x' as note, kpis.appointments -- join raw.y\n"
        "      from marts.ops_daily_kpis as kpis"
    )
    card = GOOD_CARD.replace(
        "sql: select kpis.date, kpis.appointments from marts.ops_daily_kpis as kpis", f"sql: |\n      {sql}"
    )
    assert load_dashboard(_write(tmp_path, card)).cards[0].tables == [("marts", "ops_daily_kpis")]


def test_sql_functions_with_from_are_not_mistaken_for_tables(tmp_path):
    sql = "select kpis.date, extract(day from kpis.date) as dom, kpis.appointments from marts.ops_daily_kpis as kpis"
    card = GOOD_CARD.replace(
        "sql: select kpis.date, kpis.appointments from marts.ops_daily_kpis as kpis", f"sql: {sql}"
    )
    assert load_dashboard(_write(tmp_path, card)).cards[0].tables == [("marts", "ops_daily_kpis")]


def test_overlapping_cards_are_refused(tmp_path):
    second = GOOD_CARD.replace("key: total", "key: other").replace("title: Total", "title: Other")
    with pytest.raises(DefinitionError, match="overlap"):
        load_dashboard(_write(tmp_path, GOOD_CARD + second))


def test_metabase_drops_optional_clauses_without_a_value():
    card = next(c for d in load_all() for c in d.cards if c.key == "status_mix")
    native = metabase_sql(card)
    assert "[[and cast(card.date as date) >= {{date_from}}]]" in native
    unfiltered = bind(native, {})
    assert "{{" not in unfiltered.sql and unfiltered.params == ()
    filtered = bind(native, {"date_from": "2026-09-10"})
    assert filtered.params == ("2026-09-10",) and "card.date as date) >= %s" in filtered.sql
