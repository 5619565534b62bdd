"""The dbt exposures file is what the definitions generate, and names every mart each dashboard reads."""

from __future__ import annotations

import yaml

from dashboards import exposures
from dashboards.definitions import load_all


def test_the_exposures_file_matches_the_definitions():
    assert exposures.EXPOSURES_PATH.exists(), "run `python -m dashboards exposures`"
    assert exposures.EXPOSURES_PATH.read_text() == exposures.render(load_all()), (
        "models/marts/_marts__exposures.yml is out of date: run `python -m dashboards exposures`"
    )


def test_every_dashboard_is_an_exposure_on_the_marts_it_reads():
    document = yaml.safe_load(exposures.EXPOSURES_PATH.read_text())
    by_name = {e["name"]: e for e in document["exposures"]}
    for dashboard in load_all():
        exposure = by_name[dashboard.key]
        assert exposure["type"] == "dashboard" and exposure["label"] == dashboard.name
        marts = {f"ref('{table}')" for schema, table in dashboard.tables if schema == "marts"}
        assert marts <= set(exposure["depends_on"])
        assert exposure["owner"]["name"]


def test_a_declared_source_becomes_a_dependency(tmp_path):
    health = next(d for d in load_all() if d.key == "data_health")
    with_source = exposures.exposure(health, {("monitoring", "monitor_results")})
    without = exposures.exposure(health, set())
    assert with_source["depends_on"] == ["source('monitoring', 'monitor_results')"]
    assert without["depends_on"] == [] and "monitoring.monitor_results" in without["description"]
