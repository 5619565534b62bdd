"""What validation accepts, the marts can hold: events and forms at every edge of the contract's ranges.

Events go through Kafka and the real consumer, forms through landing files and the real feedback loader,
both in this process with the load time pinned to the test world's as-of (time-machine, still ticking, so
the loaders' own timeouts work). Each range is probed at its edges (the earliest and the latest timestamp,
wait 0 and 240, duration just above 0 and 240, quality and ratings 1 and 5, a visit two years ahead, a
booking made long before its visit and one made after it) and just outside them, where the loaders must
quarantine the record as out_of_range. Then `dbt build` must pass with no error, and every edge
appointment and form must be in the marts on a day of dim_date.

The same build takes a batch that hypothesis generates (loaders/tests/properties: valid events and forms
at the edges of every range, in every spelling the contract allows, with schema drift, repeated ids, and
records just outside a range), so `dbt build` is proven on more than the hand-picked edges at no extra
build. The batch is the same on every run under the ci profile; `make fuzz` draws a bigger, random one.

The exact edges of the time range, to the microsecond, are in test_validation.py (a frozen clock); here
the clock ticks for a few seconds, so "just outside the latest" is a day past it.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import time_machine
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient
from hypothesis import strategies as st

from loaders import validation
from loaders.consume import ConsumeOptions, EventConsumer
from loaders.feedback import FeedbackLoader
from loaders.tests.properties import drawn
from loaders.tests.properties.strategies import event_outside, form_outside, valid_event, valid_form
from loaders.tests.test_pipeline import dbt, query
from runtime.kafka import client_config
from simulator.produce import produce
from testkit.clock import AS_OF

pytestmark = pytest.mark.slow

LOAD_TIME = AS_OF  # 2026-11-01T00:00:00Z
EARLIEST = "2000-01-01T00:00:00Z"
EARLIEST_ELSEWHERE = "2000-01-01T05:30:00+05:30"  # the same instant in another offset
LATEST = "2028-11-01T00:00:00Z"  # the load time plus two years
LATEST_ELSEWHERE = "2028-10-31T20:00:00-04:00"
BEFORE_EARLIEST = "1999-12-31T23:59:59Z"
AFTER_LATEST = "2028-11-02T00:00:00Z"
NOW = "2026-10-31T09:00:00Z"


def event(event_id: str, appointment_id: str, event_type: str, event_ts: str, **fields) -> dict:
    return {
        "schema_version": 1,
        "event_id": event_id,
        "event_type": event_type,
        "event_ts": event_ts,
        "appointment_id": appointment_id,
        **fields,
    }


def booked(event_id: str, appointment_id: str, event_ts: str, scheduled_for: str, **fields) -> dict:
    return event(
        event_id,
        appointment_id,
        "scheduled",
        event_ts,
        patient_id="PAT-1",
        provider_id="PRV-1",
        appointment_type="follow_up",
        scheduled_for=scheduled_for,
        **fields,
    )


def started(event_id: str, appointment_id: str, event_ts: str, wait: float) -> dict:
    return event(event_id, appointment_id, "started", event_ts, device_type="Laptop", wait_time_minutes=wait)


def completed(event_id: str, appointment_id: str, event_ts: str, duration: float, quality: int) -> dict:
    return event(event_id, appointment_id, "completed", event_ts, duration_minutes=duration, connection_quality=quality)


# appointment_id -> (UTC date_id of its visit, lead time in minutes)
EDGE_APPOINTMENTS = {
    # Everything at the earliest instant: wait 0, the shortest duration the marts keep (0.01), quality 1.
    "APT-9100001": (20000101, 0),
    # Everything at the latest instant: a visit two years ahead, booked now; wait 240, duration 240, quality 5.
    "APT-9100002": (20281101, int((datetime(2028, 11, 1) - datetime(2026, 10, 31, 9)).total_seconds() // 60)),
    # Booked at the earliest instant for the latest one: the longest lead time.
    "APT-9100003": (20281101, int((datetime(2028, 11, 1) - datetime(2000, 1, 1)).total_seconds() // 60)),
    # Booked at the latest instant for the earliest one (a visit recorded after the fact): the most negative.
    "APT-9100004": (20000101, -int((datetime(2028, 11, 1) - datetime(2000, 1, 1)).total_seconds() // 60)),
    # The edges in other offsets.
    "APT-9100005": (20000101, 0),
    "APT-9100006": (20281101, 0),
    # Moved to the latest instant: the successor APT-9100008 is booked for it.
    "APT-9100007": (20261110, int((datetime(2026, 11, 10) - datetime(2026, 10, 31, 9)).total_seconds() // 60)),
    "APT-9100008": (20281101, int((datetime(2028, 11, 1) - datetime(2026, 10, 31, 10)).total_seconds() // 60)),
}

EDGE_EVENTS = [
    booked("edge-1-1", "APT-9100001", EARLIEST, EARLIEST),
    started("edge-1-2", "APT-9100001", EARLIEST, 0),
    completed("edge-1-3", "APT-9100001", EARLIEST, 0.01, 1),
    booked("edge-2-1", "APT-9100002", NOW, LATEST),
    started("edge-2-2", "APT-9100002", LATEST, 240),
    completed("edge-2-3", "APT-9100002", LATEST, 240, 5),
    booked("edge-3-1", "APT-9100003", EARLIEST, LATEST),
    booked("edge-4-1", "APT-9100004", LATEST, EARLIEST),
    event("edge-4-2", "APT-9100004", "no_show", LATEST),
    booked("edge-5-1", "APT-9100005", EARLIEST_ELSEWHERE, EARLIEST_ELSEWHERE),
    event("edge-5-2", "APT-9100005", "cancelled", EARLIEST_ELSEWHERE, cancelled_by="clinic"),
    booked("edge-6-1", "APT-9100006", LATEST_ELSEWHERE, LATEST_ELSEWHERE),
    started("edge-6-2", "APT-9100006", LATEST_ELSEWHERE, 240.0),
    completed("edge-6-3", "APT-9100006", LATEST_ELSEWHERE, 0.01, 5),
    booked("edge-7-1", "APT-9100007", NOW, "2026-11-10T00:00:00Z"),
    event(
        "edge-7-2",
        "APT-9100007",
        "rescheduled",
        "2026-10-31T10:00:00Z",
        rescheduled_to_appointment_id="APT-9100008",
        new_scheduled_for=LATEST,
    ),
    booked("edge-8-1", "APT-9100008", "2026-10-31T10:00:00Z", LATEST, rescheduled_from_appointment_id="APT-9100007"),
]

# Just outside a range: each must be quarantined as out_of_range, naming this field.
OUTSIDE_EVENTS = {
    "out-ts-early": ("event_ts", booked("out-ts-early", "APT-9200001", BEFORE_EARLIEST, NOW)),
    "out-ts-late": ("event_ts", started("out-ts-late", "APT-9200002", AFTER_LATEST, 5)),
    "out-for-early": ("scheduled_for", booked("out-for-early", "APT-9200003", NOW, BEFORE_EARLIEST)),
    "out-for-late": ("scheduled_for", booked("out-for-late", "APT-9200004", NOW, AFTER_LATEST)),
    "out-for-2031": ("scheduled_for", booked("out-for-2031", "APT-9200005", NOW, "2031-01-15T09:00:00Z")),
    "out-for-9999": ("scheduled_for", booked("out-for-9999", "APT-9200006", NOW, "9999-12-31T23:59:59Z")),
    "out-new-for": (
        "new_scheduled_for",
        event(
            "out-new-for",
            "APT-9200007",
            "rescheduled",
            NOW,
            rescheduled_to_appointment_id="APT-9200008",
            new_scheduled_for=AFTER_LATEST,
        ),
    ),
    "out-wait-low": ("wait_time_minutes", started("out-wait-low", "APT-9200009", NOW, -0.01)),
    "out-wait-high": ("wait_time_minutes", started("out-wait-high", "APT-9200010", NOW, 240.01)),
    "out-duration-0": ("duration_minutes", completed("out-duration-0", "APT-9200011", NOW, 0, 3)),
    "out-duration-high": ("duration_minutes", completed("out-duration-high", "APT-9200012", NOW, 240.01, 3)),
    "out-quality-0": ("connection_quality", completed("out-quality-0", "APT-9200013", NOW, 30, 0)),
    "out-quality-6": ("connection_quality", completed("out-quality-6", "APT-9200014", NOW, 30, 6)),
}

TIME_RANGE = "[2000-01-01T00:00:00Z, load time + 2 years]"
RANGES = {
    **dict.fromkeys(("event_ts", "scheduled_for", "new_scheduled_for", "submitted_at"), TIME_RANGE),
    "wait_time_minutes": "[0, 240]",
    "duration_minutes": "(0, 240]",
    **dict.fromkeys(("connection_quality", "provider_rating", "overall_satisfaction"), "[1, 5]"),
}

RATINGS = ("provider_rating", "ease_of_use_rating", "audio_quality_rating", "video_quality_rating")


def form(feedback_id: str, appointment_id: str, submitted_at: str, rating: int, **changes) -> dict:
    return {
        "schema_version": 1,
        "feedback_id": feedback_id,
        "appointment_id": appointment_id,
        "submitted_at": submitted_at,
        **dict.fromkeys(RATINGS, rating),
        "overall_satisfaction": rating,
        "would_recommend": rating > 3,
        "comments": None,
        **changes,
    }


# feedback_id -> (its form, UTC date_id of submission)
EDGE_FORMS = {
    "FBK-9100001": (form("FBK-9100001", "APT-9100001", EARLIEST, 1), 20000101),
    "FBK-9100002": (form("FBK-9100002", "APT-9100002", LATEST, 5), 20281101),
    "FBK-9100006": (form("FBK-9100006", "APT-9100006", LATEST_ELSEWHERE, 5), 20281101),
}
OUTSIDE_FORMS = {
    "FBK-9200001": ("submitted_at", form("FBK-9200001", "APT-9100001", BEFORE_EARLIEST, 3)),
    "FBK-9200002": ("submitted_at", form("FBK-9200002", "APT-9100002", AFTER_LATEST, 3)),
    "FBK-9200003": ("overall_satisfaction", form("FBK-9200003", "APT-9100001", NOW, 3, overall_satisfaction=0)),
    "FBK-9200004": ("provider_rating", form("FBK-9200004", "APT-9100001", NOW, 3, provider_rating=6)),
}


def write_landing(landing: Path) -> None:
    folder = landing / "2026" / "10" / "31"
    folder.mkdir(parents=True)
    forms = [f for f, _ in EDGE_FORMS.values()] + [f for _, f in OUTSIDE_FORMS.values()]
    for one in forms:
        (folder / f"{one['feedback_id']}.json").write_text(json.dumps(one))


# What hypothesis generates is told apart by its ids (strategies.py): events gen-*, appointments APT-8*,
# forms FBK-8*; the hand-picked ones above never use them.
NOT_GENERATED = {
    "events": "coalesce(event_id, '') not like 'gen-%'",
    "appointments": "appointment_id not like 'APT-8%'",
    "forms": "coalesce(feedback_id, '') not like 'FBK-8%'",
}


@pytest.fixture(scope="module")
def generated():
    """A generated batch: events and forms, each with its expectation (valid, or rejected with a reason)."""
    events = drawn(st.one_of(valid_event(), event_outside()), 40)
    forms = [made for made, _ in drawn(st.one_of(valid_form(), form_outside()), 20)]
    return events, forms


@pytest.fixture(scope="module")
def built(settings, tmp_path_factory, generated):
    """Events and forms through the loaders at the pinned load time, then a full dbt build."""
    work = tmp_path_factory.mktemp("edges")
    jsonl = work / "events.jsonl"
    lines = [*EDGE_EVENTS, *(e for _, e in OUTSIDE_EVENTS.values())]
    jsonl.write_text("".join(json.dumps(e) + "\n" for e in lines))
    landing = work / "landing"
    write_landing(landing)
    generated_events, generated_forms = generated
    for i, made in enumerate(generated_forms):
        (landing / "2026" / "10" / "31" / f"gen-{i}.json").write_bytes(made.data)
    topic = f"test.edges.{uuid.uuid4().hex[:10]}"
    sent = produce(settings, [jsonl], topic=topic)
    assert sent.failed == 0 and sent.delivered == len(lines)
    producer = Producer(client_config(settings))
    for made in generated_events:
        producer.produce(topic, value=made.data)
    assert producer.flush(30) == 0
    try:
        with time_machine.travel(LOAD_TIME, tick=True):
            validation.reset_latest_timestamp()
            options = ConsumeOptions(group=f"{topic}.g", topic=topic, drain=True, idle_seconds=2)
            consumed = EventConsumer(settings, options).run_loop()
            status, error = FeedbackLoader(settings, landing).run_once()
    finally:
        validation.reset_latest_timestamp()
        admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap_servers})
        admin.delete_topics([topic])[topic].result(timeout=30)
    assert consumed.status == "succeeded", consumed.error
    assert (status, error) == ("succeeded", None)
    output = dbt(settings, work, "build", "--full-refresh")
    return output


def test_the_loaders_quarantine_what_is_just_outside_a_range(settings, built):
    events = query(settings, f"select event_id from raw.appointment_events where {NOT_GENERATED['events']}")
    assert {row["event_id"] for row in events} == {e["event_id"] for e in EDGE_EVENTS}
    rejected = query(
        settings,
        "select event_id, reason, error_detail, raw_text from raw.appointment_events_rejected"
        f" where {NOT_GENERATED['events']}",
    )
    assert {row["event_id"]: (row["reason"], row["error_detail"].split(" ")[0]) for row in rejected} == {
        event_id: ("out_of_range", name) for event_id, (name, _) in OUTSIDE_EVENTS.items()
    }
    for row in rejected:
        # The detail names the field and its range, never the value.
        name, _ = OUTSIDE_EVENTS[row["event_id"]]
        assert row["error_detail"] == f"{name} is outside {RANGES[name]}"

    forms = query(settings, f"select feedback_id from raw.patient_feedback where {NOT_GENERATED['forms']}")
    assert {row["feedback_id"] for row in forms} == set(EDGE_FORMS)
    rejected_forms = query(
        settings,
        f"select feedback_id, reason, error_detail from raw.patient_feedback_rejected where {NOT_GENERATED['forms']}",
    )
    assert {row["feedback_id"]: (row["reason"], row["error_detail"]) for row in rejected_forms} == {
        feedback_id: ("out_of_range", f"{name} is outside {RANGES[name]}")
        for feedback_id, (name, _) in OUTSIDE_FORMS.items()
    }


def test_dbt_builds_without_an_error(built):
    summary = [line for line in built.splitlines() if "Done. PASS=" in line]
    assert summary and "ERROR=0" in summary[-1] and "SKIP=0" in summary[-1], built[-3000:]


def test_every_edge_appointment_is_in_the_marts_on_a_day_of_dim_date(settings, built):
    rows = query(
        settings,
        "select f.appointment_id, f.date_id, d.date_id as dim_date_id, f.lead_time_minutes"
        " from marts.fact_appointment f left join marts.dim_date d on d.date_id = f.date_id"
        f" where {NOT_GENERATED['appointments']}",
    )
    facts = {row["appointment_id"]: row for row in rows}
    assert set(facts) == set(EDGE_APPOINTMENTS)
    for appointment_id, (date_id, lead_time) in EDGE_APPOINTMENTS.items():
        row = facts[appointment_id]
        assert (row["date_id"], row["dim_date_id"], row["lead_time_minutes"]) == (date_id, date_id, lead_time), (
            appointment_id
        )


def test_measures_at_their_edges_reach_the_marts(settings, built):
    rows = query(
        settings,
        "select appointment_id, status, wait_time_minutes, duration_minutes, connection_quality"
        " from marts.fact_appointment where appointment_id in ('APT-9100001', 'APT-9100002', 'APT-9100006')",
    )
    measures = {
        row["appointment_id"]: (
            row["status"],
            float(row["wait_time_minutes"]),
            float(row["duration_minutes"]),
            row["connection_quality"],
        )
        for row in rows
    }
    assert measures == {
        "APT-9100001": ("completed", 0.0, 0.01, 1),
        "APT-9100002": ("completed", 240.0, 240.0, 5),
        "APT-9100006": ("completed", 240.0, 0.01, 5),
    }
    statuses = query(settings, "select appointment_id, status from marts.fact_appointment")
    assert {r["appointment_id"]: r["status"] for r in statuses}["APT-9100007"] == "rescheduled"


def test_every_edge_form_is_in_the_marts_on_a_day_of_dim_date(settings, built):
    rows = query(
        settings,
        "select f.feedback_id, f.date_id, d.date_id as dim_date_id, f.provider_rating, f.overall_satisfaction"
        " from marts.fact_feedback f left join marts.dim_date d on d.date_id = f.date_id"
        f" where {NOT_GENERATED['forms']}",
    )
    assert {
        row["feedback_id"]: (row["date_id"], row["dim_date_id"], row["provider_rating"], row["overall_satisfaction"])
        for row in rows
    } == {
        feedback_id: (date_id, date_id, one["provider_rating"], one["overall_satisfaction"])
        for feedback_id, (one, date_id) in EDGE_FORMS.items()
    }


def test_dim_date_spans_the_contract_with_room(settings, built):
    (bounds,) = query(settings, "select min(date) as first, max(date) as last from marts.dim_date")
    assert bounds["first"].isoformat() == "2000-01-01"
    # 31 December three years after the as-of's year (or the run's year, when later): past every edge.
    assert bounds["last"] >= (LOAD_TIME + timedelta(days=3 * 365)).date().replace(month=12, day=31)
    assert bounds["last"].month == 12 and bounds["last"].day == 31
    assert datetime.combine(bounds["last"], datetime.min.time(), tzinfo=timezone.utc) > datetime(
        2028, 11, 2, tzinfo=timezone.utc
    )


def test_the_generated_batch_lands_as_expected_and_reaches_the_marts(settings, built, generated):
    """Each generated valid event and form is in raw, each one outside a range is quarantined with the reason
    and the field; every generated appointment in raw is in fact_appointment on a day of dim_date, and
    every generated form of a known appointment is in fact_feedback."""
    events, forms = generated
    loaded_events = {row["event_id"] for row in query(settings, "select event_id from raw.appointment_events")}
    rejected_events = {
        (row["event_id"], row["reason"], row["error_detail"].split(" ")[0])
        for row in query(settings, "select event_id, reason, error_detail from raw.appointment_events_rejected")
    }
    for made in events:
        event_id = json.loads(made.data)["event_id"]
        if made.expect == "valid":
            assert event_id in loaded_events, made
        else:
            assert (event_id, made.reason, made.field) in rejected_events, made
    loaded_forms = {row["feedback_id"] for row in query(settings, "select feedback_id from raw.patient_feedback")}
    rejected_forms = {
        (row["feedback_id"], row["reason"], row["error_detail"].split(" ")[0])
        for row in query(settings, "select feedback_id, reason, error_detail from raw.patient_feedback_rejected")
    }
    for made in forms:
        feedback_id = json.loads(made.data)["feedback_id"]
        if made.expect == "valid":
            assert feedback_id in loaded_forms, made
        else:
            assert (feedback_id, made.reason, made.field) in rejected_forms, made

    missing = query(
        settings,
        "select distinct e.appointment_id from raw.appointment_events e"
        " left join marts.fact_appointment f on f.appointment_id = e.appointment_id"
        " left join marts.dim_date d on d.date_id = f.date_id"
        " where e.appointment_id like 'APT-8%' and d.date_id is null",
    )
    assert missing == []
    unbuilt = query(
        settings,
        "select p.feedback_id from raw.patient_feedback p"
        " join marts.fact_appointment a on a.appointment_id = p.appointment_id"
        " left join marts.fact_feedback f on f.feedback_id = p.feedback_id"
        " where p.feedback_id like 'FBK-8%' and f.feedback_id is null",
    )
    assert unbuilt == []
