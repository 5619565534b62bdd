"""Provisioning against the Metabase stand-in (tests/metabase_standin.py): the documented requests, the
first-run setup, the warehouse connection test against the real Postgres, and idempotence: a second run
changes nothing, a changed definition updates in place. The tests where versions answer differently run
against the pinned v0.58 and against a v0.47 that answers ``ordered_cards`` and legacy card queries."""

from __future__ import annotations

import dataclasses
import functools
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests
import yaml
from psycopg2 import sql

from dashboards.definitions import load_all
from dashboards.metabase import COLLECTION_NAME, DATABASE_NAME, MetabaseConfig, MetabaseError, provision
from dashboards.query import FILTER_TAGS
from dashboards.tests.metabase_standin import PINNED_VERSION, PROTECTED_PASSWORD, MetabaseStandIn, connection_error
from runtime import db, passwords
from runtime.settings import PROJECT_ROOT, REPORTING_ROLE, Settings
from testkit.fixtures import free_port

ADMIN, PASSWORD = "admin@telemed-elt.example", "a-Long-test-passw0rd"
MUTATING = ("POST", "PUT", "DELETE")


def reporting_password(warehouse: Settings) -> str:
    """The password the reporting role logs in with on the warehouse (Settings.password_for: the embedded
    server's passwords file, or TELEMED_REPORTING_PASSWORD); a placeholder where none is known (settings of
    a state folder whose server never started, in tests that replace it anyway)."""
    try:
        return warehouse.password_for(REPORTING_ROLE) or "reporting-secret"
    except passwords.PasswordFileError:
        return "reporting-secret"


@functools.cache
def _loaded() -> tuple:
    return tuple(load_all())


def definitions() -> list:
    """The dashboards as code, parsed once per test process (they are frozen dataclasses)."""
    return list(_loaded())


@pytest.fixture(scope="module")
def warehouse(settings: Settings) -> Settings:
    """The database Metabase's warehouse connection points at: a bootstrapped one of this module's own."""
    return settings


def _config(url: str, warehouse: Settings) -> MetabaseConfig:
    return MetabaseConfig(
        url=url,
        user=ADMIN,
        password=PASSWORD,
        warehouse_host=warehouse.pg_host,
        warehouse_port=warehouse.pg_port,
        warehouse_database=warehouse.pg_database,
        reporting_password=reporting_password(warehouse),
    )


def _changes(standin: MetabaseStandIn, since: int) -> list[tuple[str, str]]:
    """Mutating requests after index `since`, less logins and schema syncs (actions, not state)."""
    return [
        (r.method, r.path)
        for r in standin.requests[since:]
        if r.method in MUTATING and r.path != "/api/session" and not r.path.endswith("/sync_schema")
    ]


@pytest.fixture(params=[PINNED_VERSION, "v0.47.9"])
def standin(request):
    with MetabaseStandIn(version=request.param) as server:
        yield server


@pytest.fixture
def pinned():
    with MetabaseStandIn() as server:
        yield server


def test_first_run_sets_up_and_creates_everything(standin, warehouse):
    dashboards = definitions()
    report = provision(_config(standin.url, warehouse), dashboards)

    assert all(r.status < 400 for r in standin.requests), [r for r in standin.requests if r.status >= 400]
    cards = sum(len(d.cards) for d in dashboards)
    assert len(report.created) == 1 + 1 + 1 + cards + len(dashboards)  # admin, database, collection, ...
    assert report.updated == [] and report.unchanged == []

    state = standin.snapshot()
    (database,) = state["databases"].values()
    assert database["name"] == DATABASE_NAME
    assert database["details"]["user"] == REPORTING_ROLE
    assert (database["details"]["host"], database["details"]["port"]) == (warehouse.pg_host, warehouse.pg_port)
    assert database["details"]["password"] == reporting_password(warehouse)
    # Metabase tested the connection before storing it (SSL first, then the details as sent), and the sync's
    assert [t["dbname"] for t in standin.state.connection_tests] == [warehouse.pg_database] * 2
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


