"""Provision Metabase from the definitions, through ``metabase-api``'s session and request helpers.

Steps: first-run setup when the instance has no admin yet; the warehouse connection as the read-only
reporting role, and a schema sync; our collection; one native-SQL card per definition card; one dashboard
per definition with its filters and cards. Everything is found by name within our collection and
updated in place only when it differs, so a second run changes nothing.

The client's own shortcuts do not fit current Metabase: ``create_card`` always creates a new card, there
is no dashboard creation, and ``add_card_to_dashboard`` calls ``POST /api/dashboard/:id/cards``, which
Metabase removed in v0.47. Cards go onto a dashboard with ``PUT /api/dashboard/:id`` and a ``dashcards``
list (negative ids for new ones). Its ``get``/``post`` return ``False`` on any error and ``put`` only the
status code, so every call here asks for the raw response and raises with Metabase's message.

Supported: Metabase v0.48 and newer (``dashcards`` on ``PUT /api/dashboard/:id``). Cards come back as MBQL 5
from v0.57 (``stages``) and as legacy ``native`` queries before; both are read. A dashboard answered with
v0.47's ``ordered_cards`` gets its cards through that release's ``PUT /api/dashboard/:id/cards``.

Nothing assumes Metabase echoed a request: ids, defaults and the dashboard's cards are read from its answers
(a new dashboard is read back before its cards are placed), since Metabase assigns ids, fills defaults,
normalises queries and redacts the warehouse password.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

import requests
from metabase_api import Metabase_API

from dashboards import glossary
from dashboards.definitions import Card, Dashboard
from dashboards.query import FILTER_TAGS, metabase_sql, stable_id, template_tags
from runtime.passwords import PasswordFileError
from runtime.settings import REPORTING_ROLE, Settings

log = logging.getLogger(__name__)

COLLECTION_NAME = "telemed-elt"
COLLECTION_DESCRIPTION = "Dashboards as code from telemed-elt (dashboards/definitions). Edits here are overwritten."
DATABASE_NAME = "telemed marts"
TIMEOUT = 60


class MetabaseError(RuntimeError):
    """Metabase refused a request; the message carries its answer."""


@dataclass
class Report:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)

    def summary(self) -> str:
        lines = [f"metabase: {len(self.created)} created, {len(self.updated)} updated, {len(self.unchanged)} unchanged"]
        lines += [f"  created {item}" for item in self.created]
        lines += [f"  updated {item}" for item in self.updated]
        return "\n".join(lines)


@dataclass(frozen=True)
class MetabaseConfig:
    url: str
    user: str
    password: str
    # How Metabase reaches the warehouse: with docker compose that is the `postgres` service, not localhost.
    warehouse_host: str
    warehouse_port: int
    warehouse_database: str
    reporting_password: str
    # libpq's sslmode names for Metabase's connection to the warehouse (METABASE_WAREHOUSE_SSLMODE): disable
    # (the default: the compose network never leaves the machine), or allow, prefer, require, verify-ca,
    # verify-full; with METABASE_WAREHOUSE_SSLROOTCERT the CA file (a path Metabase can read) to verify with.
    warehouse_sslmode: str = "disable"
    warehouse_sslrootcert: str | None = None

    @classmethod
    def from_env(cls, settings: Settings, env: dict[str, str] | None = None) -> MetabaseConfig:
        env = dict(os.environ if env is None else env)
        missing = [name for name in ("METABASE_USER", "METABASE_PASSWORD") if not env.get(name)]
        # The embedded server's reporting password is in its passwords file (Settings.password_for).
        reporting_password = env.get("TELEMED_REPORTING_PASSWORD")
        if not reporting_password and settings.pg_embedded:
            try:
                reporting_password = settings.password_for(REPORTING_ROLE)
            except PasswordFileError:
                reporting_password = None
        if not reporting_password:
            missing.append("TELEMED_REPORTING_PASSWORD")
        sslmode = env.get("METABASE_WAREHOUSE_SSLMODE") or "disable"
        if sslmode not in WAREHOUSE_SSLMODES:
            raise MetabaseError(
                f"METABASE_WAREHOUSE_SSLMODE must be one of {', '.join(WAREHOUSE_SSLMODES)}, not {sslmode!r}"
            )
        if missing:
            raise MetabaseError(
                f"METABASE_URL is set but {', '.join(missing)} is not: Metabase needs an admin login, and its "
                f"warehouse connection logs in as {REPORTING_ROLE} with TELEMED_REPORTING_PASSWORD (see .env.example)"
            )
        return cls(
            url=env["METABASE_URL"].rstrip("/"),
            user=env["METABASE_USER"],
            password=env["METABASE_PASSWORD"],
            warehouse_host=env.get("METABASE_WAREHOUSE_HOST") or settings.pg_host,
            warehouse_port=int(env.get("METABASE_WAREHOUSE_PORT") or settings.pg_port),
            warehouse_database=env.get("METABASE_WAREHOUSE_DATABASE") or settings.pg_database,
            reporting_password=reporting_password,
            warehouse_sslmode=sslmode,
            warehouse_sslrootcert=env.get("METABASE_WAREHOUSE_SSLROOTCERT") or None,
        )

    def ssl_details(self) -> dict[str, object]:
        """The SSL part of Metabase's Postgres connection details."""
        if self.warehouse_sslmode == "disable":
            return {"ssl": False}
        details: dict[str, object] = {"ssl": True, "ssl-mode": self.warehouse_sslmode, "ssl-use-client-auth": False}
        if self.warehouse_sslrootcert:
            details |= {"ssl-root-cert-options": "local", "ssl-root-cert-path": self.warehouse_sslrootcert}
        return details


