"""What a run emits, by arrival time, and the ground truth of it.

Events go to ``<out>/events/<arrival UTC date>.jsonl``: one message per line, the exact bytes to send.
Replay order is file name, then line. Within a file, appointments interleave, but the lines of one
appointment are in its arrival order, so a partition keyed by appointment sees what the system saw.

Feedback forms go to ``<landing>/YYYY/MM/DD/`` (UTC date of arrival), one file per form, written to a
temporary name and renamed so a loader scanning the folder never reads half a file.
"""

from __future__ import annotations

import os
import queue
import threading
from collections import Counter, defaultdict
from json.encoder import encode_basestring_ascii as encode_string
from pathlib import Path

from simulator.dirty import EVENT_KINDS, FORM_KINDS, Dirt, dumps
from simulator.seasonality import ClinicClock
from simulator.world import TIMESTAMP_FIELDS, Appointment, Event

TERMINAL = ("completed", "cancelled", "no_show", "rescheduled")
STATUS_ORDER = ("completed", "cancelled", "rescheduled", "no_show", "in_progress", "scheduled")
# Event lines are queued per arrival day and written when this many are queued (a call per day instead of one
# per line).
WRITE_BATCH = 2000
# Feedback files go to the writer thread this many at a time.
FILE_BATCH = 50


def form_bytes(form: dict) -> bytes:
    """A form file as the patient portal writes it: one JSON object, UTF-8, final newline."""
    return (dumps(form) + "\n").encode()


class Truth:
    """Counters of everything emitted; memory is bounded by days, devices and specialties."""

    def __init__(self) -> None:
        self.by_status: Counter[str] = Counter()
        self.by_device: Counter[str] = Counter()
        self.by_day: Counter[str] = Counter()
        self.wait_sum: defaultdict[str, float] = defaultdict(float)
        self.with_issues: Counter[str] = Counter()
        self.rating_sum: defaultdict[str, list[float]] = defaultdict(lambda: [0, 0, 0])
        self.messages = 0
        self.valid = 0
        self.duplicates = 0
        self.out_of_order = 0
        self.non_utc = 0
        self.late = 0
        self.not_yet_arrived = 0
        self.rejected_events: Counter[str] = Counter()
        self.rejected_forms: Counter[str] = Counter()
        self.rejected_files: Counter[str] = Counter()
        self.files = 0
        self.forms_valid = 0
        self.forms_unknown = 0
        self.forms_resubmitted = 0
        self.forms_not_yet_arrived = 0

    def appointments_block(self) -> dict:
        return {
            "total": sum(self.by_status.values()),
            "by_final_status": {s: self.by_status[s] for s in STATUS_ORDER if self.by_status[s]},
            "by_device": dict(sorted(self.by_device.items())),
            "by_day": dict(sorted(self.by_day.items())),
        }

    def key_insights(self) -> dict:
        final = {s: self.by_status[s] for s in TERMINAL}
        total = sum(final.values()) or 1
        return {
            "appointment_status_share_pct": {s: round(100 * n / total, 2) for s, n in final.items()},
            "avg_wait_time_minutes_by_device": {
                d: round(self.wait_sum[d] / n, 2) for d, n in sorted(self.by_device.items()) if n
            },
            "ratings_by_specialty": {
                s: {
                    "provider_rating": round(v[0] / v[2], 2),
                    "overall_satisfaction": round(v[1] / v[2], 2),
                    "forms": v[2],
                }
                for s, v in sorted(self.rating_sum.items())
                if v[2]
            },
            "technical_issues_share_pct_by_device": {
                d: round(100 * self.with_issues[d] / n, 2) for d, n in sorted(self.by_device.items()) if n
            },
        }


