"""What a run writes, derived from the evaluation matrix the same way for both engines.

attrition.csv follows the trial order: `remaining` after step k is the number of
patients with no `fail` in criteria 1..k; `gain` is the number whose *only* fail is
this criterion (the candidates gained if it were dropped).
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path

import polars as pl

from pipeline.errors import os_errno
from pipeline.trial import Trial

STATUSES = ("eligible", "possible", "ineligible")


def attrition(evaluation: pl.DataFrame, trial: Trial) -> pl.DataFrame:
    ids = trial.ids
    fails = evaluation.select([(pl.col(c) == "fail").cast(pl.Int64).alias(c) for c in ids])
    n_fails = fails.sum_horizontal() if ids else pl.zeros(evaluation.height, pl.Int64, eager=True)
    rows, remaining_prev = [], evaluation.height
    cum_fail = pl.repeat(False, evaluation.height, dtype=pl.Boolean, eager=True)
    for step, c in enumerate(ids, start=1):
        col = evaluation[c]
        cum_fail = cum_fail | (col == "fail")
        remaining = int((~cum_fail).sum())
        rows.append({
            "step": step, "criterion": c,
            "n_pass": int((col == "pass").sum()), "n_fail": int((col == "fail").sum()),
            "n_unknown": int((col == "unknown").sum()), "n_screening": int((col == "screening").sum()),
            "remaining": remaining, "excluded": remaining_prev - remaining,
            "gain": int(((fails[c] == 1) & (n_fails == 1)).sum()),
        })
        remaining_prev = remaining
    schema = {k: pl.Int64 for k in ("step", "n_pass", "n_fail", "n_unknown", "n_screening",
                                    "remaining", "excluded", "gain")} | {"criterion": pl.Utf8}
    return pl.DataFrame(rows, schema=schema).select(
        "step", "criterion", "n_pass", "n_fail", "n_unknown", "n_screening", "remaining", "excluded", "gain")


def criteria_with(ids: list[str], value: str) -> pl.Expr:
    """The criterion ids (of `ids`) whose column holds `value`, joined by `;` (empty when none)."""
    return pl.concat_str([pl.when(pl.col(c) == value).then(pl.lit(c)) for c in ids], separator=";", ignore_nulls=True)


def candidates(evaluation: pl.DataFrame, trial: Trial) -> pl.DataFrame:
    """Eligible and possible patients, with the unknown criteria listed and the evidence."""
    ids = trial.ids
    unknown = criteria_with(ids, "unknown")
    evidence = [c for c in evaluation.columns if "__" in c]
    return (evaluation.filter(pl.col("status").is_in(["eligible", "possible"]))
            .with_columns(unknown.alias("unknown_criteria"))
            .select("patient_id", "site_id", "status", "unknown_criteria", *ids, *evidence))


def counts(evaluation: pl.DataFrame) -> dict[str, int]:
    got = dict(evaluation.group_by("status").len().iter_rows())
    return {"population": evaluation.height, **{s: int(got.get(s, 0)) for s in STATUSES}}


def by_site(evaluation: pl.DataFrame) -> dict[str, dict[str, int]]:
    wide = (evaluation.group_by("site_id").agg(*[(pl.col("status") == s).sum().alias(s) for s in STATUSES])
            .sort("site_id"))
    return {row["site_id"]: {s: int(row[s]) for s in STATUSES} for row in wide.iter_rows(named=True)}


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
