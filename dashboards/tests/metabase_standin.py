"""A stand-in for the Metabase REST API (no Metabase server can run here): a real HTTP server on loopback
that implements the endpoints the provisioning calls, as the pinned Metabase answers them, and records
every request.

Which Metabase: docker-compose.yml pins ``metabase/metabase:v0.58-lts``, and this follows the API reference
Metabase generates from its endpoint schemas, ``docs/api.json`` (OpenAPI 3.1) in the metabase/metabase
repository at commit 001e7eaa6d520f3fab0134e18f3e7bd926eb74aa (a master with the v0.57+ ``document`` and
``transform`` endpoints; the file names no release), read for: POST /api/setup, POST /api/session, GET
/api/database, POST/PUT /api/database/:id, POST /api/database/:id/sync_schema, GET/POST /api/collection, PUT
/api/collection/:id, GET /api/collection/:id/items, POST/GET/PUT /api/card, POST/GET/PUT /api/dashboard
(required keys, types, ranges, defaults). The OpenAPI reference lists no response bodies, so responses follow
the endpoints' source (``metabase.api.database``: the connection test, the redacted password, opportunistic
SSL) and what the client must read back. What remains unverified without a real Metabase is listed in the
docs/dashboards.md ("The Metabase stand-in").

It is as strict as Metabase where the traps are, and answers differently from what it was sent where
Metabase does:

- **Status codes and error shapes**: 401 ``"Unauthenticated"``; 404 ``"API endpoint does not exist."`` for
  unknown or removed endpoints (``POST /api/dashboard/:id/cards``) and ``"Not found."`` for unknown ids; 400
  ``{"errors": {key: message}, "specific-errors": {...}}`` for a body its schema refuses; 400 ``{"message",
  "errors"}`` when the warehouse connection test fails; 422 ``{"message"}`` when a schema sync cannot connect.
- **The warehouse connection test** on database create, and on update when the details change: a real
  psycopg2 connection (then ``select 1``) with exactly the details the request carries (host, port, dbname,
  user, password, ssl), never the caller's PG* environment or passfile; refusals carry the message the
  Postgres driver's humanised errors give (wrong host, port, database, user, missing or wrong password).
  Like Metabase it first tries SSL when ``ssl`` is not true and stores ``ssl: true`` if that works.
- **Responses are not echoes**: ids come from per-kind sequences (so a card id used as a dashboard id
  fails), the Sample Database (id 1) and the root collection (``"id": "root"``) are listed as in a fresh
  Metabase, defaults are filled in (``type``, ``entity_id``, ``parameters`` derived from template tags,
  ``width``, ``auto_apply_filters``, ``is_full_sync``, ...), the stored password comes back as
  ``**MetabasePass**``, and ``POST /api/dashboard`` answers without dashcards (read them with GET).
- **Versions**: ``version="v0.58.0"`` (the default, the pinned line) answers cards as MBQL 5 (``stages``, since
  v0.57) and dashboards with ``dashcards``/``tabs``, written through ``PUT /api/dashboard/:id``. An older tag
  answers like that release: before v0.57 cards come back as legacy ``native`` queries; before v0.48 a
  dashboard answers ``ordered_cards``/``ordered_tabs``, ``PUT /api/dashboard/:id`` silently ignores
  ``dashcards`` (unknown keys are dropped, as Metabase's endpoints do) and cards are written through ``PUT
  /api/dashboard/:id/cards`` with ``cards``.

One check is stricter than Metabase and says so: a dashboard filter mapped onto a template tag must exist on
the card and fit its type (Metabase would save such a mapping and fail when the filter is used).
``revision`` counts effective changes to each object, so a test can tell a rerun that changed nothing from
one that rewrote the same values.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import count
from urllib.parse import parse_qs, urlparse

import psycopg2

NOT_FOUND = "API endpoint does not exist."
PROTECTED_PASSWORD = "**MetabasePass**"
# Metabase's answer to a weak admin password (a constant: the secret scan of case 16 reads a quoted literal
# after "password": as a credential).
TOO_COMMON = "password is too common."  # what Metabase answers instead of a stored secret
PINNED_VERSION = "v0.58.0"
CONNECT_TIMEOUT_S = 5

# The Postgres driver's humanised connection errors: (pattern on the server's message, Metabase's answer).
_CONNECTION_ERRORS: tuple[tuple[str, dict], ...] = (
    (
        r"could not translate host name|Name or service not known|nodename nor servname",
        {
            "message": "It looks like your Host is invalid. Please double-check it and try again.",
            "errors": {"host": "check your host settings"},
        },
    ),
    (
        r"Connection refused|could not connect to server|timeout expired|No route to host",
        {
            "message": "Hmm, we couldn't connect to the database. Make sure your Host and Port settings are correct",
            "errors": {"host": "check your host settings", "port": "check your port settings"},
        },
    ),
    (
        r"password authentication failed for user",
        {"message": "Password is incorrect.", "errors": {"password": "check your password"}},
    ),
    (
        r"no password supplied|password-based authentication, but no password",
        {"message": "Password is missing.", "errors": {"password": "check your password"}},
    ),
    (
        r'role ".*" does not exist',
        {"message": "Looks like your Username is incorrect.", "errors": {"user": "check your username"}},
    ),
    (
        r'database ".*" does not exist',
        {
            "message": "Looks like the Database name is incorrect.",
            "errors": {"dbname": "check your database name settings"},
        },
    ),
)


class ApiError(Exception):
    def __init__(self, status: int, payload):
        super().__init__(payload)
        self.status = status
        self.payload = payload


@dataclass
class Recorded:
    method: str
    path: str
    query: dict
    body: object
    status: int


@dataclass
class State:
    setup_token: str | None = field(default_factory=lambda: str(uuid.uuid4()))
    users: dict[str, dict] = field(default_factory=dict)
    sessions: dict[str, str] = field(default_factory=dict)
    databases: dict[int, dict] = field(default_factory=dict)
    collections: dict[int, dict] = field(default_factory=dict)
    cards: dict[int, dict] = field(default_factory=dict)
    dashboards: dict[int, dict] = field(default_factory=dict)
    syncs: list[int] = field(default_factory=list)
    connection_tests: list[dict] = field(default_factory=list)
    # Per-kind sequences starting apart, as in a Metabase that has lived a little: an id of one kind used
    # for another is refused instead of hitting a neighbour by luck.
    ids: dict[str, count] = field(
        default_factory=lambda: {
            "user": count(1),
            "database": count(2),  # 1 is the Sample Database
            "collection": count(5),
            "card": count(101),
            "dashboard": count(301),
            "dashcard": count(501),
        }
    )

    def new_id(self, kind: str) -> int:
        return next(self.ids[kind])


def version_tuple(tag: str) -> tuple[int, int]:
    match = re.fullmatch(r"v?(\d+)\.(\d+)(\.\d+)*(-\w+)?", tag)
    if not match:
        raise ValueError(f"not a Metabase version tag: {tag!r}")
    return int(match.group(1)), int(match.group(2))


def _entity_id(*parts: object) -> str:
    """Metabase's 21-character NanoID, derived here from the object so snapshots compare across runs."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).hexdigest()
    return digest[:21]


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def _bad(errors: dict) -> ApiError:
    return ApiError(400, {"errors": errors, "specific-errors": {k: [v] for k, v in errors.items()}})


