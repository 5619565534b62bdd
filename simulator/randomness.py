"""Seeded randomness: the generator's only source of chance, so the same seed gives the same bytes.

``random.Random`` is a simulation RNG here, never used for secrets (hence the S311 waiver).
"""

from __future__ import annotations

import random

_UUID_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_UUID_SET = (0x4000 << 64) | (0x8000 << 48)


def seeded(seed: int) -> random.Random:
    return random.Random(seed)  # noqa: S311 - reproducible simulation, not security


def random_uuid(rng: random.Random) -> str:
    """A version-4 UUID string from a seeded RNG (what uuid.UUID(int=..., version=4) gives, faster)."""
    h = ((rng.getrandbits(128) & _UUID_CLEAR) | _UUID_SET).to_bytes(16, "big").hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
