"""The definitions load, and malformed ones are refused with a message that names the problem."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from dashboards import glossary
from dashboards.definitions import GRID_COLUMNS, RATE_MIN_DENOMINATOR, DefinitionError, load_all, load_dashboard
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


def test_a_card_that_skips_a_dashboard_filter_must_say_why(tmp_path):
    card = GOOD_CARD.replace("{date_range: date}", "{}")
    second = GOOD_CARD.replace("key: total", "key: other").replace("title: Total", "title: Other")
    second = second.replace("col: 0", "col: 6")
    with pytest.raises(DefinitionError, match=r"card 'total': filter 'date_range' of this dashboard neither applies"):
        load_dashboard(_write(tmp_path, card + second))
    declared = card.replace("    filters: {}\n", "    unfiltered: {date_range: a total over all time}\n")
    dashboard = load_dashboard(_write(tmp_path, declared + second))
    assert dashboard.cards[0].unfiltered == {"date_range": "a total over all time"}


def test_ratios_follow_the_rollup_and_thin_rates_are_left_empty(tmp_path):
    rate = GOOD_CARD.replace(
        "sql: select kpis.date, kpis.appointments from marts.ops_daily_kpis as kpis",
        "sql: select kpis.date, kpis.completed, kpis.closed_appointments from marts.ops_daily_kpis as kpis",
    ).replace(
        "visualization: {type: scalar, y: appointments}",
        "visualization: {type: scalar, y: completion_rate, percent: completion_rate}\n"
        "    ratios: {completion_rate: completed / closed_appointments}",
    )
    card = load_dashboard(_write(tmp_path, rate)).cards[0]
    assert card.required_columns == ["completed", "closed_appointments", "date"]
    native = metabase_sql(card)
    assert "sum(card.completed)" in native and "sum(card.closed_appointments)" in native
    assert f"case when sum(card.closed_appointments) >= {RATE_MIN_DENOMINATOR} then" in native
    with pytest.raises(DefinitionError, match="'group_by' and 'ratios' need 'rollup: sum'"):
        load_dashboard(_write(tmp_path, rate.replace("    rollup: sum\n", "").replace("scalar", "line, x: date")))
    with pytest.raises(DefinitionError, match="a ratio is 'numerator / denominator'"):
        load_dashboard(_write(tmp_path, rate.replace("completed / closed_appointments", "completed")))


def test_a_daily_chart_ends_at_its_last_day_with_data():
    card = next(c for d in load_all() for c in d.cards if c.key == "daily_status")
    assert card.daily
    native = metabase_sql(card)
    assert "where result.date <= (select max(kept.date) from result as kept where" in native
    assert native.rstrip().endswith("order by result.date")


def test_every_shown_column_and_category_has_a_glossary_label():
    """Labels come from one glossary: every series, axis category and table column of every card."""
    words = glossary.load()
    for dashboard in load_all():
        for card in dashboard.cards:
            viz = card.visualization
            shown = [*viz.y, *viz.columns] + ([viz.x] if viz.type in ("pie", "bar", "row") else [])
            missing = [c for c in shown if c not in words.columns and c not in words.category_of_column]
            assert missing == [], f"{dashboard.key}.{card.key}: no glossary label for {missing}"
            if viz.type == "pie":
                assert viz.x in words.category_of_column, f"{card.key}: a pie's slices are a glossary category"


def test_a_malformed_glossary_is_refused():
    good = yaml.safe_load(glossary.GLOSSARY_PATH.read_text())
    bad_colour = yaml.safe_load(glossary.GLOSSARY_PATH.read_text())
    bad_colour["categories"]["status"]["values"]["no_show"]["color"] = "red"
    with pytest.raises(DefinitionError, match=r"status.no_show: colour 'red' is not #rrggbb"):
        glossary.parse(bad_colour)
    dangling = {**good, "columns": {"no_shows": {"label": "No-shows", "of": "status.noshow"}}}
    with pytest.raises(DefinitionError, match="names no category value"):
        glossary.parse(dangling)


UNDATED = (
    "    undated_sql: select cast(null as date) as date, sum(t.appointments) as appointments from marts.{table} as t\n"
)


def test_undated_sql_is_what_metabase_reads_while_no_date_range_is_set(tmp_path):
    card = load_dashboard(_write(tmp_path, GOOD_CARD + UNDATED.format(table="provider_performance"))).cards[0]
    assert card.tables == [("marts", "ops_daily_kpis"), ("marts", "provider_performance")]
    native = metabase_sql(card)

    def words(sql: str) -> str:
        return " ".join(sql.split())

    # Without a date: the undated rows are kept (`where true`), the card's own rows emptied (`where false`).
    unfiltered = words(bind(native, {}).sql)
    assert "from marts.provider_performance as t ) as undated where true union all" in unfiltered
    assert "from marts.ops_daily_kpis as kpis ) as dated where false ) as card" in unfiltered
    # With one: the undated branch is emptied and the card's own rows read, then filtered as ever.
    dated = bind(native, {"date_to": "2026-09-10"})
    assert ") as undated where true and cast(%s as date) is null union all" in words(dated.sql)
    assert ") as dated where false or cast(%s as date) is not null ) as card" in words(dated.sql)
    assert dated.params == ("2026-09-10", "2026-09-10", "2026-09-10")
    assert bind(metabase_sql(load_all()[0].cards[0]), {}).sql.count("union all") == 0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("marts.{table}", "raw.{table}"), "cards read only marts, monitoring"),
        (("marts.{table}", "{table}"), "schema-qualified"),
    ],
)
def test_undated_sql_reads_only_the_marts(tmp_path, change, message):
    undated = UNDATED.replace(*change).format(table="provider_performance")
    with pytest.raises(DefinitionError, match=message):
        load_dashboard(_write(tmp_path, GOOD_CARD + undated))


def test_undated_sql_needs_a_date_range_to_stand_in_for(tmp_path):
    card = GOOD_CARD.replace("{date_range: date}", "{}") + UNDATED.format(table="provider_performance")
    card += "    unfiltered: {date_range: a total over all time}\n"
    with pytest.raises(DefinitionError, match="'undated_sql' stands in for 'sql' while no date range is set"):
        load_dashboard(_write(tmp_path, card))
    daily = GOOD_CARD.replace("{type: scalar, y: appointments}", "{type: line, x: date, y: appointments}")
    with pytest.raises(DefinitionError, match="'undated_sql' cannot stand in for a chart by day"):
        load_dashboard(_write(tmp_path, daily + UNDATED.format(table="provider_performance")))
