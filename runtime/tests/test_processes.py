"""The garbage collector's pace for a block (runtime/processes.py fewer_collections)."""

from __future__ import annotations

import gc

import pytest

from runtime.processes import FEWER_COLLECTIONS, fewer_collections


def test_thresholds_are_raised_for_the_block_and_set_back_after_it_even_on_an_error():
    before = gc.get_threshold()
    with fewer_collections():
        assert gc.get_threshold() == FEWER_COLLECTIONS
    assert gc.get_threshold() == before
    with pytest.raises(RuntimeError), fewer_collections((1000, 5, 5)):
        assert gc.get_threshold() == (1000, 5, 5)
        raise RuntimeError("the block failed")
    assert gc.get_threshold() == before
