"""Schema checks for appointment events and feedback forms (loaders/CONTRACTS.md).

Written for the hot path: plain dict and set lookups, no schema library, one pass over a small table of
field rules per event type. A check returns ``None`` for a valid record or ``(reason, detail)`` with a
reason code from the contract; the first failing rule wins, in the order of the contract's tables.
Details name the field and the problem, never the value (it may be patient data).

Every timestamp must lie between EARLIEST_TIMESTAMP and the load time plus FUTURE_YEARS: what passes here,
the marts can hold (dim_date covers that span, no lead time overflows). The load time is the wall clock,
read at most once per BOUND_REFRESH_SECONDS (see latest_timestamp), never per message.
"""

from __future__ import annotations

import json
import re
import time
from datetime import datetime, timedelta, timezone

# Reason codes, shared with the generator's manifest.
INVALID_JSON = "invalid_json"
NOT_JSON = "not_json"
NOT_AN_OBJECT = "not_an_object"
MISSING_FIELD = "missing_field"
INVALID_TYPE = "invalid_type"
INVALID_TIMESTAMP = "invalid_timestamp"
UNKNOWN_ENUM = "unknown_enum"
OUT_OF_RANGE = "out_of_range"
INVALID_FORMAT = "invalid_format"
UNSUPPORTED_SCHEMA_VERSION = "unsupported_schema_version"
# Raised by the loaders themselves rather than found by a contract rule (loaders/CONTRACTS.md):
UNDECODABLE = "undecodable"  # the decoder or a check raised (e.g. RecursionError on deep nesting)
UNSTORABLE = "unstorable"  # schema-valid, but Postgres refused the row (SQLSTATE in the detail)
NOT_A_REGULAR_FILE = "not_a_regular_file"  # a landing entry that is a symlink, a FIFO, a device ...
TOO_LARGE = "too_large"  # a landing file over the loader's size limit, left unread
UNREADABLE = "unreadable"  # a landing file the loader may not open or could not read (EACCES, EIO ...)

SCHEMA_VERSION = 1

EVENT_TYPES = frozenset(("scheduled", "rescheduled", "started", "technical_issue", "completed", "cancelled", "no_show"))
APPOINTMENT_TYPES = frozenset(
    ("initial_consultation", "follow_up", "urgent_care", "mental_health", "prescription_refill")
)
DEVICE_TYPES = frozenset(("Mobile Phone", "Tablet", "Desktop", "Laptop"))
TECHNICAL_ISSUE_TYPES = frozenset(("audio", "video", "connection_drop", "login", "screen_share"))
CANCELLED_BY = frozenset(("patient", "provider", "clinic"))

Problem = tuple[str, str]

# The range of every timestamp: from EARLIEST_TIMESTAMP to the load time plus FUTURE_YEARS, both inclusive.
EARLIEST_TIMESTAMP = datetime(2000, 1, 1, tzinfo=timezone.utc)
FUTURE_YEARS = 2
# How long the latest allowed timestamp is reused before the wall clock is read again.
BOUND_REFRESH_SECONDS = 60.0
_EARLIEST_YEAR = EARLIEST_TIMESTAMP.year
_TIME_RANGE = f"[2000-01-01T00:00:00Z, load time + {FUTURE_YEARS} years]"

# The ids the marts key on follow a pattern (dbt tests them at error severity): an event's appointment_id
# and a form's feedback_id. One that does not would load and then stop `dbt build`.
APPOINTMENT_ID = re.compile(r"APT-[0-9]+")
FEEDBACK_ID = re.compile(r"FBK-[0-9]+")
_feedback_id_match = FEEDBACK_ID.fullmatch

# Rule kinds. Each rule is (field, kind, required, argument).
_STR, _TS, _ENUM, _NUM, _INT, _BOOL = range(6)

