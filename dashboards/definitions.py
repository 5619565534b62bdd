"""The dashboards as code: YAML definitions under ``dashboards/definitions/``, loaded and validated.

One definition drives everything: the Metabase provisioning, the offline HTML pages and the dbt exposures.
A card's ``sql`` is a plain Postgres query on the marts (the Data health cards read the monitors' history
in ``monitoring``). Dashboard filters never appear in that SQL: a card names the result columns each filter
applies to, and the filter keeps the result rows whose column matches, in Metabase (optional clauses around
the query) and in the HTML page (client-side, on the embedded rows) alike. ``rollup: sum`` then adds up the
filtered rows per ``x`` (or into one number for a scalar), which is how a pie or a total follows a date range.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

DEFINITIONS_DIR = Path(__file__).parent / "definitions"

# Metabase lays dashboards on a 24-column grid (since v0.46); the HTML pages use the same grid.
GRID_COLUMNS = 24
FILTERS = ("date_range", "specialty", "device")
VISUALIZATIONS = ("bar", "line", "row", "pie", "scatter", "table", "scalar")
ROLLUP_VISUALIZATIONS = ("bar", "row", "pie", "scalar")
ALLOWED_SCHEMAS = ("marts", "monitoring")
_IDENT = re.compile(r"^[a-z][a-z0-9_]*$")
_TABLE_REF = re.compile(r"\b(?:from|join)\s+([a-z_][a-z0-9_]*)\s*\.\s*([a-z_][a-z0-9_]*)\b(?!\s*[()])", re.IGNORECASE)
# "from x" that is not a table: extract(day from x), trim(both from x) end at ")"; functions open "(".
_BARE_TABLE = re.compile(r"\b(?:from|join)\s+([a-z_][a-z0-9_]*)\b(?!\s*[.()])", re.IGNORECASE)


class DefinitionError(ValueError):
    """A dashboard definition is malformed; the message names the file and the card."""


@dataclass(frozen=True)
class Position:
    row: int
    col: int
    width: int
    height: int


@dataclass(frozen=True)
class Visualization:
    type: str
    x: str | None = None
    y: tuple[str, ...] = ()
    stacked: bool = False
    percent: tuple[str, ...] = ()
    columns: tuple[str, ...] = ()
    x_label: str | None = None
    y_label: str | None = None


@dataclass(frozen=True)
class Sort:
    column: str
    descending: bool = False


@dataclass(frozen=True)
class Card:
    key: str
    title: str
    description: str
    sql: str
    visualization: Visualization
    position: Position
    filters: dict[str, str] = field(default_factory=dict)
    rollup: str | None = None
    sort: tuple[Sort, ...] = ()
    limit: int | None = None
    missing_message: str | None = None

    @property
    def tables(self) -> list[tuple[str, str]]:
        """(schema, table) pairs the SQL reads, in order of first appearance."""
        seen: list[tuple[str, str]] = []
        for schema, table in _TABLE_REF.findall(_strip_comments(self.sql)):
            pair = (schema.lower(), table.lower())
            if pair not in seen:
                seen.append(pair)
        return seen

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
    def required_columns(self) -> list[str]:
        """Columns the SQL must return: what the visualization, the filters and the sort need."""
        needed = [*self.result_columns, *self.filters.values(), *(s.column for s in self.sort)]
        return list(dict.fromkeys(c for c in needed if c))


@dataclass(frozen=True)
class Dashboard:
    key: str
    name: str
    description: str
    filters: tuple[str, ...]
    cards: tuple[Card, ...]
    source: Path

    @property
    def tables(self) -> list[tuple[str, str]]:
        seen: list[tuple[str, str]] = []
        for card in self.cards:
            for pair in card.tables:
                if pair not in seen:
                    seen.append(pair)
        return seen


def _strip_comments(sql: str) -> str:
    return re.sub(r"--[^\n]*", "", sql)


def _require(mapping: dict, key: str, where: str, kind: type | tuple[type, ...] = str):
    if key not in mapping:
        raise DefinitionError(f"{where}: missing {key!r}")
    value = mapping[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise DefinitionError(f"{where}: {key!r} must be {getattr(kind, '__name__', kind)}, got {value!r}")
    return value


def _names(value, where: str, what: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and _IDENT.match(v) for v in value):
        raise DefinitionError(f"{where}: {what} must be column names, got {value!r}")
    return tuple(value)


def _visualization(raw: dict, where: str) -> Visualization:
    if not isinstance(raw, dict):
        raise DefinitionError(f"{where}: 'visualization' must be a mapping")
    kind = _require(raw, "type", where)
    if kind not in VISUALIZATIONS:
        raise DefinitionError(f"{where}: visualization type {kind!r} is not one of {', '.join(VISUALIZATIONS)}")
    unknown = set(raw) - {"type", "x", "y", "stacked", "percent", "columns", "x_label", "y_label"}
    if unknown:
        raise DefinitionError(f"{where}: unknown visualization keys {sorted(unknown)}")
    viz = Visualization(
        type=kind,
        x=_names(raw.get("x"), where, "x")[0] if raw.get("x") else None,
        y=_names(raw.get("y"), where, "y"),
        stacked=bool(raw.get("stacked", False)),
        percent=_names(raw.get("percent"), where, "percent"),
        columns=_names(raw.get("columns"), where, "columns"),
        x_label=raw.get("x_label"),
        y_label=raw.get("y_label"),
    )
    if kind == "table":
        if not viz.columns:
            raise DefinitionError(f"{where}: a table lists its 'columns'")
    elif kind == "scalar":
        if len(viz.y) != 1 or viz.x:
            raise DefinitionError(f"{where}: a scalar shows exactly one 'y' column and no 'x'")
    else:
        if not viz.x or not viz.y:
            raise DefinitionError(f"{where}: a {kind} chart needs 'x' and 'y'")
        if kind == "pie" and len(viz.y) != 1:
            raise DefinitionError(f"{where}: a pie has exactly one 'y' column")
    return viz


def _card(raw: dict, where: str, dashboard_filters: tuple[str, ...]) -> Card:
    if not isinstance(raw, dict):
        raise DefinitionError(f"{where}: a card must be a mapping")
    key = _require(raw, "key", where)
    if not _IDENT.match(key):
        raise DefinitionError(f"{where}: card key {key!r} must be lower_snake_case")
    where = f"{where} card {key!r}"
    unknown = set(raw) - {
        "key",
        "title",
        "description",
        "sql",
        "visualization",
        "position",
        "filters",
        "rollup",
        "sort",
        "limit",
        "missing_message",
    }
    if unknown:
        raise DefinitionError(f"{where}: unknown keys {sorted(unknown)}")
    pos = _require(raw, "position", where, dict)
    position = Position(*(_require(pos, k, f"{where} position", int) for k in ("row", "col", "width", "height")))
    if position.col < 0 or position.row < 0 or position.width < 1 or position.height < 1:
        raise DefinitionError(f"{where}: position must be non-negative with a positive size")
    if position.col + position.width > GRID_COLUMNS:
        raise DefinitionError(f"{where}: card overflows the {GRID_COLUMNS}-column grid")
    filters = raw.get("filters") or {}
    if not isinstance(filters, dict):
        raise DefinitionError(f"{where}: 'filters' maps a dashboard filter to a result column")
    for name, column in filters.items():
        if name not in dashboard_filters:
            raise DefinitionError(f"{where}: filter {name!r} is not a filter of this dashboard")
        _names(column, where, f"filter {name}")
    rollup = raw.get("rollup")
    viz = _visualization(raw.get("visualization"), where)
    if rollup is not None:
        if rollup != "sum":
            raise DefinitionError(f"{where}: the only rollup is 'sum'")
        if viz.type not in ROLLUP_VISUALIZATIONS:
            raise DefinitionError(f"{where}: rollup applies to {', '.join(ROLLUP_VISUALIZATIONS)} only")
    elif viz.type == "scalar":
        raise DefinitionError(f"{where}: a scalar needs 'rollup: sum' so that it follows the filters")
    sort = []
    for item in raw.get("sort") or []:
        parts = str(item).split()
        if len(parts) not in (1, 2) or (len(parts) == 2 and parts[1].lower() not in ("asc", "desc")):
            raise DefinitionError(f"{where}: sort entries are 'column' or 'column desc', got {item!r}")
        _names(parts[0], where, "sort")
        sort.append(Sort(parts[0], len(parts) == 2 and parts[1].lower() == "desc"))
    limit = raw.get("limit")
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise DefinitionError(f"{where}: 'limit' must be a positive integer")
    sql = _require(raw, "sql", where).strip().rstrip(";")
    card = Card(
        key=key,
        title=_require(raw, "title", where),
        description=str(raw.get("description") or "").strip(),
        sql=sql,
        visualization=viz,
        position=position,
        filters=dict(filters),
        rollup=rollup,
        sort=tuple(sort),
        limit=limit,
        missing_message=raw.get("missing_message"),
    )
    if rollup:
        stray = [s.column for s in card.sort if s.column not in card.result_columns]
        if stray:
            raise DefinitionError(f"{where}: after a rollup only {card.result_columns} remain; cannot sort by {stray}")
    tables = card.tables
    if not tables:
        raise DefinitionError(f"{where}: the SQL reads no schema-qualified table")
    for schema, table in tables:
        if schema not in ALLOWED_SCHEMAS:
            raise DefinitionError(f"{where}: reads {schema}.{table}; cards read only {', '.join(ALLOWED_SCHEMAS)}")
    ctes = {m.lower() for m in re.findall(r"\b([a-z_][a-z0-9_]*)\s+as\s*\(", sql, flags=re.IGNORECASE)}
    for bare in _BARE_TABLE.findall(_strip_comments(sql)):
        if bare.lower() not in ctes and bare.lower() not in ("lateral", "unnest", "generate_series"):
            raise DefinitionError(f"{where}: table {bare!r} must be schema-qualified (Metabase runs the SQL as is)")
    return card


def _overlaps(a: Position, b: Position) -> bool:
    return a.col < b.col + b.width and b.col < a.col + a.width and a.row < b.row + b.height and b.row < a.row + a.height


def load_dashboard(path: Path) -> Dashboard:
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise DefinitionError(f"{path.name}: not valid YAML: {exc}") from None
    where = path.name
    if not isinstance(raw, dict):
        raise DefinitionError(f"{where}: expected a mapping at the top")
    key = _require(raw, "key", where)
    if not _IDENT.match(key):
        raise DefinitionError(f"{where}: dashboard key {key!r} must be lower_snake_case")
    filters = tuple(raw.get("filters") or ())
    for name in filters:
        if name not in FILTERS:
            raise DefinitionError(f"{where}: filter {name!r} is not one of {', '.join(FILTERS)}")
    cards_raw = _require(raw, "cards", where, list)
    cards = tuple(_card(item, where, filters) for item in cards_raw)
    if not cards:
        raise DefinitionError(f"{where}: a dashboard needs cards")
    keys = [c.key for c in cards]
    if len(set(keys)) != len(keys):
        raise DefinitionError(f"{where}: card keys repeat")
    for i, first in enumerate(cards):
        for second in cards[i + 1 :]:
            if _overlaps(first.position, second.position):
                raise DefinitionError(f"{where}: cards {first.key!r} and {second.key!r} overlap")
    for name in filters:
        if not any(name in c.filters for c in cards):
            raise DefinitionError(f"{where}: filter {name!r} applies to no card")
    return Dashboard(
        key=key,
        name=_require(raw, "name", where),
        description=str(raw.get("description") or "").strip(),
        filters=filters,
        cards=cards,
        source=path,
    )


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
