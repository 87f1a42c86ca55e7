"""The interpreter set-up for serving: the GIL hand-over and start-up objects out of the collector's way."""

from __future__ import annotations

import gc
import sys
from collections.abc import Iterator

import pytest

from exporter.interpreter import GIL_SWITCH_INTERVAL, tune_for_serving


@pytest.fixture
def restored_interpreter() -> Iterator[None]:
    interval = sys.getswitchinterval()
    yield
    sys.setswitchinterval(interval)
    gc.unfreeze()


def test_serving_hands_the_gil_over_within_a_millisecond_and_freezes_what_start_up_built(
    restored_interpreter: None,
) -> None:
    built_at_start = {"catalog": [object() for _ in range(100)]}
    tune_for_serving()
    assert sys.getswitchinterval() == pytest.approx(GIL_SWITCH_INTERVAL)
    assert gc.get_freeze_count() > 0
    # What start-up built is out of every later collection; what comes after is collected as before.
    assert not collected(built_at_start)
    assert collected({"result": []})


def collected(thing: object) -> bool:
    """Whether the cyclic collector walks ``thing`` (frozen objects are in none of its generations)."""
    return any(tracked is thing for tracked in gc.get_objects())
