"""Headless Chromium (Debian's) opens every HTML dashboard and the ``dbt docs serve`` site.

Dashboards: no console or page errors, nothing fetched but the page itself, every card drawn with data,
the client-side filters give exactly what the Metabase query gives for the same values. Docs: the site
lists the marts and the exposures, each exposure pointing at the marts its dashboard reads. Screenshots
go to .local/artifacts/dashboards/.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from dashboards.__main__ import build_html
from dashboards.definitions import load_all
from dashboards.query import bind, metabase_sql, plain_sql
from dashboards.render import page_name
from dashboards.tests import marts
from dashboards.tests.browser import chromium, watch
from runtime.settings import PROJECT_ROOT

DASHBOARDS = load_all()
KPI_MARTS = ("ops_daily_kpis", "provider_performance", "device_quality", "specialty_satisfaction")
STAR_SCHEMA = ("dim_date", "dim_provider", "dim_device", "fact_appointment", "fact_feedback")


@pytest.fixture(scope="module")
def site(marts_settings, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dashboards")
    build_html(marts_settings, out)
    return out


@pytest.fixture(scope="module")
def browser(chromium_path):
    with chromium(chromium_path) as context:
        yield context


def _open(browser, url: str):
    page = browser.new_page()
    log = watch(page)
    page.goto(url)
    return page, log


@pytest.mark.parametrize("dashboard", DASHBOARDS, ids=[d.key for d in DASHBOARDS])
def test_every_card_is_drawn_with_data_and_no_errors(browser, site, artifacts_dir, dashboard):
    page, log = _open(browser, (site / page_name(dashboard)).as_uri())
    page.wait_for_selector("body[data-ready=true]", timeout=60_000)
    page.screenshot(path=str(artifacts_dir / f"{dashboard.key}.png"), full_page=True)
    try:
        cards = page.eval_on_selector_all(
            ".card",
            """els => els.map(e => ({id: e.id, rendered: e.dataset.rendered, points: Number(e.dataset.points),
                 svg: e.querySelectorAll('.main-svg').length, marks: e.querySelectorAll(
                 '.point, .bars path, .slice, .scatterlayer path.js-line, tbody tr').length,
                 text: e.querySelector('.viz').innerText}))""",
        )
        assert len(cards) == len(dashboard.cards)
        for card in cards:
            assert card["rendered"] in ("chart", "table", "scalar"), card
            assert card["points"] > 0, card
            if card["rendered"] == "chart":
                assert card["svg"] > 0 and card["marks"] > 0, f"{card['id']} has no drawn marks"
            elif card["rendered"] == "table":
                assert card["marks"] == card["points"]
            else:
                assert card["text"].strip() not in ("", "\u2014")
        assert log.console_errors == [] and log.page_errors == []
        assert log.requests == [(site / page_name(dashboard)).as_uri()], "the page fetched something"
    finally:
        page.close()


def test_index_links_every_dashboard(browser, site, artifacts_dir):
    page, log = _open(browser, (site / "index.html").as_uri())
    page.screenshot(path=str(artifacts_dir / "index.png"), full_page=True)
    hrefs = page.eval_on_selector_all("main a.card", "els => els.map(e => e.getAttribute('href'))")
    assert hrefs == [page_name(d) for d in DASHBOARDS]
    assert log.console_errors == [] and log.page_errors == []
    page.close()


def _same(a, b) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    return a == b


def _sql_rows(conn, card, values) -> list[dict]:
    bound = bind(metabase_sql(card), values)
    with conn.cursor() as cur:
        cur.execute(bound.sql, bound.params)
        columns = [d.name for d in cur.description]
        rows = cur.fetchall()
    conn.commit()
    from dashboards.data import _json_value

    return [{c: _json_value(v) for c, v in zip(columns, row, strict=True)} for row in rows]


def _filter_values(conn, card) -> dict:
    values = {}
    for name, column in card.filters.items():
        with conn.cursor() as cur:
            if name == "date_range":
                cur.execute(f"select min(cast(c.{column} as date)), max(cast(c.{column} as date)) from ({card.sql}) c")
                low, high = cur.fetchone()
                values["date_from"] = (low + (high - low) / 4).isoformat()
                values["date_to"] = (high - (high - low) / 4).isoformat()
            else:
                cur.execute(f"select c.{column} from ({plain_sql(card)}) c where c.{column} is not null order by 1")
                options = [r[0] for r in cur.fetchall()]
                values[name] = options[len(options) // 2]
        conn.commit()
    return values


@pytest.mark.parametrize("dashboard", DASHBOARDS, ids=[d.key for d in DASHBOARDS])
def test_html_filters_match_the_metabase_queries(browser, site, reporting_conn, dashboard):
    page, _ = _open(browser, (site / page_name(dashboard)).as_uri())
    page.wait_for_selector("body[data-ready=true]", timeout=60_000)
    try:
        for card in dashboard.cards:
            for values in ({}, _filter_values(reporting_conn, card)):
                expected = _sql_rows(reporting_conn, card, values)
                shown = page.evaluate(
                    "([key, values]) => window.telemedDashboard.view(key, values)", [card.key, values]
                )
                # Free text (patient comments) never reaches the offline pages unless asked for.
                assert all(row.get(c) is None for row in shown for c in card.free_text), card.key
                columns = [c for c in card.result_columns if c not in card.free_text]
                got = [[row.get(c) for c in columns] for row in shown]
                want = [[row.get(c) for c in columns] for row in expected]
                assert len(got) == len(want), f"{card.key} {values}: {len(got)} rows in HTML, {len(want)} in SQL"
                # Ties may come in either order: compare as multisets, then check the HTML order itself.
                assert sorted(got, key=repr) == sorted(want, key=repr) or all(
                    _same(x, y)
                    for left, right in zip(sorted(got, key=repr), sorted(want, key=repr), strict=True)
                    for x, y in zip(left, right, strict=True)
                ), (card.key, values, got, want)
                for first, second in itertools.pairwise(shown):
                    key = card.sort[0] if card.sort else None
                    if key and first.get(key.column) is not None and second.get(key.column) is not None:
                        ordered = (
                            first[key.column] >= second[key.column]
                            if key.descending
                            else (first[key.column] <= second[key.column])
                        )
                        assert ordered, (card.key, key, first, second)
    finally:
        page.close()


def test_date_filter_changes_what_the_page_shows(browser, site, artifacts_dir):
    ops = next(d for d in DASHBOARDS if d.key == "operations_overview")
    page, log = _open(browser, (site / page_name(ops)).as_uri())
    page.wait_for_selector("body[data-ready=true]", timeout=60_000)
    before = page.inner_text("#card-appointments_total .viz")
    days = page.eval_on_selector("input[data-tag=date_from]", "e => [e.min, e.max]")
    # A week in the middle of the data (its last days hold future bookings that have no outcome yet).
    middle = dt.date.fromisoformat(days[0]) + (dt.date.fromisoformat(days[1]) - dt.date.fromisoformat(days[0])) / 2
    for tag, day in (("date_from", middle), ("date_to", middle + dt.timedelta(days=6))):
        page.fill(f"input[data-tag={tag}]", day.isoformat())
        page.dispatch_event(f"input[data-tag={tag}]", "change")
    after = page.inner_text("#card-appointments_total .viz")
    points = page.get_attribute("#card-daily_status", "data-points")
    page.screenshot(path=str(artifacts_dir / "operations_overview-one-week.png"), full_page=True)
    assert before != after and points == "7"
    assert log.console_errors == [] and log.page_errors == []
    page.close()


def test_data_health_without_monitor_runs_says_so(browser, marts_settings, tmp_path, artifacts_dir):
    marts.drop_monitor_history(marts_settings)
    try:
        build_html(marts_settings, tmp_path)
    finally:
        marts.add_monitor_history(marts_settings)
    health = next(d for d in DASHBOARDS if d.key == "data_health")
    page, log = _open(browser, (tmp_path / page_name(health)).as_uri())
    page.wait_for_selector("body[data-ready=true]", timeout=60_000)
    page.screenshot(path=str(artifacts_dir / "data_health-no-runs.png"), full_page=True)
    notices = page.eval_on_selector_all(".card .notice", "els => els.map(e => e.innerText)")
    assert len(notices) == len(health.cards)
    assert all(text.startswith("No monitor runs yet") for text in notices), notices
    assert log.console_errors == [] and log.page_errors == []
    page.close()


# -- dbt docs --------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def docs_url(marts_settings, tmp_path_factory):
    target = tmp_path_factory.mktemp("dbt-target")
    env = {**os.environ, "PGDATABASE": marts_settings.pg_database}
    dbt = str(Path(sys.executable).parent / "dbt")
    generate = subprocess.run(
        [sys.executable, "-m", "loaders", "env", "--", dbt, "docs", "generate", "--target-path", str(target)],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert generate.returncode == 0, generate.stdout[-3000:] + generate.stderr[-2000:]
    port = _free_port()
    command = [sys.executable, "-m", "loaders", "env", "--", dbt, "docs", "serve", "--target-path", str(target)]
    serve = subprocess.Popen(
        [*command, "--host", "127.0.0.1", "--port", str(port), "--no-browser"],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(url + "manifest.json", timeout=2) as response:  # noqa: S310 (loopback http)
                    if response.status == 200:
                        break
            except OSError:
                if time.monotonic() > deadline or serve.poll() is not None:
                    raise AssertionError("dbt docs serve did not come up") from None
                time.sleep(0.5)
        yield url
    finally:
        os.killpg(serve.pid, signal.SIGTERM)
        serve.wait(timeout=30)


def _docs_errors(log) -> list[str]:
    """Console errors, less the ones dbt-docs' own page makes: its index.html asks for two icon URLs and a
    favicon whose templates were never filled in (``{{ getIcon(...) }}``, ``${require(...)}``), which 404."""
    unfilled = [url for url in log.failed + log.requests if "%7B%7B" in url or "$%7Brequire" in url]
    errors = list(log.console_errors)
    for _ in unfilled:
        if "Failed to load resource: the server responded with a status of 404 (File not found)" in errors:
            errors.remove("Failed to load resource: the server responded with a status of 404 (File not found)")
    return errors + log.page_errors


def _visible_text(page) -> str:
    # The docs app splits names into highlight spans; compare without whitespace.
    return "".join(page.inner_text("body").split())


def test_dbt_docs_list_the_marts_and_the_exposures(browser, docs_url, artifacts_dir):
    page, log = _open(browser, docs_url + "#!/overview")
    page.wait_for_selector("strong:has-text('Exposures')", state="visible", timeout=60_000)
    page.click("span.filename-normal:text-is('Dashboard')")  # exposures are grouped by type, folded
    sidebar = _visible_text(page)
    for dashboard in DASHBOARDS:
        assert "".join(dashboard.name.split()) in sidebar, f"the sidebar does not list the exposure {dashboard.name}"
    page.screenshot(path=str(artifacts_dir / "dbt-docs-overview.png"))
    for mart in KPI_MARTS + STAR_SCHEMA:
        page.goto(f"{docs_url}#!/model/model.telemed.{mart}")
        page.wait_for_selector("text=Columns", state="visible", timeout=30_000)
        page.wait_for_function(
            "name => Array.from(document.querySelectorAll('.app-title'))"
            ".some(e => e.innerText.trim().split(/\\s+/)[0] === name)",
            arg=mart,
            timeout=30_000,
        )
    page.screenshot(path=str(artifacts_dir / "dbt-docs-mart.png"))

    for dashboard in DASHBOARDS:
        page.goto(f"{docs_url}#!/exposure/exposure.telemed.{dashboard.key}")
        page.wait_for_selector("text=Depends On", timeout=30_000)
        text = page.inner_text("body")
        assert f"{dashboard.name} exposure" in text
        for schema, table in dashboard.tables:
            if schema == "marts":
                assert table in text, f"{dashboard.key} does not show its dependency on {table}"
        page.screenshot(path=str(artifacts_dir / f"dbt-docs-exposure-{dashboard.key}.png"))
    assert _docs_errors(log) == []
    page.close()
