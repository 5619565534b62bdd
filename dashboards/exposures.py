"""dbt exposures generated from the dashboard definitions, so the docs lineage shows which dashboard
depends on which mart. ``python -m dashboards exposures`` writes the file; ``--check`` (and a test) fail
when it is out of step with the definitions.

A ``marts.<table>`` read by a card becomes ``ref('<table>')``; a table of another schema (the monitors'
history) becomes ``source('<schema>', '<table>')`` when the dbt project declares that source, and is
otherwise named in the description only, since dbt cannot point at an undeclared table.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from dashboards.definitions import Dashboard
from runtime.settings import PROJECT_ROOT

EXPOSURES_PATH = PROJECT_ROOT / "models" / "marts" / "_marts__exposures.yml"
HEADER = (
    "# Generated from dashboards/definitions/*.yml by `python -m dashboards exposures`; do not edit by hand.\n"
    "# A test fails when this file and the definitions disagree.\n"
)
OWNER = {"name": "telemed-elt analytics", "email": "analytics@telemed-elt.example"}


def declared_sources(models_dir: Path = PROJECT_ROOT / "models") -> set[tuple[str, str]]:
    """(source name, table name) pairs declared anywhere in the dbt project's YAML."""
    found = set()
    for path in models_dir.rglob("*.yml"):
        try:
            doc = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError:
            continue
        for source in doc.get("sources") or [] if isinstance(doc, dict) else []:
            for table in source.get("tables") or []:
                found.add((source.get("name"), table.get("name")))
    return found


def exposure(dashboard: Dashboard, sources: set[tuple[str, str]]) -> dict:
    depends_on, undeclared = [], []
    for schema, table in dashboard.tables:
        if schema == "marts":
            depends_on.append(f"ref('{table}')")
        elif (schema, table) in sources:
            depends_on.append(f"source('{schema}', '{table}')")
        else:
            undeclared.append(f"{schema}.{table}")
    description = dashboard.description
    if undeclared:
        description += f" Also reads {', '.join(undeclared)} (written by the monitors, not a dbt node)."
    cards = ", ".join(card.title for card in dashboard.cards)
    return {
        "name": dashboard.key,
        "label": dashboard.name,
        "type": "dashboard",
        "maturity": "medium",
        "description": f"{description}\nCards: {cards}.\n",
        "depends_on": sorted(depends_on),
        "owner": dict(OWNER),
        "meta": {"definition": f"dashboards/definitions/{dashboard.source.name}", "tool": "metabase"},
    }


class _Dumper(yaml.SafeDumper):
    """Multi-line strings as literal blocks, so the descriptions read as written."""


def _str(dumper: yaml.SafeDumper, value: str):
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


_Dumper.add_representer(str, _str)


def render(dashboards: list[Dashboard], sources: set[tuple[str, str]] | None = None) -> str:
    sources = declared_sources() if sources is None else sources
    document = {"version": 2, "exposures": [exposure(d, sources) for d in dashboards]}
    return HEADER + yaml.dump(document, Dumper=_Dumper, sort_keys=False, width=1000, allow_unicode=True)


def write(dashboards: list[Dashboard], path: Path = EXPOSURES_PATH) -> Path:
    path.write_text(render(dashboards))
    return path


def is_current(dashboards: list[Dashboard], path: Path = EXPOSURES_PATH) -> bool:
    return path.exists() and path.read_text() == render(dashboards)