WAREHOUSE_SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


def _json(response: requests.Response, what: str):
    if not response.ok:
        raise MetabaseError(f"{what}: HTTP {response.status_code}: {response.text[:500]}")
    return response.json() if response.content else None


def _listing(payload) -> list[dict]:
    """Metabase wraps some listings in {"data": [...]} (databases since v0.42, collection items); older ones not."""
    if isinstance(payload, dict) and "data" in payload:
        return payload["data"]
    return payload or []


def ensure_setup(config: MetabaseConfig) -> bool:
    """First-run setup of a new instance (creates the admin); False when it was done before.

    This runs before the client exists: Metabase_API logs in when it is built, which a new instance cannot do.
    """
    props = _json(requests.get(f"{config.url}/api/session/properties", timeout=TIMEOUT), "session properties")
    if props.get("has-user-setup"):
        return False
    token = props.get("setup-token")
    if not token:
        raise MetabaseError("Metabase reports no admin user and no setup token; finish its setup in the browser")
    body = {
        "token": token,
        "user": {
            "email": config.user,
            "password": config.password,
            "first_name": "telemed",
            "last_name": "admin",
            "site_name": "telemed-elt",
        },
        "prefs": {"site_name": "telemed-elt", "site_locale": "en", "allow_tracking": False},
    }
    _json(requests.post(f"{config.url}/api/setup", json=body, timeout=TIMEOUT), "first-run setup")
    log.info("metabase: first-run setup done, admin %s created", config.user)
    return True


def _subset_differs(existing: dict, desired: dict) -> bool:
    """Metabase adds keys of its own to what it stores; only the keys we set decide a difference."""
    for key, value in desired.items():
        current = existing.get(key)
        if isinstance(value, dict) and isinstance(current, dict):
            if _subset_differs(current, value):
                return True
        elif current != value:
            return True
    return False


def native_query(card_payload: dict) -> tuple[str | None, dict]:
    """The SQL and template tags of a stored card, legacy (``native``) or MBQL 5 (``stages``)."""
    query = card_payload.get("dataset_query") or {}
    if "stages" in query:
        stage = (query.get("stages") or [{}])[0]
        return stage.get("native"), stage.get("template-tags") or {}
    native = query.get("native") or {}
    return native.get("query"), native.get("template-tags") or {}


def card_database(card_payload: dict) -> int | None:
    return (card_payload.get("dataset_query") or {}).get("database")


