"""The simulated clinic: appointments with their lifecycle events and feedback forms, as a stream.

The world depends only on seed, scale and period (never on --as-of or the dirty-data settings), so
every run with the same three sees the same appointments. Each appointment carries every event with
its event time and its arrival time; what a run emits is decided later, by arrival.

Days are walked in order. A day's planned volume is filled first by appointments rebooked into it
(a ``rescheduled`` event names a new appointment on a later day), then by new bookings. Memory holds
the providers and the rebookings still ahead (at most two weeks of them), never the appointments.
"""

from __future__ import annotations

import random
from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta

from simulator import profiles
from simulator.randomness import random_uuid, seeded
from simulator.reference import Provider, ProviderBook, ProviderVersion, weighted_picker
from simulator.seasonality import ClinicClock, allocate, day_weights

TIMESTAMP_FIELDS = frozenset({"scheduled_for", "new_scheduled_for"})
LATE_TERMINAL_SHARE = profiles.LATE_TERMINAL_SHARE
LATE_LO, LATE_HI = profiles.LATE_DELAY_HOURS


class Event:
    """One lifecycle event: epoch seconds of when it happened and when it reached the system."""

    __slots__ = ("arrival", "event_id", "event_type", "fields", "ts")

    def __init__(self, ts: int, arrival: int, event_type: str, event_id: str, fields: dict) -> None:
        self.ts = ts
        self.arrival = arrival
        self.event_type = event_type
        self.event_id = event_id
        self.fields = fields


@dataclass
class Form:
    feedback_id: str
    submitted_at: int
    arrival: int
    ratings: dict
    would_recommend: bool
    comments: str | None


@dataclass
class Appointment:
    appointment_id: str
    patient_index: int
    provider: Provider
    version: ProviderVersion  # the provider's version valid at scheduled_for
    appointment_type: str
    scheduled_for: int
    booked_at: int
    status: str
    rescheduled_from: str | None = None
    device: str | None = None
    wait: float | None = None
    duration: float | None = None
    quality: int | None = None
    issues: int = 0
    events: list[Event] = field(default_factory=list)
    form: Form | None = None


@dataclass
class Rebooking:
    appointment_id: str
    patient_index: int
    provider: Provider | None  # None: a colleague of the same specialty takes over
    specialty: str
    appointment_type: str
    scheduled_for: int
    booked_at: int
    rescheduled_from: str


def _arrive_in_order(events: list[Event]) -> None:
    """In the clean world one appointment's events arrive in the order they happened (jitter of a few
    seconds must not reorder close events); out-of-order delivery is a dirty kind."""
    previous = 0
    for event in events:
        if event.arrival < previous:
            event.arrival = previous
        previous = event.arrival


class Blocks:
    """Shuffled blocks of strata: every block of ``size`` draws covers each stratum once, in random order.

    Used per device for waits and technical issues, so the device means the design reports are met
    at 50k appointments by construction, not by luck, while single draws stay random.
    """

    def __init__(self, rng: random.Random, size: int) -> None:
        self.rng = rng
        self.size = size
        self.queue: list[int] = []

    def next(self) -> int:
        if not self.queue:
            self.queue = list(range(self.size))
            self.rng.shuffle(self.queue)
        return self.queue.pop()


class IssueBlocks:
    """Exactly round(p * size) appointments with issues per block of ``size``, carrying the rounding."""

    def __init__(self, rng: random.Random, share: float, size: int = 500) -> None:
        self.rng = rng
        self.share = share
        self.size = size
        self.block = 0
        self.queue: list[bool] = []

    def next(self) -> bool:
        if not self.queue:
            b = self.block
            hits = round(self.share * self.size * (b + 1)) - round(self.share * self.size * b)
            self.queue = [True] * hits + [False] * (self.size - hits)
            self.rng.shuffle(self.queue)
            self.block += 1
        return self.queue.pop()


def _gamma_quantiles(shape: float, n: int = 4000) -> list[float]:
    """Quantile table of a unit-mean gamma, from a fixed private sample (stable across runs)."""
    rng = seeded(20260101)
    draws = sorted(rng.gammavariate(shape, 1.0) for _ in range(n * 5))
    table = [draws[i * 5 + 2] for i in range(n)]
    mean = sum(table) / n
    return [x / mean for x in table]


