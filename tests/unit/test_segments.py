"""A gzip scrape spliced from results' stored deflate pieces is one valid gzip member of the same text."""

from __future__ import annotations

import gzip
import zlib

from hypothesis import given
from hypothesis import strategies as st

from exporter.segments import EMPTY, Segment, gzip_join, join

TEXT = st.binary(max_size=3000) | st.sampled_from([b"", b"x", b"prefect_db_up{target=\"a\"} 1.0\n" * 500])
PARTS = st.lists(st.tuples(st.booleans(), TEXT), max_size=8)


@given(PARTS)
def test_any_mix_of_stored_and_fresh_parts_decompresses_to_their_text(mix: list[tuple[bool, bytes]]) -> None:
    parts = [Segment.of(raw) if stored else raw for stored, raw in mix]
    text = b"".join(raw for _, raw in mix)
    body = gzip_join(parts)
    assert gzip.decompress(body) == text == join(parts)
    # One member, nothing after it: a client that reads only the first member reads everything.
    reader = zlib.decompressobj(16 + zlib.MAX_WBITS)
    assert reader.decompress(body) == text
    assert reader.eof and reader.unused_data == b""


def test_a_stored_piece_is_spliced_as_it_was_deflated_not_compressed_again() -> None:
    stored = Segment.of(b"sample 1.0\n" * 10_000)
    body = gzip_join([b"# head\n", stored, EMPTY, b"# tail\n"])
    assert stored.deflated in body
    assert len(body) < len(stored.deflated) + 64
