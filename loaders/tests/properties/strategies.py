"""What hypothesis feeds the loaders: arbitrary bytes, arbitrary JSON text (deep nesting, huge and tiny
numbers, Unicode oddities, duplicate keys, huge strings) and records of the contract (loaders/CONTRACTS.md)
at and just outside its ranges, each with what the loader must do with it.

Every input is an `Input`: its bytes and its expectation. ``valid`` must land in raw (or be a repeat of an
id that did); ``rejected`` must be quarantined with ``reason``, the detail naming ``field``; ``any`` must
end up somewhere exactly once, the loader decides where. The ranges are read against the test world's
load time, `LOAD_TIME` (the tests pin the loaders' clock to it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from hypothesis import strategies as st

from loaders import validation
from testkit.clock import AS_OF

LOAD_TIME = AS_OF
EARLIEST = validation.EARLIEST_TIMESTAMP
LATEST = LOAD_TIME.replace(year=LOAD_TIME.year + validation.FUTURE_YEARS)
MICROSECOND = timedelta(microseconds=1)
# Offsets Postgres and the contract both take (real zones lie between -12:00 and +14:00).
MAX_OFFSET_MINUTES = 15 * 60 + 59


@dataclass(frozen=True)
class Input:
    data: bytes | None
    expect: str = "any"  # "valid", "rejected" or "any"
    reason: str | None = None
    field: str | None = None


# --------------------------------------------------------------------------- timestamps


def _naive_utc(moment: datetime) -> datetime:
    return moment.astimezone(timezone.utc).replace(tzinfo=None)


def instants(low: datetime = EARLIEST, high: datetime = LATEST) -> st.SearchStrategy[datetime]:
    """UTC instants in [low, high], the bounds themselves often."""
    inside = st.datetimes(min_value=_naive_utc(low), max_value=_naive_utc(high)).map(
        lambda naive: naive.replace(tzinfo=timezone.utc)
    )
    return st.one_of(st.just(low), st.just(high), inside)


def _date(moment: datetime) -> str:
    return f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}"  # strftime's %Y drops leading zeros


@st.composite
def contract_timestamp(draw, moment: datetime) -> str:
    """``moment`` in a spelling of the contract (ISO 8601, calendar date, explicit offset), without loss."""
    minutes = draw(st.one_of(st.just(0), st.integers(-MAX_OFFSET_MINUTES, MAX_OFFSET_MINUTES)))
    local = moment.astimezone(timezone(timedelta(minutes=minutes)))
    text = _date(local) + draw(st.sampled_from(["T", "T", "t", " "])) + local.strftime("%H:%M")
    if local.second or local.microsecond or draw(st.booleans()):
        text += local.strftime(":%S")
    if local.microsecond:
        fraction = f"{local.microsecond:06d}"
        text += "." + (fraction if draw(st.booleans()) else fraction.rstrip("0"))
    sign, rest = ("-" if minutes < 0 else "+"), abs(minutes)
    zones = [f"{sign}{rest // 60:02d}:{rest % 60:02d}", f"{sign}{rest // 60:02d}{rest % 60:02d}"]
    if minutes == 0:
        zones += ["Z", "-00:00"]
    return text + draw(st.sampled_from(zones))


@st.composite
def odd_timestamp(draw, moment: datetime) -> str:
    """``moment`` in spellings ISO 8601 or Python allow and the contract does not name: week dates, comma
    fractions, more than six fraction digits, hour-only times, offsets with seconds or of 16 hours and more.
    The loader may take or refuse each; what it takes, the warehouse must read as the same instant."""
    style = draw(st.sampled_from(["week", "comma", "nanos", "hour", "basic", "offset_seconds", "far_offset"]))
    if style == "far_offset":
        minutes = draw(st.integers(16 * 60, 24 * 60 - 1)) * draw(st.sampled_from([1, -1]))
        local = moment.astimezone(timezone(timedelta(minutes=minutes)))
        sign = "-" if minutes < 0 else "+"
        return _date(local) + local.strftime("T%H:%M:%S") + f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
    if style == "offset_seconds":
        seconds = draw(st.integers(1, 59))
        offset = timedelta(hours=draw(st.integers(-12, 14)), seconds=seconds)
        local = moment.astimezone(timezone(offset))
        zone = local.strftime("%z")
        tail = draw(st.sampled_from(["", ".5"]))
        return _date(local) + local.strftime("T%H:%M:%S") + f"{zone[:3]}:{zone[3:5]}:{zone[5:7]}{tail}"
    utc = moment.astimezone(timezone.utc)
    if style == "week":
        year, week, day = utc.isocalendar()
        return f"{year:04d}-W{week:02d}-{day}T{utc:%H:%M:%S}Z"
    if style == "comma":
        return f"{_date(utc)}T{utc:%H:%M:%S},{utc.microsecond:06d}Z"
    if style == "nanos":
        return f"{_date(utc)}T{utc:%H:%M:%S}.{utc.microsecond:06d}{draw(st.integers(0, 999)):03d}Z"
    if style == "hour":
        return f"{_date(utc)}T{utc:%H}Z"
    return f"{_date(utc)}T{utc:%H%M%S}Z"


def timestamps_inside() -> st.SearchStrategy[str]:
    return instants().flatmap(contract_timestamp)


def timestamps_outside() -> st.SearchStrategy[str]:
    before = instants(datetime(1, 1, 2, tzinfo=timezone.utc), EARLIEST - MICROSECOND)
    after = instants(LATEST + MICROSECOND, datetime(9999, 12, 30, tzinfo=timezone.utc))
    return st.one_of(before, after).flatmap(contract_timestamp)


# --------------------------------------------------------------------------- JSON text

STRING_ESCAPES = [
    "\\u0000",  # NUL: no text or jsonb column holds it
    "\\ud800",  # unpaired surrogates
    "\\udfff",
    "\\ud83d\\ude00",  # a pair: fine
    "\\u2028",
    "\\ufeff",
    "\\uffff",
    '\\"',
    "\\\\",
    "\\/",
    "\\n",
    "\\t",
]


@st.composite
def string_literal(draw, max_pieces: int = 12) -> str:
    """A JSON string literal, often not a valid one: raw control characters, escapes of NUL and of lone
    surrogates, every plane of Unicode, and sometimes a huge run of one character."""
    pieces = draw(
        st.lists(
            st.one_of(
                st.characters(exclude_characters='"\\'),
                st.sampled_from(STRING_ESCAPES),
                st.integers(0, 0xFFFF).map(lambda code: f"\\u{code:04x}"),
            ),
            max_size=max_pieces,
        )
    )
    if draw(st.integers(0, 20)) == 0:
        pieces.append(draw(st.sampled_from(["x", "é", "\U0001f600"])) * draw(st.sampled_from([5_000, 100_000])))
    return '"' + "".join(pieces) + '"'


NUMBER_TEXTS = [
    "0",
    "-0",
    "0.0e-0",
    "1e400000",  # beyond numeric's range
    "-1e-400000",
    "1E309",  # beyond a double: Python reads inf
    "-1e-400",  # below a double: Python reads -0.0
    "123456789012345678901234567890",
    "NaN",
    "Infinity",
    "-Infinity",
    "01",
    "1.",
    ".5",
    "+1",
]


def number_text() -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(NUMBER_TEXTS),
        st.integers().map(str),
        st.floats(allow_nan=False, allow_infinity=False).map(repr),
        st.from_regex(r"-?(0|[1-9][0-9]{0,40})(\.[0-9]{1,40})?([eE][+-]?[0-9]{1,6})?", fullmatch=True),
    )


def json_value_text(max_leaves: int = 12) -> st.SearchStrategy[str]:
    """JSON text of any value: objects may repeat keys; numbers and strings as above."""
    scalars = st.one_of(st.sampled_from(["null", "true", "false"]), number_text(), string_literal())

    def containers(children):
        return st.one_of(
            st.lists(children, max_size=5).map(lambda items: "[" + ",".join(items) + "]"),
            st.lists(st.tuples(string_literal(4), children), max_size=5).map(
                lambda pairs: "{" + ",".join(f"{key}:{value}" for key, value in pairs) + "}"
            ),
        )

    return st.recursive(scalars, containers, max_leaves=max_leaves)


@st.composite
def nested(draw, inner: str) -> str:
    """``inner`` inside arrays or objects, from not at all to far beyond any decoder's recursion limit."""
    depth = draw(st.one_of(st.integers(0, 8), st.sampled_from([900, 990, 1000, 3000, 100_000])))
    if draw(st.booleans()):
        return "[" * depth + inner + "]" * depth
    return '{"a":' * depth + inner + "}" * depth


