"""The direct text renderer writes exactly what prometheus_client would (values and label escaping).

Whole expositions are compared against ``generate_latest`` on a real database with odd names in
``tests/test_bad_input.py``; these properties cover every float and every string.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.utils import floatToGoString

from exporter.textformat import escape_label_value, format_value

EDGES = [999_999.9999, 1e6, -1e6, 123456789.0, 5e-324, -0.0]


@given(st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from(EDGES))
def test_values_are_formatted_as_prometheus_client_does(value: float) -> None:
    assert format_value(value) == floatToGoString(value)  # type: ignore[no-untyped-call]


@given(st.text() | st.sampled_from(['a"b', "back\\slash", "new\nline", '\\"\n', "\\n literally"]))
def test_label_values_are_escaped_as_prometheus_client_does(value: str) -> None:
    expected = value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
    assert escape_label_value(value) == expected