def test_the_requests_are_the_documented_api(standin, warehouse):
    provision(_config(standin.url, warehouse), definitions())
    calls = {(r.method, r.path.rstrip("/")) for r in standin.requests}
    # cards reach a dashboard through PUT /api/dashboard/:id with dashcards (v0.48+) or v0.47's PUT
    # /api/dashboard/:id/cards, never the removed POST endpoint
    assert not any(path.endswith("/cards") and method == "POST" for method, path in calls)
    puts = [r for r in standin.requests if r.method == "PUT" and r.path.startswith("/api/dashboard/")]
    if standin.dashcards_era:
        assert puts and all("dashcards" in r.body and "tabs" in r.body for r in puts)
        placed = [dc for r in puts for dc in r.body["dashcards"]]
    else:
        assert puts and all(r.path.endswith("/cards") and set(r.body) == {"cards", "ordered_tabs"} for r in puts)
        placed = [dc for r in puts for dc in r.body["cards"]]
    assert placed and all(dc["id"] < 0 for dc in placed), "new dashcards carry negative ids"
    # a new dashboard is read back before its cards are placed
    for created in (r for r in standin.requests if (r.method, r.path) == ("POST", "/api/dashboard")):
        later = standin.requests[standin.requests.index(created) + 1 :]
        first = next(r for r in later if r.path.startswith("/api/dashboard/"))
        assert first.method == "GET"
    setup = next(r for r in standin.requests if r.path == "/api/setup")
    assert set(setup.body) == {"token", "user", "prefs"} and setup.body["user"]["email"] == ADMIN
    cards = [r.body for r in standin.requests if (r.method, r.path) == ("POST", "/api/card")]
    for body in cards:
        assert body["dataset_query"]["type"] == "native"
        assert {"name", "display", "visualization_settings", "collection_id"} <= set(body)


def test_a_second_run_changes_nothing(standin, warehouse):
    dashboards = definitions()
    provision(_config(standin.url, warehouse), dashboards)
    before, mark = standin.snapshot(), len(standin.requests)

    report = provision(_config(standin.url, warehouse), dashboards)

    assert _changes(standin, mark) == []
    assert standin.snapshot() == before
    assert report.created == [] and report.updated == []
    assert len(report.unchanged) == 2 + sum(len(d.cards) for d in dashboards) + len(dashboards)
    assert not any(r.path == "/api/setup" for r in standin.requests[mark:])


def test_a_changed_definition_updates_in_place(standin, warehouse):
    dashboards = definitions()
    provision(_config(standin.url, warehouse), dashboards)
    counts = {k: len(v) for k, v in standin.snapshot().items()}

    ops = dashboards[0]
    moved = dataclasses.replace(ops.cards[0], position=dataclasses.replace(ops.cards[0].position, col=1, width=5))
    retitled_sql = dataclasses.replace(ops.cards[1], sql=ops.cards[1].sql + "\nwhere kpis.completed >= 0")
    changed = [dataclasses.replace(ops, cards=(moved, retitled_sql, *ops.cards[2:])), *dashboards[1:]]
    mark = len(standin.requests)
    report = provision(_config(standin.url, warehouse), changed)

    assert report.created == []
    assert sorted(report.updated) == sorted([f"card {ops.cards[1].title!r}", f"dashboard {ops.name!r}"])
    assert {k: len(v) for k, v in standin.snapshot().items()} == counts  # nothing duplicated
    # only the cards moved, so v0.47 gets only its cards endpoint
    dashboard_put = f"/api/dashboard/{_dashboard_id(standin, ops.name)}" + ("" if standin.dashcards_era else "/cards")
    card_put = f"/api/card/{_card_id(standin, ops.cards[1].title)}"
    assert _changes(standin, mark) == [("PUT", card_put), ("PUT", dashboard_put)]


