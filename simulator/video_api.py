"""The video-visit platform's own log of each call: one call session per started appointment.

The platform (what patient and provider actually join) measures independently what the appointment events
claim: who joined when, from which platform and app version, the network each participant had, how often
they reconnected. `CallSessions` observes the same world the emitter plays (``add(appointment)`` beside
``Emitter.add``) and writes ``<out>/video_api/call_sessions.jsonl``, which `simulator.api_server` serves.

Its own random stream: each appointment draws from a generator seeded by the world's seed and the
appointment id, so nothing here consumes the world's, the emitter's or the dirt's randomness (every other
output stays byte-identical), and the sessions do not depend on the order appointments come in.

Agreement with the events, on clean data: the provider joins 0 to 20 s after the ``started`` event's time
(so the platform's provider join lag equals the event's wait within half a minute), the call ends with the
``completed`` event, reconnects follow the ``connection_drop`` issues, the network follows the connection
quality the patient reported.

Each session has up to three versions, as a real platform revises its records: ``in_progress`` once the
provider joined (no leave times, no measures), ``ended`` seconds after the last participant left (leave
times and reconnects), ``finalized`` minutes to hours later (the network measures). The file keeps every
session that started by ``--as-of`` with all its version times; the server shows each session as of its
own clock. Dirty records (``--dirty-rate``) are extra sessions that break the contract, never a real
session corrupted, each counted in the manifest under the reason a correct connector must give.
"""

from __future__ import annotations

import json
import math
import random
from collections import Counter
from pathlib import Path

from simulator.randomness import random_uuid, reseed
from simulator.seasonality import ClinicClock
from simulator.world import Appointment

FILE_NAME = "call_sessions.jsonl"
SCHEMA_VERSION = 1
STATUSES = ("in_progress", "ended", "finalized")

# Platform of the patient's device (the provider always uses the web app).
PLATFORMS_BY_DEVICE = {
    "Mobile Phone": (("ios", 0.56), ("android", 0.44)),
    "Tablet": (("ios", 0.68), ("android", 0.32)),
    "Laptop": (("web", 1.0),),
    "Desktop": (("web", 1.0),),
}
APP_VERSIONS = {
    "ios": (("6.4.2", 0.55), ("6.3.9", 0.30), ("6.1.0", 0.15)),
    "android": (("6.4.1", 0.50), ("6.3.7", 0.32), ("5.9.4", 0.18)),
    "web": (("web-2026.10", 0.70), ("web-2026.08", 0.30)),
}
# Network by connection quality (1-5, what the completed event reports): packet loss %, jitter ms, bitrate kbps.
PACKET_LOSS_BY_QUALITY = (6.0, 3.5, 1.8, 0.8, 0.3)
JITTER_BY_QUALITY = (70.0, 45.0, 28.0, 16.0, 9.0)
BITRATE_BY_QUALITY = (450, 800, 1300, 1900, 2500)
# Older app versions lose a little more (what a platform's quality view by version should show).
OLD_VERSION_LOSS_FACTOR = 1.25
# Minutes from the call's end to its finalized measures: log-uniform in this range.
FINALIZE_MINUTES = (5.0, 360.0)

# Contract-breaking kinds, by the reason code a correct connector must quarantine them under.
DIRTY_KINDS = ("missing_field", "invalid_type", "invalid_timestamp", "out_of_range", "unknown_enum", "not_an_object")


def resolution(bitrate: int) -> str:
    if bitrate < 600:
        return "360p"
    if bitrate < 1200:
        return "480p"
    if bitrate < 2000:
        return "720p"
    return "1080p"


def _pick(rng: random.Random, choices: tuple[tuple[str, float], ...]) -> str:
    u = rng.random()
    for value, weight in choices:
        u -= weight
        if u < 0:
            return value
    return choices[-1][0]


_FINALIZE_LOGS = tuple(map(math.log, FINALIZE_MINUTES))


def _participant(values: tuple) -> dict:
    role, platform, version, joined_at, left_at, reconnects, (loss, jitter, bitrate, resolution_) = values
    return {
        "role": role,
        "platform": platform,
        "app_version": version,
        "joined_at": joined_at,
        "left_at": left_at,
        "reconnects": reconnects,
        "network": {
            "packet_loss_pct": loss,
            "jitter_ms": jitter,
            "bitrate_kbps": bitrate,
            "resolution": resolution_,
        },
    }


def _record(session: tuple) -> dict:
    """The session's record as the platform serves it (its ``finalized`` version)."""
    session_id, appointment_id, scheduled_start, started_at, ended_at, updated_at, patient, provider = session
    return {
        "schema_version": SCHEMA_VERSION,
        "session_id": session_id,
        "appointment_id": appointment_id,
        "status": "finalized",
        "scheduled_start": scheduled_start,
        "started_at": started_at,
        "ended_at": ended_at,
        "updated_at": updated_at,
        "participants": [_participant(patient), _participant(provider)],
    }


