"""The dashboards as code: YAML definitions under ``dashboards/definitions/``, loaded and validated.

One definition drives everything: the Metabase provisioning, the offline HTML pages and the dbt exposures.
A card's ``sql`` is a plain Postgres query on the marts (the Data health cards read the monitors' history
in ``monitoring``). Dashboard filters never appear in that SQL: a card names the result columns each filter
applies to, and the filter keeps the result rows whose column matches, in Metabase (optional clauses around
the query) and in the HTML page (client-side, on the embedded rows) alike. ``rollup: sum`` then adds up the
filtered rows per ``x`` (or per ``group_by``, or into one number for a scalar), which is how a pie or a total
follows a date range; ``ratios`` (``completion_rate: completed / closed_appointments``) are computed after
that sum, so a rate or an average follows every filter too. A rate (a ratio shown as a percentage) whose
denominator is under ``RATE_MIN_DENOMINATOR`` is left empty: one or two closed appointments make no rate.

A card whose rows grow with the days of history can also give ``undated_sql``: what Metabase reads instead
while no date range is set, rows that after the same filters, rollup, sort and limit show exactly what
``sql``'s rows show (a provider's all-time sums in place of its days; the newest comments of each specialty
in place of every comment of the window), so an unfiltered dashboard reads rows that do not grow with the
history. Its columns are ``sql``'s, in the same order; the HTML page always embeds ``sql``'s rows.

Every filter of a dashboard either applies to a card (``filters``) or the card says why it cannot
(``unfiltered: {specialty: the reason}``), and both targets show that in the card's header. A bar or line
chart whose ``x`` is a day (named ``date`` or ``*_date``) ends at the last day with data.

The classes below are the schema: pydantic dataclasses that validate a definition as they are built, so a
malformed one is refused with every problem located by file, dashboard, card and field.
"""

from __future__ import annotations

from dataclasses import field
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import sqlparse.lexer
import yaml
from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    model_validator,
)
from pydantic.dataclasses import dataclass
from sqlparse import tokens as T

DEFINITIONS_DIR = Path(__file__).parent / "definitions"

# Metabase lays dashboards on a 24-column grid (since v0.46); the HTML pages use the same grid.
GRID_COLUMNS = 24
FilterName = Literal["date_range", "specialty", "device"]
VisualizationType = Literal["bar", "line", "row", "pie", "scatter", "table", "scalar"]
FILTERS: tuple[str, ...] = get_args(FilterName)
VISUALIZATIONS: tuple[str, ...] = get_args(VisualizationType)
# Visualizations whose rollup needs ``group_by``: their x is a measure (scatter) or they have no x (table).
GROUP_BY_VISUALIZATIONS = ("scatter", "table")
# A rate computed over fewer than this many cases (closed or started appointments, forms) is not shown:
# on a quiet day, one no-show of two closed appointments is a 50% no-show rate.
RATE_MIN_DENOMINATOR = 10
ALLOWED_SCHEMAS = ("marts", "monitoring")
_SCHEMA = ConfigDict(extra="forbid")


class DefinitionError(ValueError):
    """A dashboard definition is malformed; the message names the file, the dashboard, the card and the field."""


def _one_or_many(value: Any) -> Any:
    """``y: count`` is short for ``y: [count]``; an absent list is empty."""
    if value is None:
        return ()
    return [value] if isinstance(value, str) else value


def _text(value: Any) -> Any:
    return "" if value is None else value


def _or_empty(value: Any) -> Any:
    """An empty YAML key (``filters:``) is no entries."""
    return () if value is None else value


# Keys and result column names: lower_snake_case, as dbt names the marts' columns.
Name = Annotated[StrictStr, Field(pattern=r"^[a-z][a-z0-9_]*$")]
Columns = Annotated[tuple[Name, ...], BeforeValidator(_one_or_many)]
Description = Annotated[StrictStr, BeforeValidator(_text), AfterValidator(str.strip)]
Sql = Annotated[StrictStr, AfterValidator(lambda sql: sql.strip().rstrip(";"))]
Size = Annotated[StrictInt, Field(ge=1)]
Offset = Annotated[StrictInt, Field(ge=0)]