WHITESPACE = ["", " ", "\n", "\t\r\n ", "\ufeff", "\x0c", "\u00a0"]


@st.composite
def encoded(draw, text: str) -> bytes:
    """``text`` as bytes, mostly UTF-8, sometimes padded, cut short or in another encoding."""
    text = draw(st.sampled_from(WHITESPACE)) + text + draw(st.sampled_from(WHITESPACE))
    if draw(st.integers(0, 9)) == 0 and text:
        text = text[: draw(st.integers(0, len(text) - 1))]
    if draw(st.integers(0, 9)) == 0:
        text += draw(st.sampled_from(["x", "}", "]", ",", "{}", " 1"]))
    encoding = draw(st.sampled_from(["utf-8"] * 12 + ["utf-8-sig", "utf-16", "latin-1", "surrogatepass"]))
    if encoding == "surrogatepass":
        return text.encode("utf-8", "surrogatepass")
    return text.encode(encoding, "replace")


def arbitrary_json() -> st.SearchStrategy[bytes]:
    return json_value_text().flatmap(nested).flatmap(encoded)


def arbitrary_bytes() -> st.SearchStrategy[bytes]:
    return st.one_of(st.binary(max_size=300), st.sampled_from([b"", b"{", b"\xff\xfe{}", b"\x00", b"[]", b"{}"]))


