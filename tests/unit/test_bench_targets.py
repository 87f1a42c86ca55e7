"""How the benchmark judges series growth between the small and the large live installation."""

from __future__ import annotations

from bench.run import exposition_series, per_unit_series, series_growth

SMALL = """# HELP a x
a{work_pool="p1",work_queue="q1"} 1
a{work_pool="p1",work_queue="q2"} 1
b{work_pool="p1"} 1
c 1
"""


def test_families_are_counted_with_their_label_names() -> None:
    families = exposition_series(SMALL)
    assert families["a"] == {"series": 2, "labels": ["work_pool", "work_queue"]}
    assert families["c"] == {"series": 1, "labels": []}


def test_a_queue_family_may_grow_with_the_queues_and_nothing_else_may_grow() -> None:
    small = exposition_series(SMALL)
    large = {
        "a": {"series": 10, "labels": ["work_pool", "work_queue"]},
        "b": {"series": 2, "labels": ["work_pool"]},
        "c": {"series": 1, "labels": []},
    }
    assert series_growth(small, large, pools=2, queues=5)["met"]
    large["c"] = {"series": 2000, "labels": ["worker"]}
    verdict = series_growth(small, large, pools=2, queues=5)
    assert not verdict["met"]
    assert verdict["offenders"] == ["c 1->2000 (labels worker)"]


def test_series_per_queue_and_per_pool() -> None:
    unit = per_unit_series(exposition_series(SMALL), pools=1, queues=2)
    assert unit == {"per_queue": 1.0, "per_pool": 1.0, "fixed": 1}


def test_a_family_labelled_by_prefect_table_may_fill_the_table_list() -> None:
    small = {"t": {"series": 7, "labels": ["relation", "target"]}}
    assert series_growth(small, {"t": {"series": 30, "labels": ["relation", "target"]}}, 2, 5)["met"]
    assert not series_growth(small, {"t": {"series": 500, "labels": ["relation", "target"]}}, 2, 5)["met"]
