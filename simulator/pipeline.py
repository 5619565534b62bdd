"""The world played through the emitter, the video platform's sessions and the clinic tables, on all cores.

The world is one random stream (``World.rng``), drawn in appointment order, so it cannot be split
without changing what it draws; the emitter's dirty extras are a second stream, also in order. The video
platform's sessions draw from a generator of each appointment's own, and the clinic tables from the seed
alone. With two or more workers each of those runs in a forked process of its own: a child walks the
world and sends each batch of appointments down two pipes, one to this process (which renders, writes and
counts, the emitter), one to a child that plays the sessions; another child writes (or counts) the clinic
tables. Four processes on the cores, each stage blocked only when it is ahead: the operating system gives
the cores to whichever has work, so the stages need no balancing by hand. The appointments arrive in the
order the world made them and each consumer sees exactly what it would see in one process, so the output
is byte-identical whatever the number of workers (a test compares them).

An appointment crosses a pipe as a tuple of plain values (its provider and provider version as indexes
into the providers list, which every process built alike before the fork): pickling dataclasses is
several times slower than the simulation it would save. The pipes are the backpressure (enlarged so the
world can run a few batches ahead): memory holds a few batches at most.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import pickle
import time
import traceback
from collections.abc import Callable, Iterator

from runtime.processes import fewer_collections
from simulator.reference import Provider
from simulator.video_api import CallSessions, visit_of
from simulator.world import Appointment, Event, Form, World

BATCH = 1000
# Bytes a pipe holds (Linux's default ceiling for an unprivileged process): a few batches in flight.
PIPE_BYTES = 1 << 20


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


def _widen(conn) -> None:
    """Let the pipe hold a few batches (Linux), so the world runs ahead while its readers are busy."""
    import fcntl  # POSIX only, as is the fork

    with contextlib.suppress(AttributeError, OSError):
        fcntl.fcntl(conn.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)


def _world(world: World, to_emitter, to_sessions=None) -> None:
    """Walk the world, sending pickled batches: the encoded appointments to the emitter, what the video
    platform sees of them (``video_api.visit_of``) to the sessions; then this child's CPU seconds (a float:
    the end), or the error's traceback (a string). A reader that went away (it failed, or the parent stopped
    reading) gets nothing more."""
    where = {
        id(version): (p, v) for p, provider in enumerate(world.providers) for v, version in enumerate(provider.versions)
    }
    readers = [conn for conn in (to_emitter, to_sessions) if conn is not None]

    def send(conn, blob: bytes) -> None:
        if conn in readers:
            try:
                conn.send_bytes(blob)
            except BrokenPipeError:
                readers.remove(conn)

    def send_all(blob: bytes) -> None:
        for conn in list(readers):
            send(conn, blob)

    try:
        rows, visits = [], []
        for appointment in world.appointments():
            rows.append(_encode(appointment, where))
            if to_sessions is not None:
                visit = visit_of(appointment)
                if visit is not None:
                    visits.append(visit)
            if len(rows) == BATCH:
                if to_sessions is not None:
                    send(to_sessions, pickle.dumps(visits, pickle.HIGHEST_PROTOCOL))
                    visits = []
                send(to_emitter, pickle.dumps(rows, pickle.HIGHEST_PROTOCOL))
                rows = []
        if visits:
            send(to_sessions, pickle.dumps(visits, pickle.HIGHEST_PROTOCOL))
        if rows:
            send(to_emitter, pickle.dumps(rows, pickle.HIGHEST_PROTOCOL))
        send_all(pickle.dumps(time.process_time()))  # the end, with the CPU seconds this child used
    except BaseException:  # noqa: BLE001 - any failure is the parent's to report, with its traceback
        send_all(pickle.dumps(traceback.format_exc()))
    finally:
        for conn in readers:
            conn.close()


def _batches(receiver, child=None, cpu: dict | None = None) -> Iterator[list[tuple]]:
    """The world child's batches as they come; its failure raised as a WorldProcessError. At the end, the
    child's CPU seconds go to ``cpu["world"]``."""
    while True:
        try:
            # Our own forked child's batches, never outside data (hence the S301 waiver).
            message = pickle.loads(receiver.recv_bytes())  # noqa: S301
        except EOFError:
            exit_code = ""
            if child is not None:
                child.join()
                exit_code = f" (exit {child.exitcode})"
            raise WorldProcessError(f"the world's process ended before the world did{exit_code}") from None
        if isinstance(message, float):
            if cpu is not None:
                cpu["world"] = message
            return
        if isinstance(message, str):
            raise WorldProcessError(f"the world's process failed:\n{message}")
        yield message


def _sessions(make: Callable[[], CallSessions], receiver, result) -> None:
    """The sessions' child: play every visit of the world's batches, then send the manifest block."""
    try:
        sessions = make()
        try:
            for batch in _batches(receiver):
                for visit in batch:
                    sessions.add_visit(*visit)
        finally:
            sessions.close()
        result.send_bytes(pickle.dumps(("ok", sessions.manifest_block(), time.process_time())))
    except BaseException:  # noqa: BLE001 - reported by the parent
        result.send_bytes(pickle.dumps(("error", traceback.format_exc(), None)))
    finally:
        result.close()


