"""The embedded Postgres's login passwords: generated on its first start into one file only its owner reads.

The file is ``$TELEMED_STATE_DIR/pgpass`` in libpq's password-file format (``host:port:database:user:password``,
mode 0600), so ``PGPASSFILE=.local/pgpass psql -h 127.0.0.1 -p 25432 -U telemed_reporting telemed`` works
too. It holds the admin (``postgres``) and each login role's password; configured servers never use it
(their passwords come from PGPASSWORD / DATABASE_URL and the TELEMED_*_PASSWORD variables).
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

FILE_NAME = "pgpass"
RANDOM_BYTES = 24  # per generated password: 192 bits
# The embedded server listens on this address only (runtime/settings.py EMBEDDED_PG_HOST).
_HOST = "127.0.0.1"
# SCRAM's key stretching for the passwords generated here: Postgres hashes a password with 4,096 PBKDF2
# rounds by default, and every client repeats them at every login (about 2.3 ms of CPU each on the machine
# of docs/tests.md). Stretching slows the guessing of a password a person chose; 192 random bits cannot be
# guessed at any count. dbt opens a connection for every node it runs, so those rounds were a tenth of a
# monitor run's CPU (13.2 s, 11.9 s with 16). Passwords given in the environment keep the server's count.
SCRAM_ITERATIONS = 16


class PasswordFileError(RuntimeError):
    """The passwords file is missing, unreadable or readable by others; the message says what to do."""


def path(state_dir: Path) -> Path:
    return state_dir / FILE_NAME


def read(state_dir: Path) -> dict[str, str]:
    """user -> password from the file; refuses a file that others may read (it would leak every role)."""
    file = path(state_dir)
    try:
        mode = file.stat().st_mode
        text = file.read_text()
    except FileNotFoundError:
        raise PasswordFileError(
            f"no passwords file at {file}: the embedded Postgres writes it on its first start (make up)"
        ) from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise PasswordFileError(
            f"{file} is readable by others (mode {stat.S_IMODE(mode):04o}); it holds every role's password: "
            f"chmod 600 {file}"
        )
    found: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split(":", 4)
        if len(parts) == 5:
            found[parts[3]] = parts[4]
    return found


def ensure(state_dir: Path, users: list[str]) -> tuple[dict[str, str], bool]:
    """The passwords of ``users``, generating the missing ones into the file; True when it was written.

    Generated passwords are URL-safe (no ``:`` or ``\\``), so the libpq format needs no escaping. The file
    is written to a temporary name created with mode 0600 and renamed over the old one: it is never, even
    for a moment, readable by others or half written."""
    file = path(state_dir)
    known = read(state_dir) if file.exists() else {}
    missing = [user for user in users if user not in known]
    if not missing:
        return known, False
    for user in missing:
        known[user] = secrets.token_urlsafe(RANDOM_BYTES)
    state_dir.mkdir(parents=True, exist_ok=True)
    lines = ["# telemed-elt: the embedded Postgres's passwords (runtime/passwords.py). Keep it 0600."]
    lines += [f"{_HOST}:*:*:{user}:{password}" for user, password in known.items()]
    temporary = file.with_name(f".{FILE_NAME}.{os.getpid()}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # O_CREAT's mode only applies to a new file
        os.write(fd, ("\n".join(lines) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, file)
    return known, True