# --------------------------------------------------------------------------- records of the contract

TEXT = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=30)
# JSON that any reader takes and Postgres stores.
STORABLE_JSON = st.one_of(
    TEXT.map(lambda text: json.dumps(text, ensure_ascii=False)),
    st.integers().map(str),
    st.sampled_from(["null", "true", "[]", "{}", '{"a": [1, 2.5e-3]}']),
)


def _number(value: float | int) -> st.SearchStrategy[str]:
    """Spellings of ``value`` that every JSON reader reads as the same number."""
    spellings = [json.dumps(value)]
    if type(value) is int:
        spellings += [f"{value}.0", f"{value}e0"] + ([f"{value}0e-1"] if value else [])
    else:
        spellings += [repr(value).replace("e", "E"), f"{value!r}e0" if "e" not in repr(value) else repr(value)]
    return st.sampled_from(spellings)


WAITS = st.one_of(
    st.sampled_from([0, 240, 0.0, 240.0, 5e-324, 239.99999999999997]),
    st.integers(0, 240),
    st.floats(0, 240),
)
DURATIONS = st.one_of(
    st.sampled_from([240, 240.0, 5e-324, 0.01]),
    st.integers(1, 240),
    st.floats(0, 240, exclude_min=True),
)
WAITS_OUTSIDE = st.one_of(
    st.sampled_from([-5e-324, -0.01, 240.00000000000003, 241, -1, 10**30, 1e308]),
    st.floats(max_value=0, exclude_max=True, allow_infinity=False),
    st.floats(min_value=240, exclude_min=True, allow_infinity=False),
)
DURATIONS_OUTSIDE = st.one_of(st.sampled_from([0, 0.0, -0.0, -5e-324, 240.00000000000003]), WAITS_OUTSIDE)
SMALL_INTS_OUTSIDE = st.one_of(st.sampled_from([0, 6, -1, 10**30]), st.integers(max_value=0), st.integers(min_value=6))


IDS = st.integers(0, 30)


@dataclass(frozen=True)
class Record:
    """A record as ordered (key, JSON text) pairs: rendered with its exact texts, repeats and all."""

    fields: tuple[tuple[str, str], ...]

    def get(self, key: str) -> str | None:
        found = [value for name, value in self.fields if name == key]
        return found[-1] if found else None

    def replace(self, key: str, value_text: str | None) -> Record:
        """The record with ``key`` set to ``value_text`` (removed when None), keeping the order."""
        if value_text is None:
            return Record(tuple(pair for pair in self.fields if pair[0] != key))
        if key not in dict(self.fields):
            return Record((*self.fields, (key, value_text)))
        return Record(tuple((name, value_text if name == key else value) for name, value in self.fields))

    def text(self, separator: str = ",") -> str:
        return "{" + separator.join(f"{json.dumps(key)}:{value}" for key, value in self.fields) + "}"


