"""A card's SQL in its two forms: Metabase's native query with optional filter clauses, and the plain
query whose rows the HTML page embeds and filters itself.

Metabase form: the card's SQL becomes a subquery; each dashboard filter is an optional clause
(``[[and card.date >= {{date_from}}]]``) on the column the card names, then the rollup (sums per group key,
then the ratios of those sums, a rate left null under ``RATE_MIN_DENOMINATOR``), the end of a daily axis
at its last day with data, the sort and the limit. Metabase drops an optional clause whose variable has no
value, so an unfiltered dashboard runs the plain query. A card with ``undated_sql`` reads it in place of its
SQL while no date range is set: both become branches of a ``union all``, each kept or emptied by optional
clauses on the date variables (``where false [[or cast({{date_from}} as date) is not null]]...``), so
Postgres runs one branch and skips the other at once. ``bind`` does the same substitution for psycopg2,
so tests run exactly what Metabase would. dashboard.js repeats these steps on the embedded rows.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass

from dashboards.definitions import RATE_MIN_DENOMINATOR, Card

# dashboard filter -> the native-query variables it sets (Metabase template tags), with their type.
FILTER_TAGS: dict[str, tuple[tuple[str, str, str], ...]] = {
    "date_range": (("date_from", "From", "date"), ("date_to", "To", "date")),
    "specialty": (("specialty", "Specialty", "text"),),
    "device": (("device", "Device", "text"),),
}
_TAG = re.compile(r"\{\{\s*([a-z_][a-z0-9_]*)\s*\}\}")
_OPTIONAL = re.compile(r"\[\[(.*?)\]\]", re.DOTALL)


def stable_id(*parts: str) -> str:
    """A deterministic UUID: template-tag ids must not change between runs, or every rerun is an update."""
    return str(uuid.UUID(hashlib.sha256("/".join(parts).encode()).hexdigest()[:32]))


def _indent(sql: str, by: str = "    ") -> str:
    return "\n".join(by + line if line.strip() else line for line in sql.splitlines())


def _clauses(card: Card) -> list[str]:
    clauses = []
    for name, column in card.filters.items():
        if name == "date_range":
            clauses.append(f"[[and cast(card.{column} as date) >= {{{{date_from}}}}]]")
            clauses.append(f"[[and cast(card.{column} as date) <= {{{{date_to}}}}]]")
        else:
            clauses.append(f"[[and card.{column} = {{{{{FILTER_TAGS[name][0][0]}}}}}]]")
    return clauses


def _ratio_sql(card: Card, name: str) -> str:
    ratio = card.ratios[name]
    quotient = f"cast(sum(card.{ratio.numerator}) as numeric) / nullif(sum(card.{ratio.denominator}), 0)"
    if name in card.rates:
        return f"case when sum(card.{ratio.denominator}) >= {RATE_MIN_DENOMINATOR} then {quotient} end as {name}"
    return f"{quotient} as {name}"


def _order(card: Card, prefix: str) -> str | None:
    if card.sort:
        return ", ".join(f"{prefix}{s.column}{' desc' if s.descending else ''}" for s in card.sort)
    if card.rollup and card.group_keys:
        return ", ".join(f"{prefix}{key}" for key in card.group_keys)
    return None


def _rows(card: Card) -> str:
    """The rows the filters and the rollup read: the card's SQL, or with ``undated_sql`` the branch the date
    variables choose (the undated rows while neither is set, the card's SQL once one is)."""
    if card.undated_sql is None:
        return card.sql
    tags = [tag for tag, _label, _kind in FILTER_TAGS["date_range"]]
    undated_while = " ".join(f"[[and cast({{{{{tag}}}}} as date) is null]]" for tag in tags)
    dated_once = " ".join(f"[[or cast({{{{{tag}}}}} as date) is not null]]" for tag in tags)
    return "\n".join(
        [
            "select undated.*",
            "from (",
            _indent(card.undated_sql),
            ") as undated",
            f"where true {undated_while}",
            "union all",
            "select dated.*",
            "from (",
            _indent(card.sql),
            ") as dated",
            f"where false {dated_once}",
        ]
    )


def metabase_sql(card: Card) -> str:
    viz = card.visualization
    if card.rollup:
        keys = [f"card.{key}" for key in card.group_keys]
        sums = [f"sum(card.{column}) as {column}" for column in card.summed_columns]
        select = ", ".join([*keys, *sums, *(_ratio_sql(card, name) for name in card.ratios)])
    else:
        select = "*"
    lines = [f"select {select}", "from (", _indent(_rows(card)), ") as card"]
    clauses = _clauses(card)
    if clauses:
        lines.append("where true")
        lines += [f"    {clause}" for clause in clauses]
    if card.rollup and card.group_keys:
        lines.append("group by " + ", ".join(f"card.{key}" for key in card.group_keys))
    if not card.daily:
        order = _order(card, "")
        if order:
            lines.append(f"order by {order}")
        if card.limit:
            lines.append(f"limit {card.limit}")
        return "\n".join(lines)
    # A daily axis ends at the last day with data: later days (future bookings, no outcome yet) are dropped.
    shown = " or ".join(f"coalesce(cast(kept.{y} as numeric), 0) <> 0" for y in card.evidence_columns)
    out = [
        "with result as (",
        _indent("\n".join(lines)),
        ")",
        "select result.*",
        "from result",
        f"where result.{viz.x} <= (select max(kept.{viz.x}) from result as kept where {shown})",
    ]
    order = _order(card, "result.")
    if order:
        out.append(f"order by {order}")
    if card.limit:
        out.append(f"limit {card.limit}")
    return "\n".join(out)


def template_tags(card: Card) -> dict[str, dict]:
    """Metabase's ``template-tags`` for the card's native query (legacy and MBQL 5 use the same shape)."""
    tags = {}
    for name in card.filters:
        for tag, label, kind in FILTER_TAGS[name]:
            tags[tag] = {
                "id": stable_id("telemed", card.title, tag),
                "name": tag,
                "display-name": label,
                "type": kind,
            }
    return tags


def plain_sql(card: Card) -> str:
    """What the HTML page embeds: every row of the card's SQL, before filters and rollup."""
    return card.sql


@dataclass(frozen=True)
class Bound:
    sql: str
    params: tuple


def bind(native: str, values: dict[str, object]) -> Bound:
    """Metabase's substitution for psycopg2: an optional clause stays only when all its variables have a
    value; every variable becomes a bound parameter."""

    def keep_or_drop(match: re.Match) -> str:
        inner = match.group(1)
        return inner if all(values.get(tag) not in (None, "") for tag in _TAG.findall(inner)) else ""

    without_optional = _OPTIONAL.sub(keep_or_drop, native).replace("%", "%%")
    params: list[object] = []

    def placeholder(match: re.Match) -> str:
        tag = match.group(1)
        if values.get(tag) in (None, ""):
            raise ValueError(f"required variable {tag!r} has no value")
        params.append(values[tag])
        return "%s"

    return Bound(_TAG.sub(placeholder, without_optional), tuple(params))
