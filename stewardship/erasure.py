"""``python -m loaders erase --patient-id ID [--request-ref REF]``: remove one patient's identifiers from
every table that holds them, keep the marts' pseudonymous rows, and log the request.

What changes (each as the role that owns the table):
- ``raw.patients``: every version loses name, e-mail, phone, address and birth date, in the typed columns
  and in the payload (which keeps only the non-identifying fields); dim_patient's age becomes unknown at
  once (as the next build would derive it), its row stays;
- the quarantine: rejected events (``raw_text``, ``raw_bytes``, ``error_detail``) and rejected forms
  (``payload``, ``error_detail``) that mention the patient's id, one of the patient's appointments or one
  of the identifiers are emptied; the rows (reason, lineage) stay, so counts still reconcile;
- comments: the patient's feedback forms lose their free text in ``raw.patient_feedback`` and in
  ``marts.fact_feedback``.
``raw.erasure_log`` gets one row per table, naming the patient by patient_key (never by id).

Outside the database and not touched here: the clinic's own system (``clinic_ops`` plays it; erasure
there is the clinic's), the feedback files in the landing folder, and offline dashboards already sent.
"""

from __future__ import annotations

import argparse
import logging
import sys
import uuid
from dataclasses import dataclass, field

from runtime import db, pseudonym
from runtime.settings import DBT_ROLE, RAW_OWNER_ROLE, Settings

log = logging.getLogger(__name__)

# What a raw.patients payload keeps after erasure: the fields dim_patient may show, and the keys.
KEPT_PATIENT_FIELDS = ("patient_id", "gender", "has_insurance", "registration_date", "state", "updated_at")
IDENTIFIER_COLUMNS = ("first_name", "last_name", "email", "phone", "address")


@dataclass
class Erasure:
    patient_key: str
    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    changed: dict[str, int] = field(default_factory=dict)


def _needles(cur, patient_id: str) -> tuple[list[str], list[str]]:
    """The strings that identify the patient in free text, and the patient's appointments. A first or
    last name alone is too common to search for; the full name, e-mail, phone and address are not."""
    cur.execute(
        "select distinct unnest(array[email, phone, address,"
        " nullif(trim(coalesce(first_name, '') || ' ' || coalesce(last_name, '')), '')])"
        " from raw.patients where patient_id = %s",
        (patient_id,),
    )
    identifiers = sorted({row[0] for row in cur.fetchall() if row[0] and len(row[0]) >= 3})
    cur.execute(
        "select distinct appointment_id from raw.appointment_events where payload ->> 'patient_id' = %s",
        (patient_id,),
    )
    appointments = sorted(row[0] for row in cur.fetchall())
    return identifiers, appointments


def erase(settings: Settings, patient_id: str, request_ref: str | None = None) -> Erasure:
    key = pseudonym.key_bytes(settings.state_dir)
    result = Erasure(pseudonym.patient_key(key, patient_id))
    # The marts know the patient's appointments even where retention purged their raw events.
    with db.transaction(settings, role=DBT_ROLE) as conn, conn.cursor() as cur:
        cur.execute("select to_regclass('marts.fact_appointment') is not null")
        built = cur.fetchone()[0]
        mart_appointments: list[str] = []
        if built:
            cur.execute(
                "select appointment_id from marts.fact_appointment where patient_key = %s", (result.patient_key,)
            )
            mart_appointments = [row[0] for row in cur.fetchall()]

    with db.transaction(settings, role=RAW_OWNER_ROLE) as conn, conn.cursor() as cur:
        identifiers, appointments = _needles(cur, patient_id)
        appointments = sorted(set(appointments) | set(mart_appointments))
        needles = [patient_id, *identifiers, *appointments]
        kept = ", ".join(f"'{name}'" for name in KEPT_PATIENT_FIELDS)
        nulls = ", ".join(f"{column} = null" for column in (*IDENTIFIER_COLUMNS, "date_of_birth"))
        cur.execute(
            f"update raw.patients set {nulls},"
            f" payload = (select coalesce(jsonb_object_agg(k, v), '{{}}') from jsonb_each(payload) as p(k, v)"
            f" where k in ({kept})) where patient_id = %s",
            (patient_id,),
        )
        result.changed["raw.patients"] = cur.rowcount
        # Quarantined payloads: plain substring search, on text and on the undecodable bytes.
        cur.execute(
            "update raw.appointment_events_rejected set raw_text = null, raw_bytes = null, error_detail = null"
            " where exists (select 1 from unnest(%(needles)s::text[]) as n(s)"
            " where strpos(lower(raw_text), lower(n.s)) > 0 or strpos(lower(error_detail), lower(n.s)) > 0"
            " or position(convert_to(n.s, 'UTF8') in raw_bytes) > 0)",
            {"needles": needles},
        )
        result.changed["raw.appointment_events_rejected"] = cur.rowcount
        cur.execute(
            "update raw.patient_feedback_rejected set payload = null, error_detail = null"
            " where exists (select 1 from unnest(%(needles)s::text[]) as n(s)"
            " where strpos(lower(payload::text), lower(n.s)) > 0 or strpos(lower(error_detail), lower(n.s)) > 0)",
            {"needles": needles},
        )
        result.changed["raw.patient_feedback_rejected"] = cur.rowcount
        cur.execute(
            "update raw.patient_feedback set payload = jsonb_set(payload, '{comments}', 'null')"
            " where appointment_id = any(%s) and payload ->> 'comments' is not null",
            (appointments,),
        )
        result.changed["raw.patient_feedback"] = cur.rowcount

    if built:
        with db.transaction(settings, role=DBT_ROLE) as conn, conn.cursor() as cur:
            cur.execute(
                "update marts.fact_feedback set comments = null where patient_key = %s and comments is not null",
                (result.patient_key,),
            )
            result.changed["marts.fact_feedback"] = cur.rowcount
            # The birth date is gone, so the age is unknown, as the next build would derive it: the scheduled
            # run after a load re-derives only the patients it must (dim_patient), which this one is not.
            cur.execute(
                "update marts.dim_patient set age = null, age_group = 'unknown'"
                " where patient_key = %s and (age is not null or age_group <> 'unknown')",
                (result.patient_key,),
            )
            result.changed["marts.dim_patient"] = cur.rowcount

    with db.transaction(settings, role=RAW_OWNER_ROLE) as conn, conn.cursor() as cur:
        for table, rows in result.changed.items():
            cur.execute(
                "insert into raw.erasure_log (request_id, patient_key, request_ref, table_name, rows_changed)"
                " values (%s, %s, %s, %s, %s)",
                (result.request_id, result.patient_key, request_ref, table, rows),
            )
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loaders erase", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--patient-id", required=True, help="the clinic's patient id")
    parser.add_argument("--request-ref", help="the request's reference (ticket), kept in raw.erasure_log")
    args = parser.parse_args(argv)
    if not args.patient_id.strip():
        print("erase: --patient-id is empty", file=sys.stderr)
        return 2
    result = erase(Settings.from_env(), args.patient_id, args.request_ref)
    for table, rows in result.changed.items():
        print(f"  {table:<36} {rows} rows")
    print(f"erase: request {result.request_id} done for patient_key {result.patient_key[:12]}...; logged in"
          " raw.erasure_log")  # fmt: skip
    return 0