def _str(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


@st.composite
def event_record(draw, event_types: tuple[str, ...] = tuple(sorted(validation.EVENT_TYPES))) -> tuple[str, Record]:
    """A valid event (its type, its record) at the edges of every range; few ids, so repeats happen."""
    number = draw(IDS)
    event_type = draw(st.sampled_from(event_types))
    event_id = f"gen-{number}" + draw(st.sampled_from(["", "-" + "x" * 40, "-é\u2028\U0001f600"]))
    fields = [
        ("schema_version", "1"),
        ("event_id", _str(event_id)),
        ("event_type", _str(event_type)),
        ("event_ts", _str(draw(timestamps_inside()))),
        ("appointment_id", _str(f"APT-8{draw(st.integers(0, 10**6)):06d}")),
    ]
    if event_type == "scheduled":
        fields += [
            ("patient_id", _str(f"PAT-{draw(st.integers(0, 10**9))}")),
            ("provider_id", _str(f"PRV-{draw(st.integers(0, 10**4))}")),
            ("appointment_type", _str(draw(st.sampled_from(sorted(validation.APPOINTMENT_TYPES))))),
            ("scheduled_for", _str(draw(timestamps_inside()))),
        ]
        if draw(st.booleans()):
            fields.append(("rescheduled_from_appointment_id", _str(f"APT-8{draw(st.integers(0, 10**6)):06d}")))
    elif event_type == "rescheduled":
        fields += [
            ("rescheduled_to_appointment_id", _str(f"APT-8{draw(st.integers(0, 10**6)):06d}")),
            ("new_scheduled_for", _str(draw(timestamps_inside()))),
        ]
        if draw(st.booleans()):
            fields.append(("reason", _str(draw(TEXT))))
    elif event_type == "started":
        fields += [
            ("device_type", _str(draw(st.sampled_from(sorted(validation.DEVICE_TYPES))))),
            ("wait_time_minutes", draw(WAITS.flatmap(_number))),
        ]
    elif event_type == "technical_issue":
        fields.append(("technical_issue_type", _str(draw(st.sampled_from(sorted(validation.TECHNICAL_ISSUE_TYPES))))))
    elif event_type == "completed":
        fields += [
            ("duration_minutes", draw(DURATIONS.flatmap(_number))),
            ("connection_quality", draw(st.integers(1, 5).map(str))),
        ]
    elif event_type == "cancelled":
        if draw(st.booleans()):
            fields.append(("cancelled_by", _str(draw(st.sampled_from(sorted(validation.CANCELLED_BY))))))
        if draw(st.booleans()):
            fields.append(("reason", _str(draw(TEXT))))
    # Schema drift: extra fields are kept; storable ones only, so the record stays valid.
    for key in draw(st.lists(st.sampled_from(["note", "client", "x-trace", "Ünïcode"]), max_size=2, unique=True)):
        fields.append((key, draw(st.one_of(TEXT.map(_str), st.integers().map(str), st.just("[[[{}]]]")))))
    order = draw(st.permutations(range(len(fields))))
    return event_type, Record(tuple(fields[i] for i in order))


def _outside_event(event_type: str) -> st.SearchStrategy[tuple[str, str]]:
    """(field, value text) pairs that put one field of an event of ``event_type`` just outside its range."""
    choices = [st.tuples(st.just("event_ts"), timestamps_outside().map(_str))]
    if event_type == "scheduled":
        choices.append(st.tuples(st.just("scheduled_for"), timestamps_outside().map(_str)))
    if event_type == "rescheduled":
        choices.append(st.tuples(st.just("new_scheduled_for"), timestamps_outside().map(_str)))
    if event_type == "started":
        choices.append(st.tuples(st.just("wait_time_minutes"), WAITS_OUTSIDE.map(repr)))
    if event_type == "completed":
        choices.append(st.tuples(st.just("duration_minutes"), DURATIONS_OUTSIDE.map(repr)))
        choices.append(st.tuples(st.just("connection_quality"), SMALL_INTS_OUTSIDE.map(str)))
    return st.one_of(choices)


def _render(draw, record: Record) -> bytes:
    separator = draw(st.sampled_from([",", ", ", ",\n  "]))
    return record.text(separator).encode()


@st.composite
def valid_event(draw) -> Input:
    _, record = draw(event_record())
    # A repeated key whose last value is the valid one: Python and jsonb both keep the last.
    if draw(st.integers(0, 5)) == 0:
        key = draw(st.sampled_from([name for name, _ in record.fields]))
        record = Record(((key, draw(STORABLE_JSON)), *record.fields))
    return Input(_render(draw, record), "valid")


@st.composite
def event_outside(draw) -> Input:
    event_type, record = draw(event_record())
    field, value = draw(_outside_event(event_type))
    return Input(_render(draw, record.replace(field, value)), "rejected", validation.OUT_OF_RANGE, field)


@st.composite
def event_broken(draw) -> Input:
    """A valid event with one required field missing, null or of the wrong type, or of schema 2."""
    event_type, record = draw(event_record())
    required = ["event_id", "event_type", "event_ts", "appointment_id"]
    required += [name for name, _kind, needed, _arg in validation._EVENT_RULES[event_type] if needed]
    field = draw(st.sampled_from(["schema_version", *required]))
    change = draw(st.sampled_from(["missing", "null", "type"]))
    if field == "schema_version" and change == "type":
        return Input(_render(draw, record.replace(field, "2")), "rejected", "unsupported_schema_version", field)
    if change == "type":
        numeric = field in ("wait_time_minutes", "duration_minutes", "connection_quality")
        value = draw(st.sampled_from(['"5"', "true", "[]"] if numeric else ["5", "true", "{}", "[]"]))
        return Input(_render(draw, record.replace(field, value)), "rejected", validation.INVALID_TYPE, field)
    value = None if change == "missing" else "null"
    return Input(_render(draw, record.replace(field, value)), "rejected", validation.MISSING_FIELD, field)


@st.composite
def event_mutated(draw) -> Input:
    """A valid event with one field's value, or one more field, replaced by arbitrary JSON, or a timestamp
    in an odd spelling: the loader decides."""
    what = draw(st.sampled_from(["value", "timestamp", "extra"]))
    # Timestamps other than event_ts are read from the payload by the warehouse: those events more often.
    types = (
        ("scheduled", "rescheduled")
        if what == "timestamp" and draw(st.booleans())
        else tuple(sorted(validation.EVENT_TYPES))
    )
    _, record = draw(event_record(types))
    keys = [name for name, _ in record.fields]
    if what == "timestamp":
        stamps = [key for key in keys if key in ("event_ts", "scheduled_for", "new_scheduled_for")]
        field = draw(st.sampled_from(stamps))
        return Input(_render(draw, record.replace(field, _str(draw(instants().flatmap(odd_timestamp))))))
    value = draw(json_value_text(6))
    field = draw(st.sampled_from(keys)) if what == "value" else draw(string_literal(4)).strip('"') or "k"
    return Input(_render(draw, record.replace(field, value)))


def messages() -> st.SearchStrategy[Input]:
    """One Kafka message value of any kind (None is a tombstone: no value at all)."""
    return st.one_of(
        valid_event(),
        event_outside(),
        event_broken(),
        event_mutated(),
        event_mutated(),
        arbitrary_json().map(Input),
        arbitrary_bytes().map(Input),
        st.just(Input(None)),
    )


# --------------------------------------------------------------------------- feedback forms

RATINGS = (
    "provider_rating",
    "ease_of_use_rating",
    "audio_quality_rating",
    "video_quality_rating",
    "overall_satisfaction",
)


@st.composite
def form_record(draw) -> Record:
    fields = [
        ("schema_version", "1"),
        ("feedback_id", _str(f"FBK-8{draw(IDS):06d}")),
        ("appointment_id", _str(f"APT-8{draw(st.integers(0, 10**6)):06d}")),
        ("submitted_at", _str(draw(timestamps_inside()))),
        *((name, draw(st.integers(1, 5).map(str))) for name in RATINGS),
        ("would_recommend", draw(st.sampled_from(["true", "false"]))),
    ]
    comments = draw(st.one_of(st.none(), st.just("null"), TEXT.map(_str), st.just(_str("é" * 20_000))))
    if comments is not None:
        fields.append(("comments", comments))
    if draw(st.booleans()):
        fields.append(("portal_version", draw(st.one_of(TEXT.map(_str), st.integers().map(str)))))
    order = draw(st.permutations(range(len(fields))))
    return Record(tuple(fields[i] for i in order))


@st.composite
def valid_form(draw) -> tuple[Input, Record]:
    record = draw(form_record())
    return Input(_render(draw, record), "valid"), record


@st.composite
def form_outside(draw) -> tuple[Input, Record]:
    record = draw(form_record())
    field, value = draw(
        st.one_of(
            st.tuples(st.just("submitted_at"), timestamps_outside().map(_str)),
            st.tuples(st.sampled_from(RATINGS), SMALL_INTS_OUTSIDE.map(str)),
        )
    )
    record = record.replace(field, value)
    return Input(_render(draw, record), "rejected", validation.OUT_OF_RANGE, field), record


@st.composite
def form_mutated(draw) -> tuple[Input, Record]:
    record = draw(form_record())
    if draw(st.booleans()):
        record = record.replace("submitted_at", _str(draw(instants().flatmap(odd_timestamp))))
    else:
        record = record.replace(draw(st.sampled_from([name for name, _ in record.fields])), draw(json_value_text(6)))
    return Input(_render(draw, record)), record


def forms() -> st.SearchStrategy[tuple[Input, Record]]:
    return st.one_of(valid_form(), form_outside(), form_mutated())


@dataclass(frozen=True)
class LandingFile:
    """A file to put in the landing folder: its name (bytes: not always UTF-8), content and expectations.

    ``forms`` holds the expectation of each form when the content is a JSON array or object of forms written
    by the strategy; None when the content is arbitrary (the loader decides how many forms it has, if any).
    ``kind`` is "file", or "fifo" / "symlink" for entries that must be refused unread."""

    name: bytes
    content: bytes
    forms: tuple[Input, ...] | None = None
    kind: str = "file"


_NAME_CHARS = st.characters(exclude_characters="/\x00", exclude_categories=["Cs"])


@st.composite
def file_name(draw) -> bytes:
    """A file name: any Unicode (spaces, tabs, newlines, backslashes, quotes), sometimes bytes that are not
    UTF-8; mostly ending in .json."""
    stem = draw(st.text(_NAME_CHARS, min_size=1, max_size=20)).encode()
    if draw(st.integers(0, 4)) == 0:
        stem += draw(st.sampled_from([b"\xe9", b"\x80", b"\xff\xfe", b"\xed\xa0\x80"]))
    suffix = draw(st.sampled_from([b".json"] * 6 + [b".JSON", b".txt", b"", b".json.tmp"]))
    name = stem.lstrip(b".") or b"f"
    return name[:200] + suffix


@st.composite
def form_file_content(draw) -> tuple[bytes, tuple[Input, ...]]:
    """A file of forms: one object, or an array of forms (and sometimes of other JSON values)."""
    if draw(st.booleans()):
        made, _ = draw(forms())
        return _pad(draw, made.data), (made,)
    items = draw(st.lists(st.one_of(forms().map(lambda pair: pair[0]), json_value_text(4).map(_any_form)), max_size=6))
    separator = draw(st.sampled_from([b",", b", ", b",\n"]))
    return _pad(draw, b"[" + separator.join(item.data for item in items) + b"]"), tuple(items)


def _any_form(text: str) -> Input:
    return Input(text.encode("utf-8", "surrogatepass"))


def _pad(draw, data: bytes) -> bytes:
    return draw(st.sampled_from([b"", b"\xef\xbb\xbf", b" \n"])) + data + draw(st.sampled_from([b"", b"\n", b"  "]))


@st.composite
def landing_file(draw) -> LandingFile:
    name = draw(file_name())
    kind = draw(st.sampled_from(["forms"] * 6 + ["json", "bytes", "fifo", "symlink"]))
    if kind == "forms":
        content, made = draw(form_file_content())
        if not name.endswith(b".json"):
            return LandingFile(name, content)
        return LandingFile(name, content, made)
    if kind in ("fifo", "symlink"):
        return LandingFile(name, b"", kind=kind)
    return LandingFile(name, draw(arbitrary_json() if kind == "json" else arbitrary_bytes()))


@st.composite
def landing_files(draw) -> list[tuple[str, LandingFile]]:
    """A landing folder's files as (day folder, file), in up to three day folders; sometimes one file's
    content again under another name (a copy, which the loader skips)."""
    files = draw(
        st.lists(
            st.tuples(st.sampled_from(["2026/10/30", "2026/10/31", "2026/11/01"]), landing_file()),
            min_size=1,
            max_size=12,
            unique_by=lambda pair: (pair[0], pair[1].name),
        )
    )
    regular = [pair for pair in files if pair[1].kind == "file"]
    if regular and draw(st.integers(0, 3)) == 0:
        folder, original = draw(st.sampled_from(regular))
        files.append((folder, LandingFile(b"copy-of-" + original.name, original.content, original.forms)))
    return files