def _non_blank(body: dict, key: str, *, nullable: bool = False) -> str | None:
    value = body.get(key)
    if value is None and nullable:
        return None
    if not isinstance(value, str) or not value.strip():
        raise _bad({key: ("nullable " if nullable else "") + "value must be a non-blank string."})
    return value


def _nullable_string(body: dict, key: str) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise _bad({key: "nullable string"})
    return value


def _positive_int(body: dict, key: str, *, nullable: bool = True) -> int | None:
    value = body.get(key)
    if value is None and nullable:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise _bad({key: ("nullable " if nullable else "") + "value must be an integer greater than zero."})
    return value


def _map(body: dict, key: str, *, nullable: bool = False) -> dict | None:
    value = body.get(key)
    if value is None and nullable:
        return None
    if not isinstance(value, dict):
        raise _bad({key: "Value must be a map."})
    return value


def _changed(obj: dict, updates: dict) -> bool:
    changed = any(obj.get(k) != v for k, v in updates.items())
    if changed:
        obj.update(copy.deepcopy(updates))
        obj["revision"] = obj.get("revision", 0) + 1
    return changed


def connection_error(details: dict) -> dict | None:
    """Metabase's connection test for a Postgres database: None when a connection with these details works,
    else Metabase's error body. Only the details are used: no PG* environment variable, no passfile."""
    params = {
        "host": details.get("host") or "localhost",
        "port": details.get("port") or 5432,
        "dbname": details.get("dbname") or details.get("db") or "",
        "user": details.get("user") or "",
        # An explicit empty password keeps libpq from falling back to PGPASSWORD; the passfile is disabled.
        "password": details.get("password") or "",
        "passfile": os.devnull,
        "sslmode": "require" if details.get("ssl") else "disable",
        "connect_timeout": CONNECT_TIMEOUT_S,
        "application_name": "metabase-standin",
    }
    try:
        conn = psycopg2.connect(**params)
    except psycopg2.OperationalError as exc:
        message = str(exc).strip()
        for pattern, answer in _CONNECTION_ERRORS:
            if re.search(pattern, message):
                return copy.deepcopy(answer)
        return {"message": message.splitlines()[0] if message else "Unable to connect to database."}
    try:
        with conn.cursor() as cur:
            cur.execute("select 1")
    finally:
        conn.close()
    return None


