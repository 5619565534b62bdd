"""Provisioning against the Metabase stand-in (tests/metabase_standin.py): the documented requests, the
first-run setup, and idempotence: a second run changes nothing, a changed definition updates in place."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys

import pytest
import yaml

from dashboards.definitions import load_all
from dashboards.metabase import COLLECTION_NAME, DATABASE_NAME, MetabaseConfig, MetabaseError, provision
from dashboards.query import FILTER_TAGS
from dashboards.tests.metabase_standin import MetabaseStandIn
from runtime import passwords
from runtime.settings import PROJECT_ROOT, REPORTING_ROLE, Settings
from testkit.fixtures import free_port

ADMIN, PASSWORD = "admin@telemed-elt.example", "a-Long-test-passw0rd"
MUTATING = ("POST", "PUT", "DELETE")


def _config(url: str) -> MetabaseConfig:
    return MetabaseConfig(
        url=url,
        user=ADMIN,
        password=PASSWORD,
        warehouse_host="postgres",
        warehouse_port=5432,
        warehouse_database="telemed",
        reporting_password="reporting-secret",
    )


def _changes(standin: MetabaseStandIn, since: int) -> list[tuple[str, str]]:
    """Mutating requests after index `since`, less logins and schema syncs (actions, not state)."""
    return [
        (r.method, r.path)
        for r in standin.requests[since:]
        if r.method in MUTATING and r.path != "/api/session" and not r.path.endswith("/sync_schema")
    ]


@pytest.fixture(params=["mbql5", "legacy"])
def standin(request):
    with MetabaseStandIn(card_format=request.param) as server:
        yield server


def test_first_run_sets_up_and_creates_everything(standin):
    dashboards = load_all()
    report = provision(_config(standin.url), dashboards)

    assert all(r.status < 400 for r in standin.requests), [r for r in standin.requests if r.status >= 400]
    cards = sum(len(d.cards) for d in dashboards)
    assert len(report.created) == 1 + 1 + 1 + cards + len(dashboards)  # admin, database, collection, ...
    assert report.updated == [] and report.unchanged == []

    state = standin.snapshot()
    (database,) = state["databases"].values()
    assert database["name"] == DATABASE_NAME
    assert database["details"]["user"] == REPORTING_ROLE and database["details"]["host"] == "postgres"
    assert database["details"]["password"] == "reporting-secret"
    ours = [c for c in state["collections"].values() if c["name"] == COLLECTION_NAME]
    assert len(ours) == 1
    assert len(state["cards"]) == cards
    assert {d["name"] for d in state["dashboards"].values()} == {d.name for d in dashboards}
    assert standin.state.syncs == [database["id"]]

    for definition in dashboards:
        stored = next(d for d in state["dashboards"].values() if d["name"] == definition.name)
        assert stored["collection_id"] == ours[0]["id"]
        assert len(stored["dashcards"]) == len(definition.cards)
        assert {p["slug"] for p in stored["parameters"]} == {
            tag for name in definition.filters for tag, _, _ in FILTER_TAGS[name]
        }
        for card in definition.cards:
            stored_card = next(c for c in state["cards"].values() if c["name"] == card.title)
            dashcard = next(dc for dc in stored["dashcards"] if dc["card_id"] == stored_card["id"])
            pos = card.position
            assert (dashcard["row"], dashcard["col"], dashcard["size_x"], dashcard["size_y"]) == (
                pos.row,
                pos.col,
                pos.width,
                pos.height,
            )
            targets = {m["target"][1][1] for m in dashcard["parameter_mappings"]}
            assert targets == {tag for name in card.filters for tag, _, _ in FILTER_TAGS[name]}
            assert stored_card["dataset_query"]["database"] == database["id"]


def test_the_requests_are_the_documented_api(standin):
    provision(_config(standin.url), load_all())
    calls = {(r.method, r.path.rstrip("/")) for r in standin.requests}
    # cards reach a dashboard through PUT /api/dashboard/:id with dashcards, never the removed endpoint
    assert not any(path.endswith("/cards") and method == "POST" for method, path in calls)
    puts = [r for r in standin.requests if r.method == "PUT" and r.path.startswith("/api/dashboard/")]
    assert puts and all("dashcards" in r.body and "tabs" in r.body for r in puts)
    new_ids = [dc["id"] for r in puts for dc in r.body["dashcards"]]
    assert all(i < 0 for i in new_ids), "new dashcards carry negative ids"
    setup = next(r for r in standin.requests if r.path == "/api/setup")
    assert set(setup.body) == {"token", "user", "prefs"} and setup.body["user"]["email"] == ADMIN
    cards = [r.body for r in standin.requests if (r.method, r.path) == ("POST", "/api/card")]
    for body in cards:
        assert body["dataset_query"]["type"] == "native"
        assert {"name", "display", "visualization_settings", "collection_id"} <= set(body)


def test_a_second_run_changes_nothing(standin):
    dashboards = load_all()
    provision(_config(standin.url), dashboards)
    before, mark = standin.snapshot(), len(standin.requests)

    report = provision(_config(standin.url), dashboards)

    assert _changes(standin, mark) == []
    assert standin.snapshot() == before
    assert report.created == [] and report.updated == []
    assert len(report.unchanged) == 2 + sum(len(d.cards) for d in dashboards) + len(dashboards)
    assert not any(r.path == "/api/setup" for r in standin.requests[mark:])


def test_a_changed_definition_updates_in_place(standin):
    dashboards = load_all()
    provision(_config(standin.url), dashboards)
    counts = {k: len(v) for k, v in standin.snapshot().items()}

    ops = dashboards[0]
    moved = dataclasses.replace(ops.cards[0], position=dataclasses.replace(ops.cards[0].position, col=1, width=5))
    retitled_sql = dataclasses.replace(ops.cards[1], sql=ops.cards[1].sql + "\nwhere kpis.completed >= 0")
    changed = [dataclasses.replace(ops, cards=(moved, retitled_sql, *ops.cards[2:])), *dashboards[1:]]
    mark = len(standin.requests)
    report = provision(_config(standin.url), changed)

    assert report.created == []
    assert sorted(report.updated) == sorted([f"card {ops.cards[1].title!r}", f"dashboard {ops.name!r}"])
    assert {k: len(v) for k, v in standin.snapshot().items()} == counts  # nothing duplicated
    assert _changes(standin, mark) == [
        ("PUT", f"/api/card/{_card_id(standin, ops.cards[1].title)}"),
        ("PUT", f"/api/dashboard/{_dashboard_id(standin, ops.name)}"),
    ]


def test_a_card_edited_in_metabase_is_restored(standin):
    dashboards = load_all()
    provision(_config(standin.url), dashboards)
    card_id = _card_id(standin, dashboards[0].cards[4].title)
    standin.state.cards[card_id]["display"] = "area"  # someone changed it in the Metabase UI

    report = provision(_config(standin.url), dashboards)

    assert report.updated == [f"card {dashboards[0].cards[4].title!r}"]
    assert standin.state.cards[card_id]["display"] == dashboards[0].cards[4].visualization.type


def test_metabase_errors_surface_with_their_message(standin):
    config = dataclasses.replace(_config(standin.url), user="not-an-email")
    with pytest.raises(MetabaseError, match="valid email address"):
        provision(config, load_all())


def test_without_metabase_url_only_html_is_built(marts_settings: Settings, tmp_path):
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("METABASE_")}
    env["PGDATABASE"] = marts_settings.pg_database
    done = subprocess.run(
        [sys.executable, "-m", "dashboards", "--out", str(tmp_path)],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "METABASE_URL is not set, so only the HTML dashboards were built" in done.stdout
    assert sorted(p.name for p in tmp_path.glob("*.html")) == sorted(
        ["index.html", *(f"{d.key}.html" for d in load_all())]
    )


def test_a_wrong_password_is_a_clear_error(standin):
    provision(_config(standin.url), load_all())
    wrong = dataclasses.replace(_config(standin.url), password="not-the-password")
    with pytest.raises(MetabaseError, match=r"login to .* failed: HTTP 401"):
        provision(wrong, load_all())


def test_an_unreachable_metabase_is_a_clear_error():
    with pytest.raises(MetabaseError, match="cannot reach Metabase"):
        provision(_config(f"http://127.0.0.1:{free_port()}"), load_all())


def test_compose_pins_a_supported_metabase():
    image = yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())["services"]["metabase"]["image"]
    match = re.fullmatch(r"metabase/metabase:v0\.(\d+)(\.\d+)*(-lts)?", image)
    assert match and int(match.group(1)) >= 48, f"{image}: the provisioning supports v0.48 and newer"
    readme = (PROJECT_ROOT / "README.md").read_text()
    assert "Supported Metabase versions: v0.48 and newer" in readme


def test_missing_credentials_are_named(tmp_path):
    # A state folder without the embedded server's passwords file: the reporting password is nowhere.
    with pytest.raises(MetabaseError, match="METABASE_PASSWORD, TELEMED_REPORTING_PASSWORD"):
        MetabaseConfig.from_env(
            Settings.from_env({"TELEMED_STATE_DIR": str(tmp_path)}),
            {"METABASE_URL": "http://127.0.0.1:1", "METABASE_USER": "a@b.example"},
        )


def test_the_warehouse_connection_takes_the_embedded_reporting_password_and_ssl_from_configuration(tmp_path):
    known, _ = passwords.ensure(tmp_path, [REPORTING_ROLE])
    env = {"METABASE_URL": "http://127.0.0.1:1", "METABASE_USER": "a@b.example", "METABASE_PASSWORD": "x" * 8}
    config = MetabaseConfig.from_env(Settings.from_env({"TELEMED_STATE_DIR": str(tmp_path)}), env)
    assert config.reporting_password == known[REPORTING_ROLE]
    assert config.ssl_details() == {"ssl": False}
    tls = {"METABASE_WAREHOUSE_SSLMODE": "verify-full", "METABASE_WAREHOUSE_SSLROOTCERT": "/etc/metabase/ca.pem"}
    config = MetabaseConfig.from_env(Settings.from_env({"TELEMED_STATE_DIR": str(tmp_path)}), {**env, **tls})
    assert config.ssl_details() == {
        "ssl": True,
        "ssl-mode": "verify-full",
        "ssl-use-client-auth": False,
        "ssl-root-cert-options": "local",
        "ssl-root-cert-path": "/etc/metabase/ca.pem",
    }
    with pytest.raises(MetabaseError, match="METABASE_WAREHOUSE_SSLMODE must be one of"):
        MetabaseConfig.from_env(
            Settings.from_env({"TELEMED_STATE_DIR": str(tmp_path)}), {**env, "METABASE_WAREHOUSE_SSLMODE": "on"}
        )


def _card_id(standin: MetabaseStandIn, title: str) -> int:
    return next(c["id"] for c in standin.state.cards.values() if c["name"] == title)


def _dashboard_id(standin: MetabaseStandIn, name: str) -> int:
    return next(d["id"] for d in standin.state.dashboards.values() if d["name"] == name)


def test_the_standin_refuses_what_metabase_refuses(standin):
    """The stand-in is only worth its passes if it is as strict as Metabase where the traps are."""
    provision(_config(standin.url), load_all())
    from metabase_api import Metabase_API

    api = Metabase_API(standin.url, email=ADMIN, password=PASSWORD)
    dashboard = next(iter(standin.state.dashboards.values()))
    card_id = dashboard["dashcards"][0]["card_id"]
    before = standin.snapshot()
    # The client's own helper: POST /api/dashboard/:id/cards, gone since v0.47, and it fails silently.
    assert api.add_card_to_dashboard(card_id, dashboard["id"]) is None
    last = standin.requests[-1]
    assert (last.method, last.path, last.status) == ("POST", f"/api/dashboard/{dashboard['id']}/cards", 404)
    assert standin.snapshot() == before
    wrong_type = {
        "parameters": [{"id": "abc", "name": "Specialty", "slug": "specialty", "type": "string/="}],
        "dashcards": [
            {
                "id": -1,
                "card_id": card_id,
                "row": 0,
                "col": 0,
                "size_x": 4,
                "size_y": 4,
                "parameter_mappings": [
                    {"parameter_id": "abc", "card_id": card_id, "target": ["variable", ["template-tag", "date_from"]]}
                ],
            }
        ],
    }
    refused = api.put(f"/api/dashboard/{dashboard['id']}", "raw", json=wrong_type)
    assert refused.status_code == 400
    assert requests_get_unauthenticated(standin.url) == 401


def requests_get_unauthenticated(url: str) -> int:
    import requests

    return requests.get(f"{url}/api/card/1", timeout=10).status_code
