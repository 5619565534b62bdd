"""The clock of every test world. A test never reads the wall clock to decide what its world looks like:
the world has a fixed period (the generator's default, ending DEFAULT_END) and an as-of, the moment the
world counts as "now". The root conftest.py hands TEST_AS_OF to every process a test starts, as
TELEMED_AS_OF: dbt measures ages and the recency of business data at that moment (macro as_of).

Two clocks stay real, on purpose: load times (`_loaded_at`, set by Postgres when a row lands), which
freshness compares with the warehouse's own now(), and monotonic time for timeouts. Both measure
durations, never dates, so a test that moves a load time moves it relative to when the row landed."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

from simulator.generate import DEFAULT_END

PERIOD_END: date = DEFAULT_END
AS_OF: datetime = datetime.combine(PERIOD_END + timedelta(days=1), datetime.min.time(), tzinfo=timezone.utc)
TEST_AS_OF: str = AS_OF.strftime("%Y-%m-%dT%H:%M:%SZ")
