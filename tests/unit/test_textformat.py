"""The direct text renderer writes exactly what prometheus_client would (values and label escaping).

Whole expositions are compared against ``generate_latest`` on a real database with odd names in
``tests/test_bad_input.py``; these properties cover every float and every string.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.utils import floatToGoString

from exporter.catalog import MetricSpec
from exporter.textformat import SampleWriter, escape_label_value, format_value

EDGES = [999_999.9999, 1e6, -1e6, 123456789.0, 5e-324, -0.0]


@given(st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from(EDGES))
def test_values_are_formatted_as_prometheus_client_does(value: float) -> None:
    assert format_value(value) == floatToGoString(value)  # type: ignore[no-untyped-call]


@given(st.text() | st.sampled_from(['a"b', "back\\slash", "new\nline", '\\"\n', "\\n literally"]))
def test_label_values_are_escaped_as_prometheus_client_does(value: str) -> None:
    expected = value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
    assert escape_label_value(value) == expected


def test_a_writer_used_again_writes_what_a_new_one_writes() -> None:
    """A writer keeps nothing from one run to the next: new, gone and changed series are right."""
    metric = MetricSpec("m", "gauge", "h", "v", ("work_queue", "state"), 1, "sum")
    writer = SampleWriter(metric, 'ta"rget')
    runs: list[dict[tuple[str, ...], float]] = [
        {("q1", "RUNNING"): 1.0, ("q\\2", "PENDING"): 2.0},
        {("q1", "RUNNING"): 3.0, ("q3\n", "PENDING"): 1e9},
        {},
        {("q1", "RUNNING"): 0.0},
    ]
    for series in runs:
        assert writer.write(series.items()) == SampleWriter(metric, 'ta"rget').write(series.items())
    assert writer.write(runs[0].items()) == (
        'm{state="RUNNING",target="ta\\"rget",work_queue="q1"} 1.0\n'
        'm{state="PENDING",target="ta\\"rget",work_queue="q\\\\2"} 2.0\n'
    )


def test_a_target_name_with_percent_signs_and_quotes_is_written_as_it_is() -> None:
    # The line template is filled with %: a % in the target's name must not be read as a placeholder.
    metric = MetricSpec("m", "gauge", "h", "v", ("q",), 1, "sum")
    line = SampleWriter(metric, 'a%s"b%%').write([(("100%",), 1.0)])
    assert line == 'm{q="100%",target="a%s\\"b%%"} 1.0\n'