def test_a_card_edited_in_metabase_is_restored(pinned, warehouse):
    standin = pinned
    dashboards = definitions()
    provision(_config(standin.url, warehouse), dashboards)
    card_id = _card_id(standin, dashboards[0].cards[4].title)
    standin.state.cards[card_id]["display"] = "area"  # someone changed it in the Metabase UI

    report = provision(_config(standin.url, warehouse), dashboards)

    assert report.updated == [f"card {dashboards[0].cards[4].title!r}"]
    assert standin.state.cards[card_id]["display"] == dashboards[0].cards[4].visualization.type


def test_metabase_errors_surface_with_their_message(pinned, warehouse):
    standin = pinned
    config = dataclasses.replace(_config(standin.url, warehouse), user="not-an-email")
    with pytest.raises(MetabaseError, match="valid email address"):
        provision(config, definitions())


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
        ["index.html", *(f"{d.key}.html" for d in definitions())]
    )


def test_a_wrong_password_is_a_clear_error(pinned, warehouse):
    standin = pinned
    provision(_config(standin.url, warehouse), definitions())
    wrong = dataclasses.replace(_config(standin.url, warehouse), password="not-the-password")
    with pytest.raises(MetabaseError, match=r"login to .* failed: HTTP 401"):
        provision(wrong, definitions())


def test_an_unreachable_metabase_is_a_clear_error():
    with pytest.raises(MetabaseError, match="cannot reach Metabase"):
        provision(_config(f"http://127.0.0.1:{free_port()}", Settings.from_env({})), definitions())


def test_compose_pins_a_supported_metabase():
    image = yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())["services"]["metabase"]["image"]
    match = re.fullmatch(r"metabase/metabase:v0\.(\d+)(\.\d+)*(-lts)?", image)
    assert match and int(match.group(1)) >= 48, f"{image}: the provisioning supports v0.48 and newer"
    readme = (PROJECT_ROOT / "docs" / "dashboards.md").read_text()
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


def test_the_standin_refuses_what_metabase_refuses(pinned, warehouse):
    """The stand-in is only worth its passes if it is as strict as Metabase where the traps are."""
    standin = pinned
    provision(_config(standin.url, warehouse), definitions())
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
    # Metabase's shapes: a schema refusal names the key, an unknown id is "Not found.", no session is 401
    no_display = {"name": "x", "dataset_query": {}, "visualization_settings": {}}
    missing = api.post("/api/card", "raw", json=no_display)
    assert missing.status_code == 400 and set(missing.json()["errors"]) == {"display"}
    wrong_kind = api.get(f"/api/card/{dashboard['id']}", "raw")  # a dashboard id is no card id
    assert (wrong_kind.status_code, wrong_kind.text) == (404, "Not found.")
    assert requests.get(f"{standin.url}/api/card/{card_id}", timeout=10).status_code == 401
    assert standin.snapshot() == before


def test_answers_are_metabases_not_echoes(pinned, warehouse):
    """What the provisioning reads back differs from what it sent where Metabase's answers do, so it can only
    pass by reading ids and values from the answers."""
    standin = pinned
    provision(_config(standin.url, warehouse), definitions())
    from metabase_api import Metabase_API

    api = Metabase_API(standin.url, email=ADMIN, password=PASSWORD)
    databases = api.get("/api/database", "raw").json()["data"]
    assert databases[0]["is_sample"] and databases[0]["id"] == 1  # a fresh Metabase lists its Sample Database
    ours = next(d for d in databases if d["name"] == DATABASE_NAME)
    assert ours["details"]["password"] == PROTECTED_PASSWORD and ours["is_full_sync"] is True

    sent = next(r.body for r in standin.requests if (r.method, r.path) == ("POST", "/api/card") and FILTER_TAGS)
    card = next(c for c in standin.state.cards.values() if c["name"] == sent["name"])
    answer = api.get(f"/api/card/{card['id']}", "raw").json()
    assert answer["dataset_query"]["stages"][0]["native"] == sent["dataset_query"]["native"]["query"]
    assert "native" not in answer["dataset_query"] and answer["type"] == "question" and len(answer["entity_id"]) == 21
    tags = sent["dataset_query"]["native"]["template-tags"]
    assert [p["id"] for p in answer["parameters"]] == [t["id"] for t in tags.values()]

    created = next(r for r in standin.requests if (r.method, r.path) == ("POST", "/api/dashboard"))
    dashboard = next(d for d in standin.state.dashboards.values() if d["name"] == created.body["name"])
    answer = api.get(f"/api/dashboard/{dashboard['id']}", "raw").json()
    assert answer["width"] == "fixed" and answer["auto_apply_filters"] is True
    assert all(dc["id"] > 0 and dc["card"]["id"] == dc["card_id"] for dc in answer["dashcards"])


