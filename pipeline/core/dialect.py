"""The CSV dialect of an export: defaults, the folder's `export.toml`, then CLI flags.

Spreadsheet tools in many countries write `;`-separated files with a decimal comma,
day-first dates and a legacy code page; the registry describes that once in
`export.toml` and every table is read with it.
"""

from __future__ import annotations

import codecs
import datetime as dt
import re
import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path

from pipeline.core.errors import FatalInputError, UsageError, clip, some

DELIMITERS = {",", ";", "\t"}
DECIMALS = {".", ","}
# strftime directives of a time of day (or of a timestamp): a date column has none.
TIME_DIRECTIVES = set("HIklMSpPfzZTRrXcsN")
DIRECTIVE = re.compile(r"%[-_0^#]?(:?[A-Za-z%])")
# Two dates whose day, month and year all differ: a usable pattern writes and reads back both.
PROBE_DATES = (dt.date(2024, 3, 31), dt.date(1999, 12, 5))


def check_encoding(name: str) -> str | None:
    """Why `name` cannot be the encoding of a text file, or None if it can.

    Only text encodings (bytes to str) qualify: `hex`, `base64`, `rot13`, `zlib` ... are
    codecs of Python but not encodings of a CSV file.
    """
    try:
        info = codecs.lookup(name)
    except (LookupError, TypeError, ValueError):
        return f"unknown encoding {clip(name)}"
    if not getattr(info, "_is_text_encoding", True):
        return f"{clip(name)} is not a text encoding (it is a bytes-to-bytes or str-to-str codec)"
    return None


def check_date_format(pattern: str) -> str | None:
    """Why `pattern` cannot be the date format of an export, or None if it can.

    A date format has no time directives (`%H`, `%M`, ...), and it must read back the
    dates it writes, with Polars (which reads the dates), for two dates whose day,
    month and year all differ: a pattern without the day or the month fails that.
    """
    import polars as pl

    directives = DIRECTIVE.findall(pattern)
    if not [d for d in directives if d != "%"]:
        return f"date_format {clip(pattern)} is not a strftime pattern (e.g. %Y-%m-%d)"
    times = sorted({d for d in directives if d.lstrip(":") in TIME_DIRECTIVES})
    if times:
        return (f"date_format {clip(pattern)} holds time directive(s) {', '.join('%' + d for d in times)}; "
                "dates are written without a time of day")
    try:
        written = [d.strftime(pattern) for d in PROBE_DATES]
        read = pl.Series(written, dtype=pl.Utf8).str.to_date(pattern, strict=False).to_list()
    except Exception as exc:  # noqa: BLE001 - Polars refuses the pattern: say so, plainly
        return f"date_format {clip(pattern)} cannot be used: {clip(str(exc).splitlines()[0], 120)}"
    if read != list(PROBE_DATES):
        return (f"date_format {clip(pattern)} does not read back a full date (e.g. it writes 2024-03-31 as "
                f"{clip(written[0])}); it needs the day, the month and the year")
    return None


@dataclass(frozen=True)
class Dialect:
    delimiter: str = ","
    decimal: str = "."
    date_format: str = "%Y-%m-%d"
    encoding: str = "utf-8"

    def check(self, source: str) -> "Dialect":
        """Refuse a dialect that cannot be read, naming where it came from."""
        if self.delimiter not in DELIMITERS:
            raise UsageError(f"{source}: delimiter must be one of ',', ';', '\\t', not {clip(self.delimiter)}")
        if self.decimal not in DECIMALS:
            raise UsageError(f"{source}: decimal must be '.' or ',', not {clip(self.decimal)}")
        if self.decimal == self.delimiter:
            raise UsageError(f"{source}: decimal mark and delimiter cannot both be {self.decimal!r}")
        for why in (check_encoding(self.encoding), check_date_format(self.date_format)):
            if why:
                raise UsageError(f"{source}: {why}")
        return self


