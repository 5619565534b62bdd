"""The world's appointments from a child process: the simulation and the emission on two cores.

The world is one random stream (``World.rng``), drawn in appointment order, so it cannot be split
without changing what it draws; the emitter's dirty extras are a second stream, also in order. What
can run at the same time is the two streams: a forked child walks the world and sends each batch of
appointments down a pipe, while this process renders, writes and counts the batch before. The
appointments arrive in the order the world made them and the emitter sees exactly what it would see in
one process, so the output is byte-identical whatever the number of workers (a test compares them).

An appointment crosses the pipe as a tuple of plain values (its provider and provider version as
indexes into the providers list, which parent and child built alike before the fork): pickling
dataclasses is several times slower than the simulation it would save. The pipe is the backpressure:
the child blocks when the parent has not yet read the batch before, so memory holds at most two batches.
"""

from __future__ import annotations

import multiprocessing
import pickle
import traceback
from collections.abc import Iterator

from simulator.reference import Provider
from simulator.world import Appointment, Event, Form, World

BATCH = 2000


def _encode(appt: Appointment, where: dict[int, tuple[int, int]]) -> tuple:
    provider_index, version_index = where[id(appt.version)]
    form = appt.form
    return (
        appt.appointment_id,
        appt.patient_index,
        provider_index,
        version_index,
        appt.appointment_type,
        appt.scheduled_for,
        appt.booked_at,
        appt.status,
        appt.rescheduled_from,
        appt.device,
        appt.wait,
        appt.duration,
        appt.quality,
        appt.issues,
        [(e.ts, e.arrival, e.event_type, e.event_id, e.fields) for e in appt.events],
        None
        if form is None
        else (form.feedback_id, form.submitted_at, form.arrival, form.ratings, form.would_recommend, form.comments),
    )


def _decode(row: tuple, providers: list[Provider]) -> Appointment:
    (
        appointment_id,
        patient_index,
        provider_index,
        version_index,
        appointment_type,
        scheduled_for,
        booked_at,
        status,
        rescheduled_from,
        device,
        wait,
        duration,
        quality,
        issues,
        events,
        form,
    ) = row
    provider = providers[provider_index]
    return Appointment(
        appointment_id,
        patient_index,
        provider,
        provider.versions[version_index],
        appointment_type,
        scheduled_for,
        booked_at,
        status,
        rescheduled_from,
        device,
        wait,
        duration,
        quality,
        issues,
        [Event(*event) for event in events],
        None if form is None else Form(*form),
    )


def _child(world: World, conn) -> None:
    """Walk the world, sending pickled batches of encoded appointments; then None, or the error."""
    where = {
        id(version): (p, v) for p, provider in enumerate(world.providers) for v, version in enumerate(provider.versions)
    }
    try:
        batch = []
        for appointment in world.appointments():
            batch.append(_encode(appointment, where))
            if len(batch) == BATCH:
                conn.send_bytes(pickle.dumps(batch, pickle.HIGHEST_PROTOCOL))
                batch = []
        if batch:
            conn.send_bytes(pickle.dumps(batch, pickle.HIGHEST_PROTOCOL))
        conn.send_bytes(pickle.dumps(None))
    except BrokenPipeError:
        pass  # the parent stopped reading (it failed or was interrupted): nothing to report to
    except BaseException:  # noqa: BLE001 - any failure is the parent's to report, with its traceback
        conn.send_bytes(pickle.dumps(traceback.format_exc()))
    finally:
        conn.close()


class WorldProcessError(RuntimeError):
    """The child simulating the world failed; the message carries its traceback."""


def appointments(world: World, workers: int) -> Iterator[Appointment]:
    """The world's appointments in order: from this process (``workers`` 1) or from a forked child."""
    if workers <= 1:
        yield from world.appointments()
        return
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=_child, args=(world, sender), name="telemed-world", daemon=True)
    child.start()
    sender.close()
    providers = world.providers
    try:
        while True:
            try:
                # Our own forked child's batches, never outside data (hence the S301 waiver).
                message = pickle.loads(receiver.recv_bytes())  # noqa: S301
            except EOFError:
                child.join()
                raise WorldProcessError(
                    f"the world's process ended before the world did (exit {child.exitcode})"
                ) from None
            if message is None:
                break
            if isinstance(message, str):
                raise WorldProcessError(f"the world's process failed:\n{message}")
            for row in message:
                yield _decode(row, providers)
        child.join()
    finally:
        receiver.close()
        if child.is_alive():
            child.terminate()
            child.join()
