"""``python -m loaders retention [--apply] [--as-of ISO]``: keep each kind of data as long as retention.yml
says, and no longer.

Without ``--apply`` it is a dry run: rows due per table, nothing changed. With it, the due rows go in
batches of ``batch_rows`` (one transaction each), and every table gets a row in ``raw.retention_log``.

Two clocks, as everywhere in the project: business data (raw events and forms, the marts' facts) ages by
its own time at the as-of; bookkeeping (quarantine, file records, load runs, monitor history) by its
load time at the warehouse clock.

Raw events and forms are purged per appointment, and only when nothing built from them can still change:
every appointment of its reschedule chain is closed (a terminal status; a rescheduled one's successor is
in the facts), older than the cutoff, and built (its fact row carries the newest load of its events, and
each of its forms is in fact_feedback as loaded). Incremental builds never revisit such appointments, so
they stay exact; the rebuild that would (a full refresh) is refused by the marts (macro
``refuse_full_refresh_after_purge``).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import yaml
from psycopg2 import sql

from runtime import db
from runtime.settings import DBT_ROLE, PROJECT_ROOT, RAW_OWNER_ROLE, Settings

log = logging.getLogger(__name__)

POLICY_FILE = PROJECT_ROOT / "retention.yml"
KINDS = (
    "raw_events_and_forms",
    "quarantine",
    "feedback_file_records",
    "load_runs",
    "monitor_history",
    "marts",
)
# Raw events and forms must outlive every late arrival the incremental models take in (lookback_days)
# and the lateness of forms (days): a shorter period could purge an appointment before it is final.
MIN_RAW_KEEP_DAYS = 30
TERMINAL = ("completed", "cancelled", "no_show", "rescheduled")


class PolicyError(ValueError):
    """retention.yml is malformed or unsafe."""


@dataclass(frozen=True)
class Policy:
    keep_days: dict[str, int | None]  # None: forever
    batch_rows: int = 5000

    @classmethod
    def load(cls, path: Path = POLICY_FILE) -> Policy:
        data = yaml.safe_load(Path(path).read_text()) or {}
        policies = data.get("policies") or {}
        unknown = sorted(set(policies) - set(KINDS))
        missing = [kind for kind in KINDS if kind not in policies]
        if unknown or missing:
            raise PolicyError(f"{path}: unknown kinds {unknown}, missing kinds {missing} (kinds: {', '.join(KINDS)})")
        keep: dict[str, int | None] = {}
        for kind in KINDS:
            value = (policies[kind] or {}).get("keep_days")
            if value == "forever":
                keep[kind] = None
            elif isinstance(value, int) and not isinstance(value, bool) and value > 0:
                keep[kind] = value
            else:
                raise PolicyError(f"{path}: {kind}.keep_days must be a positive number of days or 'forever'")
        raw = keep["raw_events_and_forms"]
        if raw is not None and raw < MIN_RAW_KEEP_DAYS:
            raise PolicyError(f"{path}: raw_events_and_forms.keep_days must be at least {MIN_RAW_KEEP_DAYS}")
        marts = keep["marts"]
        if marts is not None and (raw is None or marts < raw):
            raise PolicyError(f"{path}: marts must be kept at least as long as raw_events_and_forms")
        batch = data.get("batch_rows", 5000)
        if not isinstance(batch, int) or batch <= 0:
            raise PolicyError(f"{path}: batch_rows must be a positive integer")
        return cls(keep_days=keep, batch_rows=batch)


@dataclass
class Outcome:
    policy: str
    table: str
    clock: str
    keep_days: int | None
    cutoff: datetime | None
    rows_due: int = 0
    rows_deleted: int = 0
    batches: int = 0


@dataclass
class Plan:
    """The due appointments (with the newest load built for each) and forms of no appointment."""

    appointments: list[tuple[str, datetime]] = field(default_factory=list)
    orphan_forms: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- raw events and forms

DUE_APPOINTMENTS = """
with
facts as (
    select appointment_id, status, original_appointment_id, rescheduled_to_appointment_id,
        last_loaded_at, "timestamp" as appointment_at
    from marts.fact_appointment
),
events as (
    select appointment_id, max(event_ts) as last_event_at, max(_loaded_at) as last_loaded_at
    from raw.appointment_events
    group by appointment_id
),
forms as (
    select forms.appointment_id,
        max(forms.submitted_at) as last_submitted_at,
        bool_and(built.feedback_id is not null and built.last_loaded_at >= forms._loaded_at) as all_built
    from raw.patient_feedback as forms
    left join marts.fact_feedback as built on forms.feedback_id = built.feedback_id
    group by forms.appointment_id
),
candidates as (
    select facts.appointment_id, facts.original_appointment_id, events.last_loaded_at,
        facts.status in %(terminal)s
        and (facts.status <> 'rescheduled' or exists (
            select 1 from facts as successor where successor.appointment_id = facts.rescheduled_to_appointment_id))
        and events.last_event_at < %(cutoff)s
        and facts.appointment_at < %(cutoff)s
        and facts.last_loaded_at >= events.last_loaded_at
        and coalesce(forms.all_built, true)
        and coalesce(forms.last_submitted_at < %(cutoff)s, true) as is_final
    from facts
    inner join events on facts.appointment_id = events.appointment_id
    left join forms on facts.appointment_id = forms.appointment_id
),
final_chains as (
    select original_appointment_id from candidates group by original_appointment_id having bool_and(is_final)
)
select appointment_id, last_loaded_at
from candidates
where original_appointment_id in (select original_appointment_id from final_chains)
order by appointment_id
"""

# Forms of an appointment that never arrived (nothing was built from them) age by submission time.
ORPHAN_FORMS = """
select forms.feedback_id
from raw.patient_feedback as forms
where forms.submitted_at < %(cutoff)s
  and not exists (select 1 from raw.appointment_events as e where e.appointment_id = forms.appointment_id)
  and not exists (select 1 from marts.fact_appointment as f where f.appointment_id = forms.appointment_id)
