"""Building COPY text-format rows directly, the cheapest way into Postgres from Python."""

from __future__ import annotations

import io


def escape(value: str) -> str:
    """A value for COPY's text format: backslash, tab, newline and carriage return escaped."""
    if "\\" in value:
        value = value.replace("\\", "\\\\")
    if "\t" in value:
        value = value.replace("\t", "\\t")
    if "\n" in value:
        value = value.replace("\n", "\\n")
    if "\r" in value:
        value = value.replace("\r", "\\r")
    return value


def copy_rows(cur, table: str, columns: str, data: bytes) -> None:
    """COPY encoded text-format lines (each ending in a newline) into ``table``."""
    # Large reads: psycopg2 holds the GIL while it pulls each chunk from the file object.
    cur.copy_expert(f"copy {table} ({columns}) from stdin", io.BytesIO(data), size=1 << 20)


def stage_tables_ddl(stage: str, table: str, columns: str, key: str) -> str:
    """DDL of a loader's two session temp tables, both emptied at each commit: ``stage``, shaped like
    ``columns`` of ``table`` (the fallback path COPYs a batch there, then inserts what is new), and
    ``<stage>_keys`` with ``table``'s key column ``key``, for `existing_keys`."""
    return (
        f"create temporary table if not exists {stage} on commit delete rows as"
        f" select {columns} from {table} with no data;\n"
        f"create temporary table if not exists {stage}_keys ({key} text) on commit delete rows"
    )


def existing_keys(cur, stage: str, table: str, key: str, keys: list[str]) -> list[str]:
    """Which of ``keys`` (in COPY text form) ``table`` holds already: COPYs them into ``<stage>_keys``
    (see `stage_tables_ddl`) and probes ``table``'s index on ``key`` once per key."""
    copy_rows(cur, f"{stage}_keys", key, "".join(f"{value}\n" for value in keys).encode())
    cur.execute(f"select {key} from {table} where {key} = any(array(select {key} from {stage}_keys))")
    return [row[0] for row in cur.fetchall()]
