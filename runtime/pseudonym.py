"""The secret behind ``patient_key``: HMAC-SHA256 of ``patient_id`` under a key only the pipeline holds.

A plain hash of an id is reversible by hashing every plausible id; a keyed hash is not without the key.
The key is ``TELEMED_PSEUDONYM_KEY``; unset, one is generated once into the state folder
(``$TELEMED_STATE_DIR/pseudonym.key``, mode 0600) and reused. It must stay the same for as long as the
marts live: incremental facts keep the keys they were built with, so a new key needs a full refresh.

dbt receives it as two session settings (libpq's PGOPTIONS, set by ``python -m loaders env``): the inner
and outer HMAC pads, so the SQL (macro ``pseudonymous_key``) is plain HMAC with Postgres's built-in
sha256 and the key never appears in compiled SQL, dbt's logs or ``target/``.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

KEY_ENV = "TELEMED_PSEUDONYM_KEY"
KEY_FILE = "pseudonym.key"
# Session settings the macro reads (custom GUCs: any role may set them for its own session).
IPAD_SETTING = "telemed.pseudonym_ipad"
OPAD_SETTING = "telemed.pseudonym_opad"
_BLOCK = 64  # SHA-256's block size


class PseudonymKeyError(ValueError):
    """The configured key is unusable."""


def key_bytes(state_dir: Path, env: dict[str, str] | None = None) -> bytes:
    """The key from the environment, else the state folder's (generated on first use)."""
    env = dict(os.environ if env is None else env)
    configured = env.get(KEY_ENV, "")
    if configured:
        if len(configured) < 16:
            raise PseudonymKeyError(f"{KEY_ENV} must have at least 16 characters")
        return configured.encode()
    path = Path(state_dir) / KEY_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written aside and linked into place: concurrent first uses agree on one key.
        tmp = path.with_name(f"{KEY_FILE}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_hex(32) + "\n")
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return path.read_text().strip().encode()


def pads(key: bytes) -> tuple[str, str]:
    """HMAC-SHA256's inner and outer padded keys, hex: HMAC(k, m) = H(opad || H(ipad || m))."""
    if len(key) > _BLOCK:
        key = hashlib.sha256(key).digest()
    key = key.ljust(_BLOCK, b"\0")
    return bytes(b ^ 0x36 for b in key).hex(), bytes(b ^ 0x5C for b in key).hex()


def pgoptions(key: bytes, existing: str = "") -> str:
    """PGOPTIONS carrying the pads (hex: nothing libpq would need escaped), after ``existing``'s options.

    A nested ``python -m loaders env`` finds its parent's pads in PGOPTIONS: they are replaced."""
    kept: list[str] = []
    tokens = existing.split(" ")
    i = 0
    while i < len(tokens):
        word = tokens[i]
        if word == "-c" and i + 1 < len(tokens) and tokens[i + 1].startswith("telemed.pseudonym_"):
            i += 2
            continue
        if word:
            kept.append(word)
        i += 1
    inner, outer = pads(key)
    return " ".join([*kept, "-c", f"{IPAD_SETTING}={inner}", "-c", f"{OPAD_SETTING}={outer}"])


def patient_key(key: bytes, patient_id: str) -> str:
    """What dbt computes for ``patient_key`` (lowercase hex HMAC-SHA256)."""
    return hmac.new(key, patient_id.encode(), hashlib.sha256).hexdigest()
