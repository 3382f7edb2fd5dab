"""Writing a run's files: CSV safe to open in a spreadsheet, Parquet, JSON; a failed write names its file.

Every stage that writes a file (the outputs, the quality stage's raw results, the nightly's
manifest) writes it through here, so one rule decides what a CSV cell may start with and
how a full disk is reported.
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path

import polars as pl

from pipeline.core.errors import os_errno

# A spreadsheet reads a cell that starts with `=`, `+`, `-` or `@` as a formula (CSV injection;
# some also strip a leading tab or CR first). A formula can only call something (a function, a
# DDE link `cmd|...`, another file) through a character other than letters, digits, `_`, `.`
# and `-`: so a cell starting with `+` or `-` is neutralised only if such a character follows.
# `-R000360` (a valid patient id), `-2.5` or `+B12` are written as they are: at most a number
# or a cell reference, and the ids then match evaluation.parquet; `-2+3`, `+SUM(1,2)`,
# `-cmd|' /C calc'!A0` get the `'`. `=`, `@`, tab and CR always do.
FORMULA_START = r"(?s)^[=@\t\r]|^[+\-].*[^A-Za-z0-9_.\-]"


def neutralise(frame: pl.DataFrame) -> pl.DataFrame:
    """Prefix text cells that a spreadsheet would execute with `'`, which makes them plain text.

    Only text columns: numbers (a negative EDSS change) are written as numbers. Values
    from the export (site ids, drug names, quarantined fields as written) are data,
    and the same rule (`FORMULA_START`) applies to them in every CSV a run writes.
    """
    text = [c for c, t in frame.schema.items() if t == pl.Utf8]
    return frame.with_columns([
        pl.when(pl.col(c).str.contains(FORMULA_START)).then(pl.lit("'") + pl.col(c)).otherwise(pl.col(c)).alias(c)
        for c in text])


@contextmanager
def writing(path: Path):
    """Name `path` in a failed write: Polars reports a full disk as "... (os error 28)" without
    the file, so its errors that wrap an OS error become OSError(errno, text, path)."""
    try:
        yield
    except OSError as exc:
        if exc.filename is not None:
            raise
        code = os_errno(exc)
        raise OSError(code, os.strerror(code) if code else str(exc), str(path)) from None
    except pl.exceptions.PolarsError as exc:
        code = os_errno(exc)
        if code is None:
            raise
        raise OSError(code, os.strerror(code), str(path)) from None


def write_csv(frame: pl.DataFrame, path: Path) -> None:
    with writing(path):
        neutralise(frame).write_csv(path, date_format="%Y-%m-%d", null_value="")


def write_parquet(frame: pl.DataFrame, path: Path) -> None:
    with writing(path):
        frame.write_parquet(path, statistics=False)


def write_json(data: dict, path: Path) -> None:
    with writing(path):
        path.write_text(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n", "utf-8")
