"""The dashboards' glossary (``dashboards/glossary.yml``): one label and one colour per category value, one
label per result column. Both targets read it: the HTML pages colour and name every mark, legend, table
cell and filter option from it; the Metabase provisioning sets series titles, series and pie colours from it.

A column names its category by being listed under the category's ``columns``; a series column that stands
for one category value (``no_shows`` for status ``no_show``) says so with ``of``, and takes that colour.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import yaml

from dashboards.definitions import DefinitionError

GLOSSARY_PATH = Path(__file__).parent / "glossary.yml"
_COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")
# A value the glossary does not list, or a series without a colour: drawn in this grey, never in a colour
# that could be taken for a category's.
UNLISTED_COLOR = "#9aa5b1"
NULL_LABEL = "Unknown"


@dataclass(frozen=True)
class Entry:
    label: str
    color: str | None = None


@dataclass(frozen=True)
class Glossary:
    categories: dict[str, dict[str, Entry]]  # category -> value -> entry, in display order
    category_of_column: dict[str, str]  # result column -> its category
    columns: dict[str, Entry]  # result column -> label and (series) colour

    def value_label(self, column: str, value: object) -> str:
        if value is None:
            return NULL_LABEL
        entry = self.categories.get(self.category_of_column.get(column, ""), {}).get(str(value))
        return entry.label if entry else str(value)

    def value_color(self, column: str, value: object) -> str:
        entry = self.categories.get(self.category_of_column.get(column, ""), {}).get(str(value))
        return entry.color if entry and entry.color else UNLISTED_COLOR

    def column_label(self, column: str) -> str:
        entry = self.columns.get(column)
        if entry:
            return entry.label
        text = column.replace("_", " ")
        return text[:1].upper() + text[1:]

    def column_color(self, column: str) -> str | None:
        entry = self.columns.get(column)
        return entry.color if entry else None

    def as_json(self) -> dict:
        """What the HTML page's script reads."""
        return {
            "categories": {
                name: [{"value": v, "label": e.label, "color": e.color} for v, e in values.items()]
                for name, values in self.categories.items()
            },
            "category_of_column": self.category_of_column,
            "columns": {c: {"label": e.label, "color": e.color} for c, e in self.columns.items()},
            "unlisted_color": UNLISTED_COLOR,
            "null_label": NULL_LABEL,
        }


def _color(value: object, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _COLOR.match(value):
        raise DefinitionError(f"glossary.yml: {where}: colour {value!r} is not #rrggbb")
    return value


def parse(raw: object) -> Glossary:
    if not isinstance(raw, dict) or set(raw) - {"categories", "columns"}:
        raise DefinitionError("glossary.yml: expected the keys 'categories' and 'columns' at the top")
    categories: dict[str, dict[str, Entry]] = {}
    category_of_column: dict[str, str] = {}
    for name, spec in (raw.get("categories") or {}).items():
        if not isinstance(spec, dict) or not spec.get("columns") or not spec.get("values"):
            raise DefinitionError(f"glossary.yml: category {name!r} needs 'columns' and 'values'")
        values = {}
        for value, entry in spec["values"].items():
            if not isinstance(entry, dict) or not isinstance(entry.get("label"), str):
                raise DefinitionError(f"glossary.yml: {name}.{value}: needs a label")
            values[str(value)] = Entry(entry["label"], _color(entry.get("color"), f"{name}.{value}"))
        labels = [e.label for e in values.values()]
        if len(set(labels)) != len(labels):
            raise DefinitionError(f"glossary.yml: category {name!r}: labels repeat")
        categories[name] = values
        for column in spec["columns"]:
            if column in category_of_column:
                raise DefinitionError(
                    f"glossary.yml: column {column!r} is in categories {category_of_column[column]!r} and {name!r}"
                )
            category_of_column[column] = name
    columns: dict[str, Entry] = {}
    for column, entry in (raw.get("columns") or {}).items():
        if not isinstance(entry, dict) or not isinstance(entry.get("label"), str):
            raise DefinitionError(f"glossary.yml: columns.{column}: needs a label")
        color = _color(entry.get("color"), f"columns.{column}")
        if "of" in entry:
            category, _, value = str(entry["of"]).partition(".")
            target = categories.get(category, {}).get(value)
            if target is None:
                raise DefinitionError(f"glossary.yml: columns.{column}: 'of: {entry['of']}' names no category value")
            if color is not None:
                raise DefinitionError(f"glossary.yml: columns.{column}: takes the colour of {entry['of']}, not its own")
            color = target.color
        columns[str(column)] = Entry(entry["label"], color)
    return Glossary(categories, category_of_column, columns)


@cache
def load(path: Path = GLOSSARY_PATH) -> Glossary:
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise DefinitionError(f"glossary.yml: not valid YAML: {exc}") from None
    return parse(raw)
