"""The pure parts of the dashboard pictures: Grafana's variables, units, legends and the table merge."""

from __future__ import annotations

from devtools.grafana import Variables
from devtools.pictures import Series, format_value, legend, mapped, merge, threshold_color


def test_variables_are_replaced_whole_and_in_both_spellings() -> None:
    variables = Variables(job="prefect-db", target="live", rate_interval="30s", interval="10s", range="4m")
    expr = (
        'rate(x{job=~"$job", instance=~"${instance}", target=~"$target", work_pool=~"$work_pool"}'
        "[$__rate_interval]) offset ${__interval} + y[$__range]"
    )
    assert variables.substitute(expr) == (
        'rate(x{job=~"prefect-db", instance=~".+", target=~"live", work_pool=~".*"}[30s]) offset 10s + y[4m]'
    )


def test_values_are_shown_in_the_panels_units() -> None:
    assert format_value(0.0042, "s") == "4.2 ms"
    assert format_value(700, "s") == "11.7 min"
    assert format_value(3 * 1024**2, "bytes") == "3 MiB"
    assert format_value(0.406, "percentunit") == "40.6%"
    assert format_value(1.5, "opm") == "1.5 ops/min"
    assert format_value(12_000, "short") == "12 K"


def test_legends_mappings_and_thresholds() -> None:
    assert (
        legend("{{work_pool}}/{{work_queue}}", {"work_pool": "k8s", "work_queue": "default"}) == "k8s/default"
    )
    config = {
        "mappings": [{"type": "value", "options": {"0": {"text": "none online", "color": "red"}}}],
        "thresholds": {"steps": [{"color": "green", "value": None}, {"color": "orange", "value": 5}]},
    }
    assert mapped(0.0, config) == ("none online", "#f2495c")
    assert mapped(2.0, config) is None
    assert threshold_color(4.9, config) == "#73bf69"
    assert threshold_color(5.0, config) == "#ff9830"


def one(value: float, **labels: str) -> Series:
    return Series("", {"__name__": "x", **labels}, (0.0,), (value,))


def test_table_rows_merge_on_labels_and_take_the_organized_column_names() -> None:
    panel = {
        "targets": [{"refId": "A"}, {"refId": "B"}],
        "transformations": [
            {"id": "merge", "options": {}},
            {
                "id": "organize",
                "options": {
                    "excludeByName": {"Time": True},
                    "indexByName": {"work_pool": 0, "work_queue": 1, "Value #A": 2, "Value #B": 3},
                    "renameByName": {"Value #A": "Stranded PENDING", "Value #B": "Late"},
                },
            },
        ],
    }
    table = merge(
        panel,
        [
            [one(2, work_pool="k8s", work_queue="default")],
            [one(3, work_pool="etl", work_queue="nightly"), one(1, work_pool="k8s", work_queue="default")],
        ],
    )
    assert table.columns == ["work_pool", "work_queue", "Stranded PENDING", "Late"]
    assert table.rows == [
        {"work_pool": "etl", "work_queue": "nightly", "Late": 3},
        {"work_pool": "k8s", "work_queue": "default", "Stranded PENDING": 2, "Late": 1},
    ]
