"""What the provisioning asks Metabase to show, from the definitions and the glossary, without a server:
the glossary's series titles and colours, pie colours and value labels where Metabase takes them; every
dashboard filter mapped to every card that takes it; a card that cannot take one says so in its description.
(The requests themselves are checked against the stand-in in test_metabase.py.)"""

from __future__ import annotations

from dashboards import glossary
from dashboards.definitions import load_all
from dashboards.metabase import Provisioner, card_description, visualization_settings
from dashboards.query import FILTER_TAGS

DASHBOARDS = load_all()
CARDS = {card.key: card for dashboard in DASHBOARDS for card in dashboard.cards}


def test_series_and_slices_take_the_glossary_colours_and_titles():
    status = glossary.load().categories["status"]
    daily = visualization_settings(CARDS["daily_status"])
    assert daily["series_settings"]["no_shows"] == {"title": "No-shows", "color": status["no_show"].color}
    assert daily["series_settings"]["completed"]["color"] == status["completed"].color
    assert "graph.show_values" not in daily  # a value on each of 90 daily bars is noise
    mix = visualization_settings(CARDS["status_mix"])
    assert mix["pie.colors"]["no_show"] == status["no_show"].color  # the pie and the bars agree
    health = visualization_settings(CARDS["check_results_per_run"])["series_settings"]
    assert health["failed"] == {"title": "Failed", "color": "#c62828"}
    assert health["passed"] == {"title": "Passed", "color": "#2e7d32"}
    devices = visualization_settings(CARDS["technical_issues_by_device"])
    assert devices["graph.show_values"] is True
    assert devices["column_settings"]['["name","technical_issue_share"]'] == {"number_style": "percent"}
    table = visualization_settings(CARDS["current_checks"])["column_settings"]
    assert table['["name","result"]']["column_title"] == "Result"


def test_a_card_that_cannot_take_a_filter_says_so_in_its_description():
    assert card_description(CARDS["latest_status_mix"]).endswith(
        "Not filtered by date range: always the most recent run."
    )
    assert "Not filtered" not in card_description(CARDS["daily_status"])


def test_every_filter_is_mapped_to_every_card_that_takes_it():
    provisioner = Provisioner(config=None, api=object())  # _dashcards builds the request body only
    for dashboard in DASHBOARDS:
        card_ids = {card.key: number for number, card in enumerate(dashboard.cards, start=1)}
        for card, dashcard in zip(dashboard.cards, provisioner._dashcards(dashboard, card_ids, []), strict=True):
            mapped = {m["target"][1][1] for m in dashcard["parameter_mappings"]}
            takes = {tag for name in dashboard.filters if name in card.filters for tag, _, _ in FILTER_TAGS[name]}
            assert mapped == takes, (dashboard.key, card.key)
            every = {tag for name in dashboard.filters for tag, _, _ in FILTER_TAGS[name]}
            assert mapped == every or card.unfiltered, f"{card.key} skips a filter without saying why"
