"""`airflow dags test telemedicine_ingestion_dag` on the test Postgres and broker (real Airflow, real
Cosmos, real dbt), at the test clock's logical date.

- A world loaded and built by the DAG equals, mart row for mart row, the same world loaded and built the
  plain way (`make load` + `make build`) in a second database.
- A task that fails is retried, then alerts once on the loopback Slack webhook and SMTP server.
"""

from __future__ import annotations

import dataclasses
import email
import email.policy
import json
import os
import subprocess
import sys
import uuid
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, NewTopic
from psycopg2 import sql

from dashboards.tests.browser import chromium, watch
from loaders.tests.loader_support import loader_env
from orchestration import supervisor
from orchestration.tests.conftest import AirflowHarness, run_dbt
from runtime import db
from runtime.settings import PROJECT_ROOT, Settings
from simulator.api_server import ApiServer, SessionStore
from simulator.video_api import FILE_NAME
from testkit.clock import AS_OF

pytestmark = pytest.mark.slow

ARTIFACTS = PROJECT_ROOT / ".local" / "artifacts" / "orchestration"
CHROMIUM = Path(os.environ.get("TELEMED_CHROMIUM", "/usr/bin/chromium"))

DAG_ID = "telemedicine_ingestion_dag"
SCALE = 1000
SEED = 11
# Load times differ between two loads of the same data; every other column must agree.
LOAD_TIME_COLUMNS = {"last_loaded_at"}


def loaders(env: dict[str, str], *args: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "loaders", *args], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, f"loaders {' '.join(args)} failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"


def new_topic(settings: Settings) -> str:
    name = f"test.airflow.{uuid.uuid4().hex[:10]}"
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap_servers})
    admin.create_topics([NewTopic(name, num_partitions=3, replication_factor=1)])[name].result(timeout=30)
    return name


def world_env(settings: Settings, work: Path, topic: str, video_api: ApiServer) -> dict[str, str]:
    """A database, topic, consumer group, landing folder, video platform API and dbt target of this world's own."""
    return loader_env(
        settings,
        TELEMED_VIDEO_API_URL=video_api.url,
        TELEMED_VIDEO_API_TOKEN=video_api.token,
        TELEMED_TOPIC=topic,
        TELEMED_CONSUMER_GROUP=f"{topic}.loader",
        TELEMED_LANDING_DIR=str(work / "landing"),
        DBT_TARGET_PATH=str(work / "target"),
        TELEMED_HOURLY_DBT_TARGET=str(work / "hourly-target"),
        DBT_LOG_PATH=str(work / "logs"),
    )


def make_world(env: dict[str, str], work: Path) -> None:
    """The same generated world (seed, scale, period) in this world's clinic tables, topic and landing."""
    generated = work / "generated"
    loaders(env, "generate", "--scale", str(SCALE), "--seed", str(SEED), "--out", str(generated))
    loaders(env, "produce", "--from-jsonl", str(generated / "events"))


def query_one(settings: Settings, statement: str):
    conn = db.connect(settings)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(statement)
            return cur.fetchone()[0]
    finally:
        conn.close()


def marts(settings: Settings) -> dict[str, tuple[list[str], Counter]]:
    """Every table of schema marts: its columns (load times left out) and its rows as a multiset."""
    conn = db.connect(settings)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(
                "select table_name, array_agg(column_name::text order by ordinal_position)"
                " from information_schema.columns where table_schema = 'marts' group by 1"
            )
            tables = {}
            for table, columns in cur.fetchall():
                kept = [column for column in columns if column not in LOAD_TIME_COLUMNS]
                cur.execute(
                    sql.SQL("select {} from marts.{}").format(
                        sql.SQL(", ").join(map(sql.Identifier, kept)), sql.Identifier(table)
                    )
                )
                tables[table] = (kept, Counter(cur.fetchall()))
            return tables
    finally:
        conn.close()


def assert_same_marts(by_dag: Settings, plain: Settings) -> None:
    """Row for row, both ways (a multiset difference: what EXCEPT ALL says in SQL)."""
    got, expected = marts(by_dag), marts(plain)
    assert set(got) == set(expected)
    for table, (columns, rows) in expected.items():
        assert got[table][0] == columns, table
        only_dag = got[table][1] - rows
        only_plain = rows - got[table][1]
        assert not only_dag and not only_plain, (
            f"marts.{table} differs ({len(only_dag)} rows only from the DAG, {len(only_plain)} only from the "
            f"plain build); columns {columns}\nDAG: {list(only_dag)[:3]}\nplain: {list(only_plain)[:3]}"
        )
    assert sum(len(rows) for _, rows in expected.values()) > SCALE


