"""Seeded randomness: the generator's only source of chance, so the same seed gives the same bytes.

``random.Random`` is a simulation RNG here, never used for secrets (hence the S311 waiver).
"""

from __future__ import annotations

import _random
import random
from hashlib import sha512

_UUID_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_UUID_SET = (0x4000 << 64) | (0x8000 << 48)


def seeded(seed: int) -> random.Random:
    return random.Random(seed)  # noqa: S311 - reproducible simulation, not security


# What ``random.Random.seed`` calls once it has made an integer of its argument: the C generator's seeding.
_seed_from_int = _random.Random.seed


def reseed(rng: random.Random, value: int | bytes) -> random.Random:
    """Put ``rng`` in the very state ``random.Random(value)`` starts in, and return it.

    For a generator per item (an appointment's video session, a patient): reseeding one generator costs
    about half of making a new one. ``Random(bytes)`` (or ``Random(str)``, by its UTF-8 bytes) seeds from
    the integer of the bytes followed by their SHA-512, ``Random(int)`` from the integer; both go through
    the C seeding called here directly. A test compares the streams."""
    if value.__class__ is bytes:
        value = int.from_bytes(value + sha512(value).digest(), "big")
    _seed_from_int(rng, value)
    rng.gauss_next = None
    return rng


def random_uuid(rng: random.Random) -> str:
    """A version-4 UUID string from a seeded RNG (what uuid.UUID(int=..., version=4) gives, faster)."""
    h = ((rng.getrandbits(128) & _UUID_CLEAR) | _UUID_SET).to_bytes(16, "big").hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