order by forms.feedback_id
"""


def plan_raw(settings: Settings, cutoff: datetime) -> Plan:
    """Read as the dbt role: it alone reads both raw and the marts."""
    conn = db.connect(settings, role=DBT_ROLE)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("select to_regclass('marts.fact_appointment'), to_regclass('marts.fact_feedback')")
            if None in cur.fetchone():
                return Plan()  # nothing built yet: nothing is final
            cur.execute(DUE_APPOINTMENTS, {"cutoff": cutoff, "terminal": TERMINAL})
            appointments = list(cur.fetchall())
            cur.execute(ORPHAN_FORMS, {"cutoff": cutoff})
            orphans = [row[0] for row in cur.fetchall()]
        return Plan(appointments, orphans)
    finally:
        conn.close()


def _chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# Only events loaded no later than the fact was built: an event landing meanwhile stays.
DELETE_EVENTS = """
delete from raw.appointment_events as e
using unnest(%(ids)s::text[], %(built)s::timestamptz[]) as due(appointment_id, built_at)
where e.appointment_id = due.appointment_id and e._loaded_at <= due.built_at
"""
COUNT_EVENTS = "select count(*) from raw.appointment_events where appointment_id = any(%(ids)s)"
FORMS_DUE = "appointment_id = any(%(ids)s) or feedback_id = any(%(forms)s)"
DELETE_FORMS = f"delete from raw.patient_feedback where {FORMS_DUE}"
COUNT_FORMS = f"select count(*) from raw.patient_feedback where {FORMS_DUE}"


def raw_events_and_forms(settings: Settings, policy: Policy, cutoff: datetime, apply: bool) -> list[Outcome]:
    keep = policy.keep_days["raw_events_and_forms"]
    events = Outcome("raw_events_and_forms", "raw.appointment_events", "business", keep, cutoff)
    forms = Outcome("raw_events_and_forms", "raw.patient_feedback", "business", keep, cutoff)
    plan = plan_raw(settings, cutoff)
    ids = [appointment for appointment, _ in plan.appointments]
    conn = db.connect(settings, role=RAW_OWNER_ROLE)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(COUNT_EVENTS, {"ids": ids})
            events.rows_due = cur.fetchone()[0]
            cur.execute(COUNT_FORMS, {"ids": ids, "forms": plan.orphan_forms})
            forms.rows_due = cur.fetchone()[0]
        if not apply:
            return [events, forms]
        # An appointment has a handful of events and forms: a chunk of batch_rows/10 stays within the bound.
        size = max(1, policy.batch_rows // 10)
        for chunk in _chunks(plan.appointments, size):
            with conn, conn.cursor() as cur:
                params = {"ids": [a for a, _ in chunk], "built": [b for _, b in chunk], "forms": []}
                cur.execute(DELETE_FORMS, params)
                forms.rows_deleted += cur.rowcount
                cur.execute(DELETE_EVENTS, params)
                events.rows_deleted += cur.rowcount
            events.batches += 1
            forms.batches += 1
        for chunk in _chunks(plan.orphan_forms, policy.batch_rows):
            with conn, conn.cursor() as cur:
                cur.execute(DELETE_FORMS, {"ids": [], "forms": chunk})
                forms.rows_deleted += cur.rowcount
            forms.batches += 1
    finally:
        conn.close()
    return [events, forms]


# --------------------------------------------------------------------------- tables purged by a condition


@dataclass(frozen=True)
class Target:
    policy: str
    table: str
    clock: str  # business | load
    role: str
    condition: str  # SQL over alias t, with %(cutoff)s


TARGETS = (
    Target("quarantine", "raw.appointment_events_rejected", "load", RAW_OWNER_ROLE, "t._loaded_at < %(cutoff)s"),
    Target("quarantine", "raw.patient_feedback_rejected", "load", RAW_OWNER_ROLE, "t._loaded_at < %(cutoff)s"),
    Target(
        "feedback_file_records",
        "raw.feedback_files",
        "load",
        RAW_OWNER_ROLE,
        "t._loaded_at < %(cutoff)s"
        " and not exists (select 1 from raw.patient_feedback as f where f.source_sha256 = t.sha256)"
        " and not exists (select 1 from raw.patient_feedback_rejected as r where r.source_sha256 = t.sha256)",
    ),
    Target(
        "load_runs",
        "raw.load_runs",
        "load",
        RAW_OWNER_ROLE,
        "t.started_at < %(cutoff)s and t.status <> 'running'"
        " and t.run_id not in (select max(newest.run_id) from raw.load_runs as newest group by newest.loader)",
    ),
    Target("monitor_history", "monitoring.monitor_results", "load", DBT_ROLE, "t.checked_at < %(cutoff)s"),
    Target(
        "monitor_history",
        "monitoring.monitor_runs",
        "load",
        DBT_ROLE,
        "t.started_at < %(cutoff)s"
        " and not exists (select 1 from monitoring.monitor_results as r where r.run_id = t.run_id)",
    ),
    # Facts go only once their raw rows are gone: an incremental build can no longer bring them back.
    Target(
        "marts",
        "marts.fact_feedback",
        "business",
        DBT_ROLE,
        't."timestamp" < %(cutoff)s'
        " and not exists (select 1 from raw.patient_feedback as f where f.feedback_id = t.feedback_id)"
        " and not exists (select 1 from raw.appointment_events as e where e.appointment_id = t.appointment_id)",
    ),
    Target(
        "marts",
        "marts.fact_appointment",
        "business",
        DBT_ROLE,
        't."timestamp" < %(cutoff)s'
        " and not exists (select 1 from raw.appointment_events as e where e.appointment_id = t.appointment_id)"
        " and not exists (select 1 from marts.fact_feedback as f where f.appointment_id = t.appointment_id)",
    ),
    # The incremental model the facts are recomputed from keeps a purged appointment's derived row (that
    # is what keeps incremental builds exact); it goes with the fact, or a provider change would bring the
    # fact back.
    Target(
        "marts",
        "intermediate.int_appointments_derived_from_events",
        "business",
        DBT_ROLE,
        "coalesce(t.scheduled_at, t.first_event_at) < %(cutoff)s"
        " and not exists (select 1 from raw.appointment_events as e where e.appointment_id = t.appointment_id)"
        " and not exists (select 1 from marts.fact_appointment as f where f.appointment_id = t.appointment_id)",
    ),
)


def _relation(table: str) -> sql.Composed:
    schema, name = table.split(".")
    return sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(name))


def purge_target(settings: Settings, target: Target, outcome: Outcome, batch_rows: int, apply: bool) -> None:
    conn = db.connect(settings, role=target.role)
    relation = _relation(target.table)
    condition = sql.SQL(target.condition)
    params = {"cutoff": outcome.cutoff, "limit": batch_rows}
    try:
        with conn, conn.cursor() as cur:
            cur.execute("select to_regclass(%s)", (target.table,))
            if cur.fetchone()[0] is None:
                return  # e.g. no monitor has run yet
            cur.execute(sql.SQL("select count(*) from {} as t where ").format(relation) + condition, params)
            outcome.rows_due = cur.fetchone()[0]
        if not apply:
            return
        delete = sql.SQL(
            "delete from {rel} where ctid = any(array(select t.ctid from {rel} as t where {cond} limit %(limit)s))"
        ).format(rel=relation, cond=condition)
        while True:
            with conn, conn.cursor() as cur:
                cur.execute(delete, params)
                deleted = cur.rowcount
            if deleted == 0:
                break
            outcome.rows_deleted += deleted
            outcome.batches += 1
    finally:
        conn.close()


# --------------------------------------------------------------------------- the run


def warehouse_now(settings: Settings) -> datetime:
    conn = db.connect(settings)
    try:
        with conn.cursor() as cur:
            cur.execute("select now()")
            return cur.fetchone()[0]
    finally:
        conn.close()


def run(settings: Settings, policy: Policy, as_of: datetime, apply: bool) -> list[Outcome]:
    now = warehouse_now(settings)

    def cutoff(kind: str, clock: str) -> datetime | None:
        keep = policy.keep_days[kind]
        return None if keep is None else (as_of if clock == "business" else now) - timedelta(days=keep)

    outcomes: list[Outcome] = []
    raw_cutoff = cutoff("raw_events_and_forms", "business")
    if raw_cutoff is None:
        outcomes += [
            Outcome("raw_events_and_forms", table, "business", None, None)
            for table in ("raw.appointment_events", "raw.patient_feedback")
        ]
    else:
        outcomes += raw_events_and_forms(settings, policy, raw_cutoff, apply)
    for target in TARGETS:
        keep = policy.keep_days[target.policy]
        outcome = Outcome(target.policy, target.table, target.clock, keep, cutoff(target.policy, target.clock))
        if outcome.cutoff is not None:
            purge_target(settings, target, outcome, policy.batch_rows, apply)
        outcomes.append(outcome)
    if apply:
        write_log(settings, outcomes, as_of)
    return outcomes


def write_log(settings: Settings, outcomes: list[Outcome], as_of: datetime) -> None:
    run_id = str(uuid.uuid4())
    with db.transaction(settings, role=RAW_OWNER_ROLE) as conn, conn.cursor() as cur:
        for o in outcomes:
            if o.cutoff is None:
                continue
            cur.execute(
                "insert into raw.retention_log (run_id, as_of, policy, table_name, keep_days, cutoff, clock,"
                " applied, rows_due, rows_deleted, batches) values (%s, %s, %s, %s, %s, %s, %s, true, %s, %s, %s)",
                (run_id, as_of, o.policy, o.table, o.keep_days, o.cutoff, o.clock, o.rows_due, o.rows_deleted,
                 o.batches),
            )  # fmt: skip


def render(outcomes: list[Outcome], apply: bool) -> str:
    header = ("policy", "table", "clock", "keep days", "cutoff", "rows due", "deleted" if apply else "")
    rows = [
        (
            o.policy,
            o.table,
            o.clock,
            "forever" if o.keep_days is None else str(o.keep_days),
            "-" if o.cutoff is None else o.cutoff.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%MZ"),
            str(o.rows_due),
            str(o.rows_deleted) if apply else "",
        )
        for o in outcomes
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in [header, *rows]]
    return "\n".join(lines)


def parse_as_of(text: str) -> datetime:
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        raise argparse.ArgumentTypeError(f"--as-of needs a UTC offset, e.g. 2026-11-01T00:00:00Z: {text}")
    return parsed


def default_as_of() -> datetime:
    """The business clock: TELEMED_AS_OF when set, else now."""
    pinned = os.environ.get("TELEMED_AS_OF", "")
    return parse_as_of(pinned) if pinned else datetime.now(timezone.utc)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loaders retention", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--apply", action="store_true", help="delete the due rows (default: a dry run)")
    parser.add_argument("--as-of", type=parse_as_of, help="the business clock (default TELEMED_AS_OF, else now)")
    parser.add_argument("--policy", type=Path, default=POLICY_FILE, help="the policy file (default retention.yml)")
    args = parser.parse_args(argv)
    try:
        policy = Policy.load(args.policy)
    except (PolicyError, OSError) as exc:
        print(f"retention: {exc}", file=sys.stderr)
        return 2
    as_of = args.as_of or default_as_of()
    settings = Settings.from_env()
    outcomes = run(settings, policy, as_of, args.apply)
    print(render(outcomes, args.apply))
    due = sum(o.rows_due for o in outcomes)
    if args.apply:
        print(f"retention: deleted {sum(o.rows_deleted for o in outcomes)} rows at as-of {as_of.isoformat()};"
              " logged in raw.retention_log")  # fmt: skip
    else:
        print(f"retention: dry run at as-of {as_of.isoformat()}: {due} rows due; --apply deletes them")
    return 0