@dataclass(frozen=True, config=_SCHEMA)
class Position:
    row: Offset
    col: Offset
    width: Size
    height: Size

    @model_validator(mode="after")
    def _fits_the_grid(self) -> Position:
        if self.col + self.width > GRID_COLUMNS:
            raise ValueError(f"card overflows the {GRID_COLUMNS}-column grid")
        return self


@dataclass(frozen=True, config=_SCHEMA)
class Visualization:
    type: VisualizationType
    x: Name | None = None
    y: Columns = ()
    stacked: StrictBool = False
    percent: Columns = ()
    columns: Columns = ()
    x_label: StrictStr | None = None
    y_label: StrictStr | None = None

    @model_validator(mode="after")
    def _has_its_axes(self) -> Visualization:
        if self.type == "table":
            if not self.columns:
                raise ValueError("a table lists its 'columns'")
        elif self.type == "scalar":
            if len(self.y) != 1 or self.x:
                raise ValueError("a scalar shows exactly one 'y' column and no 'x'")
        elif not self.x or not self.y:
            raise ValueError(f"a {self.type} chart needs 'x' and 'y'")
        elif self.type == "pie" and len(self.y) != 1:
            raise ValueError("a pie has exactly one 'y' column")
        return self


def _sort_entry(item: Any) -> Any:
    """``column`` or ``column desc`` (``asc`` allowed) in YAML; a ``Sort`` as is."""
    if isinstance(item, Sort):
        return item
    parts = item.split() if isinstance(item, str) else []
    if len(parts) not in (1, 2) or (len(parts) == 2 and parts[1].lower() not in ("asc", "desc")):
        raise ValueError(f"sort entries are 'column' or 'column desc', got {item!r}")
    return {"column": parts[0], "descending": len(parts) == 2 and parts[1].lower() == "desc"}


@dataclass(frozen=True, config=_SCHEMA)
class Sort:
    column: Name
    descending: StrictBool = False


def _ratio_entry(item: Any) -> Any:
    """``numerator / denominator`` in YAML; a ``Ratio`` as is."""
    if isinstance(item, Ratio):
        return item
    parts = [p.strip() for p in item.split("/")] if isinstance(item, str) else []
    if len(parts) != 2 or not all(parts):
        raise ValueError(f"a ratio is 'numerator / denominator', got {item!r}")
    return {"numerator": parts[0], "denominator": parts[1]}


@dataclass(frozen=True, config=_SCHEMA)
class Ratio:
    numerator: Name
    denominator: Name


def _is_day(column: str | None) -> bool:
    return column is not None and (column == "date" or column.endswith("_date"))