_EVENT_RULES: dict[str, tuple[tuple[str, int, bool, object], ...]] = {
    "scheduled": (
        ("patient_id", _STR, True, None),
        ("provider_id", _STR, True, None),
        ("appointment_type", _ENUM, True, APPOINTMENT_TYPES),
        ("scheduled_for", _TS, True, None),
        ("rescheduled_from_appointment_id", _STR, False, None),
    ),
    "rescheduled": (
        ("rescheduled_to_appointment_id", _STR, True, None),
        ("new_scheduled_for", _TS, True, None),
        ("reason", _STR, False, None),
    ),
    # Ranges are (low, low_inclusive, high): high is always inclusive.
    "started": (
        ("device_type", _ENUM, True, DEVICE_TYPES),
        ("wait_time_minutes", _NUM, True, (0, True, 240)),
    ),
    "technical_issue": (("technical_issue_type", _ENUM, True, TECHNICAL_ISSUE_TYPES),),
    "completed": (
        ("duration_minutes", _NUM, True, (0, False, 240)),
        ("connection_quality", _INT, True, (1, True, 5)),
    ),
    "cancelled": (
        ("cancelled_by", _ENUM, False, CANCELLED_BY),
        ("reason", _STR, False, None),
    ),
    "no_show": (),
}

_RATING = (1, True, 5)
_FORM_RULES: tuple[tuple[str, int, bool, object], ...] = (
    ("feedback_id", _STR, True, None),
    ("appointment_id", _STR, True, None),
    ("submitted_at", _TS, True, None),
    ("provider_rating", _INT, True, _RATING),
    ("ease_of_use_rating", _INT, True, _RATING),
    ("audio_quality_rating", _INT, True, _RATING),
    ("video_quality_rating", _INT, True, _RATING),
    ("overall_satisfaction", _INT, True, _RATING),
    ("would_recommend", _BOOL, True, None),
    ("comments", _STR, False, None),
)


def _reject_constant(name: str) -> None:
    # NaN and Infinity are not JSON, and Postgres jsonb refuses them: treat them as malformed input.
    raise ValueError(f"{name} is not valid JSON")


# One decoder for every message: json.loads with keyword arguments would build a new one each call.
JSON_DECODER = json.JSONDecoder(parse_constant=_reject_constant)
# Objects as lists of (key, value) pairs: a repeated key keeps every value, as jsonb's parser sees them all.
_PAIRS_DECODER = json.JSONDecoder(parse_constant=_reject_constant, object_pairs_hook=list)


# The common spelling, which Postgres reads as is; anything else valid is normalised with isoformat().
_PLAIN_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d(?::\d\d(?:\.\d{1,6})?)?(?:Z|[+-]\d\d:\d\d)\Z")


def timestamp_for_postgres(value: str, parsed: datetime) -> str:
    """The text to hand Postgres for a validated timestamp."""
    return value if _PLAIN_TIMESTAMP.match(value) else parsed.isoformat()


# What the contract calls ISO 8601 with an offset, spelled so that Postgres reads the same instant as Python:
# a calendar date, hours and minutes, optional seconds with at most six fraction digits, then Z or an offset
# (+hh:mm or +hhmm) under 16 hours. datetime.fromisoformat takes more (week dates, comma fractions, seven
# and more fraction digits, hour-only times, offsets with seconds or of 16 hours and more), which Postgres
# reads as another instant or not at all; the warehouse reads scheduled_for from the payload's text.
_CONTRACT_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d(?::\d\d(?:\.\d{1,6})?)?(?:Z|[+-]\d\d:?\d\d)\Z")
_MAX_OFFSET = timedelta(hours=16)


def parse_timestamp(value: object) -> datetime | None:
    """An aware datetime for an ISO 8601 string with a UTC offset, in the contract's spelling, else None."""
    if type(value) is not str or not _CONTRACT_TIMESTAMP.match(value):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    offset = parsed.utcoffset()
    return parsed if offset is not None and -_MAX_OFFSET < offset < _MAX_OFFSET else None


# The cached upper bound (see latest_timestamp). It starts below every timestamp, so the first check reads
# the clock; _sure_year is the last year whose every moment is inside the range, whatever its UTC offset.
_latest = EARLIEST_TIMESTAMP
_latest_expires = float("-inf")
_sure_year = _EARLIEST_YEAR


def _years_later(moment: datetime, years: int) -> datetime:
    try:
        return moment.replace(year=moment.year + years)
    except ValueError:  # 29 February in a year that has none
        return moment.replace(year=moment.year + years, day=28)


def latest_timestamp() -> datetime:
    """The latest timestamp accepted: the wall clock plus FUTURE_YEARS, read again only when the cached
    value is older than BOUND_REFRESH_SECONDS (by time.monotonic)."""
    global _latest, _latest_expires, _sure_year
    now = time.monotonic()
    if now >= _latest_expires:
        _latest = _years_later(datetime.now(timezone.utc), FUTURE_YEARS)
        _latest_expires = now + BOUND_REFRESH_SECONDS
        # A local time in a year before the bound's previous year is, in UTC (offsets stay under a day),
        # before the bound's year starts.
        _sure_year = _latest.year - 2
    return _latest


