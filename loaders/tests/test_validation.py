"""The schema checks on their own: every reason code, and the edges of types, ranges and timestamps.

The upper bound of timestamps is the load time plus two years, so every test here runs at a pinned load
time (LOAD_TIME, by time-machine) with the validation's cached bound reset: nothing depends on the wall
clock.
"""

from __future__ import annotations

import copy
from datetime import datetime, timedelta, timezone

import pytest
import time_machine

from loaders import validation
from loaders.validation import check_event, check_form, parse_timestamp, storable_json_text

LOAD_TIME = datetime(2026, 11, 1, tzinfo=timezone.utc)
# The edges of every timestamp at LOAD_TIME: 2000-01-01T00:00:00Z and LOAD_TIME plus two years.
EARLIEST = "2000-01-01T00:00:00Z"
LATEST = "2028-11-01T00:00:00Z"
TIME_RANGE = "[2000-01-01T00:00:00Z, load time + 2 years]"


@pytest.fixture(autouse=True)
def pinned_load_time():
    with time_machine.travel(LOAD_TIME, tick=False) as traveller:
        validation.reset_latest_timestamp()
        yield traveller
    validation.reset_latest_timestamp()


STARTED = {
    "schema_version": 1,
    "event_id": "e-1",
    "event_type": "started",
    "event_ts": "2026-10-01T09:00:00Z",
    "appointment_id": "APT-1",
    "device_type": "Laptop",
    "wait_time_minutes": 12.5,
}
FORM = {
    "schema_version": 1,
    "feedback_id": "FBK-1",
    "appointment_id": "APT-1",
    "submitted_at": "2026-10-01T10:00:00+02:00",
    "provider_rating": 5,
    "ease_of_use_rating": 4,
    "audio_quality_rating": 3,
    "video_quality_rating": 2,
    "overall_satisfaction": 1,
    "would_recommend": True,
    "comments": None,
}


def changed(base: dict, **fields) -> dict:
    out = copy.deepcopy(base)
    for name, value in fields.items():
        if value is KeyError:
            out.pop(name)
        else:
            out[name] = value
    return out


def test_valid_event_returns_timestamp_text_postgres_reads():
    assert check_event(STARTED) == (None, "2026-10-01T09:00:00Z")
    # Other valid spellings are normalised.
    assert check_event(changed(STARTED, event_ts="2026-10-01t09:00:00+0530"))[1] == "2026-10-01T09:00:00+05:30"


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        (["a list"], "not_an_object"),
        ("text", "not_an_object"),
        (changed(STARTED, schema_version=KeyError), "missing_field"),
        (changed(STARTED, schema_version="1"), "invalid_type"),
        (changed(STARTED, schema_version=True), "invalid_type"),
        (changed(STARTED, schema_version=2), "unsupported_schema_version"),
        (changed(STARTED, event_id=None), "missing_field"),
        (changed(STARTED, event_id=7), "invalid_type"),
        (changed(STARTED, event_type="paused"), "unknown_enum"),
        (changed(STARTED, event_ts="2026-10-01T09:00:00"), "invalid_timestamp"),
        (changed(STARTED, event_ts="2026-10-01"), "invalid_timestamp"),
        (changed(STARTED, event_ts=1700000000), "invalid_type"),
        (changed(STARTED, appointment_id=12), "invalid_type"),
        # The marts' pattern tests would stop `dbt build` on these (found by the property tests' review).
        (changed(STARTED, appointment_id="apt-1"), "invalid_format"),
        (changed(STARTED, appointment_id="APT-"), "invalid_format"),
        (changed(STARTED, appointment_id="APT-12 "), "invalid_format"),
        (changed(STARTED, appointment_id="APT-\u0661\u0662"), "invalid_format"),  # Arabic-Indic digits
        (changed(STARTED, device_type="Fridge"), "unknown_enum"),
        (changed(STARTED, device_type=KeyError), "missing_field"),
        (changed(STARTED, wait_time_minutes="5"), "invalid_type"),
        (changed(STARTED, wait_time_minutes=False), "invalid_type"),
        (changed(STARTED, wait_time_minutes=-0.1), "out_of_range"),
        (changed(STARTED, wait_time_minutes=240.5), "out_of_range"),
        (
            {**changed(STARTED, event_type="completed"), "duration_minutes": 0, "connection_quality": 3},
            "out_of_range",
        ),
        (
            {**changed(STARTED, event_type="completed"), "duration_minutes": 10, "connection_quality": 4.0},
            "invalid_type",
        ),
        ({**changed(STARTED, event_type="cancelled"), "cancelled_by": "robot"}, "unknown_enum"),
        (
            {
                **changed(STARTED, event_type="scheduled"),
                "patient_id": "PAT-1",
                "provider_id": "PRV-1",
                "appointment_type": "follow_up",
                "scheduled_for": "next tuesday",
            },
            "invalid_timestamp",
        ),
    ],
)
def test_event_reasons(event, reason):
    problem, ts = check_event(event)
    assert problem is not None and problem[0] == reason, problem
    assert ts is None


