"""Read one CSV file into a frame of trimmed strings, each row with its source line.

Why not just `pl.read_csv`? Two things the export contract needs that it does not
give: the 1-based *line number* of each row in the source file (a quoted field may
span lines, and blank lines are skipped), and rows with the wrong number of fields
(polars silently pads or truncates them). So the text is first cut into lines, the
lines grouped into records by quote parity, blank records dropped, and each record
prefixed with its line number before polars parses the fields. Every step is a
vectorised polars expression: the cost is linear in the file size.

Line ends are read as a spreadsheet (and Python's csv module) reads them: LF, CRLF
and a lone CR (old Mac files) each end a line, and line numbers count them so. A
file that used only CRs was once read as one header line with no rows.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from pipeline.core.errors import FatalInputError, clip

CHUNK = 1 << 24

LINE = "_line"
NFIELDS = "_nfields"


@dataclass
class RawTable:
    """A table as written: header names (trimmed, lower case) and string fields."""

    header: list[str]
    frame: pl.DataFrame  # columns: _line, _nfields, then one Utf8 column per header name
    n_fields: int  # fields of the header line: what every row must have


def line_ends(text: str) -> str:
    """`text` with every line end (CRLF, a lone CR, LF) as LF."""
    return text.replace("\r\n", "\n").replace("\r", "\n") if "\r" in text else text


def decode(raw: bytes, encoding: str, file: str) -> str:
    """Decode a file's bytes strictly: an undecodable file is fatal, with its line."""
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as exc:
        try:  # the line as the reader counts lines: the text before the bad byte decodes
            line = line_ends(raw[:exc.start].decode(encoding)).count("\n") + 1
        except (UnicodeError, LookupError):
            line = None
        raise FatalInputError(
            file, f"cannot be decoded as {clip(encoding)} (byte 0x{raw[exc.start]:02x}); "
            "set `encoding` in export.toml or pass --encoding", line=line) from None
    except (UnicodeError, LookupError, ValueError) as exc:  # codecs such as punycode or idna raise these
        raise FatalInputError(file, f"cannot be decoded as {clip(encoding)} (the codec refuses it: "
                              f"{type(exc).__name__}); set `encoding` in export.toml or pass --encoding") from None
    return text.lstrip("\ufeff")


def _records(text: str) -> pl.DataFrame:
    """Cut text into records (line, text): quoted newlines join lines, blank records go."""
    text = line_ends(text)
    lines = (
        pl.DataFrame({"t": [text]})
        .select(pl.col("t").str.split("\n"))
        .explode("t")
        .with_row_index(LINE, offset=1)
    )
    if text.endswith("\n"):  # the terminator of the last line does not start a new one
        lines = lines.slice(0, lines.height - 1)
    if '"' in text:
        q = pl.col("t").str.count_matches('"', literal=True)
        # A line continues the previous record when an odd number of quotes is still open.
        lines = lines.with_columns(
            _rec=(((q.cum_sum() - q) % 2) == 0).cum_sum()
        )
        lines = lines.group_by("_rec", maintain_order=True).agg(
            pl.col(LINE).first(), pl.col("t").str.join("\n")
        ).drop("_rec")
    return lines.filter(pl.col("t").str.strip_chars().str.len_chars() > 0)


def _misquoted(body: pl.DataFrame, delimiter: str) -> int | None:
    """The line of the first record whose double quotes break RFC 4180 (a field is quoted whole,
    with "" for a quote inside it), or None. Used to explain a file the parser refuses, by line
    and never by quoting its content (which is patient data)."""
    d = re.escape(delimiter)
    field = rf'(?: *"(?:[^"]|"")*" *|[^"{d}]*)'
    bad = body.filter(~pl.col("t").str.contains(rf"^{field}(?:{d}{field})*$"))
    return int(bad[LINE][0]) if bad.height else None


def _first_names(header: list[str]) -> dict[str, str]:
    """Header name -> column c0, c1, ...: the first column of each (case-insensitive) name."""
    seen: dict[str, str] = {}
    for i, h in enumerate(header):
        if h and h not in seen:
            seen[h] = f"c{i}"
    return seen


def _named(parsed: pl.DataFrame, header: list[str]) -> RawTable:
    """Name columns c0, c1, ... by the header, keeping the first of each (case-insensitive) name."""
    seen = _first_names(header)
    frame = parsed.select(LINE, NFIELDS, *[pl.col(c).alias(h) for h, c in seen.items()])
    return RawTable(header=list(seen), frame=frame, n_fields=len(header))