def load_dialect(folder: Path, overrides: dict[str, str | None]) -> Dialect:
    """Dialect of an export folder: `export.toml` if present, CLI overrides on top."""
    dialect = Dialect()
    toml_path = folder / "export.toml"
    try:
        exists, is_file = toml_path.exists(), toml_path.is_file()
    except OSError as exc:  # the folder itself cannot be searched
        raise FatalInputError(str(folder), f"the export folder cannot be read: {exc.strerror}") from None
    if exists and not is_file:
        raise FatalInputError("export.toml", "is not a regular file (a folder, or a link to one)")
    if is_file:
        try:
            data = tomllib.loads(toml_path.read_text("utf-8"))
        except OSError as exc:
            raise FatalInputError("export.toml", f"cannot be read: {exc.strerror}") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise FatalInputError("export.toml", f"not valid TOML: {clip(exc, 200)}") from None
        known = {f.name for f in fields(Dialect)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise FatalInputError("export.toml", f"unknown setting(s) {some(clip(u, 40) for u in unknown)}; "
                                  f"known: {', '.join(sorted(known))}")
        bad = [k for k, v in data.items() if not isinstance(v, str)]
        if bad:
            raise FatalInputError("export.toml", f"setting(s) {', '.join(bad)} must be strings")
        dialect = replace(dialect, **data)
        try:
            dialect.check("export.toml")
        except UsageError as exc:
            raise FatalInputError("export.toml", str(exc).split(": ", 1)[1]) from None
    given = {k: v for k, v in overrides.items() if v is not None}
    if given:
        if given.get("delimiter") in {"\\t", "tab", "TAB"}:
            given["delimiter"] = "\t"
        dialect = replace(dialect, **given).check("command line")
    return dialect


# ---------------------------------------------------------------- sniffing (issue 32)

SNIFF_BYTES = 1 << 16  # of each file: enough rows to see dates, decimals and the code page
DATE_FORMATS = ("%Y-%m-%d", "%d.%m.%Y", "%d/%m/%Y", "%m/%d/%Y", "%Y/%m/%d", "%d-%m-%Y", "%Y.%m.%d")
_DATE_TOKEN = re.compile(r"^\d{1,4}[-./]\d{1,2}[-./]\d{1,4}$")
_DECIMAL_COMMA = re.compile(r"^-?\d+,\d+$")
_DECIMAL_POINT = re.compile(r"^-?\d+\.\d+$")
# Runs of bytes 0xC0-0xFF: the letters of a Cyrillic word in cp1251 (in cp1252 accented letters come one
# at a time, inside Latin words).
_CYRILLIC_RUN = re.compile(rb"[\xc0-\xff]{3,}")


def _encoding(raw: bytes) -> str:
    try:
        raw.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError as exc:
        # A cut at the sample's end is not an error of the file.
        if exc.start >= len(raw) - 3:
            return "utf-8"
    return "cp1251" if len(_CYRILLIC_RUN.findall(raw)) >= 1 or b"\xb5" in raw else "cp1252"


def _first_non_ascii(fh, chunk: int = 1 << 20) -> bytes:
    """The rest of the file up to its first chunk with a byte above 127 (the encoding shows there),
    whole lines of it; b"" if there is none."""
    while block := fh.read(chunk):
        if max(block) > 127:
            return b"\n" + block[:block.rfind(b"\n") + 1 or len(block)]
    return b""


def sniff(files: list[Path], header_name: str = "patient_id") -> tuple[Dialect, list[str]] | None:
    """The dialect the export's files look written in, from one pass over the first 64 KB of each:
    delimiter (the one that splits the first file's header into a field named `header_name`), encoding
    (UTF-8 if it decodes, else a Windows code page), decimal mark and date format (the one pattern that
    reads every date-like value). Returns (dialect, doubts) or None if no file could be read; `doubts`
    says what could not be told apart (say, day-first or month-first when every day is <= 12)."""
    samples, encodings = [], set()
    for path in files:
        try:
            with open(path, "rb") as fh:
                raw = fh.read(SNIFF_BYTES)
                encodings.add(_encoding(raw + _first_non_ascii(fh)))
        except OSError:
            continue
        samples.append(raw)
    if not samples:
        return None
    encoding = "utf-8" if encodings == {"utf-8"} else ("cp1251" if "cp1251" in encodings else "cp1252")
    texts = [raw.decode(encoding, "replace") for raw in samples]
    header = texts[0].splitlines()[0] if texts[0] else ""
    delimiter = ","
    for cand in (";", "\t", ","):
        if header_name in [h.strip().strip('"') for h in header.split(cand)]:
            delimiter = cand
            break
    tokens = [t.strip().strip('"') for text in texts for line in text.splitlines()[1:-1]
              for t in line.split(delimiter)]
    decimal = "," if delimiter != "," and any(_DECIMAL_COMMA.match(t) for t in tokens) \
        and not any(_DECIMAL_POINT.match(t) for t in tokens) else "."
    dates = [t for t in tokens if _DATE_TOKEN.match(t)][:2000]
    doubts: list[str] = []
    date_format = "%Y-%m-%d"
    if dates:
        fits = []
        for fmt in DATE_FORMATS:
            try:
                for t in dates:
                    dt.datetime.strptime(t, fmt)
            except ValueError:
                continue
            fits.append(fmt)
        if fits:
            date_format = fits[0]
            if len(fits) > 1:
                doubts.append(f"dates read as {' or as '.join(fits)}: every day is 12 or less in the sample, check "
                              "date_format")
        else:
            doubts.append("no one date format reads every date; check date_format")  # no value: row data stay out
    return Dialect(delimiter=delimiter, decimal=decimal, date_format=date_format, encoding=encoding), doubts


def as_toml(d: Dialect) -> str:
    """The export.toml that says `d`."""
    delim = "\\t" if d.delimiter == "\t" else d.delimiter
    return (f'delimiter = "{delim}"\ndecimal = "{d.decimal}"\ndate_format = "{d.date_format}"\n'
            f'encoding = "{d.encoding}"\n')
