"""Exposition text kept deflated, so that a gzip scrape compresses only what changed.

A large Prefect database gives megabytes of sample text (28,000 series at the live benchmark scale):
gzip at level 6 took 36 ms of it on every scrape, more than the whole scrape may take. The catalog's
samples change only when a collector's result does, so each result's text is deflated once, when
the result arrives, and every scrape splices those pieces into one gzip member with the few parts
that change per scrape (the exporter's own metrics), deflating only those.

The splice is valid DEFLATE: every piece comes from a fresh raw compressor (no back-reference
outside its own text) and ends with a sync flush (byte-aligned, not final); an empty final block
ends the stream. The gzip trailer's CRC-32 is folded from the pieces' own. A single member, not
several concatenated ones: not every HTTP client reads past the first member.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

# Level 6, zlib's default and the one gzip-aware scrapers are used to; compression now happens once
# per result, so the better ratio is almost free.
LEVEL = 6
# gzip header: magic, deflate, no flags, no mtime (reproducible bodies), no extra flags, unknown OS.
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"


def _deflate(raw: bytes, level: int, mode: int) -> bytes:
    compressor = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS)
    return compressor.compress(raw) + compressor.flush(mode)


# CRC-32 is affine in its start value: crc(A + B) = crc(zeros(len B), crc(A)) ^ crc(B) ^ crc(zeros(len B), 0).
# So the trailer's CRC is folded from each piece's own CRC with a pass over zeros of its length; the
# raw text need not be kept (at the live benchmark scale, 3 MB).
_ZEROS = memoryview(bytes(1 << 16))


def _crc_of_zeros(size: int, crc: int) -> int:
    while size:
        step = min(size, len(_ZEROS))
        crc = zlib.crc32(_ZEROS[:step], crc)
        size -= step
    return crc


@dataclass(frozen=True, slots=True)
class Segment:
    """A piece of exposition text, kept only as raw DEFLATE (sync-flushed, not final) and its CRC."""

    deflated: bytes
    size: int
    crc: int
    # crc32 of ``size`` zero bytes from 0: the constant term of folding this piece's CRC in.
    zeros_crc: int

    @classmethod
    def of(cls, raw: bytes, level: int = LEVEL) -> Segment:
        """Deflate ``raw`` once."""
        if not raw:
            return EMPTY
        size = len(raw)
        return cls(_deflate(raw, level, zlib.Z_SYNC_FLUSH), size, zlib.crc32(raw), _crc_of_zeros(size, 0))

    @property
    def raw(self) -> bytes:
        """The text again (for a scraper that does not take gzip: rare, Prometheus always does)."""
        return zlib.decompressobj(-zlib.MAX_WBITS).decompress(self.deflated) if self.size else b""


EMPTY = Segment(b"", 0, 0, 0)
# An empty final block: what ends the stream after the sync-flushed pieces.
_FINAL_BLOCK = _deflate(b"", LEVEL, zlib.Z_FINISH)


def join(parts: Iterable[Segment | bytes]) -> bytes:
    """Return the text of ``parts``, in order."""
    return b"".join([p.raw if isinstance(p, Segment) else p for p in parts])


def gzip_join(parts: Sequence[Segment | bytes], level: int = LEVEL) -> bytes:
    """Return one gzip member holding the text of ``parts``, in order.

    A ``Segment`` is spliced in as it was deflated when it was made; plain ``bytes`` (the text that
    changes on every call) is deflated now.
    """
    crc = 0
    size = 0
    out = [_GZIP_HEADER]
    for part in parts:
        if isinstance(part, Segment):
            if part.size:
                crc = _crc_of_zeros(part.size, crc) ^ part.crc ^ part.zeros_crc
                size += part.size
                out.append(part.deflated)
        elif part:
            crc = zlib.crc32(part, crc)
            size += len(part)
            out.append(_deflate(part, level, zlib.Z_SYNC_FLUSH))
    out.append(_FINAL_BLOCK)
    out.append(struct.pack("<II", crc, size & 0xFFFFFFFF))
    return b"".join(out)
