"""Ingest and validate an export folder: accepted typed tables, quarantine, accounting.

Every row read ends in exactly one place: accepted, quarantined (with its line and a
plain-language reason) or dropped as an exact duplicate of an earlier row; the
counts are kept per table so that `rows_read = accepted + quarantined + duplicates`
can be checked by anyone.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pipeline.imports import pandera_polars_only

with pandera_polars_only():
    import pandera.polars as pa
import polars as pl

import schemas
from pipeline.dialect import Dialect
from pipeline.registry import Registry, TableInput  # noqa: F401 - re-exported: the accepted export
from pipeline.errors import FatalInputError, cap, some
from pipeline.readcsv import LINE, NFIELDS, decode, read_csv_text, read_simple
from pipeline.vocabulary import DrugVocabulary
from schemas import rules

REASON = "_reason"
# What a header name looks like (every name of the contract does): a header "name" that does not,
# such as an id or a date, is not quoted in a message, because the line may be a data row.
HEADER_NAME = re.compile(r"[a-z][a-z_ ]{0,39}")
LINES_SHOWN = 5  # line numbers listed in a conflict reason, then "and N more"


def first_distinct(frame: pl.DataFrame, keys: list[str]) -> pl.Series:
    """True for each row that is the first with its values in `keys` (exact duplicates are the rest).

    Comparing whole rows of 20 million strings is slow; a 64-bit row hash is fast but
    may collide. So the hash only picks the candidates (rows whose hash occurs twice,
    which every true duplicate is; found by sorting the hashes, much faster than a
    hash table at this size), and the exact comparison runs on those alone.
    """
    h = frame.select(keys).hash_rows(seed=0)
    s = h.sort()
    twice = s.filter(s == s.shift(1)).unique()
    maybe = h.is_in(twice.implode())
    if not maybe.any():
        return pl.repeat(True, frame.height, dtype=pl.Boolean, eager=True)
    idx = pl.int_range(frame.height, dtype=pl.Int64, eager=True).filter(maybe)
    exact = frame.select(keys).filter(maybe).select(pl.struct(keys).is_first_distinct()).to_series()
    not_first = idx.filter(~exact)
    return ~pl.int_range(frame.height, dtype=pl.Int64, eager=True).is_in(not_first.implode())


def find_files(folder: Path, suffixes: tuple[str, ...] = (".csv",)) -> dict[str, Path]:
    """Table name -> file, matching `<table>.csv` case-insensitively.

    Fatal (never silently absent or chosen by listing order): two files for one table
    (`patients.csv` beside `Patients.CSV`), and a table name that is not a readable
    regular file (a folder, a broken symbolic link, a pipe). `suffixes`: the file kinds
    read (the Spark ingest also reads `<table>.parquet`; a CSV beside a Parquet file of
    the same table is then two files for one table).
    """
    try:
        entries = sorted(folder.iterdir())
    except OSError as exc:
        raise FatalInputError(str(folder), f"the export folder cannot be read: {exc.strerror}") from None
    found: dict[str, list[Path]] = {}
    for p in entries:
        name = p.name.lower()
        for suffix in suffixes:
            if name.endswith(suffix) and name[:-len(suffix)] in schemas.TABLES:
                found.setdefault(name[:-len(suffix)], []).append(p)
    files: dict[str, Path] = {}
    for table in schemas.TABLES:
        paths = found.get(table, [])
        if len(paths) > 1:
            raise FatalInputError(f"{table}.csv", f"{len(paths)} files in {folder} are this table "
                                  f"({some(p.name for p in paths)}); keep one")
        if not paths:
            continue
        path = paths[0]
        if not path.is_file():
            if path.is_symlink() and not path.exists():
                kind = "a broken symbolic link"
            elif path.is_dir():
                kind = "a folder"
            else:
                kind = "not a regular file"
            raise FatalInputError(path.name, f"is {kind}, not a table file: remove it or put the "
                                  f"{table} table there (an absent table must have no file at all)")
        files[table] = path
    return files


def header_found(header: list[str], n_fields: int, table: str) -> str:
    """What a header holds, for a message, without quoting row data.

    A first line with none of the table's column names is not shown at all (it is
    likely a data row, or the delimiter or encoding is wrong); otherwise the names that
    look like column names are listed (a few, then "and N more") and the rest counted.
    """
    hint = "is the first line a header, and are the delimiter and encoding right?"
    if not {c.name for c in schemas.TABLES[table]} & set(header):
        return f"the first line has {n_fields:,} field(s) and none of the table's column names: {hint}"
    names = [h for h in header if HEADER_NAME.fullmatch(h)]
    text = f"found: {some(names, 12)}"
    other = n_fields - len(names)
    if other > 0:
        text += f"; {other:,} more field(s) not shown, as they do not look like column names ({hint})"
    return text


def _reasons(frame: pl.DataFrame, schema: pa.DataFrameSchema) -> pl.Series:
    """One reason text per row (null when the row breaks no rule), from pandera's failure cases."""
    try:
        schema.validate(frame, lazy=True)
        return pl.repeat(None, frame.height, dtype=pl.Utf8, eager=True).alias(REASON)
    except pa.errors.SchemaErrors as err:
        fc = err.failure_cases
    template = (pl.when(pl.col("check") == "not_nullable").then(pl.lit("{column} is empty but required"))
                .otherwise(pl.col("check")))
    reason = (template.str.replace_all("{column}", pl.col("column").fill_null(""), literal=True)
              .str.replace_all("{value}", pl.col("failure_case").cast(pl.Utf8).fill_null(""), literal=True))
    per_row = (fc.filter(pl.col("index").is_not_null())
               .select(pl.col("index").cast(pl.Int64), reason.alias(REASON))
               .unique(maintain_order=True)
               .group_by("index", maintain_order=True).agg(pl.col(REASON).str.join("; ")))
    return (pl.DataFrame({"index": pl.int_range(frame.height, eager=True, dtype=pl.Int64)})
            .join(per_row, on="index", how="left", maintain_order="left")[REASON])