def test_edges_that_are_valid():
    assert check_event(changed(STARTED, wait_time_minutes=0))[0] is None
    assert check_event(changed(STARTED, wait_time_minutes=240))[0] is None
    assert check_event(changed(STARTED, extra={"drift": [1, 2]}))[0] is None
    assert check_event({**changed(STARTED, event_type="cancelled"), "cancelled_by": None})[0] is None
    assert check_event(changed(STARTED, event_type="no_show"))[0] is None


SCHEDULED = {
    **changed(STARTED, event_type="scheduled"),
    "patient_id": "PAT-1",
    "provider_id": "PRV-1",
    "appointment_type": "follow_up",
    "scheduled_for": "2026-10-08T09:00:00Z",
}
RESCHEDULED = {
    **changed(STARTED, event_type="rescheduled"),
    "rescheduled_to_appointment_id": "APT-2",
    "new_scheduled_for": "2026-10-09T09:00:00Z",
}
COMPLETED = {**changed(STARTED, event_type="completed"), "duration_minutes": 30, "connection_quality": 4}
for _record in (SCHEDULED, RESCHEDULED, COMPLETED):
    del _record["device_type"], _record["wait_time_minutes"]

# Every timestamp field of the contract, with a record that is valid apart from it.
TIMESTAMP_FIELDS = [
    ("event_ts", STARTED, check_event),
    ("event_ts", SCHEDULED, check_event),
    ("scheduled_for", SCHEDULED, check_event),
    ("new_scheduled_for", RESCHEDULED, check_event),
    ("submitted_at", FORM, check_form),
]
# (timestamp, inside the range at LOAD_TIME)
TIMESTAMP_EDGES = [
    ("2026-10-01T09:00:00Z", True),
    ("2027-06-30T23:00:00-05:00", True),  # next year, another offset: the exact comparison
    (EARLIEST, True),
    ("2000-01-01T01:00:00+01:00", True),  # the same instant, another offset
    ("2000-01-01T00:00:00.000001Z", True),
    ("1999-12-31T23:59:59.999999Z", False),
    ("2000-01-01T00:30:00+01:00", False),  # 23:30 UTC on 31 December 1999
    ("0001-01-01T00:00:00+00:00", False),
    (LATEST, True),
    ("2028-10-31T20:00:00-04:00", True),  # the same instant, another offset
    ("2028-10-31T23:59:59.999999Z", True),
    ("2028-11-01T00:00:00.000001Z", False),
    ("2028-11-01T01:00:00+00:30", False),  # 00:30 UTC
    ("2029-01-01T00:00:00Z", False),
    ("9999-12-31T23:59:59Z", False),
]


@pytest.mark.parametrize(("field", "record", "check"), TIMESTAMP_FIELDS, ids=lambda v: v if type(v) is str else "")
@pytest.mark.parametrize(("value", "inside"), TIMESTAMP_EDGES)
def test_timestamp_range(field, record, check, value, inside):
    problem, text = check(changed(record, **{field: value}))
    if inside:
        assert problem is None
        assert text is not None
    else:
        # The detail names the field and the range, never the value.
        assert problem == ("out_of_range", f"{field} is outside {TIME_RANGE}")
        assert value not in problem[1] and text is None


def test_the_upper_bound_follows_the_load_time(pinned_load_time):
    late = changed(SCHEDULED, scheduled_for="2028-11-02T00:00:00Z")
    assert check_event(late)[0][0] == "out_of_range"
    pinned_load_time.move_to(LOAD_TIME + timedelta(days=1))
    validation.reset_latest_timestamp()
    assert check_event(late)[0] is None
    # 29 February plus two years is 28 February.
    pinned_load_time.move_to(datetime(2028, 2, 29, 12, tzinfo=timezone.utc))
    validation.reset_latest_timestamp()
    assert check_event(changed(SCHEDULED, scheduled_for="2030-02-28T12:00:00Z"))[0] is None
    assert check_event(changed(SCHEDULED, scheduled_for="2030-02-28T12:00:01Z"))[0][0] == "out_of_range"