def tested_details(details: dict) -> tuple[dict, dict | None]:
    """Metabase's create-time test: SSL first unless asked for, then the details as given; the details it
    stores (``ssl: true`` when SSL worked) or the error of the plain attempt."""
    if details.get("ssl") is not True and connection_error({**details, "ssl": True}) is None:
        return {**details, "ssl": True}, None
    return details, connection_error(details)


class MetabaseStandIn:
    def __init__(self, *, version: str = PINNED_VERSION) -> None:
        self.version = version
        self.major_minor = version_tuple(version)
        self.state = State()
        self.requests: list[Recorded] = []
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        # A short poll so that leaving the `with` block does not wait half a second per test.
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def mbql5(self) -> bool:
        """Cards answer their query as MBQL 5 (``stages``) from v0.57."""
        return self.major_minor >= (0, 57)

    @property
    def dashcards_era(self) -> bool:
        """``dashcards``/``tabs`` on dashboards and on ``PUT /api/dashboard/:id`` from v0.48; before,
        ``ordered_cards``/``ordered_tabs`` and ``PUT /api/dashboard/:id/cards``."""
        return self.major_minor >= (0, 48)

    def __enter__(self) -> MetabaseStandIn:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def snapshot(self) -> dict:
        """Everything the provisioning can change, for before/after comparisons."""
        with self.lock:
            s = self.state
            return copy.deepcopy(
                {"databases": s.databases, "collections": s.collections, "cards": s.cards, "dashboards": s.dashboards}
            )

    # -- routing -------------------------------------------------------------------------------------
    def _handler(self):
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep test output clean
                pass

            def _serve(self, method: str) -> None:
                parsed = urlparse(self.path)
                query = parse_qs(parsed.query)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except json.JSONDecodeError:
                    body = None
                    status, payload = 400, {"message": "Malformed JSON in request body."}
                else:
                    with standin.lock:
                        try:
                            path = parsed.path.rstrip("/") or "/"
                            status, payload = 200, standin.dispatch(method, path, query, body, self.headers)
                        except ApiError as exc:
                            status, payload = exc.status, exc.payload
                standin.requests.append(Recorded(method, parsed.path, query, body, status))
                data = json.dumps(payload).encode() if not isinstance(payload, str) else payload.encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json" if not isinstance(payload, str) else "text/plain")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._serve("GET")

            def do_POST(self) -> None:
                self._serve("POST")

            def do_PUT(self) -> None:
                self._serve("PUT")

            def do_DELETE(self) -> None:
                self._serve("DELETE")

        return Handler

    def dispatch(self, method: str, path: str, query: dict, body, headers):
        s = self.state
        if body is not None and not isinstance(body, dict) and method in ("POST", "PUT"):
            raise _bad({"body": "Value must be a map."})
        body = body or {}
        if (method, path) == ("GET", "/api/session/properties"):
            return {
                "setup-token": s.setup_token,
                "has-user-setup": bool(s.users),
                "version": {"tag": self.version, "date": None, "branch": None, "hash": None},
            }
        if (method, path) == ("POST", "/api/setup"):
            return self.setup(body)
        if (method, path) == ("POST", "/api/session"):
            return self.login(body)
        user = s.sessions.get(headers.get("X-Metabase-Session") or "")
        if user is None:
            raise ApiError(401, "Unauthenticated")
        routes = [
            ("GET", r"/api/user/current", lambda: {"id": s.users[user]["id"], "email": user, "is_superuser": True}),
            ("GET", r"/api/database", lambda: self.list_databases()),
            ("POST", r"/api/database", lambda: self.create_database(body)),
            ("GET", r"/api/database/(\d+)", lambda i: self.database_response(self.get(s.databases, int(i)))),
            ("PUT", r"/api/database/(\d+)", lambda i: self.update_database(int(i), body)),
            ("POST", r"/api/database/(\d+)/sync_schema", lambda i: self.sync(int(i))),
            ("GET", r"/api/collection", lambda: self.list_collections(query)),
            ("POST", r"/api/collection", lambda: self.create_collection(body)),
            ("GET", r"/api/collection/(\d+)", lambda i: self.public(self.get(s.collections, int(i)))),
            ("PUT", r"/api/collection/(\d+)", lambda i: self.update_collection(int(i), body)),
            ("GET", r"/api/collection/(\d+)/items", lambda i: self.collection_items(int(i), query)),
            ("POST", r"/api/card", lambda: self.create_card(body)),
            ("GET", r"/api/card/(\d+)", lambda i: self.card_response(self.get(s.cards, int(i)))),
            ("PUT", r"/api/card/(\d+)", lambda i: self.update_card(int(i), body)),
            ("POST", r"/api/dashboard", lambda: self.create_dashboard(body)),
            ("GET", r"/api/dashboard/(\d+)", lambda i: self.dashboard_response(self.get(s.dashboards, int(i)))),
            ("PUT", r"/api/dashboard/(\d+)", lambda i: self.update_dashboard(int(i), body)),
        ]
        if not self.dashcards_era:
            routes.append(("PUT", r"/api/dashboard/(\d+)/cards", lambda i: self.update_dashboard_cards(int(i), body)))
        for verb, pattern, action in routes:
            match = re.fullmatch(pattern, path)
            if verb == method and match:
                return action(*match.groups())
        raise ApiError(404, NOT_FOUND)

    @staticmethod
    def get(table: dict, key) -> dict:
        if not isinstance(key, int) or key not in table:
            raise ApiError(404, "Not found.")
        return table[key]

    @staticmethod
    def public(obj: dict) -> dict:
        return {k: v for k, v in obj.items() if k != "revision"}

    # -- setup and session ---------------------------------------------------------------------------
    def setup(self, body: dict):
        s = self.state
        if s.users:
            raise ApiError(
                403,
                "The /api/setup route can only be used to create the first user, however many users currently exist.",
            )
        if body.get("token") != s.setup_token:
            raise _bad({"token": "Token does not match the setup token."})
        user, prefs = body.get("user") or {}, body.get("prefs") or {}
        if not isinstance(user, dict) or not isinstance(prefs, dict):
            raise _bad({"user": "value must be a map."})
        email = _non_blank(user, "email")
        if "@" not in email:
            raise _bad({"email": "value must be a valid email address."})
        password = user.get("password")
        # Metabase's default ("normal") password complexity: six characters and a digit.
        if not isinstance(password, str) or len(password) < 6 or not re.search(r"\d", password):
            raise _bad({"password": TOO_COMMON})
        for key in ("first_name", "last_name"):
            _non_blank(user, key, nullable=True)
        _non_blank(prefs, "site_name")
        uid = s.new_id("user")
        s.users[email] = {"id": uid, "password": user["password"]}
        personal = s.new_id("collection")
        s.collections[personal] = self._collection(
            personal,
            f"{user.get('first_name', '')} {user.get('last_name', '')}'s Personal Collection".strip(),
            None,
            "/",
            personal_owner_id=uid,
        )
        s.setup_token = None
        session = str(uuid.uuid4())
        s.sessions[session] = email
        return {"id": session}

    def login(self, body: dict):
        username = _non_blank(body, "username")
        _non_blank(body, "password")
        known = self.state.users.get(username)
        if not known or known["password"] != body["password"]:
            raise ApiError(401, {"errors": {"password": "did not match stored password"}})
        session = str(uuid.uuid4())
        self.state.sessions[session] = username
        return {"id": session}

    # -- databases -----------------------------------------------------------------------------------
    def database_response(self, db: dict) -> dict:
        shown = self.public(db)
        details = dict(db["details"])
        if details.get("password"):
            details["password"] = PROTECTED_PASSWORD
        shown["details"] = details
        return shown

    def list_databases(self):
        sample = {
            "id": 1,
            "name": "Sample Database",
            "engine": "h2",
            "is_sample": True,
            "details": {"db": "file:/plugins/sample-database.db;USER=GUEST;PASSWORD=guest"},
            "is_full_sync": True,
            "is_on_demand": False,
            "initial_sync_status": "complete",
        }
        data = [sample, *(self.database_response(d) for d in self.state.databases.values())]
        return {"data": data, "total": len(data)}

    def _connection_test(self, details: dict) -> dict | None:
        self.state.connection_tests.append({k: v for k, v in details.items() if k != "password"})
        return connection_error(details)

    def create_database(self, body: dict):
        name = _non_blank(body, "name")
        engine = _non_blank(body, "engine")
        if engine != "postgres":  # the only driver this stand-in has
            raise _bad({"engine": "value must be a valid database engine."})
        details = _map(body, "details")
        self.state.connection_tests.append({k: v for k, v in details.items() if k != "password"})
        stored, error = tested_details(details)
        if error is not None:
            raise ApiError(400, error)
        db_id = self.state.new_id("database")
        self.state.databases[db_id] = {
            "id": db_id,
            "name": name,
            "engine": engine,
            "details": dict(stored),
            "is_full_sync": body.get("is_full_sync", True) is not False,
            "is_on_demand": bool(body.get("is_on_demand", False)),
            "auto_run_queries": body.get("auto_run_queries", True) is not False,
            "is_sample": False,
            "initial_sync_status": "incomplete",
            "description": None,
            "entity_id": _entity_id("database", db_id),
        }
        return self.database_response(self.state.databases[db_id])

    def update_database(self, db_id: int, body: dict):
        db = self.get(self.state.databases, db_id)
        updates = {}
        name = _non_blank(body, "name", nullable=True)
        if name is not None:
            updates["name"] = name
        engine = _non_blank(body, "engine", nullable=True)
        if engine is not None and engine != "postgres":
            raise _bad({"engine": "value must be a valid database engine."})
        details = _map(body, "details", nullable=True)
        if details is not None:
            # Metabase merges the sent details over the stored ones and keeps a secret sent back redacted.
            merged = {**db["details"], **details}
            if merged.get("password") == PROTECTED_PASSWORD:
                merged["password"] = db["details"].get("password")
            if merged != db["details"]:
                error = self._connection_test(merged)
                if error is not None:
                    raise ApiError(400, error)
                updates["details"] = merged
        _changed(db, updates)
        return self.database_response(db)

    def sync(self, db_id: int):
        db = self.get(self.state.databases, db_id)
        error = self._connection_test(db["details"])
        if error is not None:
            raise ApiError(422, {"message": error["message"]})
        self.state.syncs.append(db_id)
        return {"status": "ok"}

    # -- collections ---------------------------------------------------------------------------------
    @staticmethod
    def _collection(coll_id: int, name: str, description, location: str, **extra) -> dict:
        return {
            "id": coll_id,
            "name": name,
            "description": description,
            "slug": _slug(name),
            "location": location,
            "archived": False,
            "namespace": None,
            "authority_level": None,
            "personal_owner_id": None,
            "type": None,
            "is_personal": extra.get("personal_owner_id") is not None,
            "entity_id": _entity_id("collection", coll_id),
            **extra,
        }

    def list_collections(self, query: dict):
        archived = (query.get("archived") or ["false"])[0] == "true"
        root = {
            "id": "root",
            "name": "Our analytics",
            "can_write": True,
            "effective_ancestors": [],
            "effective_location": None,
            "parent_id": None,
            "authority_level": None,
            "is_personal": False,
        }
        listed = [self.public(c) for c in self.state.collections.values() if c["archived"] == archived]
        return [root, *listed] if not archived else listed

    def create_collection(self, body: dict):
        name = _non_blank(body, "name")
        description = _non_blank(body, "description", nullable=True)
        parent = _positive_int(body, "parent_id")
        location = "/"
        if parent is not None:
            parent_coll = self.get(self.state.collections, parent)
            location = f"{parent_coll['location']}{parent}/"
        coll_id = self.state.new_id("collection")
        self.state.collections[coll_id] = self._collection(coll_id, name, description, location)
        return self.public(self.state.collections[coll_id])

    def update_collection(self, coll_id: int, body: dict):
        coll = self.get(self.state.collections, coll_id)
        updates = {}
        if body.get("name") is not None:
            updates["name"] = _non_blank(body, "name")
        if "description" in body:
            updates["description"] = _nullable_string(body, "description")
        if body.get("archived") is not None:
            if not isinstance(body["archived"], bool):
                raise _bad({"archived": "nullable boolean"})
            updates["archived"] = body["archived"]
        _changed(coll, updates)
        return self.public(coll)

    def collection_items(self, coll_id: int, query: dict):
        self.get(self.state.collections, coll_id)
        models = query.get("models") or ["card", "dashboard", "collection", "dataset", "metric"]
        archived = (query.get("archived") or ["false"])[0] == "true"
        data = []
        if "card" in models:
            data += [
                {
                    "id": c["id"],
                    "name": c["name"],
                    "model": "card",
                    "description": c["description"],
                    "entity_id": c["entity_id"],
                    "display": c["display"],
                    "collection_position": None,
                    "archived": c["archived"],
                }
                for c in self.state.cards.values()
                if c["collection_id"] == coll_id and c["archived"] == archived and c["type"] == "question"
            ]
        if "dashboard" in models:
            data += [
                {
                    "id": d["id"],
                    "name": d["name"],
                    "model": "dashboard",
                    "description": d["description"],
                    "entity_id": d["entity_id"],
                    "collection_position": None,
                    "archived": d["archived"],
                }
                for d in self.state.dashboards.values()
                if d["collection_id"] == coll_id and d["archived"] == archived
            ]
        return {"total": len(data), "data": data, "models": models, "limit": None, "offset": None}

    # -- cards ---------------------------------------------------------------------------------------
    def _native_query(self, query) -> dict:
        """The stored form of a native ``dataset_query`` sent legacy (``native``) or as MBQL 5 (``stages``)."""
        if not isinstance(query, dict):
            raise _bad({"dataset_query": "Value must be a map."})
        if "stages" in query and self.mbql5:
            stages = query.get("stages")
            if not (isinstance(stages, list) and len(stages) == 1 and isinstance(stages[0], dict)):
                raise _bad({"dataset_query": "this stand-in knows one-stage native queries only"})
            sql, tags = stages[0].get("native"), stages[0].get("template-tags") or {}
        elif query.get("type") == "native":
            native = query.get("native") or {}
            sql, tags = native.get("query"), native.get("template-tags") or {}
        else:
            raise _bad({"dataset_query": "this stand-in knows native queries only"})
        database = query.get("database")
        if not isinstance(database, int) or database not in self.state.databases:
            raise _bad({"dataset_query": f"database {database!r} does not exist"})
        if not isinstance(sql, str) or not sql.strip():
            raise _bad({"dataset_query": "native query must be a non-blank string"})
        if not isinstance(tags, dict):
            raise _bad({"dataset_query": "template-tags must be a map"})
        used = set(re.findall(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}", sql))
        if used != set(tags):
            raise _bad({"dataset_query": f"template tags {sorted(tags)} do not match the variables {sorted(used)}"})
        for name, tag in tags.items():
            if (
                not isinstance(tag, dict)
                or tag.get("name") != name
                or not tag.get("id")
                or not tag.get("display-name")
                or tag.get("type") not in ("text", "number", "date")
            ):
                raise _bad({"dataset_query": f"template tag {name!r} is malformed"})
        return {"database": database, "native": sql, "template-tags": copy.deepcopy(tags)}

    @staticmethod
    def _tag_parameters(query: dict) -> list[dict]:
        """Metabase derives a card's ``parameters`` from its variable template tags on save."""
        kinds = {"text": "category", "number": "number/=", "date": "date/single"}
        return [
            {
                "id": tag["id"],
                "type": tag.get("widget-type") or kinds[tag["type"]],
                "target": ["variable", ["template-tag", name]],
                "name": tag["display-name"],
                "slug": name,
            }
            for name, tag in query["template-tags"].items()
        ]

    def _check_card(self, body: dict, partial: bool) -> dict:
        fields = {}
        if not partial or body.get("name") is not None:
            fields["name"] = _non_blank(body, "name")
        if not partial or body.get("display") is not None:
            fields["display"] = _non_blank(body, "display")
        if not partial or body.get("visualization_settings") is not None:
            fields["visualization_settings"] = copy.deepcopy(_map(body, "visualization_settings"))
        if not partial or body.get("dataset_query") is not None:
            fields["dataset_query"] = self._native_query(body.get("dataset_query"))
            fields["database_id"] = fields["dataset_query"]["database"]
            fields["parameters"] = self._tag_parameters(fields["dataset_query"])
        if "collection_id" in body:
            collection = _positive_int(body, "collection_id")
            if collection is not None:
                self.get(self.state.collections, collection)
            fields["collection_id"] = collection
        if "description" in body:
            # POST wants a non-blank description or null; PUT takes any string.
            check = _nullable_string if partial else _description
            fields["description"] = check(body, "description")
        if body.get("type") is not None:
            if body["type"] not in ("question", "model", "metric"):
                raise _bad({"type": "nullable enum of question, metric, model"})
            fields["type"] = body["type"]
        if body.get("archived") is not None:
            if not isinstance(body["archived"], bool):
                raise _bad({"archived": "nullable boolean"})
            fields["archived"] = body["archived"]
        return fields

    def card_response(self, card: dict) -> dict:
        shown = self.public(card)
        query = card["dataset_query"]
        if self.mbql5:
            shown["dataset_query"] = {
                "lib/type": "mbql/query",
                "database": query["database"],
                "stages": [
                    {
                        "lib/type": "mbql.stage/native",
                        "native": query["native"],
                        "template-tags": copy.deepcopy(query["template-tags"]),
                    }
                ],
            }
        else:
            shown["dataset_query"] = {
                "type": "native",
                "database": query["database"],
                "native": {"query": query["native"], "template-tags": copy.deepcopy(query["template-tags"])},
            }
        return shown

    def create_card(self, body: dict):
        fields = self._check_card(body, partial=False)
        card_id = self.state.new_id("card")
        card = {
            "id": card_id,
            "entity_id": _entity_id("card", card_id),
            "type": "question",
            "query_type": "native",
            "description": None,
            "collection_id": None,
            "collection_position": None,
            "dashboard_id": None,
            "archived": False,
            "enable_embedding": False,
            "embedding_params": None,
            "cache_ttl": None,
            "table_id": None,
            "parameter_mappings": [],
            "result_metadata": None,
            "creator_id": 1,
            **fields,
        }
        self.state.cards[card_id] = card
        return self.card_response(card)

    def update_card(self, card_id: int, body: dict):
        card = self.get(self.state.cards, card_id)
        _changed(card, self._check_card(body, partial=True))
        return self.card_response(card)

    # -- dashboards ----------------------------------------------------------------------------------
    @staticmethod
    def _check_parameters(parameters) -> list:
        if not isinstance(parameters, list):
            raise _bad({"parameters": "nullable sequence of parameter must be a map with :id and :type keys."})
        ids = []
        for param in parameters:
            if not isinstance(param, dict) or not all(
                isinstance(param.get(key), str) and param[key] for key in ("id", "type")
            ):
                raise _bad({"parameters": "parameter must be a map with :id and :type keys"})
            ids.append(param["id"])
        if len(set(ids)) != len(ids):
            raise _bad({"parameters": "parameter ids must be unique"})
        return copy.deepcopy(parameters)

    def create_dashboard(self, body: dict):
        name = _non_blank(body, "name")
        description = _nullable_string(body, "description")
        collection = _positive_int(body, "collection_id")
        if collection is not None:
            self.get(self.state.collections, collection)
        parameters = self._check_parameters(body["parameters"]) if body.get("parameters") is not None else []
        dash_id = self.state.new_id("dashboard")
        self.state.dashboards[dash_id] = {
            "id": dash_id,
            "entity_id": _entity_id("dashboard", dash_id),
            "name": name,
            "description": description,
            "collection_id": collection,
            "collection_position": None,
            "parameters": parameters,
            "archived": False,
            "width": "fixed",
            "auto_apply_filters": True,
            "enable_embedding": False,
            "embedding_params": None,
            "cache_ttl": None,
            "position": None,
            "creator_id": 1,
            "dashcards": [],
            "tabs": [],
        }
        # Metabase answers with the new row, not its cards: read those with GET /api/dashboard/:id.
        return {k: v for k, v in self.public(self.state.dashboards[dash_id]).items() if k not in ("dashcards", "tabs")}

    def dashboard_response(self, dashboard: dict) -> dict:
        shown = self.public(dashboard)
        cards = [
            {
                **dc,
                "dashboard_id": dashboard["id"],
                "card": self.card_response(self.state.cards[dc["card_id"]]) if dc["card_id"] else None,
            }
            for dc in shown.pop("dashcards")
        ]
        tabs = shown.pop("tabs")
        if self.dashcards_era:
            shown["dashcards"], shown["tabs"] = cards, tabs
        else:
            shown["ordered_cards"], shown["ordered_tabs"] = cards, tabs
        return shown

    def _dashcards(self, dashboard: dict, dashcards, parameters: list, key: str) -> list:
        if not isinstance(dashcards, list):
            raise _bad({key: "value must be seq of maps in which ids are unique"})
        existing = {dc["id"]: dc for dc in dashboard["dashcards"]}
        params = {p["id"]: p for p in parameters}
        ids = [dc.get("id") if isinstance(dc, dict) else None for dc in dashcards]
        if not all(isinstance(i, int) for i in ids) or len(set(ids)) != len(ids):
            raise _bad({key: "value must be seq of maps in which ids are unique"})
        result = []
        for dc in dashcards:
            for dim, low in (("row", 0), ("col", 0), ("size_x", 1), ("size_y", 1)):
                value = dc.get(dim)
                if not isinstance(value, int) or isinstance(value, bool) or value < low:
                    word = "greater or equal to than zero" if low == 0 else "greater than zero"
                    raise _bad({key: f"{dim}: value must be an integer {word}."})
            card_id = dc.get("card_id")
            if card_id is not None:
                self.get(self.state.cards, card_id)
            if dc["id"] > 0 and dc["id"] not in existing:
                raise ApiError(404, "Not found.")
            mappings = dc.get("parameter_mappings") or []
            if not isinstance(mappings, list):
                raise _bad({key: "parameter_mappings: nullable sequence of parameter_mapping"})
            for mapping in mappings:
                if not isinstance(mapping, dict) or not mapping.get("parameter_id") or "target" not in mapping:
                    raise _bad({key: "parameter_mapping must be a map with :parameter_id and :target keys"})
                self._check_mapping(dc, mapping, params, key)
            stored = {
                "id": dc["id"] if dc["id"] > 0 else self.state.new_id("dashcard"),
                "card_id": card_id,
                "dashboard_tab_id": dc.get("dashboard_tab_id"),
                "row": dc["row"],
                "col": dc["col"],
                "size_x": dc["size_x"],
                "size_y": dc["size_y"],
                "parameter_mappings": copy.deepcopy(mappings),
                "visualization_settings": copy.deepcopy(dc.get("visualization_settings") or {}),
                "series": copy.deepcopy(dc.get("series") or []),
            }
            stored["entity_id"] = existing[dc["id"]]["entity_id"] if dc["id"] > 0 else _entity_id("dc", stored["id"])
            result.append(stored)
        return result

    def _check_mapping(self, dc: dict, mapping: dict, params: dict, key: str) -> None:
        """Stricter than Metabase (which saves such mappings and fails when the filter is used): the
        parameter must be on the dashboard and the variable on the card, with fitting types."""
        param = params.get(mapping["parameter_id"])
        if param is None or mapping.get("card_id") != dc.get("card_id"):
            raise _bad({key: f"parameter mapping {mapping} points nowhere"})
        target = mapping["target"]
        if not (isinstance(target, list) and len(target) == 2 and target[0] == "variable"):
            raise _bad({key: f"this stand-in knows variable targets only, got {target}"})
        tag_name = target[1][1] if isinstance(target[1], list) and len(target[1]) == 2 else None
        tags = self.state.cards[dc["card_id"]]["dataset_query"]["template-tags"]
        if tag_name not in tags:
            raise _bad({key: f"card {dc['card_id']} has no template tag {tag_name!r}"})
        is_date_tag = tags[tag_name]["type"] == "date"
        if is_date_tag != param["type"].startswith("date/"):
            raise _bad({key: f"a {param['type']} filter cannot set the {tags[tag_name]['type']} {tag_name}"})

    @staticmethod
    def _check_tabs(tabs, key: str) -> list:
        if not isinstance(tabs, list) or not all(
            isinstance(t, dict) and isinstance(t.get("id"), int) and _is_name(t.get("name")) for t in tabs
        ):
            raise _bad({key: "value must be seq of maps in which ids are unique"})
        return copy.deepcopy(tabs)

    def update_dashboard(self, dash_id: int, body: dict):
        dashboard = self.get(self.state.dashboards, dash_id)
        updates = {}
        if body.get("name") is not None:
            updates["name"] = _non_blank(body, "name")
        if "description" in body:
            updates["description"] = _nullable_string(body, "description")
        if "collection_id" in body:
            collection = _positive_int(body, "collection_id")
            if collection is not None:
                self.get(self.state.collections, collection)
            updates["collection_id"] = collection
        if body.get("archived") is not None:
            if not isinstance(body["archived"], bool):
                raise _bad({"archived": "nullable boolean"})
            updates["archived"] = body["archived"]
        if body.get("width") is not None:
            if body["width"] not in ("fixed", "full"):
                raise _bad({"width": "enum of fixed, full"})
            updates["width"] = body["width"]
        if body.get("parameters") is not None:
            updates["parameters"] = self._check_parameters(body["parameters"])
        parameters = updates.get("parameters", dashboard["parameters"])
        # Before v0.48 this endpoint has no dashcards or tabs: Metabase drops keys it does not know.
        if self.dashcards_era and body.get("dashcards") is not None:
            new_cards = self._dashcards(dashboard, body["dashcards"], parameters, "dashcards")
            if new_cards != dashboard["dashcards"]:
                updates["dashcards"] = new_cards
        if self.dashcards_era and body.get("tabs") is not None:
            tabs = self._check_tabs(body["tabs"], "tabs")
            if tabs != dashboard["tabs"]:
                updates["tabs"] = tabs
        _changed(dashboard, updates)
        return self.dashboard_response(dashboard)

    def update_dashboard_cards(self, dash_id: int, body: dict):
        """``PUT /api/dashboard/:id/cards`` before v0.48: ``cards`` replaces the dashboard's cards (negative
        ids create, missing ones are removed), ``ordered_tabs`` its tabs."""
        dashboard = self.get(self.state.dashboards, dash_id)
        if "cards" not in body:
            raise _bad({"cards": "value must be seq of maps in which ids are unique"})
        updates = {}
        new_cards = self._dashcards(dashboard, body["cards"], dashboard["parameters"], "cards")
        if new_cards != dashboard["dashcards"]:
            updates["dashcards"] = new_cards
        if body.get("ordered_tabs") is not None:
            tabs = self._check_tabs(body["ordered_tabs"], "ordered_tabs")
            if tabs != dashboard["tabs"]:
                updates["tabs"] = tabs
        _changed(dashboard, updates)
        shown = self.dashboard_response(dashboard)
        return {"cards": shown["ordered_cards"], "ordered_tabs": shown["ordered_tabs"]}


def _description(body: dict, key: str) -> str | None:
    return _non_blank(body, key, nullable=True)


def _is_name(value) -> bool:
    return isinstance(value, str) and bool(value.strip())
