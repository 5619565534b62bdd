"""Dirty inputs: extra messages, forms and files added beside the clean world, never in place of it.

Each kind maps to the CONTRACTS.md rejection reason a correct loader must give it. Kinds are dealt
round-robin on triggers drawn at ``rate``, so every kind shows up as soon as there are a few triggers.
The RNG is separate from the world's, so the clean world is the same with or without dirty data.
"""

from __future__ import annotations

import json

from simulator.randomness import random_uuid, seeded

# kind -> rejection reason (None: accepted, counted elsewhere in the manifest)
EVENT_KINDS = {
    "duplicate": None,
    "invalid_json": "invalid_json",
    "missing_field": "missing_field",
    "unknown_enum": "unknown_enum",
    "utc_offset": None,
    "out_of_range": "out_of_range",
    "invalid_timestamp": "invalid_timestamp",
    "unsupported_schema_version": "unsupported_schema_version",
    "invalid_type": "invalid_type",
    "not_an_object": "not_an_object",
}
FORM_KINDS = {
    "out_of_range": "out_of_range",
    "unknown_appointment": None,
    "missing_field": "missing_field",
    "resubmitted": None,
    "invalid_type": "invalid_type",
    "invalid_timestamp": "invalid_timestamp",
    "truncated_file": "invalid_json",
    "unsupported_schema_version": "unsupported_schema_version",
    "not_json_file": "not_json",
    "not_an_object": "not_an_object",
}
# Offsets producers in other places send: the clinic's own zone, Europe, India, the US west coast.
OFFSETS = (-4 * 3600, 2 * 3600, 5 * 3600 + 1800, -7 * 3600, 9 * 3600)
UNKNOWN_EVENT_TYPES = ("paused", "rejoined", "checked_in")
UNKNOWN_ENUMS = {
    "scheduled": ("appointment_type", ("house_call", "second_opinion")),
    "started": ("device_type", ("Smart TV", "Game Console", "Smartwatch")),
    "technical_issue": ("technical_issue_type", ("power_outage", "camera_permission")),
    "cancelled": ("cancelled_by", ("insurer", "system")),
}
REQUIRED = {
    "scheduled": ("patient_id", "provider_id", "appointment_type", "scheduled_for"),
    "rescheduled": ("rescheduled_to_appointment_id", "new_scheduled_for"),
    "started": ("device_type", "wait_time_minutes"),
    "technical_issue": ("technical_issue_type",),
    "completed": ("duration_minutes", "connection_quality"),
    "cancelled": (),
    "no_show": (),
}
COMMON_REQUIRED = ("event_ts", "appointment_id", "event_type", "event_id", "schema_version")
FORM_REQUIRED = ("appointment_id", "submitted_at", "provider_rating", "overall_satisfaction", "would_recommend")
RATING_FIELDS = (
    "provider_rating",
    "ease_of_use_rating",
    "audio_quality_rating",
    "video_quality_rating",
    "overall_satisfaction",
)
# Stray files people drop into the landing folder. Each carries its number, so no two share a sha256
# (the feedback loader skips a file whose sha256 it has seen: identical strays would hide each other).
NOT_JSON_FILES = (
    ("scan-{n}.pdf", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj << /Type /Catalog /Scan ({n}) >> endobj\n%%EOF\n"),
    ("notes-{n}.txt", b"Front desk, ticket {n}: patient called to say the form did not submit.\n"),
    ("export-{n}.csv", b"feedback_id,rating\n{n},5\n"),
)


# One compact encoder for every message: json.dumps with arguments builds a new encoder per call.
dumps = json.JSONEncoder(separators=(",", ":")).encode


class Dirt:
    def __init__(self, seed: int, rate: float) -> None:
        self.rng = seeded(seed * 31337 + 17)
        self.rate = rate
        self.event_turn = 0
        self.form_turn = 0
        self.extra_number = 0
        self._event_kinds = list(EVENT_KINDS)
        self._form_kinds = list(FORM_KINDS)

    def new_id(self) -> str:
        return random_uuid(self.rng)

    def new_feedback_id(self) -> str:
        # Nine digits: never one of the world's eight-digit ids.
        self.extra_number += 1
        return f"FBK-9{self.extra_number:08d}"

    def event_kind(self) -> str | None:
        """Per real event: None (clean) or the next dirty kind in turn."""
        if self.rate <= 0 or self.rng.random() >= self.rate:
            return None
        kind = self._event_kinds[self.event_turn % len(self._event_kinds)]
        self.event_turn += 1
        return kind

    def event_kinds(self, count: int) -> list[str | None] | None:
        """``event_kind()`` for each of ``count`` events, drawn alike; None when all of them are clean."""
        if self.rate <= 0:
            return None
        kinds = None
        draw, rate = self.rng.random, self.rate
        for i in range(count):
            if draw() < rate:
                if kinds is None:
                    kinds = [None] * count
                kinds[i] = self._event_kinds[self.event_turn % len(self._event_kinds)]
                self.event_turn += 1
        return kinds

    def form_kind(self) -> str | None:
        if self.rate <= 0 or self.rng.random() >= self.rate:
            return None
        kind = self._form_kinds[self.form_turn % len(self._form_kinds)]
        self.form_turn += 1
        return kind

    def out_of_order(self) -> bool:
        return self.rate > 0 and self.rng.random() < self.rate

    def offset(self) -> int:
        return self.rng.choice(OFFSETS)

    # events ----------------------------------------------------------------------------------------
    def bad_event(self, kind: str, payload: dict) -> str:
        """One extra message of ``kind`` shaped like ``payload`` (a real event), with a fresh event_id."""
        rng = self.rng
        bad = dict(payload)
        bad["event_id"] = self.new_id()
        event_type = bad["event_type"]
        if kind == "invalid_json":
            text = dumps(bad)
            return text[: rng.randint(10, len(text) - 2)]
        if kind == "not_an_object":
            return dumps([bad])
        if kind == "missing_field":
            candidates = COMMON_REQUIRED[:3] + REQUIRED[event_type]
            name = rng.choice(candidates)
            if rng.random() < 0.3:
                bad[name] = None  # null counts as missing
            else:
                bad.pop(name)
        elif kind == "unknown_enum":
            if event_type in UNKNOWN_ENUMS and rng.random() < 0.6:
                name, values = UNKNOWN_ENUMS[event_type]
                bad[name] = rng.choice(values)
            else:
                bad["event_type"] = rng.choice(UNKNOWN_EVENT_TYPES)
        elif kind == "out_of_range":
            if rng.random() < 0.5:
                bad = _retype(bad, "started")
                bad["device_type"] = "Laptop"
                bad["wait_time_minutes"] = rng.choice((-5.0, -0.5, 241.0, 999.0, 1440.0))
            else:
                bad = _retype(bad, "completed")
                bad["duration_minutes"] = rng.choice((-12.0, 0.0, 600.0, 100000.0))
                bad["connection_quality"] = 3
                if rng.random() < 0.3:
                    bad["duration_minutes"] = 25.0
                    bad["connection_quality"] = rng.choice((0, 6, 9))
        elif kind == "invalid_timestamp":
            ts = bad["event_ts"]
            bad["event_ts"] = rng.choice((ts[:19].replace("T", " "), ts[:19], ts[:10], "yesterday 3pm"))
        elif kind == "unsupported_schema_version":
            bad["schema_version"] = rng.choice((2, 0, 99))
        elif kind == "invalid_type":
            if event_type == "started":
                bad["wait_time_minutes"] = str(bad["wait_time_minutes"])
            elif event_type == "completed":
                bad["duration_minutes"] = str(bad["duration_minutes"])
            else:
                bad["appointment_id"] = int(bad["appointment_id"][4:])
        else:
            raise ValueError(f"unknown event kind {kind}")
        return dumps(bad)

    # feedback ---------------------------------------------------------------------------------------
    def bad_form(self, kind: str, form: dict) -> tuple[str, bytes]:
        """An extra landing file of ``kind`` modelled on ``form``: (file name, bytes)."""
        rng = self.rng
        bad = dict(form)
        bad["feedback_id"] = self.new_feedback_id()
        name = f"feedback-{bad['feedback_id']}.json"
        if kind == "not_json_file":
            pattern, content = rng.choice(NOT_JSON_FILES)
            number = bad["feedback_id"][4:]
            return pattern.format(n=number), content.replace(b"{n}", number.encode())
        if kind == "truncated_file":
            # Cut after the feedback_id, so every truncated file is unique, and before the end.
            text = dumps(bad)
            return name, text[: rng.randint(text.index('"appointment_id"'), len(text) - 3)].encode()
        if kind == "not_an_object":
            return name, (dumps([f"{bad['feedback_id']} provider_rating={bad['provider_rating']}"]) + "\n").encode()
        if kind == "unknown_appointment":
            bad["appointment_id"] = f"APT-9{rng.randint(0, 99_999_999):08d}"
        elif kind == "out_of_range":
            bad[rng.choice(RATING_FIELDS)] = rng.choice((0, 6, 10, -1))
        elif kind == "missing_field":
            field = rng.choice(FORM_REQUIRED)
            if rng.random() < 0.3:
                bad[field] = None
            else:
                bad.pop(field)
        elif kind == "invalid_type":
            if rng.random() < 0.5:
                bad["would_recommend"] = rng.choice(("yes", "no", 1))
            else:
                bad["provider_rating"] = str(bad["provider_rating"])
        elif kind == "invalid_timestamp":
            bad["submitted_at"] = bad["submitted_at"][:19]
        elif kind == "unsupported_schema_version":
            bad["schema_version"] = 2
        else:
            raise ValueError(f"unknown form kind {kind}")
        return name, (dumps(bad) + "\n").encode()


def _retype(payload: dict, event_type: str) -> dict:
    """The common fields of ``payload`` as an event of another type."""
    keep = ("schema_version", "event_id", "event_type", "event_ts", "appointment_id")
    out = {key: payload[key] for key in keep}
    out["event_type"] = event_type
    return out
