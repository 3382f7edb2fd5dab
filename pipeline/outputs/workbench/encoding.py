"""The page's payload: dictionary-coded columns, rows sorted and counted (LEB128), deflated, base64.
"""

from __future__ import annotations

import base64
import zlib
from dataclasses import dataclass

import numpy as np
import polars as pl


@dataclass
class _Column:
    name: str
    keys: np.ndarray  # one int64 key per patient
    entries: list  # key -> what the page reads (a status code, or a tuple of value codes)



def _leb128(values: np.ndarray) -> bytes:
    """Unsigned LEB128 of each value (7 bits a byte, low first, high bit set on all but the last),
    vectorised: one pass per byte position (at most 10 for 64 bits), not one per value."""
    v = np.asarray(values, dtype=np.uint64)
    if not v.size:
        return b""
    n_bytes = np.ones(v.shape, dtype=np.int64)
    rest = v >> np.uint64(7)
    while rest.any():
        n_bytes += rest > 0
        rest >>= np.uint64(7)
    k = np.arange(int(n_bytes.max()))  # byte positions
    groups = ((v[:, None] >> (np.uint64(7) * k.astype(np.uint64))) & np.uint64(0x7F)).astype(np.uint8)
    groups |= np.where(k[None, :] < n_bytes[:, None] - 1, 0x80, 0).astype(np.uint8)  # more bytes follow
    return groups[k[None, :] < n_bytes[:, None]].tobytes()


def _words(columns: list[tuple[str, int]]) -> list[list[tuple[str, int]]]:
    """Columns (name, number of distinct keys 0 .. n-1), in turn, packed into as few 64-bit words as
    hold them: each takes the bits its largest key needs, the first most significant."""
    words: list[list[tuple[str, int]]] = [[]]
    used = 0
    for name, n in columns:
        bits = max(1, (n - 1).bit_length())
        if used + bits > 64:
            words.append([])
            used = 0
        words[-1].append((name, bits))
        used += bits
    return words


def packed_keys(columns: list[tuple[str, int]]) -> list[pl.Expr]:
    """Sort keys equivalent to sorting by `columns` (name, number of distinct keys 0 .. n-1) in turn,
    packed into as few 64-bit words as hold them (`_words`). One or two integer keys sort many
    times faster than twenty columns (1.3 s to 0.18 s for a million rows), and in the same order."""
    keys = []
    for word in _words(columns):
        key = pl.lit(0, pl.UInt64)
        for name, bits in word:
            key = key * pl.lit(1 << bits, pl.UInt64) + pl.col(name).cast(pl.UInt64)
        keys.append(key)
    return keys


def unpacked(columns: list[tuple[str, int]]) -> list[pl.Expr]:
    """The columns back from the words `packed_keys` made of them (named w0, w1, ...)."""
    out = []
    for j, word in enumerate(_words(columns)):
        shift = 0
        for name, bits in reversed(word):
            out.append((pl.col(f"w{j}") // pl.lit(1 << shift, pl.UInt64) % pl.lit(1 << bits, pl.UInt64))
                       .cast(pl.Int64).alias(name))
            shift += bits
    return out


def _encode(columns: list[_Column]) -> tuple[dict, dict]:
    """Distinct combinations with their count, column by column, deflated; and the row count."""
    frame = pl.DataFrame({f"c{i}": c.keys for i, c in enumerate(columns)})
    # Rows sorted by the columns of fewest distinct values first: long runs, which deflate well.
    # Grouped and sorted on the columns packed into one or two words, which is the same grouping
    # and the same order as on the columns themselves (the packing is exact): 1.5 to 1.0 s for ten
    # million rows of 23 columns, the same at a million.
    order = sorted(frame.columns, key=lambda c: (len(columns[int(c[1:])].entries), int(c[1:])))
    sizes = [(c, len(columns[int(c[1:])].entries)) for c in order]
    words = [f"w{j}" for j in range(len(_words(sizes)))]
    grouped = (frame.select([k.alias(w) for k, w in zip(packed_keys(sizes), words)])
               .group_by(words).len("n").sort(words)
               .select(*unpacked(sizes), "n"))
    raw = bytearray()
    widths = []
    for i, c in enumerate(columns):
        width = 1 if len(c.entries) <= 256 else 2
        widths.append(width)
        raw += grouped[f"c{i}"].to_numpy().astype("<u1" if width == 1 else "<u2").tobytes()
    raw += _leb128(grouped["n"].to_numpy())
    deflate = zlib.compressobj(6, zlib.DEFLATED, -15, 8)  # level 9: 5 % smaller, 15 times slower
    packed = deflate.compress(bytes(raw)) + deflate.flush()
    return ({"rows": grouped.height, "raw_bytes": len(raw), "widths": widths,
             "data": base64.b64encode(packed).decode("ascii")},
            {f"c{i}": grouped[f"c{i}"].to_numpy() for i in range(len(columns))} | {"n": grouped["n"].to_numpy()})


def decode(payload: dict) -> dict[str, np.ndarray]:
    """The rows of a payload as the page reads them (for tests): c0.. (dictionary indices) and n."""
    raw = zlib.decompress(base64.b64decode(payload["data"]), -15)
    assert len(raw) == payload["raw_bytes"]
    rows, out, pos = payload["rows"], {}, 0
    for i, width in enumerate(payload["widths"]):
        out[f"c{i}"] = np.frombuffer(raw, dtype="<u1" if width == 1 else "<u2", count=rows, offset=pos).astype(np.int64)
        pos += rows * width
    counts, v, shift = [], 0, 0
    for byte in raw[pos:]:
        v |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            counts.append(v)
            v, shift = 0, 0
    out["n"] = np.asarray(counts, dtype=np.int64)
    assert len(counts) == rows
    return out