def reset_latest_timestamp() -> None:
    """Forget the cached upper bound, so the next check reads the clock: for tests that move the clock."""
    global _latest, _latest_expires, _sure_year
    _latest, _latest_expires, _sure_year = EARLIEST_TIMESTAMP, float("-inf"), _EARLIEST_YEAR


def in_time_range(parsed: datetime) -> bool:
    """True when an aware timestamp lies in [EARLIEST_TIMESTAMP, load time + FUTURE_YEARS].

    No clock read for the common case: a year strictly inside the range needs two integer comparisons
    (comparing aware datetimes of different offsets is slow); a timestamp up to the cached bound needs
    none; only one after it reads the clock, and at most once per BOUND_REFRESH_SECONDS. The bound only
    grows as time passes, so a cached one is never more lenient than the clock (unless the clock is set
    back, which reset_latest_timestamp covers in tests).
    """
    if _EARLIEST_YEAR < parsed.year <= _sure_year:
        return True
    if parsed < EARLIEST_TIMESTAMP:
        return False
    return parsed <= _latest or parsed <= latest_timestamp()


def _check_rules(record: dict, rules: tuple[tuple[str, int, bool, object], ...]) -> Problem | None:
    for name, kind, required, arg in rules:
        value = record.get(name)
        if value is None:
            if required:
                return MISSING_FIELD, f"{name} is missing or null"
            continue
        vtype = type(value)
        if kind == _STR:
            if vtype is not str:
                return INVALID_TYPE, f"{name} must be a string"
        elif kind == _ENUM:
            if vtype is not str:
                return INVALID_TYPE, f"{name} must be a string"
            if value not in arg:
                return UNKNOWN_ENUM, f"{name} is not one of the contract's values"
        elif kind == _TS:
            if vtype is not str:
                return INVALID_TYPE, f"{name} must be a string"
            parsed = parse_timestamp(value)
            if parsed is None:
                return INVALID_TIMESTAMP, f"{name} is not ISO 8601 with a UTC offset"
            if not in_time_range(parsed):
                return OUT_OF_RANGE, f"{name} is outside {_TIME_RANGE}"
        elif kind == _BOOL:
            if vtype is not bool:
                return INVALID_TYPE, f"{name} must be a boolean"
        else:
            # bool is a subclass of int, so compare exact types: true is not a number here.
            if vtype is not int and (kind == _INT or vtype is not float):
                return INVALID_TYPE, f"{name} must be {'an integer' if kind == _INT else 'a number'}"
            low, low_inclusive, high = arg
            if not (value >= low if low_inclusive else value > low) or not value <= high:
                return OUT_OF_RANGE, f"{name} is outside {'[' if low_inclusive else '('}{low}, {high}]"
    return None


def _check_header(record: dict) -> Problem | None:
    version = record.get("schema_version")
    if version is None:
        return MISSING_FIELD, "schema_version is missing or null"
    if type(version) is not int:
        return INVALID_TYPE, "schema_version must be an integer"
    if version != SCHEMA_VERSION:
        return UNSUPPORTED_SCHEMA_VERSION, f"schema_version {version} is not supported"
    return None


