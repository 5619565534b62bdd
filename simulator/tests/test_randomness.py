"""The generator's seeded randomness (simulator/randomness.py): a reseeded generator draws exactly what a new
one seeded alike draws, so the outputs do not depend on which of the two the code uses."""

from __future__ import annotations

import random
import uuid

from simulator.randomness import random_uuid, reseed, seeded


def test_a_reseeded_generator_draws_what_a_new_one_draws():
    rng = seeded(1)
    rng.gauss(0, 1)  # leaves a cached second normal behind: a reseed must drop it, as seeding does
    for value in (0, 7, -7, 42 * 1_000_003 + 15, 2**200 + 3, "video-api:42:APT-00000001", "", "é"):
        reference = random.Random(value)
        mine = reseed(rng, value.encode() if isinstance(value, str) else value)
        assert [mine.random() for _ in range(30)] == [reference.random() for _ in range(30)]
        assert mine.gauss(0, 1) == reference.gauss(0, 1)
        assert mine.getrandbits(128) == reference.getrandbits(128)
        assert mine.getstate() == reference.getstate()


def test_random_uuid_is_a_version_4_uuid_of_the_generators_bits():
    rng, again = seeded(5), seeded(5)
    for _ in range(200):
        text = random_uuid(rng)
        expected = uuid.UUID(int=again.getrandbits(128), version=4)
        assert text == str(expected)