def visualization_settings(card: Card) -> dict:
    """Metabase's settings for the card, with the glossary's titles and colours where Metabase takes them:
    series titles and colours (``series_settings``), pie slice colours (``pie.colors``) and column titles.
    Metabase cannot rename a category value of a native query's rows (a pie says ``no_show``, not
    "No-show") nor colour single-series bars by their category; the offline pages do both."""
    viz = card.visualization
    words = glossary.load()
    settings: dict = {}
    if viz.type == "pie":
        settings = {"pie.dimension": viz.x, "pie.metric": viz.y[0]}
        values = words.categories.get(words.category_of_column.get(viz.x or "", ""), {})
        if values:
            settings["pie.colors"] = {value: entry.color for value, entry in values.items() if entry.color}
    elif viz.type in ("bar", "line", "row", "scatter"):
        settings = {"graph.dimensions": [viz.x], "graph.metrics": list(viz.y)}
        if viz.stacked:
            settings["stackable.stack_type"] = "stacked"
        if viz.x_label:
            settings["graph.x_axis.title_text"] = viz.x_label
        if viz.y_label:
            settings["graph.y_axis.title_text"] = viz.y_label
        series = {}
        for y in viz.y:
            entry = {"title": words.column_label(y)}
            if words.column_color(y):
                entry["color"] = words.column_color(y)
            series[y] = entry
        settings["series_settings"] = series
        if viz.type in ("bar", "row") and not card.daily:
            settings["graph.show_values"] = True  # 17.1% and 16.4% look alike as bars
    elif viz.type == "table":
        settings = {"table.columns": [{"name": c, "enabled": True} for c in viz.columns]}
    columns: dict = {}
    for column in card.result_columns:
        if viz.type == "table":
            columns.setdefault(f'["name","{column}"]', {})["column_title"] = words.column_label(column)
    for column in viz.percent:
        columns.setdefault(f'["name","{column}"]', {})["number_style"] = "percent"
    if columns:
        settings["column_settings"] = columns
    return settings


def card_description(card: Card) -> str | None:
    """The card's description, and what it cannot be filtered by: Metabase shows it in the card's header."""
    notes = [f"Not filtered by {name.replace('_', ' ')}: {reason}." for name, reason in card.unfiltered.items()]
    text = " ".join([card.description, *notes]).strip()
    return text or None


def dashboard_parameters(dashboard: Dashboard) -> list[dict]:
    params = []
    for name in dashboard.filters:
        for tag, label, kind in FILTER_TAGS[name]:
            params.append(
                {
                    "id": stable_id("telemed", dashboard.key, tag)[:8],
                    "name": label,
                    "slug": tag,
                    "type": "date/single" if kind == "date" else "string/=",
                    "sectionId": "date" if kind == "date" else "string",
                }
            )
    return params


def _login(config: MetabaseConfig) -> Metabase_API:
    try:
        return Metabase_API(config.url, email=config.user, password=config.password)
    except Exception as exc:  # noqa: BLE001 (the client raises a bare Exception wrapping the response)
        response = exc.args[0] if exc.args else None
        detail = f"HTTP {response.status_code}: {response.text[:300]}" if hasattr(response, "status_code") else exc
        raise MetabaseError(f"login to {config.url} as {config.user} failed: {detail}") from None