def _job(job: Callable[[], object], result) -> None:
    try:
        result.send_bytes(pickle.dumps(("ok", job(), time.process_time())))
    except BaseException:  # noqa: BLE001 - reported by the parent
        result.send_bytes(pickle.dumps(("error", traceback.format_exc(), None)))
    finally:
        result.close()


class WorldProcessError(RuntimeError):
    """A child process of the pipeline failed; the message carries its traceback."""


def appointments(world: World, workers: int) -> Iterator[Appointment]:
    """The world's appointments in order: from this process (``workers`` 1) or from a forked child."""
    if workers <= 1:
        yield from world.appointments()
        return
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=_world, args=(world, sender), name="telemed-world", daemon=True)
    child.start()
    sender.close()
    try:
        for batch in _batches(receiver, child):
            for row in batch:
                yield _decode(row, world.providers)
        child.join()
    finally:
        receiver.close()
        if child.is_alive():
            child.terminate()
            child.join()


def play(
    world: World,
    workers: int,
    emit: Callable[[Appointment], None],
    make_sessions: Callable[[], CallSessions],
    job: Callable[[], object],
    cpu: dict | None = None,
) -> tuple[int, dict, object]:
    """Every appointment of the world through ``emit`` (in this process) and through the sessions that
    ``make_sessions`` makes; ``job`` (the clinic tables) beside them. Returns (appointments, the sessions'
    manifest block, what ``job`` returned).

    One worker: all in this process, the job after the stream. Two or more: the world, the sessions and
    the job each in a forked child (the sessions' file is opened in its child: nothing buffered is
    inherited), this process emitting; a failure in any child is raised here with the child's traceback.
    ``cpu``, if given, receives the CPU seconds of each child ("world", "video sessions", "clinic tables")."""
    # While the world plays, the garbage collector every 50,000 allocations instead of 700: 0.4 CPU-seconds
    # of 9.4 at 166,666 appointments with two workers, the same bytes and peak memory (docs/benchmarks.md).
    with fewer_collections():
        return _play(world, workers, emit, make_sessions, job, cpu)


def _play(world, workers, emit, make_sessions, job, cpu) -> tuple[int, dict, object]:
    if workers <= 1:
        sessions = make_sessions()
        count = 0
        try:
            for appointment in world.appointments():
                emit(appointment)
                sessions.add(appointment)
                count += 1
        finally:
            sessions.close()
        return count, sessions.manifest_block(), job()
    return _play_forked(world, emit, make_sessions, job, cpu)


def _in_child(inherited: list, keep: tuple, target: Callable, args: tuple) -> None:
    """Close the pipe ends a child inherited but does not use (a reader sees the end of a pipe only when
    every copy of its writing end is closed), then run it."""
    for conn in inherited:
        if conn not in keep:
            conn.close()
    target(*args)


def _play_forked(world, emit, make_sessions, job, cpu) -> tuple[int, dict, object]:
    context = multiprocessing.get_context("fork")
    children, conns = [], []

    def pipe():
        receiver, sender = context.Pipe(duplex=False)
        conns.extend((receiver, sender))
        return receiver, sender

    def start(name, target, args, keep):
        child = context.Process(target=_in_child, args=(list(conns), keep, target, args), name=name, daemon=True)
        child.start()
        children.append(child)
        return child

    try:
        job_result, job_sender = pipe()
        start("telemed-clinic", _job, (job, job_sender), (job_sender,))
        world_for_me, world_to_me = pipe()
        world_for_sessions, world_to_sessions = pipe()
        sessions_result, sessions_sender = pipe()
        for conn in (world_to_me, world_to_sessions):
            _widen(conn)
        start(
            "telemed-sessions",
            _sessions,
            (make_sessions, world_for_sessions, sessions_sender),
            (world_for_sessions, sessions_sender),
        )
        world_child = start(
            "telemed-world", _world, (world, world_to_me, world_to_sessions), (world_to_me, world_to_sessions)
        )
        for conn in (job_sender, world_to_me, world_for_sessions, world_to_sessions, sessions_sender):
            conn.close()
        count = 0
        providers = world.providers
        for batch in _batches(world_for_me, world_child, cpu):
            for row in batch:
                emit(_decode(row, providers))
            count += len(batch)
        sessions_block = _result(sessions_result, "video sessions", cpu)
        return count, sessions_block, _result(job_result, "clinic tables", cpu)
    finally:
        for conn in conns:
            conn.close()
        for child in children:
            if child.is_alive():
                child.terminate()
            child.join()


def _result(receiver, what: str, cpu: dict | None) -> object:
    try:
        status, value, seconds = pickle.loads(receiver.recv_bytes())  # noqa: S301 - our own child's message
    except EOFError:
        raise WorldProcessError(f"the process of the {what} ended without a result") from None
    if status != "ok":
        raise WorldProcessError(f"the process of the {what} failed:\n{value}")
    if cpu is not None:
        cpu[what] = seconds
    return value