def read_csv_text(text: str, delimiter: str, file: str) -> RawTable:
    """Parse decoded CSV text: the first non-blank record is the header."""
    recs = _records(text)
    if recs.height == 0:
        raise FatalInputError(file, "has no header line (the file is empty)")
    header = parse_header(recs["t"][0], int(recs[LINE][0]), delimiter, file)
    return _named(parse_body(recs.slice(1), delimiter, len(header), file), header)


def parse_header(header_text: str, line: int, delimiter: str, file: str) -> list[str]:
    """The header record's names, trimmed and lower case (the Spark ingest shares this)."""
    try:
        header_frame = pl.read_csv(
            io.StringIO(header_text), has_header=False, separator=delimiter,
            infer_schema=False, quote_char='"', truncate_ragged_lines=True,
        )
    except Exception:  # noqa: BLE001 - the parser's message quotes the line: say it without that
        raise FatalInputError(file, "the header line is not valid CSV (check its double quotes and the delimiter)",
                              line=line) from None
    return [(h or "").strip().lower() for h in header_frame.row(0)]


def parse_body(body: pl.DataFrame, delimiter: str, n: int, file: str) -> pl.DataFrame:
    """Records (`_line`, `t`) after the header -> `_line`, `_nfields`, c0 .. c{n-1} (trimmed, empty = null).

    Each record is parsed on its own terms, so any run of records can be parsed apart from
    the rest (the Spark ingest parses them batch by batch in its workers).
    """
    # Fields per record: delimiters outside quoted sections, plus one.
    nfields = (
        pl.col("t").str.replace_all(r'"[^"]*"', "").str.count_matches(delimiter, literal=True) + 1
    )
    body = body.with_columns(nfields.alias(NFIELDS))
    names = [LINE] + [f"c{i}" for i in range(n)]
    if body.height:
        # A first line of exactly the header's field count (all empty, line 0): Polars takes the
        # number of columns from the first line it reads, so a short or long first row would
        # otherwise fail the whole file instead of being quarantined for its field count.
        sentinel = "0" + delimiter * n
        prefixed = sentinel + "\n" + body.select(
            pl.concat_str(pl.col(LINE).cast(pl.Utf8), pl.lit(delimiter), pl.col("t")).str.join("\n")).item()
        try:
            parsed = pl.read_csv(
                io.StringIO(prefixed), has_header=False, separator=delimiter, new_columns=names,
                schema_overrides={c: pl.Utf8 for c in names}, infer_schema=False, quote_char='"',
                truncate_ragged_lines=True, raise_if_empty=False,
            ).slice(1)
        except Exception:  # noqa: BLE001 - a parser failure is the file's problem, said by line, not by content
            line = _misquoted(body, delimiter)
            if line is not None:
                raise FatalInputError(file, 'has a misplaced or unbalanced double quote (a field is quoted whole, '
                                      'with "" for a quote inside it)', line=line) from None
            raise FatalInputError(file, "is not valid CSV: the parser refuses it (check its double quotes and "
                                  "the delimiter)") from None
        if parsed.height != body.height or not parsed[LINE].cast(pl.Int64, strict=False).equals(
            body[LINE].cast(pl.Int64), check_names=False
        ):
            # Our record cutting and the parser disagree only for broken quoting.
            mism = parsed.height if parsed.height < body.height else 0
            line = _misquoted(body, delimiter) or body[LINE][min(mism, body.height - 1)]
            raise FatalInputError(file, "has unbalanced double quotes", line=line)
        parsed = parsed.with_columns(pl.col(LINE).cast(pl.Int64), body[NFIELDS].alias(NFIELDS))
    else:
        parsed = pl.DataFrame(schema={LINE: pl.Int64, NFIELDS: pl.UInt32, **{c: pl.Utf8 for c in names[1:]}})
    # Trim every field; an empty field is missing.
    cols = [pl.col(f"c{i}").str.strip_chars().replace("", None) for i in range(n)]
    return parsed.select(pl.col(LINE), pl.col(NFIELDS).cast(pl.Int64), *cols)