def test_an_unreachable_warehouse_is_refused_with_metabases_message(pinned, warehouse):
    refused_port = dataclasses.replace(_config(pinned.url, warehouse), warehouse_port=free_port())
    with pytest.raises(MetabaseError, match=r"POST /api/database: HTTP 400: .*couldn't connect to the database"):
        provision(refused_port, definitions())
    unknown_host = dataclasses.replace(_config(pinned.url, warehouse), warehouse_host="telemed-no-such-host.invalid")
    with pytest.raises(MetabaseError, match=r"HTTP 400: .*Host is invalid"):
        provision(unknown_host, definitions())
    assert pinned.state.databases == {} and pinned.state.cards == {}


def test_a_changed_warehouse_is_tested_before_it_is_stored(pinned, warehouse):
    provision(_config(pinned.url, warehouse), definitions())
    before = pinned.snapshot()["databases"]
    moved = dataclasses.replace(_config(pinned.url, warehouse), warehouse_port=free_port())
    with pytest.raises(MetabaseError, match=r"PUT /api/database/\d+: HTTP 400: .*check your port settings"):
        provision(moved, definitions())
    assert pinned.snapshot()["databases"] == before


def test_an_ssl_upgrade_by_metabase_is_not_undone(pinned, warehouse):
    standin = pinned
    """Metabase stores ssl=true when its SSL attempt works; the next run must not take that for a drift and
    rewrite the database. The embedded Postgres has no SSL, so the test stores ssl=true as Metabase would
    have, and the schema sync that follows is then refused with Metabase's 422 (which this also checks)."""
    provision(_config(standin.url, warehouse), definitions())
    (stored,) = standin.state.databases.values()
    stored["details"]["ssl"] = True
    mark = len(standin.requests)
    with pytest.raises(MetabaseError, match=r"sync_schema: HTTP 422: .*SSL"):
        provision(_config(standin.url, warehouse), definitions())
    assert _changes(standin, mark) == [] and stored["details"]["ssl"] is True


@pytest.fixture
def password_role(warehouse: Settings):
    """A login role (name, password) whose password the server checks, for the connection test's refusals.

    The embedded Postgres checks every password (scram-sha-256), so there it needs nothing more; on a server
    that trusts loopback connections a pg_hba line of the test's own asks this one role for its scram
    password (other roles and sessions are untouched; the file is restored afterwards)."""
    role, password = f"telemed_mb_probe_{uuid.uuid4().hex[:8]}", "probe-Passw0rd"
    details = {"host": warehouse.pg_host, "port": warehouse.pg_port, "dbname": warehouse.pg_database, "user": role}
    conn = db.connect(warehouse)
    conn.autocommit = True
    cur = conn.cursor()
    cur.execute(sql.SQL("create role {} login password %s").format(sql.Identifier(role)), (password,))
    cur.execute(
        sql.SQL("grant connect on database {} to {}").format(
            sql.Identifier(warehouse.pg_database), sql.Identifier(role)
        )
    )
    hba, original = None, None
    try:
        if connection_error({**details, "password": "not-" + password}) is None:  # trusted: ask for a password
            cur.execute("show hba_file")
            hba = Path(cur.fetchone()[0])
            try:
                original = hba.read_text()
                hba.write_text(f"host all {role} all scram-sha-256\n" + original)
            except OSError as exc:
                pytest.skip(f"the server trusts {role} and its pg_hba.conf cannot be changed here: {exc}")
            cur.execute("select pg_reload_conf()")
            for _ in range(100):  # the reload is asynchronous
                if connection_error({**details, "password": "not-" + password}) is not None:
                    break
                time.sleep(0.05)
        yield role, password, details
    finally:
        if original is not None:
            hba.write_text(original)
            cur.execute("select pg_reload_conf()")
        cur.execute(
            sql.SQL("revoke connect on database {} from {}").format(
                sql.Identifier(warehouse.pg_database), sql.Identifier(role)
            )
        )
        cur.execute(sql.SQL("drop role {}").format(sql.Identifier(role)))
        conn.close()