@dataclass(frozen=True, kw_only=True, config=_SCHEMA)
class Card:
    key: Name
    title: StrictStr
    description: Description = ""
    sql: Sql
    # Read by Metabase in place of `sql` while no date range is set (see the module's docstring).
    undated_sql: Sql | None = None
    visualization: Visualization
    position: Position
    filters: Annotated[dict[StrictStr, Name], BeforeValidator(_or_empty)] = field(default_factory=dict)
    rollup: Literal["sum"] | None = None
    sort: Annotated[tuple[Annotated[Sort, BeforeValidator(_sort_entry)], ...], BeforeValidator(_or_empty)] = ()
    limit: Size | None = None
    group_by: Columns = ()
    ratios: Annotated[dict[Name, Annotated[Ratio, BeforeValidator(_ratio_entry)]], BeforeValidator(_or_empty)] = field(
        default_factory=dict
    )
    # Dashboard filters this card cannot take, each with the reason its header gives.
    unfiltered: Annotated[dict[FilterName, Description], BeforeValidator(_or_empty)] = field(default_factory=dict)
    missing_message: StrictStr | None = None
    # Columns holding patients' free text (health data): the offline HTML pages, which travel by e-mail,
    # leave them out unless asked (`python -m dashboards --include-comments`).
    free_text: Annotated[tuple[Name, ...], BeforeValidator(_or_empty)] = ()

    @property
    def tables(self) -> list[tuple[str, str]]:
        """(schema, table) pairs the SQL reads, in order of first appearance."""
        return list(
            dict.fromkeys((schema, table) for sql in self.queries for schema, table in _table_references(sql) if schema)
        )

    @property
    def queries(self) -> list[str]:
        """The card's SQL, then its undated form if it has one."""
        return [self.sql, *([self.undated_sql] if self.undated_sql else [])]

    @property
    def result_columns(self) -> list[str]:
        """The columns of the card's result after rollup: what its visualization shows."""
        viz = self.visualization
        if viz.type == "scalar":
            return list(viz.y)
        if viz.type == "table":
            return list(viz.columns)
        return [viz.x, *viz.y] if viz.x else list(viz.y)

    @property
    def group_keys(self) -> list[str]:
        """The columns a rollup groups by: ``group_by``, else the x of a chart (none for a scalar)."""
        if self.group_by:
            return list(self.group_by)
        x = self.visualization.x
        return [x] if x and self.visualization.type not in GROUP_BY_VISUALIZATIONS else []

    @property
    def summed_columns(self) -> list[str]:
        """What a rollup adds up: the shown columns, the ratios' terms and the sort columns, less the group
        keys and the ratios."""
        terms = [c for r in self.ratios.values() for c in (r.numerator, r.denominator)]
        keys = set(self.group_keys) | set(self.ratios)
        wanted = [*self.result_columns, *terms, *(s.column for s in self.sort)]
        return list(dict.fromkeys(c for c in wanted if c not in keys))

    @property
    def rolled_up_columns(self) -> list[str]:
        return list(dict.fromkeys([*self.group_keys, *self.summed_columns, *self.ratios]))

    @property
    def rates(self) -> dict[str, Ratio]:
        """The ratios shown as percentages: hidden under ``RATE_MIN_DENOMINATOR``."""
        return {name: ratio for name, ratio in self.ratios.items() if name in self.visualization.percent}

    @property
    def daily(self) -> bool:
        """A bar or line chart by day: it ends at the last day with data."""
        return self.visualization.type in ("bar", "line") and _is_day(self.visualization.x)

    @property
    def evidence_columns(self) -> list[str]:
        """What says a day has data: each shown value, or for a ratio its denominator (a rate left empty
        under the minimum is still a day with data)."""
        return [self.ratios[y].denominator if y in self.ratios else y for y in self.visualization.y]

    @property
    def required_columns(self) -> list[str]:
        """Columns the SQL must return: what the visualization, the rollup, the filters and the sort need
        (a ratio is computed, its terms are returned)."""
        needed = [
            *self.result_columns,
            *self.group_keys,
            *self.summed_columns,
            *self.filters.values(),
            *(s.column for s in self.sort),
        ]
        return list(dict.fromkeys(c for c in needed if c and c not in self.ratios))

    @model_validator(mode="after")
    def _rollup_fits(self) -> Card:
        kind = self.visualization.type
        if self.rollup is None:
            if kind == "scalar":
                raise ValueError("a scalar needs 'rollup: sum' so that it follows the filters")
            if self.group_by or self.ratios:
                raise ValueError("'group_by' and 'ratios' need 'rollup: sum'")
            return self
        if kind in GROUP_BY_VISUALIZATIONS and not self.group_by:
            raise ValueError(f"a {kind} with a rollup names the columns it groups by in 'group_by'")
        missing = [name for name in self.ratios if name not in self.result_columns]
        if missing:
            raise ValueError(f"ratios {missing} are not shown by the visualization")
        stray = [s.column for s in self.sort if s.column not in self.rolled_up_columns]
        if stray:
            raise ValueError(f"after a rollup only {self.rolled_up_columns} remain; cannot sort by {stray}")
        return self

    @model_validator(mode="after")
    def _reads_only_the_marts(self) -> Card:
        if not self.tables:
            raise ValueError("the SQL reads no schema-qualified table")
        for schema, table in self.tables:
            if schema not in ALLOWED_SCHEMAS:
                raise ValueError(f"reads {schema}.{table}; cards read only {', '.join(ALLOWED_SCHEMAS)}")
        for sql in self.queries:
            ctes = _cte_names(sql)
            for schema, table in _table_references(sql):
                if schema is None and table not in ctes:
                    raise ValueError(f"table {table!r} must be schema-qualified (Metabase runs the SQL as is)")
        return self

    @model_validator(mode="after")
    def _undated_stands_in_for_a_date_range(self) -> Card:
        if self.undated_sql is None:
            return self
        if "date_range" not in self.filters:
            raise ValueError("'undated_sql' stands in for 'sql' while no date range is set: the card takes none")
        if _is_day(self.visualization.x):
            raise ValueError("'undated_sql' cannot stand in for a chart by day: its days are what it shows")
        return self


