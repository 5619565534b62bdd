"""Business and volume alerts end to end: a world generated with injected anomalies (a no-show spike on
two days, a day with too few appointments), loaded and built in a database of its own, raises exactly those
alerts on the loopback Slack webhook and SMTP server. Date-sensitive: `make test-dates` runs it under each
faked date.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from monitors.tests.scenario_world import LAST_DAY, build_pipeline, mail_bodies, slack_texts
from runtime import db

pytestmark = pytest.mark.slow


@pytest.mark.dates
def test_no_show_spike_and_a_thin_day_raise_business_and_volume_alerts(base_settings, receivers, tmp_path):
    webhook, sink = receivers
    before = len(webhook.requests)
    # The window is the last 7 days of data; pick its most recent weekdays.
    weekdays = [LAST_DAY - timedelta(days=i) for i in range(1, 7) if (LAST_DAY - timedelta(days=i)).weekday() < 5]
    spike_days, thin_day = weekdays[:2], weekdays[2]
    args = [arg for day in spike_days for arg in ("--anomaly", f"no_show_spike:{day}:9")]
    args += ["--anomaly", f"low_volume:{thin_day}:0.08"]
    odd = build_pipeline(base_settings, tmp_path / "anomalies", receivers, args)
    try:
        done = odd.monitor()
        assert done.returncode == 1
        text = slack_texts(webhook)[before]
        assert "no_show_rate: ERROR (new)" in text
        assert "min_appointments_per_day: ERROR (new)" in text
        assert "daily_volume_vs_same_weekday: ERROR (new)" in text
        assert "no_show_rate: ERROR (new)" in mail_bodies(sink)[-1]
        # Nothing else: the world is recent as of its as-of date and every other check passes, whatever
        # day the test runs (a lower completion rate is what a no-show spike means).
        alerted = set(re.findall(r"(\S+): (?:ERROR|WARN) \(new\)", text))
        assert alerted == {
            "no_show_rate",
            "completion_rate",
            "min_appointments_per_day",
            "daily_volume_vs_same_weekday",
        }
    finally:
        db.drop_database(base_settings, odd.settings.pg_database)