@pytest.fixture
def second_database(base_settings: Settings):
    settings = dataclasses.replace(base_settings, pg_database=f"telemed_pytest_{uuid.uuid4().hex[:10]}")
    db.bootstrap(settings)
    yield settings
    db.drop_database(base_settings, settings.pg_database)


@pytest.mark.timeout(1800)
def test_dag_run_loads_builds_and_equals_the_plain_pipeline(
    airflow: AirflowHarness, settings: Settings, second_database: Settings, tmp_path: Path
):
    plain_work, dag_work = tmp_path / "plain", tmp_path / "dag"
    # Each world's video platform API serves its own generated sessions (read once the generator wrote them).
    apis = [
        ApiServer(SessionStore(work / "generated" / "video_api" / FILE_NAME), "dag-test")
        for work in (plain_work, dag_work)
    ]
    for api in apis:
        api.start()
    try:
        plain_env = world_env(second_database, plain_work, new_topic(second_database), apis[0])
        dag_env = world_env(settings, dag_work, new_topic(settings), apis[1])
        _plain_and_dag_runs(airflow, settings, second_database, plain_env, dag_env, plain_work, dag_work)
    finally:
        for api in apis:
            api.stop()


def _plain_and_dag_runs(airflow, settings, second_database, plain_env, dag_env, plain_work, dag_work) -> None:

    # The plain way: make load, then make build. Its marts are the reference; its data tests would be the
    # same tests on the same rows as the DAG's, which run them itself.
    make_world(plain_env, plain_work)
    loaders(plain_env, "load", "--group", plain_env["TELEMED_CONSUMER_GROUP"])
    run_dbt(plain_env, "build", "--exclude-resource-type", "test", "unit_test")

    # Through Airflow: the deploy's first build on the empty warehouse (the hourly run creates no seeds or
    # views), then the world arrives and one run of the DAG loads and builds it.
    run_dbt(dag_env, "build", "--exclude-resource-type", "test", "unit_test")
    make_world(dag_env, dag_work)
    env = airflow.env(settings, **{k: v for k, v in dag_env.items() if k.startswith("TELEMED_")})
    env["TELEMED_AIRFLOW_RETRIES"] = "0"  # a failure here is a finding, not something to wait out
    done = airflow.airflow(env, "dags", "test", DAG_ID, AS_OF.isoformat())
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "dags-test.log").write_text(done.stdout + done.stderr)  # every task's log, kept
    states = airflow.task_states(DAG_ID, AS_OF)
    failed = {task: state for task, (state, _) in states.items() if state != "success"}
    assert done.returncode == 0 and not failed, f"tasks not successful: {failed}\n{done.stdout[-6000:]}"
    # the loads, the one dbt build (Cosmos's watcher producer) with a task per hourly model and the
    # snapshot reporting its result (and one per node for its tests), the cross-model tests, freshness and
    # the monitors
    assert {
        "load_reference",
        "drain_events",
        "load_feedback",
        "load_call_sessions",
        "dbt_hourly.dbt_producer_watcher",
        "cross_model_tests",
        "monitors",
    } <= set(states)
    builds = [task for task in states if task.startswith("dbt_hourly.") and task.endswith(("run", "snapshot"))]
    assert len(builds) >= 12, builds
    # Only the build parses the whole project (this world's first hourly run: its target folder is new); the
    # dbt tasks after it start from its parse (dagkit.AFTER_HOURLY_BUILD_ENV).
    full_parses = [line for line in (done.stdout + done.stderr).splitlines() if "Unable to do partial parsing" in line]
    assert len(full_parses) == 1 and "saved manifest not found" in full_parses[0], full_parses
    # The monitors judged the timings of this run's own build (the producer's run_results.json), not those
    # of whatever other dbt call last wrote the project's target/.
    judged = json.loads((dag_work / "hourly-target" / "monitor" / "last_build_run_results.json").read_text())
    assert judged["args"]["which"] == "build"
    assert "model.telemed.fact_appointment" in {result["unique_id"] for result in judged["results"]}
    # ...and ran the hourly selector's tests (on the rows it touched), not every test: none on a source or
    # a staging view, which read the whole raw stream and are left to the nightly run.
    tested = json.loads((dag_work / "hourly-target" / "monitor" / "tests" / "run_results.json").read_text())
    assert tested["args"]["selector"] == "monitors_hourly"
    tests = {result["unique_id"] for result in tested["results"] if result["unique_id"].startswith("test.")}
    assert any(".fact_appointment" in test for test in tests)
    assert not any("source_" in test or "_stg_" in test for test in tests), sorted(tests)[:20]

    # device_quality's all-time p90 wait is the nightly build's: the hourly run keeps the last one (here,
    # none yet). The nightly DAG's full build computes it; its model alone stands in for that build.
    run_dbt(dag_env, "run", "--select", "device_quality")
    assert_same_marts(settings, second_database)
    sessions = "select count(*) from marts.fact_call_session"
    assert query_one(settings, sessions) == query_one(second_database, sessions) > 0, "the DAG loads the API"


