"""The schema checks on their own: every reason code, and the edges of types, ranges and timestamps."""

from __future__ import annotations

import copy

import pytest

from loaders.validation import check_event, check_form, parse_timestamp, storable_json_text

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