class World:
    def __init__(
        self,
        seed: int,
        scale: int,
        start: date,
        end: date,
        providers: list[Provider],
        patient_count: int,
        canary_patients: list[int],
        anomalies: list[tuple[str, date, float]] | None = None,
    ) -> None:
        self.seed = seed
        self.scale = scale
        self.start = start
        self.end = end
        self.providers = providers
        self.book = ProviderBook(providers)
        self.patient_count = patient_count
        self.canary_patients = list(canary_patients)
        # Injected anomalies (monitor scenarios): day -> factor, by kind.
        self.no_show_spike = {day: f for kind, day, f in anomalies or [] if kind == "no_show_spike"}
        self.low_volume = {day: f for kind, day, f in anomalies or [] if kind == "low_volume"}
        self.clock = ClinicClock()
        self.rng = seeded(seed)
        rng = self.rng
        self.hour_pick = weighted_picker(profiles.HOUR_WEIGHTS.items())
        self.device_pick = weighted_picker(zip(profiles.DEVICES, profiles.DEVICE_WEIGHTS, strict=True))
        self.type_pick = {
            s: weighted_picker(zip(profiles.APPOINTMENT_TYPES, mix, strict=True))
            for s, mix in profiles.TYPE_MIX_BY_SPECIALTY.items()
        }
        self.lead_pick = {
            t: weighted_picker(((lo, hi), w) for lo, hi, w in b) for t, b in profiles.LEAD_DAYS_BY_TYPE.items()
        }
        self.issue_type_pick = {d: weighted_picker(m) for d, m in profiles.TECH_ISSUE_TYPES_BY_DEVICE.items()}
        self.issue_count_pick = weighted_picker(profiles.ISSUE_COUNT_MIX)
        self.quality_with = weighted_picker(profiles.QUALITY_WITH_ISSUES)
        self.quality_without = weighted_picker(profiles.QUALITY_WITHOUT_ISSUES)
        self.cancelled_by_pick = weighted_picker(profiles.CANCELLED_BY)
        self.feedback_delay_pick = weighted_picker(((lo, hi), w) for lo, hi, w in profiles.FEEDBACK_DELAY_HOURS)
        hour_mean = sum(profiles.WAIT_HOUR_FACTOR.get(h, 1.0) * w for h, w in profiles.HOUR_WEIGHTS.items()) / sum(
            profiles.HOUR_WEIGHTS.values()
        )
        self.wait_hour_factor = {h: profiles.WAIT_HOUR_FACTOR.get(h, 1.0) / hour_mean for h in profiles.HOUR_WEIGHTS}
        self.wait_table = _gamma_quantiles(profiles.WAIT_GAMMA_SHAPE)
        self.wait_blocks = {d: Blocks(rng, 500) for d in profiles.DEVICES}
        self.issue_blocks = {d: IssueBlocks(rng, profiles.TECH_ISSUE_SHARE_BY_DEVICE[d]) for d in profiles.DEVICES}
        self.issue_share_mean = sum(
            profiles.TECH_ISSUE_SHARE_BY_DEVICE[d] * w
            for d, w in zip(profiles.DEVICES, profiles.DEVICE_WEIGHTS, strict=True)
        )
        self.wait_mean = sum(
            profiles.WAIT_MEAN_BY_DEVICE[d] * w for d, w in zip(profiles.DEVICES, profiles.DEVICE_WEIGHTS, strict=True)
        )
        self.next_appointment = 1
        self.next_feedback = 1
        # Running mean of the no-show lead factor: keeps the no-show share on target for any lead mix.
        self.lead_factor_sum = 0.0
        self.lead_factor_n = 0
        self.pending: dict[int, list[Rebooking]] = {}

    # ids -----------------------------------------------------------------------------------------
    def _appointment_id(self) -> str:
        number = self.next_appointment
        self.next_appointment += 1
        return f"APT-{number:08d}"

    # the stream ----------------------------------------------------------------------------------
    def appointments(self) -> Iterator[Appointment]:
        days = day_weights(self.start, self.end)
        plan = allocate(self.scale, [w for _, w in days])
        forced = list(self.canary_patients)
        for index, ((day, _), planned) in enumerate(zip(days, plan, strict=True)):
            rebooked = self.pending.pop(index, [])
            for rebooking in rebooked:
                yield self._build(rebooking=rebooking, day_index=index)
            if day in self.low_volume:
                planned = round(planned * self.low_volume[day])
            for _ in range(max(planned - len(rebooked), 0)):
                patient = forced.pop() if forced else None
                yield self._build(day=day, day_index=index, patient=patient)
        # Rebookings that fall after the period are booked, but the simulation ends with the period: what
        # would happen after it (their visits, their own reschedules) is not played out, so a later
        # --as-of brings late arrivals of the period, never a thin tail of days the clinic did not run.
        # The draws still happen, so the period's own world is the same either way.
        horizon = (self.end - date(1970, 1, 1)).days * 86400 + 86400
        index = len(days)
        while self.pending:
            for rebooking in self.pending.pop(index, []):
                appointment = self._build(rebooking=rebooking, day_index=index)
                appointment.events = [event for event in appointment.events if event.ts < horizon]
                appointment.form = None
                yield appointment
            index += 1

    def _patient(self) -> int:
        # A skewed choice: chronic patients book often, most people rarely.
        return min(int(self.patient_count * self.rng.random() ** 1.6), self.patient_count - 1)

    def _build(
        self,
        *,
        day_index: int,
        day: date | None = None,
        rebooking: Rebooking | None = None,
        patient: int | None = None,
    ) -> Appointment:
        # The draws in order: the slot, the status, the scheduled event, the terminal event (and what comes
        # with it), the terminal event's arrival. The hot path is written out: it runs for every appointment.
        slot = self._new_slot(day, patient) if rebooking is None else self._rebooked_slot(rebooking, day_index)
        (
            appointment_id,
            patient_index,
            provider,
            version,
            appointment_type,
            scheduled_for,
            booked_at,
            lead_days,
            hour,
            rescheduled_from,
        ) = slot
        rng = self.rng
        appt = Appointment(
            appointment_id,
            patient_index,
            provider,
            version,
            appointment_type,
            scheduled_for,
            booked_at,
            self._draw_status(lead_days, day_index),
            rescheduled_from,
        )
        fields = {
            "patient_id": f"PAT-{patient_index + 1:07d}",
            "provider_id": provider.provider_id,
            "appointment_type": appointment_type,
            "scheduled_for": scheduled_for,
        }
        if rescheduled_from is not None:
            fields["rescheduled_from_appointment_id"] = rescheduled_from
        events = appt.events
        events.append(Event(booked_at, booked_at + int(rng.random() * 3), "scheduled", random_uuid(rng), fields))
        terminal = self._terminal_event(appt, hour, day_index)
        # Most terminal events arrive within seconds; a share arrives hours late.
        if rng.random() < LATE_TERMINAL_SHARE:
            terminal.arrival = terminal.ts + int(rng.uniform(LATE_LO, LATE_HI) * 3600)
        else:
            terminal.arrival = terminal.ts + int(rng.random() * 4)
        events.append(terminal)
        _arrive_in_order(events)
        return appt

    def _new_slot(self, day: date, patient: int | None) -> tuple:
        """A new booking on ``day``: hour, provider, type and lead time drawn from the profiles (the fields
        of ``_Slot``, as a tuple)."""
        rng = self.rng
        hour = self.hour_pick(rng.random())
        scheduled_for = self.clock.local_to_epoch(day, hour * 60 + int(rng.random() * 4) * 15)
        provider, version = self.book.choose(rng, scheduled_for)
        appointment_type = self.type_pick[version.specialty](rng.random())
        lo, hi = self.lead_pick[appointment_type](rng.random())
        lead_days = rng.uniform(lo, hi)
        appointment_id = self._appointment_id()
        return (
            appointment_id,
            self._patient() if patient is None else patient,
            provider,
            version,
            appointment_type,
            scheduled_for,
            scheduled_for - int(lead_days * 86400),
            lead_days,
            hour,
            None,
        )

    def _rebooked_slot(self, rebooking: Rebooking, day_index: int) -> tuple:
        """The appointment a reschedule booked; a colleague takes over if its provider is gone by then."""
        scheduled_for = rebooking.scheduled_for
        local_day = self.start + timedelta(days=day_index)
        provider, version = rebooking.provider, None
        if provider is not None:
            version = provider.version_at(scheduled_for)
            if not version.active:
                provider = None
        if provider is None:
            provider, version = self.book.choose(self.rng, scheduled_for, rebooking.specialty)
        return (
            rebooking.appointment_id,
            rebooking.patient_index,
            provider,
            version,
            rebooking.appointment_type,
            scheduled_for,
            rebooking.booked_at,
            (scheduled_for - rebooking.booked_at) / 86400,
            (scheduled_for + self.clock.utc_offset_seconds(local_day)) // 3600 % 24,
            rebooking.rescheduled_from,
        )

    def _draw_status(self, lead_days: float, day_index: int) -> str:
        """The final status; the no-show chance grows with the lead time (kept on target on average)."""
        factor = profiles.NO_SHOW_BASE + profiles.NO_SHOW_SLOPE * lead_days
        self.lead_factor_sum += factor
        self.lead_factor_n += 1
        no_show_p = profiles.NO_SHOW_SHARE * factor / (self.lead_factor_sum / self.lead_factor_n)
        if self.no_show_spike:
            no_show_p *= self.no_show_spike.get(self.start + timedelta(days=day_index), 1.0)
        u = self.rng.random()
        r_share, c_share = profiles.RESCHEDULED_SHARE, profiles.CANCELLED_SHARE
        if u < r_share:
            return "rescheduled"
        if u < r_share + c_share:
            return "cancelled"
        if u < r_share + c_share + no_show_p:
            return "no_show"
        return "completed"

    def _terminal_event(self, appt: Appointment, hour: int, day_index: int) -> Event:
        """The event that ends the appointment (a visit also adds its started and issue events)."""
        if appt.status == "rescheduled":
            return self._rescheduled_event(appt, day_index)
        if appt.status == "cancelled":
            return self._cancelled_event(appt)
        if appt.status == "no_show":
            ts = appt.scheduled_for + (15 + int(self.rng.random() * 16)) * 60
            return Event(ts, ts, "no_show", random_uuid(self.rng), {})
        return self._visit(appt, hour)

    def _withdrawal_time(self, appt: Appointment) -> int:
        """When a reschedule or cancellation happens: between the booking and the appointment."""
        span = max(appt.scheduled_for - appt.booked_at, 120)
        return appt.booked_at + 60 + int(self.rng.uniform(0.3, 0.97) * (span - 60))

    def _rescheduled_event(self, appt: Appointment, day_index: int) -> Event:
        """The reschedule, and the new appointment it books a few days later (played out on its day)."""
        rng = self.rng
        ts = self._withdrawal_time(appt)
        new_index = day_index + rng.randint(*profiles.RESCHEDULE_DAYS)
        new_day = self.start + timedelta(days=new_index)
        new_hour = self.hour_pick(rng.random())
        new_time = self.clock.local_to_epoch(new_day, new_hour * 60 + int(rng.random() * 4) * 15)
        new_id = self._appointment_id()
        same = rng.random() < profiles.RESCHEDULE_SAME_PROVIDER
        self.pending.setdefault(new_index, []).append(
            Rebooking(
                new_id,
                appt.patient_index,
                appt.provider if same else None,
                appt.version.specialty,
                appt.appointment_type,
                new_time,
                ts,
                appt.appointment_id,
            )
        )
        fields = {"rescheduled_to_appointment_id": new_id, "new_scheduled_for": new_time}
        reason = rng.choice(profiles.RESCHEDULE_REASONS)
        if reason:
            fields["reason"] = reason
        return Event(ts, ts, "rescheduled", random_uuid(self.rng), fields)

    def _cancelled_event(self, appt: Appointment) -> Event:
        ts = self._withdrawal_time(appt)
        fields = {"cancelled_by": self.cancelled_by_pick(self.rng.random())}
        reason = self.rng.choice(profiles.CANCEL_REASONS)
        if reason:
            fields["reason"] = reason
        return Event(ts, ts, "cancelled", random_uuid(self.rng), fields)

    def _visit(self, appt: Appointment, hour: int) -> Event:
        """started, technical issues, completed; possibly a feedback form. Returns the terminal event."""
        rng = self.rng
        device = self.device_pick(rng.random())
        blocks = self.wait_blocks[device]
        table = self.wait_table
        stratum = (blocks.next() + rng.random()) / blocks.size
        base = table[min(int(stratum * len(table)), len(table) - 1)]
        wait = round(profiles.WAIT_MEAN_BY_DEVICE[device] * self.wait_hour_factor.get(hour, 1.0) * base, 1)
        wait = min(wait, 240.0)
        started = appt.scheduled_for + int(wait * 60)
        appt.events.append(
            Event(
                started,
                started + int(rng.random() * 3),
                "started",
                random_uuid(rng),
                {"device_type": device, "wait_time_minutes": wait},
            )
        )
        specialty = appt.version.specialty
        median = profiles.DURATION_BY_TYPE[appt.appointment_type] * profiles.DURATION_FACTOR_BY_SPECIALTY[specialty]
        shape = profiles.DURATION_GAMMA_SHAPE
        duration = round(min(max(rng.gammavariate(shape, median / shape), 2.0), 180.0), 1)
        has_issues = self.issue_blocks[device].next()
        issue_types = []
        if has_issues:
            count = self.issue_count_pick(rng.random())
            offsets = sorted(rng.uniform(0.03, 0.95) for _ in range(count))
            pick = self.issue_type_pick[device]
            for offset in offsets:
                kind = pick(rng.random())
                issue_types.append(kind)
                ts = started + int(offset * duration * 60)
                arrival = ts + int(rng.random() * 3)
                event_id = random_uuid(rng)
                appt.events.append(Event(ts, arrival, "technical_issue", event_id, {"technical_issue_type": kind}))
        quality = (self.quality_with if has_issues else self.quality_without)(rng.random())
        ended = started + int(duration * 60) + int(rng.random() * 21)
        appt.device, appt.wait, appt.duration, appt.quality, appt.issues = (
            device,
            wait,
            duration,
            quality,
            len(issue_types),
        )
        terminal = Event(
            ended, ended, "completed", random_uuid(rng), {"duration_minutes": duration, "connection_quality": quality}
        )
        if rng.random() < profiles.FEEDBACK_SHARE:
            appt.form = self._form(appt, ended, issue_types)
        return terminal

    def _rating(self, mean: float) -> int:
        """1 to 5: the first value whose cumulative probability exceeds a uniform draw."""
        cumulative = profiles.RATING_TABLE[min(400, max(0, round((mean - 1.0) * 100)))]
        return min(bisect_right(cumulative, self.rng.random()), 4) + 1

    def _form(self, appt: Appointment, ended: int, issue_types: list[str]) -> Form:
        rng = self.rng
        lo, hi = self.feedback_delay_pick(rng.random())
        submitted = ended + int(rng.uniform(lo, hi) * 3600)
        provider_mean, overall_mean = profiles.RATING_MEANS_BY_SPECIALTY[appt.version.specialty]
        p = self.issue_share_mean
        penalty = profiles.SATISFACTION_ISSUE_PENALTY
        issue_shift = -penalty if issue_types else penalty * p / (1 - p)
        wait_shift = profiles.SATISFACTION_WAIT_SLOPE * (appt.wait - self.wait_mean)
        overall = self._rating(overall_mean + issue_shift + wait_shift)
        av_mean = profiles.AV_RATING_MEAN_BY_QUALITY[appt.quality - 1]
        audio = self._rating(av_mean - (0.6 if "audio" in issue_types else 0.0))
        video = self._rating(av_mean - (0.6 if "video" in issue_types else 0.0))
        ease = self._rating(profiles.EASE_OF_USE_MEAN_BY_DEVICE[appt.device] - (0.7 if "login" in issue_types else 0.0))
        ratings = {
            "provider_rating": self._rating(provider_mean + appt.provider.quality),
            "ease_of_use_rating": ease,
            "audio_quality_rating": audio,
            "video_quality_rating": video,
            "overall_satisfaction": overall,
        }
        would_recommend = rng.random() < profiles.WOULD_RECOMMEND_BY_SATISFACTION[overall - 1]
        comments = None
        if rng.random() < profiles.COMMENT_SHARE:
            if overall >= 4:
                parts = [rng.choice(profiles.COMMENTS_POSITIVE)]
            elif overall == 3:
                parts = [rng.choice(profiles.COMMENTS_NEUTRAL)]
            else:
                parts = [rng.choice(profiles.COMMENTS_NEGATIVE)]
            if audio <= 2:
                parts.append(rng.choice(profiles.COMMENT_AUDIO))
            if video <= 2:
                parts.append(rng.choice(profiles.COMMENT_VIDEO))
            comments = " ".join(parts)
        number = self.next_feedback
        self.next_feedback += 1
        return Form(
            f"FBK-{number:08d}", submitted, submitted + 1 + int(rng.random() * 30), ratings, would_recommend, comments
        )