class Emitter:
    def __init__(
        self,
        *,
        events_dir: Path | None,
        landing_dir: Path | None,
        as_of: int,
        clock: ClinicClock,
        dirt: Dirt | None,
        file_thread: bool = False,
    ) -> None:
        self.events_dir = events_dir
        self.landing_dir = landing_dir
        self.as_of = as_of
        self.clock = clock
        self.dirt = dirt
        self.truth = Truth()
        self._files: dict[int, object] = {}
        self._pending: dict[int, list[str]] = {}
        self._pending_lines = 0
        self._folder_sizes: dict[str, dict[str, int]] = {}
        if events_dir is not None:
            events_dir.mkdir(parents=True, exist_ok=True)
            # The folder is ours: drop files of an earlier run so a replay sees only this one.
            for stale in events_dir.glob("*.jsonl"):
                stale.unlink()
        self._file_queue: queue.Queue | None = None
        self._file_error: BaseException | None = None
        if landing_dir is not None:
            self._tmp = landing_dir / ".generate-tmp"
            self._tmp.mkdir(parents=True, exist_ok=True)
            if file_thread:
                # Creating a small file is a handful of system calls (most of its cost, and the GIL is free
                # meanwhile): a writer thread overlaps them with rendering. Bounded, so memory stays flat.
                self._file_queue = queue.Queue(maxsize=100)
                self._file_batch: list[tuple[int, str, bytes]] = []
                self._file_writer = threading.Thread(target=self._write_files, name="feedback-files", daemon=True)
                self._file_writer.start()

    # events ---------------------------------------------------------------------------------------
    def _render(self, appt: Appointment, event: Event, offset: int) -> str:
        """The event's JSON line, byte for byte what ``dumps`` gives for its payload, built directly.

        Every string value comes from the generator's own ids, enums and ASCII pools (no quote,
        backslash or control character), so no escaping is needed; a test re-encodes every line.
        """
        if not offset:
            return self._render_utc(appt.appointment_id, event)
        iso = self.clock.iso
        parts = [
            f'{{"schema_version":1,"event_id":"{event.event_id}","event_type":"{event.event_type}",'
            f'"event_ts":"{iso(event.ts, offset)}","appointment_id":"{appt.appointment_id}"'
        ]
        for key, value in event.fields.items():
            if key in TIMESTAMP_FIELDS:
                parts.append(f',"{key}":"{iso(value, offset)}"')
            elif value.__class__ is str:
                parts.append(f',"{key}":"{value}"')
            else:
                parts.append(f',"{key}":{value!r}')
        parts.append("}")
        return "".join(parts)

    def _render_utc(self, appointment_id: str, event: Event) -> str:
        """``_render`` of the common case, timestamps in UTC."""
        iso = self.clock.iso
        line = (
            f'{{"schema_version":1,"event_id":"{event.event_id}","event_type":"{event.event_type}",'
            f'"event_ts":"{iso(event.ts)}","appointment_id":"{appointment_id}"'
        )
        for key, value in event.fields.items():
            if key in TIMESTAMP_FIELDS:
                line += f',"{key}":"{iso(value)}"'
            elif value.__class__ is str:
                line += f',"{key}":"{value}"'
            else:
                line += f',"{key}":{value!r}'
        return line + "}"

    def _payload(self, appt: Appointment, event: Event, offset: int) -> dict:
        iso = self.clock.iso
        payload = {
            "schema_version": 1,
            "event_id": event.event_id,
            "event_type": event.event_type,
            "event_ts": iso(event.ts, offset),
            "appointment_id": appt.appointment_id,
        }
        for key, value in event.fields.items():
            payload[key] = iso(value, offset) if key in TIMESTAMP_FIELDS else value
        return payload

    def _write_line(self, arrival: int, line: str) -> None:
        """Queue a line for the file of its arrival day; every WRITE_BATCH lines, each day's queue is written
        in one call (memory holds WRITE_BATCH lines, whatever the number of days)."""
        day = arrival // 86400
        pending = self._pending.get(day)
        if pending is None:
            pending = self._pending[day] = []
        pending.append(line)
        self._pending_lines += 1
        if self._pending_lines >= WRITE_BATCH:
            self._flush()

    def _flush(self) -> None:
        for day in sorted(self._pending):
            handle = self._files.get(day)
            if handle is None:
                name = f"{self.clock.utc_date(day * 86400)}.jsonl"
                handle = open(self.events_dir / name, "w", encoding="utf-8", newline="\n")  # noqa: SIM115
                self._files[day] = handle
            handle.write("".join(self._pending[day]))
        self._pending.clear()
        self._pending_lines = 0

    def add(self, appt: Appointment) -> None:
        dirt = self.dirt
        events = appt.events
        if dirt is None:
            self._add_in_order(appt)
            return
        # The dirty draws, in the order they always came: a kind per event, then whether one is held back.
        kinds = dirt.event_kinds(len(events))
        held_back = len(events) >= 3 and dirt.out_of_order()
        if kinds is None and not held_back:
            self._add_in_order(appt)
            return
        messages = self._dirty_messages(appt, dirt, kinds or [None] * len(events), held_back)
        self._emit_messages(messages)
        self._count_arrived(appt, messages)

    def _add_in_order(self, appt: Appointment) -> None:
        """An appointment without dirty extras: its messages are its events, delivered in list order (the
        world makes their arrivals non-decreasing, ``world._arrive_in_order``), so what has arrived by as-of
        is a prefix of the list. Counts exactly what ``_emit_messages`` and ``_count_arrived`` count."""
        as_of = self.as_of
        truth = self.truth
        render = self._render_utc
        write = self._write_line if self.events_dir is not None else None
        appointment_id = appt.appointment_id
        arrived = 0
        late = 0
        out_of_order = 0
        latest = None
        types = set()
        for event in appt.events:
            if event.arrival > as_of:
                if as_of >= event.ts:
                    truth.not_yet_arrived += 1
                continue
            if write:
                write(event.arrival, render(appointment_id, event) + "\n")
            arrived += 1
            types.add(event.event_type)
            ts = event.ts
            if event.arrival - ts > 3600:
                late += 1
            if latest is not None and latest > ts:
                out_of_order += 1
            elif latest is None or ts > latest:
                latest = ts
        truth.messages += arrived
        truth.valid += arrived
        if not arrived or appt.events[0].event_type != "scheduled":
            # Not known yet (the scheduled event always arrives first), so neither is its form; the
            # form's dirty draws still happen, as the world must not depend on --as-of.
            if appt.form is not None:
                self._add_form(appt, known=False)
            return
        truth.late += late
        truth.out_of_order += out_of_order
        self._count_appointment(appt, types)
        if appt.form is not None:
            self._add_form(appt, known=True)

    def _count_arrived(self, appt: Appointment, messages: list[tuple[int, int, str, str | None]]) -> None:
        as_of = self.as_of
        events = appt.events
        arrived = [e for e in events if e.arrival <= as_of]
        for event in events:
            if event.arrival > as_of >= event.ts:
                self.truth.not_yet_arrived += 1
        if not arrived or arrived[0].event_type != "scheduled":
            # Not known yet (the scheduled event always arrives first), so neither is its form; the
            # form's dirty draws still happen, as the world must not depend on --as-of.
            if appt.form is not None:
                self._add_form(appt, known=False)
            return
        self._count_late_and_out_of_order(events, messages)
        self._count_appointment(appt, {e.event_type for e in arrived})
        if appt.form is not None:
            self._add_form(appt, known=True)

    def _dirty_messages(
        self, appt: Appointment, dirt: Dirt, kinds: list[str | None], held_back: bool
    ) -> list[tuple[int, int, str, str | None]]:
        """(arrival, order, line, kind) of every message of the appointment, in delivery order; kind None
        is a valid first delivery, any other kind a dirty extra."""
        events = appt.events
        if held_back:
            # Hold back a middle event (started or a technical issue) until after the next one arrived.
            i = 1 + dirt.rng.randrange(len(events) - 2)
            events[i].arrival = events[i + 1].arrival + dirt.rng.randint(5, 6 * 3600)
        messages = []
        for i, (event, kind) in enumerate(zip(events, kinds, strict=True)):
            offset = dirt.offset() if kind == "utc_offset" else 0
            line = self._render(appt, event, offset)
            messages.append((event.arrival, i, line, None))
            if kind is None or kind == "utc_offset":
                if kind:
                    self.truth.non_utc += event.arrival <= self.as_of
                continue
            arrival = event.arrival + dirt.rng.randint(1, 7200 if kind == "duplicate" else 600)
            extra = line if kind == "duplicate" else dirt.bad_event(kind, self._payload(appt, event, offset))
            messages.append((arrival, 100 + i, extra, kind))
        messages.sort()
        return messages

    def _emit_messages(self, messages: list[tuple[int, int, str, str | None]]) -> None:
        """Write the messages that arrived by as-of, counting valid, duplicate and rejected ones."""
        truth = self.truth
        write = self._write_line if self.events_dir is not None else None
        for arrival, _, line, kind in messages:
            if arrival > self.as_of:
                continue
            truth.messages += 1
            if write:
                write(arrival, line + "\n")
            if kind is None:
                truth.valid += 1
            elif kind == "duplicate":
                truth.duplicates += 1
            else:
                truth.rejected_events[EVENT_KINDS[kind]] += 1

    def _count_late_and_out_of_order(
        self, events: list[Event], messages: list[tuple[int, int, str, str | None]]
    ) -> None:
        """Late: arrived over an hour after it happened. Out of order: delivered after an event of the same
        appointment that happened later."""
        truth = self.truth
        latest = None
        for _, i, _, kind in messages:
            if kind is None:
                event = events[i]
                if event.arrival > self.as_of:
                    break
                if event.arrival - event.ts > 3600:
                    truth.late += 1
                if latest is not None and latest > event.ts:
                    truth.out_of_order += 1
                elif latest is None or event.ts > latest:
                    latest = event.ts

    def _count_appointment(self, appt: Appointment, types: set[str]) -> None:
        """The appointment's status as of as-of (from the event types arrived), its day and its device."""
        truth = self.truth
        started = "started" in types
        for status in TERMINAL:
            if status in types:
                break
        else:
            status = "in_progress" if started else "scheduled"
        truth.by_status[status] += 1
        truth.by_day[self.clock.utc_date(appt.scheduled_for)] += 1
        if started:
            truth.by_device[appt.device] += 1
            truth.wait_sum[appt.device] += appt.wait
            if "technical_issue" in types:
                truth.with_issues[appt.device] += 1

    # feedback -------------------------------------------------------------------------------------
    def _write_file(self, arrival: int, name: str, content: bytes) -> None:
        self.truth.files += 1
        if self.landing_dir is None:
            return
        if self._file_queue is not None:
            if self._file_error is not None:
                raise RuntimeError(f"writing feedback files failed: {self._file_error}") from self._file_error
            # Handed over in batches: a queue operation per file costs the two threads more than the file.
            self._file_batch.append((arrival, name, content))
            if len(self._file_batch) >= FILE_BATCH:
                self._file_queue.put(self._file_batch)
                self._file_batch = []
            return
        self._store_file(arrival, name, content)

    def _write_files(self) -> None:
        """The writer thread: store queued batches of files until the None that close() sends; keep the first
        error."""
        while True:
            batch = self._file_queue.get()
            if batch is None:
                return
            for item in batch:
                if self._file_error is None:
                    try:
                        self._store_file(*item)
                    except BaseException as exc:  # noqa: BLE001 - handed to the main thread, raised there
                        self._file_error = exc

    def _store_file(self, arrival: int, name: str, content: bytes) -> None:
        """Write one file by a temporary name and rename it into place; a handful of system calls, as file
        creation is most of the generator's cost: each day folder is listed once (what an earlier run left
        there, by size) instead of a stat per file, and the file is written unbuffered."""
        day = self.clock.utc_date(arrival)
        folder = os.path.join(self.landing_dir, day[:4], day[5:7], day[8:10])
        sizes = self._folder_sizes.get(folder)
        if sizes is None:
            os.makedirs(folder, exist_ok=True)
            with os.scandir(folder) as entries:
                sizes = {entry.name: entry.stat().st_size for entry in entries if entry.is_file()}
            self._folder_sizes[folder] = sizes
        target = os.path.join(folder, name)
        # A re-run (e.g. a later --as-of) leaves identical files untouched, mtime included.
        if sizes.get(name) == len(content):
            with open(target, "rb") as existing:
                if existing.read() == content:
                    return
        tmp = os.path.join(self._tmp, name)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        try:
            view = memoryview(content)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        os.replace(tmp, target)

    def _form_body(self, appt: Appointment) -> dict:
        form = appt.form
        return {
            "schema_version": 1,
            "feedback_id": form.feedback_id,
            "appointment_id": appt.appointment_id,
            "submitted_at": self.clock.iso(form.submitted_at),
            **form.ratings,
            "would_recommend": form.would_recommend,
            "comments": form.comments,
        }

    def _form_file(self, appt: Appointment) -> bytes:
        """``form_bytes(self._form_body(appt))``, built directly: the ids and the timestamp need no escaping,
        the ratings are integers, the comment is encoded as json encodes a string."""
        form = appt.form
        ratings = "".join([f',"{name}":{value}' for name, value in form.ratings.items()])
        comments = "null" if form.comments is None else encode_string(form.comments)
        return (
            f'{{"schema_version":1,"feedback_id":"{form.feedback_id}","appointment_id":"{appt.appointment_id}",'
            f'"submitted_at":"{self.clock.iso(form.submitted_at)}"{ratings},'
            f'"would_recommend":{"true" if form.would_recommend else "false"},"comments":{comments}}}\n'
        ).encode()

    def _add_form(self, appt: Appointment, *, known: bool) -> None:
        form = appt.form
        truth = self.truth
        # The dirty draw happens whether or not the form has arrived: the world must not depend on as-of.
        kind = self.dirt.form_kind() if self.dirt else None
        if form.arrival <= self.as_of and known:
            self._write_file(form.arrival, f"feedback-{form.feedback_id}.json", self._form_file(appt))
            truth.forms_valid += 1
            totals = truth.rating_sum[appt.version.specialty]
            totals[0] += form.ratings["provider_rating"]
            totals[1] += form.ratings["overall_satisfaction"]
            totals[2] += 1
        else:
            truth.forms_not_yet_arrived += 1
        if kind is None:
            return
        body = self._form_body(appt)
        dirt = self.dirt
        arrival = form.arrival + dirt.rng.randint(60, 86400)
        if kind == "resubmitted":
            name, content = f"feedback-{form.feedback_id}-resubmitted.json", ("[" + dumps(body) + "]\n").encode()
        else:
            name, content = dirt.bad_form(kind, body)
        if arrival > self.as_of:
            return
        self._write_file(arrival, name, content)
        if kind == "resubmitted":
            truth.forms_resubmitted += 1
        elif kind == "unknown_appointment":
            truth.forms_valid += 1
            truth.forms_unknown += 1
        elif kind in ("truncated_file", "not_json_file"):
            truth.rejected_files[FORM_KINDS[kind]] += 1
        else:
            truth.rejected_forms[FORM_KINDS[kind]] += 1

    def close(self) -> None:
        if self.events_dir is not None:
            self._flush()
        for handle in self._files.values():
            handle.close()
        self._files.clear()
        if self._file_queue is not None:
            if self._file_batch:
                self._file_queue.put(self._file_batch)
                self._file_batch = []
            self._file_queue.put(None)
            self._file_writer.join()
            self._file_queue = None
            if self._file_error is not None:
                raise RuntimeError(f"writing feedback files failed: {self._file_error}") from self._file_error
        if self.landing_dir is not None and self._tmp.exists():
            self._tmp.rmdir()
