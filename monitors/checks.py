"""Checks and their evaluation: an observed value against the warn and error bounds of thresholds.yml,
and the conversion of dbt's own artifacts (source freshness, test results, model timings) into checks."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

THRESHOLDS_FILE = Path(__file__).with_name("thresholds.yml")
STATUS_ORDER = {"pass": 0, "warn": 1, "error": 2}

# Which family each configured check belongs to (the original design's monitor groups).
CHECK_TYPES = {
    "key_column_null_share": "data_quality",
    "min_appointments_per_day": "data_quality",
    "daily_volume_vs_same_weekday": "data_quality",
    "rejected_input_share": "data_quality",
    "completion_rate": "business",
    "cancellation_rate": "business",
    "no_show_rate": "business",
    "avg_overall_satisfaction": "business",
    "technical_issue_share": "technical",
    "avg_connection_quality": "technical",
    # the video platform's measured wait (fact_call_session) against the wait the events reported
    "wait_disagreement_share": "technical",
    "pipeline_run_seconds": "performance",
    "slowest_model_seconds": "performance",
    # real-time health of the ingestion (monitors/ingestion.py), one check per consumer group and topic
    # and per loader
    "consumer_lag_messages": "ingestion",
    "seconds_since_last_load": "ingestion",
}


class ConfigError(ValueError):
    """thresholds.yml is malformed."""


@dataclass(frozen=True)
class Bounds:
    min: float | None = None
    max: float | None = None

    def violated_by(self, value: float) -> bool:
        return (self.min is not None and value < self.min) or (self.max is not None and value > self.max)

    def describe(self) -> str:
        parts = []
        if self.min is not None:
            parts.append(f">= {self.min:g}")
        if self.max is not None:
            parts.append(f"<= {self.max:g}")
        return " and ".join(parts)


@dataclass(frozen=True)
class Thresholds:
    realert_after_minutes: int
    checks: dict[str, tuple[Bounds, Bounds]]

    @classmethod
    def load(cls, path: Path = THRESHOLDS_FILE) -> Thresholds:
        raw = yaml.safe_load(path.read_text())
        moved = sorted({"freshness", "window_days"} & set(raw or {}))
        if moved:
            raise ConfigError(
                f"{path}: {', '.join(moved)} moved to dbt_project.yml's vars (freshness_warn_after_hours, "
                "freshness_error_after_hours, monitor_window_days), their one home"
            )
        try:
            checks = {}
            for name, levels in raw["checks"].items():
                if name not in CHECK_TYPES:
                    raise ConfigError(f"unknown check {name!r} in {path}")
                checks[name] = (Bounds(**(levels.get("warn") or {})), Bounds(**(levels.get("error") or {})))
            missing = set(CHECK_TYPES) - set(checks)
            if missing:
                raise ConfigError(f"{path} has no thresholds for {sorted(missing)}")
            return cls(
                realert_after_minutes=int(raw["realert_after_minutes"]),
                checks=checks,
            )
        except (KeyError, TypeError) as exc:
            raise ConfigError(f"{path} is malformed: {exc}") from None


@dataclass
class CheckResult:
    check_name: str
    check_type: str
    status: str  # pass | warn | error
    observed_value: float | None
    warn_threshold: str | None = None
    error_threshold: str | None = None
    message: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def failing(self) -> bool:
        return self.status != "pass"


def evaluate(name: str, value: float | None, thresholds: Thresholds, details: dict | None = None) -> CheckResult:
    warn, error = thresholds.checks[name]
    result = CheckResult(
        check_name=name,
        check_type=CHECK_TYPES[name],
        status="pass",
        observed_value=value,
        warn_threshold=warn.describe() or None,
        error_threshold=error.describe() or None,
        details=details or {},
    )
    if value is None or (isinstance(value, float) and math.isnan(value)):
        result.status = "error"
        result.message = "no data to compute this check"
    elif error.violated_by(value):
        result.status = "error"
        result.message = f"{value:g} is outside the error bound ({error.describe()})"
    elif warn.violated_by(value):
        result.status = "warn"
        result.message = f"{value:g} is outside the warn bound ({warn.describe()})"
    return result


# --------------------------------------------------------------------------- dbt artifacts


def _load(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


def _node_name(unique_id: str) -> str:
    # test.telemed.not_null_fact_appointment_appointment_id.5d3c2a -> not_null_fact_appointment_appointment_id
    parts = unique_id.split(".")
    return parts[2] if len(parts) > 2 else unique_id


def freshness_checks(sources_json: Path) -> list[CheckResult]:
    """One check per source table from dbt's sources.json."""
    artifact = _load(sources_json)
    if artifact is None:
        return []
    results = []
    for item in artifact.get("results", []):
        # source.telemed.<source>.<table>
        _, _, source, table = item["unique_id"].split(".", 3)
        status = {"pass": "pass", "warn": "warn"}.get(item.get("status"), "error")
        age = item.get("max_loaded_at_time_ago_in_s")
        criteria = item.get("criteria") or {}

        def bound(level: str, criteria: dict = criteria) -> str | None:
            spec = criteria.get(level) or {}
            return f"<= {spec['count']} {spec['period']}s" if spec.get("count") else None

        results.append(
            CheckResult(
                check_name=f"freshness:{source}.{table}",
                check_type="freshness",
                status=status,
                observed_value=round(age / 3600, 4) if age is not None else None,
                warn_threshold=bound("warn_after"),
                error_threshold=bound("error_after"),
                message=item.get("error") or f"newest row loaded {age / 3600:.2f} h ago" if age is not None else "",
                details={"max_loaded_at": item.get("max_loaded_at"), "snapshotted_at": item.get("snapshotted_at")},
            )
        )
    return results