def test_the_connection_test_checks_the_password(pinned, password_role):
    """A reporting role without its password, or with a wrong one, is refused as Metabase refuses it; the
    right one is stored and answered redacted; an update that changes nothing connects nowhere."""
    _, password, details = password_role
    standin = pinned
    provision_config = _config(standin.url, Settings.from_env({}))
    from dashboards.metabase import ensure_setup

    ensure_setup(provision_config)
    from metabase_api import Metabase_API

    api = Metabase_API(standin.url, email=ADMIN, password=PASSWORD)

    def create(extra: dict):
        body = {"name": "probe", "engine": "postgres", "details": {**details, "ssl": False, **extra}}
        return api.post("/api/database", "raw", json=body)

    missing = create({})
    assert missing.status_code == 400
    assert missing.json() == {"message": "Password is missing.", "errors": {"password": "check your password"}}
    wrong = create({"password": "not-" + password})
    assert (wrong.status_code, wrong.json()["message"]) == (400, "Password is incorrect.")
    assert standin.state.databases == {}

    right = create({"password": password})
    assert right.status_code == 200 and right.json()["details"]["password"] == PROTECTED_PASSWORD
    db_id = right.json()["id"]
    tests = len(standin.state.connection_tests)
    echoed = api.put(f"/api/database/{db_id}", "raw", json={"details": right.json()["details"]})
    assert echoed.status_code == 200 and len(standin.state.connection_tests) == tests  # nothing changed
    changed = api.put(f"/api/database/{db_id}", "raw", json={"details": {**details, "password": "not-" + password}})
    assert (changed.status_code, changed.json()["message"]) == (400, "Password is incorrect.")
    assert standin.state.databases[db_id]["details"]["password"] == password


def test_a_wrong_reporting_password_stops_the_provisioning(pinned, password_role, monkeypatch):
    """`make dashboards` with a wrong or empty TELEMED_REPORTING_PASSWORD: Metabase's connection test refuses
    the warehouse before anything else is created. The probe role, whose password the server checks, stands
    in for telemed_reporting (so the test holds on a server that trusts telemed_reporting too)."""
    role, password, details = password_role
    monkeypatch.setattr("dashboards.metabase.REPORTING_ROLE", role)
    config = dataclasses.replace(
        _config(pinned.url, Settings.from_env({})),
        warehouse_host=details["host"],
        warehouse_port=details["port"],
        warehouse_database=details["dbname"],
    )
    for wrong, message in (("", "Password is missing."), ("not-" + password, "Password is incorrect.")):
        with pytest.raises(MetabaseError, match=rf"POST /api/database: HTTP 400: .*{re.escape(message)}"):
            provision(dataclasses.replace(config, reporting_password=wrong), definitions())
    assert pinned.state.databases == {} and pinned.state.collections.keys() == {5}  # the admin's personal one

    report = provision(dataclasses.replace(config, reporting_password=password), definitions())
    assert f"database {DATABASE_NAME!r} (as {role})" in report.created
    assert pinned.state.databases[2]["details"]["user"] == role