def test_the_clock_is_read_at_most_once_a_minute(pinned_load_time, monkeypatch):
    monotonic = [1000.0]
    monkeypatch.setattr(validation.time, "monotonic", lambda: monotonic[0])
    reads = []

    class CountingDatetime(datetime):
        @classmethod
        def now(cls, tz=None):
            reads.append(tz)
            return datetime.now(tz)

    monkeypatch.setattr(validation, "datetime", CountingDatetime)
    validation.reset_latest_timestamp()
    for _ in range(1000):
        assert check_event(SCHEDULED)[0] is None
        assert check_form(FORM)[0] is None
    assert check_event(changed(SCHEDULED, scheduled_for=LATEST))[0] is None
    assert len(reads) == 1
    # A day later, a timestamp beyond the cached bound is rejected until the cache is a minute old, with
    # no further clock read; then the clock is read once and it passes.
    pinned_load_time.move_to(LOAD_TIME + timedelta(days=1))
    beyond = changed(SCHEDULED, scheduled_for="2028-11-01T12:00:00Z")
    monotonic[0] += 59
    for _ in range(100):
        assert check_event(beyond)[0][0] == "out_of_range"
    assert len(reads) == 1
    monotonic[0] += 2
    assert check_event(beyond)[0] is None
    assert check_event(beyond)[0] is None
    assert len(reads) == 2


@pytest.mark.parametrize(
    ("record", "field", "value", "valid"),
    [
        (STARTED, "wait_time_minutes", 0, True),
        (STARTED, "wait_time_minutes", 0.0, True),
        (STARTED, "wait_time_minutes", 240, True),
        (STARTED, "wait_time_minutes", 240.0, True),
        (STARTED, "wait_time_minutes", -0.01, False),
        (STARTED, "wait_time_minutes", 240.01, False),
        (STARTED, "wait_time_minutes", 1e400, False),  # a JSON number too large for a float: infinity
        (COMPLETED, "duration_minutes", 0.01, True),
        (COMPLETED, "duration_minutes", 240, True),
        (COMPLETED, "duration_minutes", 0, False),
        (COMPLETED, "duration_minutes", -1, False),
        (COMPLETED, "duration_minutes", 240.01, False),
        (COMPLETED, "duration_minutes", 10**30, False),
        (COMPLETED, "connection_quality", 1, True),
        (COMPLETED, "connection_quality", 5, True),
        (COMPLETED, "connection_quality", 0, False),
        (COMPLETED, "connection_quality", 6, False),
    ],
)
def test_number_ranges(record, field, value, valid):
    problem, _ = check_event(changed(record, **{field: value}))
    if valid:
        assert problem is None
    else:
        assert problem is not None and problem[0] == "out_of_range" and problem[1].startswith(f"{field} is outside ")


RATINGS = [
    "provider_rating",
    "ease_of_use_rating",
    "audio_quality_rating",
    "video_quality_rating",
    "overall_satisfaction",
]


@pytest.mark.parametrize("field", RATINGS)
def test_rating_ranges(field):
    for value in (1, 5):
        assert check_form(changed(FORM, **{field: value}))[0] is None
    for value in (0, 6, -1, 10**30):
        assert check_form(changed(FORM, **{field: value}))[0] == ("out_of_range", f"{field} is outside [1, 5]")


def test_forms():
    assert check_form(FORM) == (None, "2026-10-01T10:00:00+02:00")
    cases = {
        "not_an_object": [1],
        "missing_field": changed(FORM, provider_rating=KeyError),
        "invalid_type": changed(FORM, would_recommend="yes"),
        "out_of_range": changed(FORM, overall_satisfaction=6),
        "invalid_timestamp": changed(FORM, submitted_at="2026-10-01T10:00:00"),
        "unsupported_schema_version": changed(FORM, schema_version=2),
    }
    for reason, form in cases.items():
        assert check_form(form)[0][0] == reason
    assert check_form(changed(FORM, comments=5))[0][0] == "invalid_type"
    assert check_form(changed(FORM, provider_rating=5.0))[0][0] == "invalid_type"
    for feedback_id in ("FBK-", "fbk-12", "FBK-12\n", "12"):
        assert check_form(changed(FORM, feedback_id=feedback_id))[0][0] == "invalid_format", feedback_id


def test_timestamps_need_an_offset():
    assert parse_timestamp("2026-10-01T09:00:00.123456-07:00") is not None
    assert parse_timestamp("2026-10-01 09:00:00Z") is not None
    assert parse_timestamp("2026-10-01T09:00:00") is None
    assert parse_timestamp("not a date at all") is None
    assert parse_timestamp(None) is None


def test_what_postgres_cannot_store_is_detected():
    assert storable_json_text('{"a": "caf\\u00e9"}')
    assert not storable_json_text('{"a": "x\\u0000y"}')
    assert not storable_json_text('{"a": "\\ud800"}')
    assert storable_json_text('{"a": "\\ud83d\\ude00"}')
    assert storable_json_text('{"a": "a backslash \\\\u0000 is just text"}')