def _participant_json(values: tuple) -> str:
    role, platform, version, joined_at, left_at, reconnects, (loss, jitter, bitrate, resolution_) = values
    return (
        f'{{"role":"{role}","platform":"{platform}","app_version":"{version}","joined_at":"{joined_at}",'
        f'"left_at":"{left_at}","reconnects":{reconnects},"network":{{"packet_loss_pct":{loss!r},'
        f'"jitter_ms":{jitter!r},"bitrate_kbps":{bitrate},"resolution":"{resolution_}"}}}}'
    )


def _line(times: list[int], session: tuple) -> str:
    """The file's line of a clean session: byte for byte ``json.dumps({"times": times, "record":
    _record(session)}, separators=(",", ":"))``, built directly (every string is one of our ids, enums or
    timestamps: nothing to escape; a test re-encodes every line)."""
    session_id, appointment_id, scheduled_start, started_at, ended_at, updated_at, patient, provider = session
    return (
        f'{{"times":[{times[0]},{times[1]},{times[2]}],"record":{{"schema_version":{SCHEMA_VERSION},'
        f'"session_id":"{session_id}","appointment_id":"{appointment_id}","status":"finalized",'
        f'"scheduled_start":"{scheduled_start}","started_at":"{started_at}","ended_at":"{ended_at}",'
        f'"updated_at":"{updated_at}","participants":[{_participant_json(patient)},{_participant_json(provider)}]}}}}\n'
    )


def visit_of(appt: Appointment) -> tuple | None:
    """What the platform sees of an appointment, as ``CallSessions.add_visit``'s arguments: None if it had no
    call (no started or no completed event)."""
    if appt.device is None:
        return None  # no visit, no call
    started = completed = None
    drops = 0
    for event in appt.events:
        kind = event.event_type
        if kind == "started":
            started = event.ts
        elif kind == "completed":
            completed = event.ts
        elif kind == "technical_issue" and event.fields["technical_issue_type"] == "connection_drop":
            drops += 1
    if started is None or completed is None:
        return None
    return appt.appointment_id, appt.scheduled_for, appt.device, appt.quality, drops, started, completed