@dataclass(frozen=True, kw_only=True, config=_SCHEMA)
class Dashboard:
    key: Name
    name: StrictStr
    description: Description = ""
    filters: Annotated[tuple[FilterName, ...], BeforeValidator(_one_or_many)] = ()
    cards: tuple[Card, ...]
    source: Path

    @property
    def tables(self) -> list[tuple[str, str]]:
        return list(dict.fromkeys(pair for card in self.cards for pair in card.tables))

    @model_validator(mode="after")
    def _cards_fit_together(self) -> Dashboard:
        if not self.cards:
            raise ValueError("a dashboard needs cards")
        keys = [c.key for c in self.cards]
        if len(set(keys)) != len(keys):
            raise ValueError(f"card keys repeat: {sorted({k for k in keys if keys.count(k) > 1})}")
        for i, first in enumerate(self.cards):
            for second in self.cards[i + 1 :]:
                if _overlaps(first.position, second.position):
                    raise ValueError(f"cards {first.key!r} and {second.key!r} overlap")
        return self

    @model_validator(mode="after")
    def _filters_match_the_cards(self) -> Dashboard:
        for card in self.cards:
            for name in [*card.filters, *card.unfiltered]:
                key = "filters" if name in card.filters else "unfiltered"
                if name not in self.filters:
                    raise ValueError(
                        f"card {card.key!r}, {key}.{name}: filter {name!r} is not a filter of this dashboard "
                        f"({', '.join(self.filters) or 'it has none'})"
                    )
            for name in self.filters:
                if name in card.filters and name in card.unfiltered:
                    raise ValueError(f"card {card.key!r}: filter {name!r} is under both 'filters' and 'unfiltered'")
                if name not in card.filters and name not in card.unfiltered:
                    raise ValueError(
                        f"card {card.key!r}: filter {name!r} of this dashboard neither applies to it "
                        f"(filters.{name}: <column>) nor is declared under unfiltered.{name} with the reason"
                    )
                if name in card.unfiltered and not card.unfiltered[name]:
                    raise ValueError(f"card {card.key!r}, unfiltered.{name}: give the reason the header shows")
        for name in self.filters:
            if not any(name in c.filters for c in self.cards):
                raise ValueError(f"filter {name!r} applies to no card")
        return self


def _overlaps(a: Position, b: Position) -> bool:
    return a.col < b.col + b.width and b.col < a.col + a.width and a.row < b.row + b.height and b.row < a.row + a.height


# The SQL, read as Postgres tokens (comments and string literals are never mistaken for SQL) --------------------

_NAME_TYPES = (T.Name, T.Keyword, T.Literal.String.Symbol)
_END = (None, "")


def _significant_tokens(sql: str) -> list[tuple[Any, str]]:
    return [
        (ttype, value)
        for ttype, value in sqlparse.lexer.tokenize(sql)
        if ttype not in T.Whitespace and ttype not in T.Comment and ttype is not T.Newline
    ]


def _name(token: tuple[Any, str]) -> str | None:
    ttype, value = token
    if ttype in T.Literal.String.Symbol:
        return value.strip('"')
    if ttype in T.Keyword.DML or ttype in T.Keyword.CTE or not any(ttype in t for t in _NAME_TYPES):
        return None
    return value.lower()


def _table_references(sql: str) -> list[tuple[str | None, str]]:
    """(schema or None, table) of each relation named after FROM or JOIN, in order.

    Only FROM and JOIN of a query count: inside the parentheses of a function (``extract(day from x)``,
    ``trim(both from x)``) FROM is no table. A subquery's parentheses open a query again; what FROM reads
    through a function call or a subquery (``unnest(...)``, ``lateral (...)``) is not a named relation."""
    tokens = [*_significant_tokens(sql), *[_END] * 4]  # look-ahead never runs past the end
    in_query = [True]  # one entry per open parenthesis: does it hold a query (or function arguments)?
    references: list[tuple[str | None, str]] = []
    for i, (ttype, value) in enumerate(tokens[:-4]):
        if value == "(":
            following = tokens[i + 1][0]
            in_query.append(following is not None and (following in T.Keyword.DML or following in T.Keyword.CTE))
        elif value == ")" and len(in_query) > 1:
            in_query.pop()
        elif in_query[-1] and ttype in T.Keyword and value.lower().split()[-1] in ("from", "join"):
            reference = _relation_at(tokens, i + 1)
            if reference is not None:
                references.append(reference)
    return references