def test_checks(run_results_json: Path, manifest_json: Path | None = None) -> list[CheckResult]:
    """One check per dbt data test (unit tests are code tests, not monitors)."""
    artifact = _load(run_results_json)
    if artifact is None:
        return []
    manifest = _load(manifest_json) if manifest_json else None
    nodes = (manifest or {}).get("nodes", {})
    results = []
    for item in artifact.get("results", []):
        unique_id = item["unique_id"]
        if not unique_id.startswith("test."):
            continue
        severity = (nodes.get(unique_id, {}).get("config") or {}).get("severity", "ERROR").lower()
        raw_status = item.get("status")
        status = {"pass": "pass", "warn": "warn", "fail": "error", "error": "error"}.get(raw_status, "pass")
        if raw_status == "skipped":
            status, message = "warn", "skipped: an upstream node failed"
        else:
            message = item.get("message") or ""
        results.append(
            CheckResult(
                check_name=f"dbt_test:{_node_name(unique_id)}",
                check_type="dbt_test",
                status=status,
                observed_value=float(item["failures"]) if item.get("failures") is not None else None,
                warn_threshold="0 failing rows" if severity == "warn" else None,
                error_threshold="0 failing rows" if severity == "error" else None,
                message=message,
                details={"unique_id": unique_id, "severity": severity, "execution_time": item.get("execution_time")},
            )
        )
    return results


def model_timings(run_results_json: Path) -> tuple[float | None, str | None, float | None]:
    """(elapsed seconds of the whole dbt invocation, slowest model, its seconds) of a build or run."""
    artifact = _load(run_results_json)
    if artifact is None:
        return None, None, None
    models = [r for r in artifact.get("results", []) if r["unique_id"].startswith("model.")]
    if not models:
        return artifact.get("elapsed_time"), None, None
    slowest = max(models, key=lambda r: r.get("execution_time") or 0)
    return artifact.get("elapsed_time"), _node_name(slowest["unique_id"]), slowest.get("execution_time")


def invocation_command(run_results_json: Path) -> str | None:
    artifact = _load(run_results_json)
    if artifact is None:
        return None
    return (artifact.get("args") or {}).get("which")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)