class CallSessions:
    """The platform's sessions of the world's started appointments, as they arrive by ``as_of``."""

    def __init__(self, seed: int, as_of: int, dirty_rate: float, clock: ClinicClock, path: Path | None):
        self.seed, self.as_of, self.dirty_rate, self.clock = seed, as_of, dirty_rate, clock
        self.path = path
        self._tmp = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._tmp = open(path.with_suffix(".tmp"), "w", encoding="utf-8", newline="\n")  # noqa: SIM115
            header = {"kind": "header", "schema_version": SCHEMA_VERSION, "seed": seed, "as_of": clock.iso(as_of)}
            self._tmp.write(json.dumps(header, separators=(",", ":")) + "\n")
        self.sessions = 0
        self.by_status: Counter[str] = Counter()
        self.versions = 0
        self.rejected: Counter[str] = Counter()
        self._rng = random.Random()  # noqa: S311 - simulation; reseeded for every appointment
        self._key_prefix = f"video-api:{seed}:".encode()

    def rng_for(self, appointment_id: str) -> random.Random:
        """The appointment's own generator: the very state ``random.Random(f"video-api:{seed}:{id}")`` has
        (one generator reseeded, ``randomness.reseed``)."""
        return reseed(self._rng, self._key_prefix + appointment_id.encode())

    def add(self, appt: Appointment) -> None:
        visit = visit_of(appt)
        if visit is not None:
            self.add_visit(*visit)

    def add_visit(
        self,
        appointment_id: str,
        scheduled_for: int,
        device: str,
        quality: int,
        drops: int,
        started: int,
        ended: int,
    ) -> None:
        """The session of a visit (``visit_of``): the platform's record of the call, if it started by as_of."""
        if started > self.as_of:
            return  # not yet started by as_of: the platform has no session
        rng = self.rng_for(appointment_id)
        times, session = self._session(rng, appointment_id, scheduled_for, device, quality, drops, started, ended)
        status = (times[0] <= self.as_of) + (times[1] <= self.as_of) + (times[2] <= self.as_of) - 1
        if status < 0:
            return  # the provider joined just before as_of: the platform has not written the session yet
        self.sessions += 1
        self.by_status[STATUSES[status]] += 1
        self.versions += status + 1
        if self._tmp is not None:
            self._tmp.write(_line(times, session))
        if self.dirty_rate > 0 and rng.random() < self.dirty_rate:
            kind = DIRTY_KINDS[int(rng.random() * len(DIRTY_KINDS))]
            dirty_time = times[1] + 1 + int(rng.random() * 60)
            if dirty_time <= self.as_of:
                self.rejected[kind] += 1
                self._write([dirty_time], self._dirty(rng, kind, _record(session), dirty_time), dirty=kind)

    def _session(
        self,
        rng: random.Random,
        appointment_id: str,
        scheduled_for: int,
        device: str,
        quality: int,
        drops: int,
        started: int,
        ended: int,
    ) -> tuple[list[int], tuple]:
        """The session's version times and its values, as ``_record`` lays them out (no dict: only a dirty
        copy needs one)."""
        iso = self.clock.iso
        random_ = rng.random
        provider_joined = started + int(random_() * 21)
        patient_joined = min(scheduled_for + int(rng.uniform(-240, 90)), provider_joined - 5)
        patient_left = ended + int(random_() * 11)
        provider_left = ended + int(random_() * 31)
        last_left = max(patient_left, provider_left)
        finalized = last_left + int(math.exp(rng.uniform(*_FINALIZE_LOGS)) * 60)
        times = [provider_joined + 1 + int(random_() * 5), last_left + 2 + int(random_() * 59), finalized]
        platform = _pick(rng, PLATFORMS_BY_DEVICE[device])
        version = _pick(rng, APP_VERSIONS[platform])
        patient_joined_at = iso(patient_joined)
        last_left_at = iso(last_left)
        patient = (
            "patient",
            platform,
            version,
            patient_joined_at,
            iso(patient_left),
            drops + (1 if random_() < 0.02 else 0),
            self._network(rng, quality, version != APP_VERSIONS[platform][0][0]),
        )
        provider = (
            "provider",
            "web",
            _pick(rng, APP_VERSIONS["web"]),
            iso(provider_joined),
            iso(provider_left),
            1 if random_() < 0.03 else 0,
            self._network(rng, 5, False),
        )
        session = (
            random_uuid(rng),
            appointment_id,
            iso(scheduled_for),
            patient_joined_at,
            last_left_at,
            iso(finalized),
            patient,
            provider,
        )
        return times, session

    @staticmethod
    def _network(rng: random.Random, quality: int, old_version: bool) -> tuple:
        """(packet loss %, jitter ms, bitrate kbps, resolution)."""
        q = quality - 1
        loss = PACKET_LOSS_BY_QUALITY[q] * rng.lognormvariate(0, 0.4) * (OLD_VERSION_LOSS_FACTOR if old_version else 1)
        bitrate = int(BITRATE_BY_QUALITY[q] * rng.uniform(0.8, 1.2))
        return (
            round(min(loss, 60.0), 2),
            round(JITTER_BY_QUALITY[q] * rng.lognormvariate(0, 0.3), 1),
            bitrate,
            resolution(bitrate),
        )

    def _dirty(self, rng: random.Random, kind: str, session: dict, at: int) -> object:
        """A record that breaks the contract in one way (``kind``), with a session id of its own."""
        record = json.loads(json.dumps(session))
        record["session_id"] = random_uuid(rng)
        record["updated_at"] = self.clock.iso(at)
        patient = record["participants"][0]
        if kind == "missing_field":
            del record["appointment_id"]
        elif kind == "invalid_type":
            patient["network"]["packet_loss_pct"] = f"{patient['network']['packet_loss_pct']}%"
        elif kind == "invalid_timestamp":
            record["updated_at"] = record["updated_at"].rstrip("Z")
        elif kind == "out_of_range":
            patient["network"]["packet_loss_pct"] = 140.0
        elif kind == "unknown_enum":
            patient["platform"] = "symbian"
        else:  # not_an_object
            return f"session {record['session_id']}"
        return record

    def _write(self, times: list[int], record: object, dirty: str | None = None) -> None:
        if self._tmp is None:
            return
        line = {"times": times, "record": record}
        if dirty:
            line["dirty"] = dirty
        self._tmp.write(json.dumps(line, separators=(",", ":")) + "\n")

    def close(self) -> None:
        """Put the file in place at once (the server may be reading the previous one)."""
        if self._tmp is not None:
            self._tmp.close()
            self._tmp = None
            self.path.with_suffix(".tmp").replace(self.path)

    def manifest_block(self) -> dict:
        """What a correct connector ends with after loading at ``as_of`` (however often it polled)."""
        return {
            "sessions": self.sessions,
            "by_status": {status: self.by_status[status] for status in STATUSES},
            "versions_by_as_of": self.versions,
            "records_at_as_of": self.sessions + sum(self.rejected.values()),
            "rejected": dict(sorted(self.rejected.items())),
        }