def _scatter(n: int, idx: pl.Series, values: pl.Series) -> pl.Series:
    """A text column of n nulls with `values` at the positions `idx`."""
    out = pl.repeat(None, n, dtype=pl.Utf8, eager=True).alias(REASON)
    return out.scatter(idx, values) if idx.len() else out


def _validate(frame: pl.DataFrame, table: str, ctx: rules.Context,
              n_header: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The raw rows with their `_reason` column, and every row parsed to its typed columns.

    One pass parses each field once for both the typed columns and the screen (the
    schema's checks as one expression; the engine shares the parse between them).
    pandera then validates only the rows the screen flags, which at population scale
    are a handful, and its failure cases give the reasons.
    """
    schema = schemas.MODULES[table].schema(ctx).add_columns({NFIELDS: rules.field_count(n_header)})
    # Lazy: the eager select evaluates each expression on its own, repeating the parses.
    parsed = frame.lazy().select(*schemas.MODULES[table].typed(ctx), rules.screen(schema).alias("_ok")).collect()
    flagged = (~parsed["_ok"]).arg_true()
    if not flagged.len():
        # No row breaks a rule of the screen, which is the schema's checks (tests/test_screen.py):
        # pandera would only confirm the columns, which `_read_raw` has just laid out itself.
        return frame.with_columns(pl.repeat(None, frame.height, dtype=pl.Utf8, eager=True).alias(REASON)), \
            parsed.drop("_ok")
    reasons = _reasons(frame[flagged], schema)
    return frame.with_columns(_scatter(frame.height, flagged, reasons)), parsed.drop("_ok")


def ingest(folder: Path, dialect: Dialect, vocabulary: DrugVocabulary, *, today: dt.date,
           max_reject: float = 0.05) -> Registry:
    """Read, validate and link every table of an export folder.

    Raises FatalInputError for what the contract calls fatal: no patients.csv, a
    missing required column, an undecodable file, too many quarantined rows.
    """
    if not folder.is_dir():
        raise FatalInputError(str(folder), "is not an export folder (no such directory)")
    files = find_files(folder)
    if schemas.REQUIRED_TABLE not in files:
        raise FatalInputError("patients.csv", f"is missing from {folder}: it is the one required table")
    ctx = rules.Context(dialect, today, vocabulary)
    inputs: dict[str, TableInput] = {}
    checked: dict[str, pl.DataFrame] = {}
    parsed: dict[str, pl.DataFrame] = {}
    read_seconds = 0.0
    for table in schemas.TABLES:
        path = files.get(table)
        if path is None:
            inputs[table] = TableInput(present=False)
            continue
        t_read = time.perf_counter()
        frame, n_header = _read_raw(path, table, ctx)
        read_seconds += time.perf_counter() - t_read
        keys = [c.name for c in schemas.TABLES[table]] + [NFIELDS]
        first = first_distinct(frame, keys)
        inputs[table] = TableInput(present=True, rows_read=frame.height,
                                   duplicates_dropped=int((~first).sum()), file=path.name)
        checked[table], parsed[table] = _validate(frame.filter(first), table, ctx, n_header)

    checked = _link_patients(checked)
    tables: dict[str, pl.DataFrame] = {}
    quarantine: dict[str, pl.DataFrame] = {}
    for table in schemas.TABLES:  # an absent table is an empty frame of the right schema
        if not inputs[table].present:
            empty = pl.DataFrame(schema={c.name: pl.Utf8 for c in schemas.TABLES[table]})
            tables[table] = empty.select(schemas.MODULES[table].typed(ctx))
    for table, frame in checked.items():
        bad = frame.filter(pl.col(REASON).is_not_null())
        n_good = frame.height - bad.height
        inp = inputs[table]
        inp.rows_quarantined, inp.rows_accepted = bad.height, n_good
        if inp.rows_read and bad.height / inp.rows_read > max_reject:
            # Values quoted in reasons are row data: the message shows them as '…', like the report.
            general = bad.select(pl.col(LINE), pl.col(REASON).str.replace_all(r"'[^']*'", "'…'"))
            top, n_top = general.group_by(REASON).len().sort(["len", REASON], descending=[True, False]).row(0)
            line = general.filter(pl.col(REASON) == top)[LINE][0]
            raise reject_error(inp.file, bad.height, inp.rows_read, max_reject, top, n_top, line)
        quarantine[table] = bad.select(*[c.name for c in schemas.TABLES[table]], LINE, REASON)
        tables[table] = parsed[table].filter(frame[REASON].is_null())
        checked[table] = parsed[table] = None  # free the raw strings early
    return Registry(tables=tables, inputs=inputs, quarantine=quarantine, dialect=dialect, read_seconds=read_seconds)


def _read_raw(path: Path, table: str, ctx: rules.Context) -> tuple[pl.DataFrame, int]:
    try:
        raw = None
        if ctx.dialect.encoding.replace("-", "").replace("_", "").lower() in ("utf8", "utf8sig"):
            raw = read_simple(path, ctx.dialect.delimiter, path.name)
        if raw is None:
            raw = read_csv_text(decode(path.read_bytes(), ctx.dialect.encoding, path.name), ctx.dialect.delimiter,
                                path.name)
    except OSError as exc:
        raise FatalInputError(path.name, f"cannot be read: {exc.strerror}") from None
    check_header(raw.header, raw.n_fields, table, path.name)
    cols = schemas.TABLES[table]
    frame = raw.frame.select(
        pl.col(LINE), pl.col(NFIELDS),
        *[pl.col(c.name) if c.name in raw.header else pl.lit(None, pl.Utf8).alias(c.name) for c in cols],
    )
    return frame, raw.n_fields


def check_header(header: list[str], n_fields: int, table: str, file: str) -> None:
    """Fatal: a required column of `table` missing from the header (the first missing one named)."""
    missing = [c.name for c in schemas.TABLES[table] if not c.optional and c.name not in header]
    if missing:
        raise FatalInputError(file, f"required column '{missing[0]}' is missing from the header "
                              f"({header_found(header, n_fields, table)})", line=1, column=missing[0])


def reject_error(file: str, n_bad: int, n_read: int, max_reject: float, top: str, n_top: int,
                 line: int) -> FatalInputError:
    """The fatal error of a table whose quarantined share is above `max_reject`."""
    return FatalInputError(file, (
        f"{n_bad:,} of {n_read:,} rows ({n_bad / n_read:.1%}) would be quarantined, "
        f"above the limit of {max_reject:.1%} (--max-reject); the most common reason ({n_top:,} rows, "
        f"e.g. line {line}): {cap(top, 200)}"))


def _link_patients(checked: dict[str, pl.DataFrame]) -> dict[str, pl.DataFrame]:
    """Quarantine conflicting duplicate patients, and every row whose patient is not accepted.

    Both are rare, so the reasons are composed only for the rows concerned (found with
    one vectorised test over each table) and placed back by position.
    """
    patients = checked["patients"]
    pid = pl.col("patient_id")
    shared = patients.select(pid.is_not_null() & pid.is_duplicated()).to_series().arg_true()
    if shared.len():
        sub = patients[shared]
        n_rows = pl.len().over(pid)
        lines = pl.col(LINE).cast(pl.Utf8).implode().over(pid).list.head(LINES_SHOWN).list.join(", ")
        more = pl.when(n_rows > LINES_SHOWN).then(pl.format(" and {} more", n_rows - LINES_SHOWN)).otherwise(pl.lit(""))
        conflict = pl.format("patient_id '{}' is on {} rows with different content (lines {}{})",
                             pid, n_rows, lines, more)
        checked["patients"] = _add_reasons(patients, shared, sub.select(_joined(conflict)).to_series())
    patients = checked["patients"]
    accepted = patients.filter(pl.col(REASON).is_null())["patient_id"]
    listed = patients["patient_id"].drop_nulls()
    # One membership test over all the other tables' ids together: building the set of a
    # million accepted ids costs as much as probing millions of rows, so it is built once.
    others = [t for t in checked if t != "patients"]
    if not others:
        return checked
    # Lazy, because the engine then splits the probing across cores (half the time of Series.is_in).
    ids = pl.concat([checked[t]["patient_id"] for t in others], rechunk=False).to_frame().lazy()
    unknown_id = ids.select(pid.is_not_null() & ~pid.is_in(accepted.implode())).collect().to_series()
    offset = 0
    for table in others:
        frame = checked[table]
        orphan = unknown_id.slice(offset, frame.height).arg_true()
        offset += frame.height
        if not orphan.len():
            continue
        unknown = (pl.when(pid.is_in(listed.implode()))
                   .then(pl.format("patient_id '{}' was quarantined in patients.csv", pid))
                   .otherwise(pl.format("patient_id '{}' is not in patients.csv", pid)))
        checked[table] = _add_reasons(frame, orphan, frame[orphan].select(_joined(unknown)).to_series())
    return checked


def _joined(extra: pl.Expr) -> pl.Expr:
    """The row's existing reasons followed by `extra`."""
    return pl.concat_str([pl.col(REASON), extra], separator="; ", ignore_nulls=True).alias(REASON)


def _add_reasons(frame: pl.DataFrame, idx: pl.Series, reasons: pl.Series) -> pl.DataFrame:
    """`frame` with the reasons of the rows at positions `idx` replaced by `reasons`."""
    return frame.with_columns(frame[REASON].clone().scatter(idx, reasons))
