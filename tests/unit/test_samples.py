"""Rows become series: values and labels are converted, bad rows are errors, and the series cap folds."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exporter.catalog import CollectorSpec, MetricSpec, Requires
from exporter.samples import InvalidResult, build_series, cap_series


def spec(*metrics: MetricSpec) -> CollectorSpec:
    return CollectorSpec("demo", Path("demo.sql"), "demo", "SELECT 1", 15.0, 5.0, Requires(), metrics)


def metric(
    name: str = "prefect_db_demo", value: str = "v", labels: tuple[str, ...] = ("pool",)
) -> MetricSpec:
    return MetricSpec(name, "gauge", "A demo.", value, labels, line=3)


def test_rows_become_one_series_per_label_set_and_null_values_are_skipped() -> None:
    rows = [
        {"pool": "a", "v": 1, "w": None},
        {"pool": "b", "v": Decimal("2.5"), "w": True},
        {"pool": None, "v": None, "w": 3.0},
    ]
    built = build_series(spec(metric(), metric("prefect_db_other", "w")), rows)
    assert built == {
        "prefect_db_demo": {("a",): 1.0, ("b",): 2.5},
        "prefect_db_other": {("b",): 1.0, ("",): 3.0},
    }


def test_no_rows_give_empty_series_for_every_metric() -> None:
    assert build_series(spec(metric(), metric("prefect_db_other")), []) == {
        "prefect_db_demo": {},
        "prefect_db_other": {},
    }


def test_two_rows_with_the_same_labels_are_an_error_naming_the_metric_and_labels() -> None:
    with pytest.raises(InvalidResult, match=r"prefect_db_demo the same labels \{'pool': 'a'\}"):
        build_series(spec(metric()), [{"pool": "a", "v": 1}, {"pool": "a", "v": 2}])


def test_a_value_that_is_not_a_number_is_an_error_naming_the_metric() -> None:
    with pytest.raises(InvalidResult, match=r"prefect_db_demo: value 'x' of type str is not a number"):
        build_series(spec(metric()), [{"pool": "a", "v": "x"}])


def test_under_the_cap_nothing_changes() -> None:
    series = {("a",): 1.0, ("b",): 2.0}
    assert cap_series(series, 2, "sum") == (series, 0)


def test_the_largest_are_kept_and_the_rest_folded() -> None:
    series = {(f"q{i}", "p"): float(i) for i in range(10)}
    kept, folded = cap_series(series, 4, "sum")
    assert folded == 7
    assert kept == {("q9", "p"): 9.0, ("q8", "p"): 8.0, ("q7", "p"): 7.0, ("other", "other"): 21.0}
    kept, _ = cap_series(series, 4, "max")
    assert kept[("other", "other")] == 6.0


def test_a_real_other_series_joins_the_bucket() -> None:
    kept, folded = cap_series({("other",): 5.0, ("a",): 1.0, ("b",): 2.0}, 2, "sum")
    assert (kept, folded) == ({("b",): 2.0, ("other",): 6.0}, 2)


def test_the_kept_series_stay_the_same_from_run_to_run_while_they_exist() -> None:
    """A sequence of results over a cap of 3 (two series and the bucket): the same two are served."""
    runs = [
        {("a",): 5.0, ("b",): 4.0, ("c",): 1.0, ("x",): 0.0},
        # c overtakes both: it stays folded, and a and b stay kept.
        {("a",): 5.0, ("b",): 4.0, ("c",): 9.0, ("x",): 0.0},
        # A new, larger series folds too; a small value does not push a or b out.
        {("a",): 0.0, ("b",): 1.0, ("c",): 9.0, ("d",): 20.0},
        # b is gone: its slot goes to the largest of the others, d.
        {("a",): 1.0, ("c",): 9.0, ("d",): 20.0, ("x",): 0.0},
        {("a",): 1.0, ("c",): 30.0, ("d",): 20.0, ("e",): 50.0},
    ]
    served = []
    previous: set[tuple[str, ...]] = set()
    for series in runs:
        kept, _ = cap_series(series, 3, "sum", previous)
        previous = set(kept)
        served.append(sorted(label for (label,) in kept if label != "other"))
    assert served == [["a", "b"], ["a", "b"], ["a", "b"], ["a", "d"], ["a", "d"]]


def test_when_fewer_fit_than_were_kept_the_largest_of_them_stay() -> None:
    previous = {("a",), ("b",), ("c",)}
    kept, folded = cap_series({("a",): 1.0, ("b",): 3.0, ("c",): 2.0, ("d",): 9.0}, 3, "sum", previous)
    assert (kept, folded) == ({("b",): 3.0, ("c",): 2.0, ("other",): 10.0}, 2)


def reference_cap(
    series: dict[tuple[str, ...], float], limit: int, previous: set[tuple[str, ...]]
) -> dict[tuple[str, ...], float]:
    """The cap's rule as one sort with a key: kept last time first, then largest, then by labels;
    the kept series in the query's order, the bucket last."""
    if len(series) <= limit:
        return dict(series)
    bucket = ("other",) * len(next(iter(series)))
    ranked = sorted(
        (item for item in series.items() if item[0] != bucket),
        key=lambda item: (item[0] not in previous, -item[1], item[0]),
    )
    chosen = {labels for labels, _ in ranked[: limit - 1]}
    kept = {labels: value for labels, value in series.items() if labels in chosen}
    rest = [v for _, v in ranked[limit - 1 :]] + ([series[bucket]] if bucket in series else [])
    kept[bucket] = float(sum(rest))
    return kept


LABELS = st.sampled_from(["a", "b", "c", "d", "other"])


@given(
    st.dictionaries(st.tuples(LABELS, LABELS), st.integers(-3, 3).map(float), min_size=1, max_size=25),
    st.integers(2, 12),
    st.sets(st.tuples(LABELS, LABELS), max_size=10),
)
def test_the_cap_keeps_what_its_rule_says_in_the_query_order_kept_first_then_largest_then_by_labels(
    series: dict[tuple[str, ...], float], limit: int, previous: set[tuple[str, ...]]
) -> None:
    kept, _ = cap_series(series, limit, "sum", previous)
    assert kept == reference_cap(series, limit, previous)
    assert list(kept) == list(reference_cap(series, limit, previous))