def test_grid_view_shows_the_run(airflow: AirflowHarness, settings: Settings):
    """The UI of the run above, as a person sees it: log in, open the DAG, the grid lists its tasks. The
    screenshot is kept with the test artifacts."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    screenshot = ARTIFACTS / "grid.png"
    states = airflow.task_states(DAG_ID, AS_OF)
    assert states and all(state == "success" for state, _ in states.values()), "needs the successful run above"
    env = airflow.env(settings)
    with airflow.api_server(env) as url, chromium(CHROMIUM) as browser:
        page = browser.new_page()
        log = watch(page)
        page.goto(f"{url}/dags/{DAG_ID}")
        page.locator("input[type=password]").wait_for(timeout=60_000)
        page.locator("input:not([type=password])").first.fill(supervisor.ADMIN_USER)
        page.locator("input[type=password]").fill(supervisor.admin_password(airflow.site))
        page.get_by_role("button", name="Sign in").click()
        page.get_by_text("load_reference").first.wait_for(timeout=90_000)
        page.get_by_text("source_freshness").first.wait_for(timeout=30_000)
        page.wait_for_load_state("networkidle")
        page.screenshot(path=str(screenshot), full_page=True)
        assert not log.page_errors, log.page_errors
    assert screenshot.stat().st_size > 10_000


def test_failing_task_retries_then_alerts_once(airflow: AirflowHarness, second_database: Settings, webhook, smtp):
    """The clinic database has no providers table (no world was generated into this fresh database): the
    reference loader fails at once, is retried once, and its failure is alerted once on each channel."""
    env = airflow.env(
        second_database,
        TELEMED_AIRFLOW_RETRIES="1",
        TELEMED_AIRFLOW_RETRY_DELAY_SECONDS="1",
        SLACK_WEBHOOK_URL=webhook.url,
        SMTP_HOST="127.0.0.1",
        SMTP_PORT=str(smtp.port),
        ALERT_EMAIL_FROM="airflow@clinic.test",
        ALERT_EMAIL_TO="oncall@clinic.test",
    )
    logical_date = AS_OF + timedelta(hours=1)
    done = airflow.airflow(env, "dags", "test", DAG_ID, logical_date.isoformat(), timeout=300)
    assert done.returncode != 0, done.stdout[-3000:]

    states = airflow.task_states(DAG_ID, logical_date)
    assert states["load_reference"] == ("failed", 2)  # the first try and one retry
    assert states["drain_events"][0] == "upstream_failed"
    assert states["monitors"][0] == "upstream_failed"

    subject = f"[telemed-elt] Airflow: {DAG_ID}.load_reference failed"
    assert len(webhook.requests) == 1, webhook.requests
    body = webhook.requests[0]["body"]
    assert body["text"] == subject
    assert "observed 2" in body["blocks"][1]["text"]["text"]
    assert len(smtp.messages) == 1
    message = email.message_from_bytes(smtp.messages[0].content, policy=email.policy.default)
    assert " ".join(message["Subject"].split()) == subject  # a long subject arrives folded
    assert smtp.messages[0].rcpt_tos == ["oncall@clinic.test"]
    text = next(part for part in message.walk() if part.get_content_type() == "text/plain").get_content()
    assert "failed after 2 tries" in text
    assert "clinic_ops.providers does not exist" in done.stdout + done.stderr