def _relation_at(tokens: list[tuple[Any, str]], i: int) -> tuple[str | None, str] | None:
    """The relation named at ``tokens[i]``: ``schema.table``, ``table`` or None (a function or subquery)."""
    if tokens[i][1].lower() == "lateral":
        i += 1
    first = _name(tokens[i])
    if first is None:
        return None
    if tokens[i + 1][1] == "." and (second := _name(tokens[i + 2])) is not None:
        schema, table, after = first, second, tokens[i + 3]
    else:
        schema, table, after = None, first, tokens[i + 1]
    return None if after[1] == "(" else (schema, table)


def _cte_names(sql: str) -> set[str]:
    """Names the query defines with ``name as (...)``."""
    tokens = _significant_tokens(sql)
    return {
        name
        for first, as_, paren in zip(tokens, tokens[1:], tokens[2:], strict=False)
        if as_[1].lower() == "as" and paren[1] == "(" and (name := _name(first)) is not None
    }


# Loading -----------------------------------------------------------------------------------------------------


def _where(raw: dict, loc: tuple) -> str:
    """A validation error's location, as the definition's author reads it: the card by its key, then the field."""
    parts = [f"dashboard {raw['key']!r}" if isinstance(raw.get("key"), str) else "dashboard"]
    if len(loc) >= 2 and loc[0] == "cards" and isinstance(loc[1], int):
        cards = raw.get("cards")
        card = cards[loc[1]] if isinstance(cards, list) and loc[1] < len(cards) else None
        key = card.get("key") if isinstance(card, dict) else None
        parts.append(f"card {key!r}" if isinstance(key, str) else f"card #{loc[1] + 1}")
        loc = loc[2:]
    path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")
    return ", ".join([*parts, path] if path else parts)


def _problem(error: dict) -> str:
    """pydantic's message, said in the words of a definition."""
    kind, value = error["type"], error.get("input")
    if kind in ("missing", "missing_argument", "missing_keyword_only_argument"):
        return "missing"
    if kind in ("extra_forbidden", "unexpected_keyword_argument"):
        return "unknown key"
    if kind == "literal_error":
        return f"{value!r} is not one of {error['ctx']['expected']}"
    if kind in ("dataclass_type", "dict_type"):
        return f"must be a mapping, got {value!r}"
    if kind == "string_pattern_mismatch":
        return f"{value!r} must be lower_snake_case"
    return error["msg"].removeprefix("Value error, ")


def load_dashboard(path: Path) -> Dashboard:
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise DefinitionError(f"{path.name}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise DefinitionError(f"{path.name}: expected a mapping at the top")
    if "source" in raw:
        raise DefinitionError(f"{path.name}: unknown key 'source' (the loader sets it to the file)")
    try:
        return Dashboard(**{str(k): v for k, v in raw.items()}, source=path)
    except ValidationError as exc:
        problems = [f"{path.name}: {_where(raw, e['loc'])}: {_problem(e)}" for e in exc.errors()]
        raise DefinitionError("\n".join(problems)) from None


def load_all(directory: Path = DEFINITIONS_DIR) -> list[Dashboard]:
    """Every dashboard, ordered by its file name; names, keys and card titles are unique across them
    (Metabase finds our cards by title within one collection)."""
    dashboards = [load_dashboard(path) for path in sorted(directory.glob("*.yml"))]
    if not dashboards:
        raise DefinitionError(f"no dashboard definitions in {directory}")
    for attr in ("key", "name"):
        values = [getattr(d, attr) for d in dashboards]
        if len(set(values)) != len(values):
            raise DefinitionError(f"dashboard {attr}s repeat across definitions: {values}")
    titles = [c.title for d in dashboards for c in d.cards]
    repeated = sorted({t for t in titles if titles.count(t) > 1})
    if repeated:
        raise DefinitionError(f"card titles must be unique across dashboards: {repeated}")
    return dashboards