def check_event(event: object) -> tuple[Problem | None, str | None]:
    """Validate one decoded event; returns (problem, event_ts) with event_ts, as text for Postgres, when valid."""
    if type(event) is not dict:
        return (NOT_AN_OBJECT, "the message is JSON but not an object"), None
    problem = _check_header(event)
    if problem:
        return problem, None
    event_id = event.get("event_id")
    if event_id is None:
        return (MISSING_FIELD, "event_id is missing or null"), None
    if type(event_id) is not str or not event_id:
        return (INVALID_TYPE, "event_id must be a non-empty string"), None
    event_type = event.get("event_type")
    if event_type is None:
        return (MISSING_FIELD, "event_type is missing or null"), None
    if type(event_type) is not str:
        return (INVALID_TYPE, "event_type must be a string"), None
    if event_type not in EVENT_TYPES:
        return (UNKNOWN_ENUM, "event_type is not one of the contract's values"), None
    event_ts = event.get("event_ts")
    if event_ts is None:
        return (MISSING_FIELD, "event_ts is missing or null"), None
    if type(event_ts) is not str:
        return (INVALID_TYPE, "event_ts must be a string"), None
    parsed = parse_timestamp(event_ts)
    if parsed is None:
        return (INVALID_TIMESTAMP, "event_ts is not ISO 8601 with a UTC offset"), None
    if not in_time_range(parsed):
        return (OUT_OF_RANGE, f"event_ts is outside {_TIME_RANGE}"), None
    appointment_id = event.get("appointment_id")
    if appointment_id is None:
        return (MISSING_FIELD, "appointment_id is missing or null"), None
    if type(appointment_id) is not str or not appointment_id:
        return (INVALID_TYPE, "appointment_id must be a non-empty string"), None
    if not APPOINTMENT_ID.fullmatch(appointment_id):
        return (INVALID_FORMAT, "appointment_id is not APT- followed by digits"), None
    problem = _check_rules(event, _EVENT_RULES[event_type])
    return (problem, None) if problem else (None, timestamp_for_postgres(event_ts, parsed))


def check_form(form: object) -> tuple[Problem | None, str | None]:
    """Validate one decoded feedback form; returns (problem, submitted_at) with submitted_at, as text for
    Postgres, when valid."""
    if type(form) is not dict:
        return (NOT_AN_OBJECT, "the form is JSON but not an object"), None
    # Fast path for the common, valid form: one expression of exact-type checks, each field looked up
    # once (a missing one raises KeyError, comments may be absent). Anything it does not accept goes
    # through the rule table below, which finds the precise reason.
    try:
        if (
            type(version := form["schema_version"]) is int
            and version == SCHEMA_VERSION
            and type(feedback_id := form["feedback_id"]) is str
            and _feedback_id_match(feedback_id)
            and type(appointment_id := form["appointment_id"]) is str
            and appointment_id
            and type(rating := form["provider_rating"]) is int
            and 1 <= rating <= 5
            and type(rating := form["ease_of_use_rating"]) is int
            and 1 <= rating <= 5
            and type(rating := form["audio_quality_rating"]) is int
            and 1 <= rating <= 5
            and type(rating := form["video_quality_rating"]) is int
            and 1 <= rating <= 5
            and type(rating := form["overall_satisfaction"]) is int
            and 1 <= rating <= 5
            and type(form["would_recommend"]) is bool
            and ((comments := form.get("comments")) is None or type(comments) is str)
            and (parsed := parse_timestamp(submitted_at := form["submitted_at"])) is not None
            and in_time_range(parsed)
        ):
            return None, timestamp_for_postgres(submitted_at, parsed)
    except KeyError:
        pass
    problem = _check_header(form) or _check_rules(form, _FORM_RULES)
    if problem:
        return problem, None
    if not form["feedback_id"] or not form["appointment_id"]:
        return (INVALID_TYPE, "feedback_id and appointment_id must be non-empty strings"), None
    if not FEEDBACK_ID.fullmatch(form["feedback_id"]):
        return (INVALID_FORMAT, "feedback_id is not FBK- followed by digits"), None
    submitted_at = form["submitted_at"]
    return None, timestamp_for_postgres(submitted_at, parse_timestamp(submitted_at))


def storable_json_text(text: str) -> bool:
    """False when Postgres jsonb or text cannot hold this JSON text.

    jsonb rejects a NUL character (escaped as \\u0000) and unpaired UTF-16 surrogates; text rejects NUL.
    Cheap for the common case: only a text with a \\u escape or a NUL character is decoded again, keeping
    the values of repeated keys (the decoded record keeps only the last, jsonb parses every one).
    """
    if "\x00" in text:
        return False
    if "\\u" not in text:
        return True
    try:
        return _storable(_PAIRS_DECODER.decode(text))
    except ValueError:
        return False


def storable_text(value: object) -> bool:
    """True for a string a Postgres text column holds: no NUL character, no unpaired surrogate."""
    if type(value) is not str or "\x00" in value:
        return False
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def _storable(value: object) -> bool:
    if type(value) is str:
        return storable_text(value)
    if type(value) is list:  # an array, or an object as its (key, value) pairs (JSON has no tuples)
        return all(
            _storable(item[0]) and _storable(item[1]) if type(item) is tuple else _storable(item) for item in value
        )
    return True