def _scan(path: Path, delimiter: str) -> tuple[bool, int, int, bool]:
    """One pass over the bytes, in chunks, vectorised: (simple, lines, delimiters, may_need_trim).

    `simple`: no quote, no carriage return, no tab, no BOM or blank start, so that
    every line is one record and a row's position is its line number.
    """
    lines = delims = 0
    trim = False
    last = b""
    d = ord(delimiter)
    with open(path, "rb") as fh:
        first = True
        while chunk := fh.read(CHUNK):
            if first:
                first = False
                if chunk[:1] in (b"\n", b" ", b"\xef"):
                    return False, 0, 0, True
            if b'"' in chunk or b"\r" in chunk or b"\t" in chunk:
                return False, 0, 0, True
            trim = trim or b" " in chunk
            a = np.frombuffer(chunk, np.uint8)
            lines += int(np.count_nonzero(a == 10))
            delims += int(np.count_nonzero(a == d))
            last = chunk[-1:]
    if last and last != b"\n":
        lines += 1  # a last line without its newline
    return True, lines, delims, trim


@dataclass
class SimpleLayout:
    """A file the fast path can read: one record per line, every line with the header's fields."""

    header: list[str]  # trimmed, lower case, as in the file (duplicates kept)
    n_lines: int  # header included
    spaces: bool  # some field may need trimming

    @property
    def names(self) -> list[str]:
        """The column names read: the first column of each header name."""
        return list(_first_names(self.header))


def simple_layout(path: Path, delimiter: str) -> SimpleLayout | None:
    """The layout of a file for the fast path, or None when it needs the careful reader.

    The fast path is for the common file (UTF-8, no quotes, no blank lines, no tabs or
    CRs). Every line is then one record, so a row's line number is its position, and
    polars reads the fields natively. A row with the wrong number of fields, or a blank
    line, must still be found: polars refuses a row with too many
    (`truncate_ragged_lines=False`), and if none has too many while the file holds
    exactly (fields - 1) delimiters per line, none has too few and none is blank.
    Invalid UTF-8 and ragged rows are found when the file is read (`scan_simple` raises,
    or gives another number of rows): the reader then falls back to `read_csv_text`,
    which gives the same table and explains the problem; the tests compare the two.
    """
    if len(delimiter) != 1 or ord(delimiter) > 127:
        return None
    simple, n_lines, n_delims, spaces = _scan(path, delimiter)
    if not simple or n_lines == 0:
        return None
    with open(path, "rb") as fh:
        header_line = fh.readline().decode("utf-8", "replace").rstrip("\n")  # no BOM: `_scan` sent those away
    header = [h.strip().lower() for h in header_line.split(delimiter)]
    n = len(header)
    if n < 2 or n_delims != (n - 1) * n_lines:
        return None
    return SimpleLayout(header=header, n_lines=n_lines, spaces=spaces)


def scan_simple(path: Path, delimiter: str, layout: SimpleLayout) -> pl.LazyFrame:
    """The rows of a simple file as a lazy scan (read in streaming, never whole in memory):
    `_line`, `_nfields`, then one trimmed string column per header name (the first of each)."""
    n = len(layout.header)
    names = [f"c{i}" for i in range(n)]
    lazy = pl.scan_csv(path, has_header=False, skip_rows=1, separator=delimiter, quote_char=None,
                       new_columns=names, schema={c: pl.Utf8 for c in names}, encoding="utf8",
                       truncate_ragged_lines=False, raise_if_empty=False, row_index_name=LINE, row_index_offset=2)
    field = (lambda c: pl.when(pl.col(c).str.len_bytes() > 0).then(pl.col(c).str.strip_chars()).replace("", None)) \
        if layout.spaces else pl.col
    return lazy.select(pl.col(LINE).cast(pl.Int64), pl.lit(n, pl.Int64).alias(NFIELDS),
                       *[field(c).alias(h) for h, c in _first_names(layout.header).items()])


def read_simple(path: Path, delimiter: str, file: str) -> RawTable | None:
    """The fast path read into memory (see `simple_layout`), or None for the careful reader."""
    layout = simple_layout(path, delimiter)
    if layout is None:
        return None
    try:
        frame = scan_simple(path, delimiter, layout).collect()
    except Exception:  # noqa: BLE001 - invalid UTF-8, ragged rows: the careful reader explains them
        return None
    if frame.height != layout.n_lines - 1:
        return None
    return RawTable(header=layout.names, frame=frame, n_fields=len(layout.header))