class Provisioner:
    def __init__(self, config: MetabaseConfig, api: Metabase_API | None = None) -> None:
        self.config = config
        self.api = api or _login(config)
        self.report = Report()

    # Requests: the client's helpers with 'raw' so errors surface with Metabase's own message.
    def _get(self, path: str, **params):
        return _json(self.api.get(path, "raw", params=params or None, timeout=TIMEOUT), f"GET {path}")

    def _post(self, path: str, body: dict | None = None):
        return _json(self.api.post(path, "raw", json=body or {}, timeout=TIMEOUT), f"POST {path}")

    def _put(self, path: str, body: dict):
        return _json(self.api.put(path, "raw", json=body, timeout=TIMEOUT), f"PUT {path}")

    def run(self, dashboards: list[Dashboard]) -> Report:
        database_id = self.ensure_database()
        collection_id = self.ensure_collection()
        items = _listing(self._get(f"/api/collection/{collection_id}/items", models=["card", "dashboard"]))
        cards_by_name = {i["name"]: i["id"] for i in items if i.get("model") == "card"}
        dashboards_by_name = {i["name"]: i["id"] for i in items if i.get("model") == "dashboard"}
        for dashboard in dashboards:
            card_ids = {
                card.key: self.ensure_card(card, database_id, collection_id, cards_by_name.get(card.title))
                for card in dashboard.cards
            }
            self.ensure_dashboard(dashboard, collection_id, dashboards_by_name.get(dashboard.name), card_ids)
        return self.report

    def ensure_database(self) -> int:
        cfg = self.config
        details = {
            "host": cfg.warehouse_host,
            "port": cfg.warehouse_port,
            "dbname": cfg.warehouse_database,
            "user": REPORTING_ROLE,
            **cfg.ssl_details(),
            "schema-filters-type": "inclusion",
            "schema-filters-patterns": "marts,monitoring",
        }
        existing = next((d for d in _listing(self._get("/api/database")) if d.get("name") == DATABASE_NAME), None)
        if existing is None:
            # Metabase tests the connection first and refuses (400, with its message) what it cannot reach.
            body = {
                "engine": "postgres",
                "name": DATABASE_NAME,
                "details": {**details, "password": cfg.reporting_password},
            }
            created = self._post("/api/database", body)
            database_id = created["id"]
            self.report.created.append(f"database {DATABASE_NAME!r} (as {REPORTING_ROLE})")
        else:
            database_id = existing["id"]
            stored = dict(existing.get("details") or {})
            if stored.get("ssl") is True and details["ssl"] is False:
                # Metabase tries SSL first and stores ssl=true when that works: its choice, not a drift.
                stored["ssl"] = False
            if existing.get("engine") != "postgres" or _subset_differs(stored, details):
                # The stored password is redacted in responses, so it is only sent along with a real change.
                body = {"engine": "postgres", "details": {**details, "password": cfg.reporting_password}}
                self._put(f"/api/database/{database_id}", body)
                self.report.updated.append(f"database {DATABASE_NAME!r}")
            else:
                self.report.unchanged.append(f"database {DATABASE_NAME!r}")
        # Field metadata for people who explore the marts in Metabase; the native cards do not need it.
        self._post(f"/api/database/{database_id}/sync_schema")
        return database_id

    def ensure_collection(self) -> int:
        collections = _listing(self._get("/api/collection"))
        ours = [
            c
            for c in collections
            if c.get("name") == COLLECTION_NAME and not c.get("archived") and c.get("location", "/") == "/"
        ]
        if ours:
            found = ours[0]
            if found.get("description") != COLLECTION_DESCRIPTION:
                self._put(f"/api/collection/{found['id']}", {"description": COLLECTION_DESCRIPTION})
                self.report.updated.append(f"collection {COLLECTION_NAME!r}")
            else:
                self.report.unchanged.append(f"collection {COLLECTION_NAME!r}")
            return found["id"]
        created = self._post(
            "/api/collection", {"name": COLLECTION_NAME, "description": COLLECTION_DESCRIPTION, "parent_id": None}
        )
        self.report.created.append(f"collection {COLLECTION_NAME!r}")
        return created["id"]

    def card_payload(self, card: Card, database_id: int, collection_id: int) -> dict:
        return {
            "name": card.title,
            "description": card_description(card),
            "display": card.visualization.type if card.visualization.type != "table" else "table",
            "collection_id": collection_id,
            "visualization_settings": visualization_settings(card),
            "dataset_query": {
                "type": "native",
                "database": database_id,
                "native": {"query": metabase_sql(card), "template-tags": template_tags(card)},
            },
        }

    def ensure_card(self, card: Card, database_id: int, collection_id: int, existing_id: int | None) -> int:
        desired = self.card_payload(card, database_id, collection_id)
        if existing_id is None:
            created = self._post("/api/card", desired)
            self.report.created.append(f"card {card.title!r}")
            return created["id"]
        current = self._get(f"/api/card/{existing_id}")
        query, tags = native_query(current)
        differs = (
            query != desired["dataset_query"]["native"]["query"]
            or card_database(current) != database_id
            # Only the keys that matter: Metabase may normalise the rest (MBQL 5 rewrites tags on save).
            or any(
                _subset_differs(tags.get(name) or {}, {k: tag[k] for k in ("name", "type", "display-name")})
                for name, tag in template_tags(card).items()
            )
            or set(tags) != set(template_tags(card))
            or current.get("archived")
            or any(current.get(k) != desired[k] for k in ("name", "description", "display", "collection_id"))
            or _subset_differs(current.get("visualization_settings") or {}, desired["visualization_settings"])
        )
        if differs:
            self._put(f"/api/card/{existing_id}", {**desired, "archived": False})
            self.report.updated.append(f"card {card.title!r}")
        else:
            self.report.unchanged.append(f"card {card.title!r}")
        return existing_id

    def _dashcards(self, dashboard: Dashboard, card_ids: dict[str, int], current: list[dict]) -> list[dict]:
        by_card = {dc.get("card_id"): dc for dc in current}
        params = {p["slug"]: p["id"] for p in dashboard_parameters(dashboard)}
        dashcards = []
        for number, card in enumerate(dashboard.cards, start=1):
            card_id = card_ids[card.key]
            mappings = [
                {"parameter_id": params[tag], "card_id": card_id, "target": ["variable", ["template-tag", tag]]}
                for name in card.filters
                for tag, _, _ in FILTER_TAGS[name]
            ]
            existing = by_card.get(card_id)
            pos = card.position
            dashcards.append(
                {
                    # Metabase creates dashcards sent with a negative id and keeps those it knows by id.
                    "id": existing["id"] if existing else -number,
                    "card_id": card_id,
                    "row": pos.row,
                    "col": pos.col,
                    "size_x": pos.width,
                    "size_y": pos.height,
                    "parameter_mappings": mappings,
                    "visualization_settings": {},
                    "series": [],
                }
            )
        return dashcards

    def ensure_dashboard(
        self, dashboard: Dashboard, collection_id: int, existing_id: int | None, card_ids: dict[str, int]
    ) -> int:
        parameters = dashboard_parameters(dashboard)
        label = f"dashboard {dashboard.name!r}"
        is_new = existing_id is None
        if is_new:
            created = self._post(
                "/api/dashboard",
                {
                    "name": dashboard.name,
                    "description": dashboard.description,
                    "collection_id": collection_id,
                    "parameters": parameters,
                },
            )
            existing_id = created["id"]
            self.report.created.append(label)
        # Also for a new one: what Metabase stored (its defaults, normalised parameters) and which shape it
        # answers in, rather than what was sent.
        current = self._get(f"/api/dashboard/{existing_id}")
        # v0.48+ answers "dashcards" and takes them on PUT /api/dashboard/:id; v0.47 answered "ordered_cards"
        # and took them on PUT /api/dashboard/:id/cards as "cards".
        legacy_cards = "dashcards" not in current and "ordered_cards" in current
        current_cards = (current.get("ordered_cards") if legacy_cards else current.get("dashcards")) or []
        dashcards = self._dashcards(dashboard, card_ids, current_cards)
        cards_differ = len(current_cards) != len(dashcards) or any(
            _subset_differs(next((c for c in current_cards if c.get("id") == d["id"]), {}), d) for d in dashcards
        )
        params_differ = len(current.get("parameters") or []) != len(parameters) or any(
            _subset_differs(have, want) for have, want in zip(current.get("parameters") or [], parameters, strict=False)
        )
        meta_differ = (
            current.get("description") != dashboard.description
            or current.get("archived")
            or (not is_new and current.get("collection_id") != collection_id)
        )
        if cards_differ or params_differ or meta_differ:
            body = {
                "description": dashboard.description,
                "collection_id": collection_id,
                "archived": False,
                "parameters": parameters,
            }
            if legacy_cards:
                if params_differ or meta_differ:
                    self._put(f"/api/dashboard/{existing_id}", body)
                if cards_differ:
                    self._put(f"/api/dashboard/{existing_id}/cards", {"cards": dashcards, "ordered_tabs": []})
            else:
                self._put(f"/api/dashboard/{existing_id}", {**body, "dashcards": dashcards, "tabs": []})
            if not is_new:
                self.report.updated.append(label)
        elif not is_new:
            self.report.unchanged.append(label)
        return existing_id


def provision(config: MetabaseConfig, dashboards: list[Dashboard]) -> Report:
    try:
        return _provision(config, dashboards)
    except requests.RequestException as exc:
        raise MetabaseError(f"cannot reach Metabase at {config.url}: {exc}") from None


def _provision(config: MetabaseConfig, dashboards: list[Dashboard]) -> Report:
    setup_done = ensure_setup(config)
    provisioner = Provisioner(config)
    if setup_done:
        provisioner.report.created.append(f"admin user {config.user!r} (first-run setup)")
    return provisioner.run(dashboards)
