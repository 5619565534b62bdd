"""A stand-in for the Metabase REST API (no Metabase can run here): an HTTP server on loopback that
implements only the endpoints the provisioning calls, with the request and response shapes of Metabase's
API reference, and records every request.

It is strict where Metabase is: unauthenticated calls get 401, removed endpoints (``POST
/api/dashboard/:id/cards``) get Metabase's 404 "API endpoint does not exist.", bodies are validated, and a
dashboard's ``dashcards`` are replaced as ``PUT /api/dashboard/:id`` does (negative ids create, missing ones
are deleted). ``card_format="mbql5"`` answers cards the way v0.57+ does (``stages``), ``"legacy"`` the way
earlier releases do. ``revision`` counts effective changes to each object, so a test can tell a rerun that
changed nothing from one that rewrote the same values.
"""

from __future__ import annotations

import copy
import json
import re
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

NOT_FOUND = "API endpoint does not exist."


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
    next_id: int = 1

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id


def _bad(errors: dict) -> ApiError:
    return ApiError(400, {"errors": errors})


def _non_blank(body: dict, key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value.strip():
        raise _bad({key: "value must be a non-blank string."})
    return value


def _changed(obj: dict, updates: dict) -> bool:
    changed = any(obj.get(k) != v for k, v in updates.items())
    if changed:
        obj.update(copy.deepcopy(updates))
        obj["revision"] = obj.get("revision", 0) + 1
    return changed


class MetabaseStandIn:
    def __init__(self, *, card_format: str = "mbql5", version: str = "v0.58.0") -> None:
        assert card_format in ("mbql5", "legacy")
        self.card_format = card_format
        self.version = version
        self.state = State()
        self.requests: list[Recorded] = []
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

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
                    status, payload = 400, {"message": "malformed JSON"}
                else:
                    with standin.lock:
                        try:
                            status, payload = (
                                200,
                                standin.dispatch(method, parsed.path.rstrip("/") or "/", query, body, self.headers),
                            )
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
        if (method, path) == ("GET", "/api/session/properties"):
            return {"setup-token": s.setup_token, "has-user-setup": bool(s.users), "version": {"tag": self.version}}
        if (method, path) == ("POST", "/api/setup"):
            return self.setup(body or {})
        if (method, path) == ("POST", "/api/session"):
            return self.login(body or {})
        user = s.sessions.get(headers.get("X-Metabase-Session") or "")
        if user is None:
            raise ApiError(401, "Unauthenticated")
        routes = [
            ("GET", r"/api/user/current", lambda: {"id": s.users[user]["id"], "email": user, "is_superuser": True}),
            ("GET", r"/api/database", lambda: self.list_databases()),
            ("POST", r"/api/database", lambda: self.create_database(body or {})),
            ("PUT", r"/api/database/(\d+)", lambda i: self.update_database(int(i), body or {})),
            ("POST", r"/api/database/(\d+)/sync_schema", lambda i: self.sync(int(i))),
            ("GET", r"/api/collection", lambda: [self.public(c) for c in s.collections.values()]),
            ("POST", r"/api/collection", lambda: self.create_collection(body or {})),
            ("PUT", r"/api/collection/(\d+)", lambda i: self.update_collection(int(i), body or {})),
            ("GET", r"/api/collection/(\d+)/items", lambda i: self.collection_items(int(i), query)),
            ("POST", r"/api/card", lambda: self.create_card(body or {})),
            ("GET", r"/api/card/(\d+)", lambda i: self.card_response(self.get(s.cards, int(i)))),
            ("PUT", r"/api/card/(\d+)", lambda i: self.update_card(int(i), body or {})),
            ("POST", r"/api/dashboard", lambda: self.create_dashboard(body or {})),
            ("GET", r"/api/dashboard/(\d+)", lambda i: self.dashboard_response(self.get(s.dashboards, int(i)))),
            ("PUT", r"/api/dashboard/(\d+)", lambda i: self.update_dashboard(int(i), body or {})),
        ]
        for verb, pattern, action in routes:
            match = re.fullmatch(pattern, path)
            if verb == method and match:
                return action(*match.groups())
        raise ApiError(404, NOT_FOUND)

    @staticmethod
    def get(table: dict, key: int) -> dict:
        if key not in table:
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
        _non_blank(user, "password")
        _non_blank(prefs, "site_name")
        uid = s.new_id()
        s.users[email] = {"id": uid, "password": user["password"]}
        personal = s.new_id()
        s.collections[personal] = {
            "id": personal,
            "name": f"{user.get('first_name', '')} {user.get('last_name', '')}'s Personal Collection".strip(),
            "location": "/",
            "personal_owner_id": uid,
            "archived": False,
            "description": None,
        }
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
        shown["details"] = (
            {**db["details"], "password": "**MetabasePass**"} if "password" in db["details"] else db["details"]
        )
        return shown

    def list_databases(self):
        data = [self.database_response(d) for d in self.state.databases.values()]
        return {"data": data, "total": len(data)}

    @staticmethod
    def _check_details(details) -> None:
        if not isinstance(details, dict):
            raise _bad({"details": "value must be a map."})
        for key in ("host", "dbname", "user"):
            _non_blank(details, key)
        if not isinstance(details.get("port"), int):
            raise _bad({"details": "port must be an integer."})

    def create_database(self, body: dict):
        name = _non_blank(body, "name")
        if body.get("engine") != "postgres":
            raise _bad({"engine": "value must be a valid database engine."})
        self._check_details(body.get("details"))
        db_id = self.state.new_id()
        self.state.databases[db_id] = {
            "id": db_id,
            "name": name,
            "engine": "postgres",
            "details": dict(body["details"]),
        }
        return self.database_response(self.state.databases[db_id])

    def update_database(self, db_id: int, body: dict):
        db = self.get(self.state.databases, db_id)
        if "details" in body:
            self._check_details(body["details"])
            details = dict(body["details"])
            if details.get("password") == "**MetabasePass**":  # Metabase keeps the stored secret
                details["password"] = db["details"].get("password")
            _changed(db, {"details": details})
        updates = {k: body[k] for k in ("name", "engine") if k in body}
        _changed(db, updates)
        return self.database_response(db)

    def sync(self, db_id: int):
        self.get(self.state.databases, db_id)
        self.state.syncs.append(db_id)
        return {"status": "ok"}

    # -- collections ---------------------------------------------------------------------------------
    def create_collection(self, body: dict):
        name = _non_blank(body, "name")
        parent = body.get("parent_id")
        if parent is not None:
            self.get(self.state.collections, parent)
        coll_id = self.state.new_id()
        self.state.collections[coll_id] = {
            "id": coll_id,
            "name": name,
            "description": body.get("description"),
            "location": "/" if parent is None else f"/{parent}/",
            "archived": False,
        }
        return self.public(self.state.collections[coll_id])

    def update_collection(self, coll_id: int, body: dict):
        coll = self.get(self.state.collections, coll_id)
        _changed(coll, {k: body[k] for k in ("name", "description", "archived") if k in body})
        return self.public(coll)

    def collection_items(self, coll_id: int, query: dict):
        self.get(self.state.collections, coll_id)
        models = query.get("models") or ["card", "dashboard"]
        data = []
        if "card" in models:
            data += [
                {"id": c["id"], "name": c["name"], "model": "card", "description": c["description"]}
                for c in self.state.cards.values()
                if c["collection_id"] == coll_id and not c["archived"]
            ]
        if "dashboard" in models:
            data += [
                {"id": d["id"], "name": d["name"], "model": "dashboard", "description": d["description"]}
                for d in self.state.dashboards.values()
                if d["collection_id"] == coll_id and not d["archived"]
            ]
        return {"total": len(data), "data": data, "models": models, "limit": None, "offset": None}

    # -- cards ---------------------------------------------------------------------------------------
    def _check_card(self, body: dict, partial: bool) -> dict:
        fields = {}
        if not partial or "name" in body:
            fields["name"] = _non_blank(body, "name")
        if not partial or "display" in body:
            fields["display"] = _non_blank(body, "display")
        if not partial or "visualization_settings" in body:
            if not isinstance(body.get("visualization_settings"), dict):
                raise _bad({"visualization_settings": "Value must be a map."})
            fields["visualization_settings"] = body["visualization_settings"]
        if not partial or "dataset_query" in body:
            query = body.get("dataset_query")
            if not isinstance(query, dict) or query.get("type") != "native":
                raise _bad({"dataset_query": "this stand-in knows native queries only"})
            self.get(self.state.databases, query.get("database"))
            native = query.get("native") or {}
            sql, tags = native.get("query"), native.get("template-tags") or {}
            if not isinstance(sql, str) or not sql.strip():
                raise _bad({"dataset_query": "native query must be a non-blank string"})
            used = set(re.findall(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}", sql))
            if used != set(tags):
                raise _bad({"dataset_query": f"template tags {sorted(tags)} do not match the variables {sorted(used)}"})
            for name, tag in tags.items():
                if tag.get("name") != name or not tag.get("id") or tag.get("type") not in ("text", "number", "date"):
                    raise _bad({"dataset_query": f"template tag {name!r} is malformed"})
            fields["dataset_query"] = {"type": "native", "database": query["database"], "native": native}
        if "collection_id" in body:
            if body["collection_id"] is not None:
                self.get(self.state.collections, body["collection_id"])
            fields["collection_id"] = body["collection_id"]
        for key in ("description", "archived"):
            if key in body:
                fields[key] = body[key]
        return fields

    def card_response(self, card: dict) -> dict:
        shown = self.public(card)
        if self.card_format == "mbql5":
            query = card["dataset_query"]
            shown["dataset_query"] = {
                "lib/type": "mbql/query",
                "database": query["database"],
                "stages": [
                    {
                        "lib/type": "mbql.stage/native",
                        "native": query["native"]["query"],
                        "template-tags": query["native"].get("template-tags") or {},
                    }
                ],
            }
        return shown

    def create_card(self, body: dict):
        fields = self._check_card(body, partial=False)
        card_id = self.state.new_id()
        card = {"id": card_id, "description": None, "collection_id": None, "archived": False, **fields}
        self.state.cards[card_id] = copy.deepcopy(card)
        return self.card_response(self.state.cards[card_id])

    def update_card(self, card_id: int, body: dict):
        card = self.get(self.state.cards, card_id)
        _changed(card, self._check_card(body, partial=True))
        return self.card_response(card)

    # -- dashboards ----------------------------------------------------------------------------------
    @staticmethod
    def _check_parameters(parameters) -> list:
        if not isinstance(parameters, list):
            raise _bad({"parameters": "value must be an array."})
        ids = []
        for param in parameters:
            for key in ("id", "name", "slug", "type"):
                if not isinstance(param.get(key), str) or not param[key]:
                    raise _bad({"parameters": f"parameter needs a non-blank {key}"})
            ids.append(param["id"])
        if len(set(ids)) != len(ids):
            raise _bad({"parameters": "parameter ids must be unique"})
        return parameters

    def create_dashboard(self, body: dict):
        name = _non_blank(body, "name")
        if body.get("collection_id") is not None:
            self.get(self.state.collections, body["collection_id"])
        dash_id = self.state.new_id()
        self.state.dashboards[dash_id] = {
            "id": dash_id,
            "name": name,
            "description": body.get("description"),
            "collection_id": body.get("collection_id"),
            "parameters": copy.deepcopy(self._check_parameters(body.get("parameters") or [])),
            "archived": False,
            "dashcards": [],
            "tabs": [],
        }
        return self.dashboard_response(self.state.dashboards[dash_id])

    def dashboard_response(self, dashboard: dict) -> dict:
        shown = self.public(dashboard)
        shown["dashcards"] = [
            {
                **dc,
                "dashboard_id": dashboard["id"],
                "dashboard_tab_id": None,
                "card": self.card_response(self.state.cards[dc["card_id"]]),
            }
            for dc in dashboard["dashcards"]
        ]
        return shown

    def _dashcards(self, dashboard: dict, dashcards, parameters: list) -> list:
        if not isinstance(dashcards, list):
            raise _bad({"dashcards": "value must be an array."})
        existing = {dc["id"] for dc in dashboard["dashcards"]}
        param_ids = {p["id"] for p in parameters}
        ids = [dc.get("id") for dc in dashcards]
        if not all(isinstance(i, int) for i in ids) or len(set(ids)) != len(ids):
            raise _bad({"dashcards": "value must be seq of maps in which ids are unique"})
        result = []
        for dc in dashcards:
            for key in ("row", "col", "size_x", "size_y"):
                if not isinstance(dc.get(key), int) or dc[key] < (1 if key.startswith("size") else 0):
                    raise _bad({"dashcards": f"{key} must be an integer in range"})
            self.get(self.state.cards, dc.get("card_id"))
            if dc["id"] > 0 and dc["id"] not in existing:
                raise _bad({"dashcards": f"dashcard {dc['id']} is not on this dashboard"})
            for mapping in dc.get("parameter_mappings") or []:
                if mapping.get("parameter_id") not in param_ids or mapping.get("card_id") != dc["card_id"]:
                    raise _bad({"dashcards": f"parameter mapping {mapping} points nowhere"})
                target = mapping.get("target")
                if not (isinstance(target, list) and len(target) == 2 and target[0] == "variable"):
                    raise _bad({"dashcards": f"this stand-in knows variable targets only, got {target}"})
                tag_name = target[1][1] if isinstance(target[1], list) and len(target[1]) == 2 else None
                tags = self.state.cards[dc["card_id"]]["dataset_query"]["native"].get("template-tags") or {}
                if tag_name not in tags:
                    raise _bad({"dashcards": f"card {dc['card_id']} has no template tag {tag_name!r}"})
                param_type = next(p["type"] for p in parameters if p["id"] == mapping["parameter_id"])
                wanted = "date" if param_type.startswith("date/") else "text"
                if tags[tag_name]["type"] != wanted:
                    raise _bad(
                        {"dashcards": f"a {param_type} filter cannot set the {tags[tag_name]['type']} {tag_name}"}
                    )
            stored = {
                "id": dc["id"] if dc["id"] > 0 else self.state.new_id(),
                "card_id": dc["card_id"],
                "row": dc["row"],
                "col": dc["col"],
                "size_x": dc["size_x"],
                "size_y": dc["size_y"],
                "parameter_mappings": copy.deepcopy(dc.get("parameter_mappings") or []),
                "visualization_settings": copy.deepcopy(dc.get("visualization_settings") or {}),
                "series": [],
            }
            result.append(stored)
        return result

    def update_dashboard(self, dash_id: int, body: dict):
        dashboard = self.get(self.state.dashboards, dash_id)
        updates = {k: body[k] for k in ("name", "description", "collection_id", "archived") if k in body}
        if "parameters" in body:
            updates["parameters"] = self._check_parameters(body["parameters"])
        parameters = updates.get("parameters", dashboard["parameters"])
        if "dashcards" in body:
            new_cards = self._dashcards(dashboard, body["dashcards"], parameters)
            same = dashboard["dashcards"] == new_cards
            if not same:
                updates["dashcards"] = new_cards
        if "tabs" in body and body["tabs"] != dashboard["tabs"]:
            updates["tabs"] = body["tabs"]
        _changed(dashboard, updates)
        return self.dashboard_response(dashboard)
