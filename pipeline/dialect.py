"""The CSV dialect of an export: defaults, the folder's `export.toml`, then CLI flags.

Spreadsheet tools in many countries write `;`-separated files with a decimal comma,
day-first dates and a legacy code page; the registry describes that once in
`export.toml` and every table is read with it.
"""

from __future__ import annotations

import codecs
import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path

from pipeline.errors import FatalInputError, UsageError

DELIMITERS = {",", ";", "\t"}
DECIMALS = {".", ","}


@dataclass(frozen=True)
class Dialect:
    delimiter: str = ","
    decimal: str = "."
    date_format: str = "%Y-%m-%d"
    encoding: str = "utf-8"

    def check(self, source: str) -> "Dialect":
        """Refuse a dialect that cannot be read, naming where it came from."""
        if self.delimiter not in DELIMITERS:
            raise UsageError(f"{source}: delimiter must be one of ',', ';', '\\t', not {self.delimiter!r}")
        if self.decimal not in DECIMALS:
            raise UsageError(f"{source}: decimal must be '.' or ',', not {self.decimal!r}")
        if self.decimal == self.delimiter:
            raise UsageError(f"{source}: decimal mark and delimiter cannot both be {self.decimal!r}")
        try:
            codecs.lookup(self.encoding)
        except LookupError:
            raise UsageError(f"{source}: unknown encoding {self.encoding!r}") from None
        if "%" not in self.date_format:
            raise UsageError(f"{source}: date_format {self.date_format!r} is not a strftime pattern")
        return self


def load_dialect(folder: Path, overrides: dict[str, str | None]) -> Dialect:
    """Dialect of an export folder: `export.toml` if present, CLI overrides on top."""
    dialect = Dialect()
    toml_path = folder / "export.toml"
    if toml_path.is_file():
        try:
            data = tomllib.loads(toml_path.read_text("utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise FatalInputError("export.toml", f"not valid TOML: {exc}") from None
        known = {f.name for f in fields(Dialect)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise FatalInputError("export.toml", f"unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
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
