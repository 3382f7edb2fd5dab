"""Read, validate and link an export folder inside Spark: the counterpart of `pipeline.inputs.ingest`.

The result (`SparkRegistry`) has the same typed tables, quarantine rows (line and reason
byte for byte), row accounting and fatal errors as `pipeline.inputs.ingest.ingest`, while no
table is ever collected into the driver: only per-block line counts, the header record,
totals and the one example line of a fatal message reach it.

Why it is built this way:

- **The rules are defined once.** The per-row parse and checks are the Polars
  expressions and pandera schemas of `schemas/`; they run per partition inside Spark
  (`DataFrame.mapInArrow`, Polars in the Python workers) through `pipeline.inputs.ingest._validate`
  itself, so a rule changed there changes here. Spark's own CSV reader is not used: it has
  no line numbers and its default mode turns a bad field into NULL.
- **Lines as the contract counts them.** Files are read as text lines (Hadoop's line
  reader ends a line at LF, CRLF or a lone CR, like `pipeline.inputs.readcsv`), cast back to the
  raw bytes. Two passes over the lines: the first gives, per file block, the number of
  lines, of double quotes and where records could start (tiny, collected); the driver turns
  them into line offsets and quote parity at each block start; the second numbers each line
  (offset + position in its block), decodes it and groups physical lines into records by
  quote parity, also across block boundaries (a record that spans lines is grouped by its
  first line's number, a shuffle keyed by that number; single-line records are not
  shuffled). Blank records are dropped, as in `pipeline.inputs.readcsv`.
- **Encodings.** Lines are split on the bytes of CR and LF and decoded by Python's codec
  in the workers, strictly: an undecodable byte is fatal with its line, in the same words
  as the Polars ingest. This is right for every codec in which the bytes of CR, LF, the
  double quote and the delimiters only ever mean those characters and each line decodes on
  its own: UTF-8 (a byte-order mark tolerated), single-byte code pages (cp1251, latin-1,
  ...) and the ASCII-compatible multi-byte ones. A codec that writes those characters
  otherwise (UTF-16, UTF-32) is refused with a clear FatalInputError; stateful codecs that
  pass that test (utf-7, the iso2022 family) are decoded line by line, which is a
  documented limitation.
- **Cross-row steps are keyed.** Exact duplicates: `row_number()` over a window
  partitioned by the row's whole content, keeping the lowest line. Conflicting patient
  ids and orphan rows: an aggregation and a join keyed by `patient_id`. No step uses a
  global window or sort (a single-partition exchange); the tests check the plans.
- **Parquet.** `<table>.parquet` is read with an explicit schema (the file's columns that
  the contract names, each in a type the contract's type admits, otherwise fatal; a text
  column is admitted for every type, holding what a default-dialect CSV would), every
  value cast to the text the CSV would hold in the default dialect (ISO dates, '.' decimal),
  and validated by the same rules under the default dialect; row i (0-based, from
  `_metadata.row_index`) is line i + 2. A number is written as Spark casts it to text
  (`1.0E-5` where Python writes `1e-05`): only a quarantined value's text can show it.
- **Persisted once, counted in one job.** The numbered lines of a file are cached while its
  records are built (single-line and multi-line records both read them), and the
  validated, linked frame of each table is cached; one job (a union of per-table
  aggregates) counts every table and fills those caches, and the tables and quarantine
  then read them. Each ingest marks its frames with a unique token, so that a later
  ingest of the same path (whose files may have changed) never matches an earlier
  ingest's cache; `release(registry)` frees the cache when a process is done with it.
- **Fatal errors in the Polars ingest's order.** Reading (decoding, header, required
  columns) runs table by table on the driver's few jobs; a parse failure found in the
  workers (a misplaced quote, on a row of its own with its line) is raised after the
  counting, unless an earlier table's read error would have come first in the Polars
  ingest, in which case the earlier tables' parse failures are looked for first. Then the
  reject limits, table by table.

What is left to the Polars ingest only: the `read_simple` fast path (Spark reads every file
the careful way) and `first_distinct`'s hashing (Spark's window over the content does it).
"""

from __future__ import annotations

import datetime as dt
import functools
import re
import time
import uuid
from pathlib import Path

import polars as pl
import pyarrow as pa

import schemas
from pipeline.core.dialect import Dialect
from pipeline.core.errors import SIGNALLED, FatalInputError, clip, not_an_export_folder
from pipeline.core.vocabulary import DrugVocabulary
from pipeline.engines.spark.frames import spark_schema, spark_type
from pipeline.engines.spark.registry import SparkRegistry
from pipeline.inputs.ingest import (
    LINES_SHOWN,
    REASON,
    check_header,
    duplicate_keys,
    find_files,
    propose_export_toml,
    reject_error,
)
from pipeline.inputs.readcsv import LINE, NFIELDS, parse_body, parse_header
from pipeline.inputs.registry import TableInput
from schemas import rules

TYPED = "_t_"  # prefix of a typed column beside the raw text column of the same name
FATAL = "_fatal"  # a worker's fatal finding (the rule text), on a row of its own with its line
BOM = b"\xef\xbb\xbf"
# Characters whose bytes must be their ASCII bytes for lines to be split and decoded one by one.
STRUCTURAL = '\n\r",;\t'
INPUT_SUFFIXES = (".csv", ".parquet")  # the file kinds a Spark export folder may hold, one per table


def ingest(spark, folder: Path, dialect: Dialect, vocabulary: DrugVocabulary, *, today: dt.date,
           max_reject: float = 0.05) -> SparkRegistry:
    """Read, validate and link every table of an export folder in Spark.

    Raises FatalInputError for what the contract calls fatal, with the messages of
    `pipeline.inputs.ingest.ingest`: no patients.csv, a missing required column, an undecodable
    file, too many quarantined rows; also two files for one table (a CSV and a Parquet
    file count as two).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise not_an_export_folder(folder)
    files = find_files(folder, INPUT_SUFFIXES)
    if schemas.REQUIRED_TABLE not in files:
        raise FatalInputError("patients.csv", f"is missing from {folder}: it is the one required table")
    ctx = rules.Context(dialect, today, vocabulary)
    persisted = _Cached(uuid.uuid4().hex)  # unpersisted if the ingest stops with a fatal error
    try:
        registry = _ingest(spark, files, ctx, dialect, max_reject, persisted)
    except FatalInputError as exc:
        release(persisted)
        # the Polars ingest's proposal of a whole export.toml, when the folder has none (the same message)
        proposal = propose_export_toml(folder, files, dialect, exc)
        if proposal is not None:
            raise proposal from None
        raise
    except BaseException:
        release(persisted)
        raise
    registry._cached = persisted
    return registry


class _Cached(list):
    """The frames an ingest has cached, and the ingest's unique token (see `_lines_frame`)."""

    def __init__(self, run: str):
        super().__init__()
        self.run = run


def release(registry) -> None:
    """Free the Spark cache that an ingest's tables read (a `SparkRegistry` from `ingest`, or the
    list itself); the tables must not be used afterwards. A long-lived process that ingests many
    exports calls it when done with one. Not after a signal or a stalled cluster: the session is
    being stopped from another thread (pipeline/engines/spark/watch.py)."""
    if SIGNALLED:
        return
    for frame in getattr(registry, "_cached", registry):
        frame.unpersist()


def _ingest(spark, files: dict[str, Path], ctx: rules.Context, dialect: Dialect, max_reject: float,
            persisted: _Cached) -> SparkRegistry:
    """Three rounds, so that the fatal errors come in the Polars ingest's order: reading each
    table (decoding, the header: a job or two each), then linking (lazy), then one job that counts
    every table over its cached, linked frame, after which the parse failures, then the reject
    limits, are raised table by table."""
    from pyspark import StorageLevel
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    rows: dict[str, object] = {}  # every row read, `_first` false for a dropped exact duplicate
    read_seconds = 0.0
    for table in schemas.TABLES:
        path = files.get(table)
        if path is None:
            continue
        t_read = time.perf_counter()
        try:
            if path.name.lower().endswith(".parquet"):
                records, header, n_fields, kind, tctx = _parquet_records(spark, path, table, ctx, persisted)
            else:
                records, header, n_fields, kind, tctx = _csv_records(spark, path, table, ctx, persisted)
            try:
                check_header(header, n_fields, table, path.name)
            except FatalInputError:
                # The Polars reader parses the whole file before it looks at the header's names:
                # a broken quote further down is reported first there, and so it is here.
                _raise_body_fatal(records.mapInArrow(
                    _worker(kind, table, tctx, header, n_fields, path.name, False), _fatal_schema()), path.name)
                raise
        except FatalInputError:
            for earlier, frame in rows.items():  # the Polars ingest has met these first
                _raise_body_fatal(frame.select(LINE, FATAL), files[earlier].name)
            raise
        read_seconds += time.perf_counter() - t_read
        out = records.mapInArrow(_worker(kind, table, tctx, header, n_fields, path.name, True),
                                 _output_schema(table, tctx))
        keys = duplicate_keys(table)
        rows[table] = out.withColumn("_first", F.row_number().over(Window.partitionBy(*keys).orderBy(LINE)) == 1)

    linked = _link_patients(rows)
    per_table = []
    for table, frame in linked.items():
        frame = linked[table] = frame.persist(StorageLevel.MEMORY_AND_DISK)
        persisted.append(frame)
        first, ok = F.col("_first") & F.col(FATAL).isNull(), F.col(REASON).isNull()
        per_table.append(frame.agg(
            F.lit(table).alias("table"), F.count(F.lit(1)).alias("read"), F.count_if(~first).alias("dup"),
            F.count_if(first & ok).alias("good"), F.count_if(first & ~ok).alias("bad"),
            F.min(F.when(F.col(FATAL).isNotNull(), F.struct(LINE, FATAL))).alias("fatal")))
    # One job counts every table (and fills the caches): a job per table costs its own start-up.
    counted = functools.reduce(lambda x, y: x.unionByName(y), per_table).collect()
    counts = {t: next(c for c in counted if c["table"] == t) for t in linked}
    for frame in [f for f in persisted if all(f is not g for g in linked.values())]:
        frame.unpersist()  # the lines: the linked frames are cached now
    for table, c in counts.items():
        if c["fatal"] is not None:
            raise FatalInputError(files[table].name, c["fatal"][FATAL], line=c["fatal"][LINE])

    inputs: dict[str, TableInput] = {}
    tables: dict[str, object] = {}
    quarantine: dict[str, object] = {}
    for table in schemas.TABLES:  # in the contract's order, as `pipeline.inputs.ingest` gives them
        if table not in linked:  # an absent table is an empty frame of the right schema
            inputs[table] = TableInput(present=False)
            tables[table] = spark.createDataFrame([], spark_schema(_typed_schema(table, ctx)))
            continue
        typed_schema = _typed_schema(table, ctx)
        c, frame = counts[table], linked[table].where(F.col("_first"))
        inp = inputs[table] = TableInput(present=True, rows_read=c["read"], rows_accepted=c["good"],
                                         rows_quarantined=c["bad"], duplicates_dropped=c["dup"],
                                         file=files[table].name)
        if inp.rows_read and inp.rows_quarantined / inp.rows_read > max_reject:
            # Values quoted in reasons are row data: the message shows them as '…', like the report.
            general = F.regexp_replace(F.col(REASON), "'[^']*'", "'…'").alias(REASON)
            top = (frame.where(F.col(REASON).isNotNull()).select(LINE, general).groupBy(REASON)
                   .agg(F.count(F.lit(1)).alias("n"), F.min(LINE).alias(LINE))
                   .orderBy(F.col("n").desc(), F.col(REASON).asc()).limit(1).first())
            raise reject_error(inp.file, inp.rows_quarantined, inp.rows_read, max_reject, top[REASON], top["n"],
                               top[LINE])
        bad = F.col(REASON).isNotNull()
        quarantine[table] = frame.where(bad).select(*[c.name for c in schemas.TABLES[table]], LINE, REASON)
        tables[table] = frame.where(~bad).select(*[F.col(TYPED + c).alias(c) for c in typed_schema])
    return SparkRegistry(spark=spark, tables=tables, inputs=inputs, quarantine=quarantine, dialect=dialect,
                         read_seconds=read_seconds)


# ---- schemas of the frames ---------------------------------------------------------------

def _typed_schema(table: str, ctx: rules.Context) -> pl.Schema:
    """The typed columns of `table` (names, order, Polars types), as `schemas.<table>.typed` gives them."""
    empty = pl.DataFrame(schema={c.name: pl.Utf8 for c in schemas.TABLES[table]})
    return empty.select(schemas.MODULES[table].typed(ctx)).schema


def _raw_columns(table: str) -> list[str]:
    return [LINE, NFIELDS] + [c.name for c in schemas.TABLES[table]]


def _output_schema(table: str, ctx: rules.Context):
    """Raw text columns, `_line`, `_nfields`, then the typed columns (prefixed), `_reason`, `_fatal`."""
    from pyspark.sql import types as T

    fields = [T.StructField(LINE, T.LongType()), T.StructField(NFIELDS, T.LongType())]
    fields += [T.StructField(c.name, T.StringType()) for c in schemas.TABLES[table]]
    fields += [T.StructField(TYPED + n, spark_type(d)) for n, d in _typed_schema(table, ctx).items()]
    fields += [T.StructField(REASON, T.StringType()), T.StructField(FATAL, T.StringType())]
    return T.StructType(fields)


def _fatal_schema():
    from pyspark.sql import types as T

    return T.StructType([T.StructField(LINE, T.LongType()), T.StructField(FATAL, T.StringType())])


def _raise_body_fatal(fatal_rows, file: str) -> None:
    from pyspark.sql import functions as F

    found = fatal_rows.where(F.col(FATAL).isNotNull()).agg(F.min(F.struct(LINE, FATAL))).first()[0]
    if found is not None:
        raise FatalInputError(file, found[FATAL], line=found[LINE])


# ---- CSV: lines, blocks, records ---------------------------------------------------------

def _check_codec(encoding: str, file: str) -> None:
    """Refuse a codec whose bytes of CR, LF, quote or delimiters are not theirs alone (UTF-16, UTF-32)."""
    try:
        encoded = STRUCTURAL.encode(encoding)
        same = encoded.removeprefix(BOM) == STRUCTURAL.encode("ascii") and \
            STRUCTURAL.encode("ascii").decode(encoding) == STRUCTURAL
    except (UnicodeError, LookupError, ValueError):
        same = False
    if not same:
        raise FatalInputError(file, f"cannot be read as {clip(encoding)} by the Spark engine: it reads lines by "
                              "their bytes, which needs an encoding that writes line ends, quotes and delimiters "
                              "as ASCII bytes (UTF-8, a single-byte code page); convert the file to UTF-8 or use "
                              "--engine polars")


def _lines_frame(spark, path: Path, run: str):
    """The file's lines as raw bytes with their block. `run` (unique per ingest, read by the workers'
    input) keeps Spark from matching a frame cached by an earlier ingest of the same path, whose
    file may have changed since."""
    from pyspark.sql import functions as F

    return spark.read.text(_spark_path(path)).select(
        F.col("_metadata.file_block_start").alias("blk"), F.col("value").cast("binary").alias("b"),
        F.lit(run).alias("_run"))


def _spark_path(path: Path) -> str:
    """`path` for Spark's readers, which read `[`, `{`, `*`, `?` as a glob: escaped, so an export
    folder named `export [2026]` is read as named."""
    return re.sub(r"([\\{}\[\]*?])", r"\\\1", str(path))


def _decode_batch(batch: pa.RecordBatch, encoding: str, offsets: dict) -> tuple[pl.DataFrame, tuple | None]:
    """A batch of raw lines -> (blk, pos, latin-1 text for counting, text or null) and the first decode error.

    Positions continue across the batches of one block (`offsets`, updated). The batch is
    joined with LF and decoded in one call; the lines then split back on LF (no line holds
    one). A decode error names the block and position of its line and its byte.
    """
    frame = pl.from_arrow(pa.Table.from_batches([batch]))
    frame = frame.with_columns(pos=pl.int_range(pl.len(), dtype=pl.Int64).over("blk")
                               + pl.col("blk").replace_strict(offsets, default=0, return_dtype=pl.Int64))
    for blk, n in frame.group_by("blk").len().iter_rows():
        offsets[blk] = offsets.get(blk, 0) + n
    raw = b"\n".join(frame["b"].to_list())
    bom = frame.height and frame["blk"][0] == 0 and frame["pos"][0] == 0 and raw.startswith(BOM)
    if bom:
        raw = raw[len(BOM):]
    error = None
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as exc:
        row = raw[:exc.start].count(b"\n")
        error = (int(frame["blk"][row]), int(frame["pos"][row]), f"byte 0x{raw[exc.start]:02x}")
        text = None
    except (UnicodeError, LookupError, ValueError) as exc:  # codecs such as punycode or idna raise these
        error = (int(frame["blk"][0]), int(frame["pos"][0]), f"the codec refuses it: {type(exc).__name__}")
        text = None
    counted = raw.decode("latin-1").split("\n")
    if text is not None:
        if bom or (frame.height and frame["blk"][0] == 0 and frame["pos"][0] == 0):
            text = text.lstrip("\ufeff")
        text = text.split("\n")
    frame = frame.select("blk", "pos", pl.Series("lat", counted, pl.Utf8),
                         pl.Series("t", text, pl.Utf8) if text is not None else pl.lit(None, pl.Utf8).alias("t"))
    return frame, error


def _with_parity(frame: pl.DataFrame, quotes: dict) -> pl.DataFrame:
    """`q`: double quotes on the line; `pin`: quotes before it in its block (carried across batches)."""
    q = pl.col("lat").str.count_matches('"', literal=True).cast(pl.Int64)
    frame = frame.with_columns(q=q).with_columns(
        pin=pl.col("q").cum_sum().over("blk") - pl.col("q")
        + pl.col("blk").replace_strict(quotes, default=0, return_dtype=pl.Int64))
    for blk, n in frame.group_by("blk").agg(pl.col("q").sum()).iter_rows():
        quotes[blk] = quotes.get(blk, 0) + n
    return frame


def _block_stats(encoding: str):
    """Pass 1 (in the workers): per block, lines, quotes, the last line that starts a record under
    either parity at the block's start, the first undecodable line, and the header record when the
    file's first batch holds it whole (it nearly always does: otherwise the driver asks for it)."""
    def run(batches):
        offsets, quotes, stats = {}, {}, {}
        head = None
        for batch in batches:
            frame, error = _decode_batch(batch, encoding, offsets)
            frame = _with_parity(frame, quotes)
            if error is None and frame.height and frame["blk"][0] == 0 and frame["pos"][0] == 0:
                head = _first_record(frame.filter(pl.col("blk") == 0))
            per = frame.group_by("blk").agg(
                pl.len().alias("n"), pl.col("q").sum().alias("nq"),
                pl.col("pos").filter(pl.col("pin") % 2 == 0).max().alias("last0"),
                pl.col("pos").filter(pl.col("pin") % 2 == 1).max().alias("last1"))
            for blk, n, nq, last0, last1 in per.iter_rows():  # a few blocks per partition: not rows
                s = stats.setdefault(blk, {"n": 0, "nq": 0, "last0": None, "last1": None, "err": None})
                s["last0"], s["last1"] = _later(s["last0"], last0), _later(s["last1"], last1)  # pin is per block
                s["n"] += n
                s["nq"] += nq
            if error is not None:
                s = stats[error[0]]
                if s["err"] is None:
                    s["err"] = (error[1], error[2])
        if stats:
            blks = sorted(stats)
            yield pa.record_batch({
                "blk": pa.array(blks, pa.int64()),
                "n": pa.array([stats[b]["n"] for b in blks], pa.int64()),
                "nq": pa.array([stats[b]["nq"] for b in blks], pa.int64()),
                "last0": pa.array([stats[b]["last0"] for b in blks], pa.int64()),
                "last1": pa.array([stats[b]["last1"] for b in blks], pa.int64()),
                "err_pos": pa.array([(stats[b]["err"] or (None, None))[0] for b in blks], pa.int64()),
                "err": pa.array([(stats[b]["err"] or (None, None))[1] for b in blks], pa.string()),
                "head_line": pa.array([head[0] if head and b == 0 else None for b in blks], pa.int64()),
                "head": pa.array([head[1] if head and b == 0 else None for b in blks], pa.string()),
            })
    return run


def _first_record(lines: pl.DataFrame) -> tuple[int, str] | None:
    """The first non-blank record of the file's first lines (line, text), if it ends among them.

    Grouped as `pipeline.inputs.readcsv._records` groups them: a line continues the record while an
    odd number of quotes is open (the file starts with none open).
    """
    lines = lines.with_columns(rec=(pl.col("pin") % 2 == 0).cum_sum())
    closed = (lines["pin"][-1] + lines["q"][-1]) % 2 == 0  # the last record ends with these lines
    recs = (lines.group_by("rec", maintain_order=True).agg(pl.col("pos").first(), pl.col("t").str.join("\n"))
            .filter(pl.col("t").str.strip_chars().str.len_chars() > 0))
    if not recs.height or (recs["rec"][0] == lines["rec"][-1] and not closed):
        return None
    return int(recs["pos"][0]) + 1, recs["t"][0]


def _later(a, b):
    return b if a is None else a if b is None else max(a, b)


def _records_of_lines(encoding: str, layout: dict):
    """Pass 2 (in the workers): each line numbered and decoded, with the line its record starts on.

    `layout`: block -> (line offset, quote parity at the block start, the start line of the
    record open when the block begins). Blank single-line records are dropped.
    """
    def run(batches):
        offsets, quotes, last = {}, {}, {}
        for batch in batches:
            frame, _ = _decode_batch(batch, encoding, offsets)
            frame = _with_parity(frame, quotes)
            lay = {b: layout[b] for b in frame["blk"].unique().to_list()}
            line_off = pl.col("blk").replace_strict({b: v[0] for b, v in lay.items()}, return_dtype=pl.Int64)
            par_off = pl.col("blk").replace_strict({b: v[1] for b, v in lay.items()}, return_dtype=pl.Int64)
            carry = pl.col("blk").replace_strict({b: last.get(b, v[2]) for b, v in lay.items()},
                                                 return_dtype=pl.Int64)
            frame = frame.with_columns(**{LINE: line_off + pl.col("pos") + 1},
                                       start=(par_off + pl.col("pin")) % 2 == 0,
                                       open_after=(par_off + pl.col("pin") + pl.col("q")) % 2 == 1)
            frame = frame.with_columns(
                rec=pl.when("start").then(pl.col(LINE)).forward_fill().over("blk").fill_null(carry))
            for blk, rec in frame.group_by("blk").agg(pl.col("rec").last()).iter_rows():
                last[blk] = rec
            frame = frame.with_columns(multi=~pl.col("start") | pl.col("open_after"))
            frame = frame.filter(pl.col("multi") | (pl.col("t").str.strip_chars().str.len_chars() > 0))
            yield from frame.select(pl.col(LINE), "rec", "multi", "t").to_arrow().cast(pa.schema([
                (LINE, pa.int64()), ("rec", pa.int64()), ("multi", pa.bool_()), ("t", pa.string())])).to_batches()
    return run


def _csv_records(spark, path: Path, table: str, ctx: rules.Context, scratch: "_Cached"):
    """The file's records (`_line`, `t`) after the header, its header names and field count.

    A frame it caches is added to `scratch`, to be released once the validated tables are cached.
    """
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    _check_codec(ctx.dialect.encoding, path.name)
    lines = _lines_frame(spark, path, scratch.run)
    encoding = ctx.dialect.encoding
    try:
        stats = lines.mapInArrow(_block_stats(encoding), "blk long, n long, nq long, last0 long, last1 long, "
                                 "err_pos long, err string, head_line long, head string").collect()
    except Exception as exc:  # noqa: BLE001 - Spark wraps the reader's failure; say it as the Polars ingest does
        if "FileNotFound" in str(exc) or "Permission denied" in str(exc):
            raise FatalInputError(path.name, "cannot be read: Permission denied"
                                  if "Permission denied" in str(exc) else "cannot be read") from None
        raise
    layout: dict[int, tuple[int, int, int | None]] = {}
    line_off, par, carry = 0, 0, None
    first_error = None
    for s in sorted(stats, key=lambda r: r["blk"]):
        layout[s["blk"]] = (line_off, par, carry)
        last = s["last0"] if par == 0 else s["last1"]
        if last is not None:
            carry = line_off + last + 1
        if s["err_pos"] is not None and first_error is None:
            first_error = (line_off + s["err_pos"] + 1, s["err"])
        line_off += s["n"]
        par = (par + s["nq"]) % 2
    if first_error is not None:
        line, what = first_error
        if what.startswith("byte"):
            raise FatalInputError(path.name, f"cannot be decoded as {clip(encoding)} ({what}); "
                                  "set `encoding` in export.toml or pass --encoding", line=line)
        raise FatalInputError(path.name, f"cannot be decoded as {clip(encoding)} ({what}); set `encoding` in "
                              "export.toml or pass --encoding")
    # Cached: both the single-line and the multi-line records read it (else pass 2 runs twice).
    numbered = lines.mapInArrow(_records_of_lines(encoding, layout),
                                f"{LINE} long, rec long, multi boolean, t string").persist(StorageLevel.MEMORY_AND_DISK)
    scratch.append(numbered)
    single = numbered.where(~F.col("multi")).select(F.col(LINE), F.col("t"))
    joined = (numbered.where(F.col("multi")).groupBy(F.col("rec").alias(LINE))
              .agg(F.array_join(F.transform(F.array_sort(F.collect_list(F.struct(LINE, "t"))), lambda x: x["t"]),
                                "\n").alias("t")))  # never blank: it holds a quote
    records = single.unionByName(joined)
    head = [(r["head_line"], r["head"]) for r in stats if r["head_line"] is not None]
    if not head:  # the header record is not whole in the file's first batch (or the batch is blank)
        head = [(r[LINE], r["t"]) for r in records.orderBy(LINE).limit(1).collect()]
    if not head:
        raise FatalInputError(path.name, "has no header line (the file is empty)")
    header_line, header_text = head[0]
    header = parse_header(header_text, header_line, ctx.dialect.delimiter, path.name)
    return records.where(F.col(LINE) > header_line), header, len(header), "csv", ctx


# ---- Parquet ------------------------------------------------------------------------------

def _admits(kind: str, dtype) -> bool:
    from pyspark.sql import types as T

    whole = (T.ByteType, T.ShortType, T.IntegerType, T.LongType)
    if isinstance(dtype, T.StringType):  # text as a default-dialect CSV holds it: the rules judge it
        return True
    if kind == "date":
        return isinstance(dtype, T.DateType)
    if kind in ("float", "int"):
        return isinstance(dtype, (*whole, T.FloatType, T.DoubleType, T.DecimalType))
    return isinstance(dtype, (T.StringType, *whole))


def _parquet_records(spark, path: Path, table: str, ctx: rules.Context, scratch: "_Cached"):
    """The Parquet file's rows as the text a default-dialect CSV would hold, numbered as its lines."""
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    try:
        file_schema = spark.read.parquet(_spark_path(path)).schema  # the footer only
    except Exception as exc:  # noqa: BLE001 - not a Parquet file, unreadable: fatal, said plainly
        raise FatalInputError(path.name, f"is not a readable Parquet file ({type(exc).__name__})") from None
    by_name: dict[str, T.StructField] = {}
    for f in file_schema.fields:
        by_name.setdefault(f.name.strip().lower(), f)
    header = [f.name.strip().lower() for f in file_schema.fields]
    wanted = []
    for c in schemas.TABLES[table]:
        f = by_name.get(c.name)
        if f is None:
            continue
        if not _admits(c.type, f.dataType):
            raise FatalInputError(path.name, f"column '{c.name}' is {f.dataType.simpleString()} in the Parquet "
                                  f"file, which the contract's type {c.type} does not admit", column=c.name)
        wanted.append((c, f))
    explicit = T.StructType([T.StructField(f.name, f.dataType, True) for _, f in wanted])

    def text(c, f):
        col = F.col(f"`{f.name}`")
        if isinstance(f.dataType, T.StringType):  # as written: the rules judge the text
            return col.alias(c.name)
        if c.type == "float" or (c.type == "int" and not isinstance(f.dataType, (T.ByteType, T.ShortType,
                                                                                   T.IntegerType, T.LongType))):
            col = col.cast("double")
        return col.cast("string").alias(c.name)  # dates: ISO yyyy-MM-dd

    present = {c.name for c, _ in wanted}
    reader = spark.read.schema(explicit) if wanted else spark.read
    frame = reader.parquet(_spark_path(path)).select(
        (F.col("_metadata.row_index") + 2).alias(LINE), F.lit(len(header)).cast("long").alias(NFIELDS),
        *[text(c, f) for c, f in wanted],
        *[F.lit(None).cast("string").alias(c.name) for c in schemas.TABLES[table] if c.name not in present],
        F.lit(scratch.run).alias("_run"))  # see `_lines_frame`
    pctx = rules.Context(Dialect(), ctx.today, ctx.vocabulary)  # text written in the default dialect
    return frame, header, len(header), "parquet", pctx


# ---- validation in the workers --------------------------------------------------------------

def _worker(kind: str, table: str, ctx: rules.Context, header: list[str], n_fields: int, file: str,
            validate: bool):
    """Per partition: records -> fields (CSV) -> the rules of `pipeline.inputs.ingest._validate`.

    Rows come out with their raw text, typed columns and reason; a batch the CSV parser
    refuses gives one row with the fatal rule and its line instead.
    """
    out_schema = None

    def run(batches):
        from pipeline.inputs.ingest import _validate  # in the worker: pandera and the schemas load here
        from pipeline.inputs.readcsv import _named

        nonlocal out_schema
        delimiter = ctx.dialect.delimiter
        for batch in batches:
            frame = pl.from_arrow(pa.Table.from_batches([batch]))
            if kind == "csv":
                try:
                    parsed = parse_body(frame.sort(LINE), delimiter, n_fields, file)
                except FatalInputError as exc:
                    yield _fatal_batch(exc, validate, table, ctx)
                    continue
                raw = _named(parsed, header)
                frame = raw.frame.select(
                    pl.col(LINE), pl.col(NFIELDS),
                    *[pl.col(c.name) if c.name in raw.header else pl.lit(None, pl.Utf8).alias(c.name)
                      for c in schemas.TABLES[table]])
            else:
                frame = frame.select(pl.col(LINE), pl.col(NFIELDS).cast(pl.Int64),
                                     *[pl.col(c.name).str.strip_chars().replace("", None)
                                       for c in schemas.TABLES[table]])
            if not validate:
                continue
            checked, typed = _validate(frame, table, ctx, n_fields)
            out = pl.concat([checked.select(*_raw_columns(table)),
                             typed.select(pl.all().name.prefix(TYPED)),
                             checked.select(REASON, pl.lit(None, pl.Utf8).alias(FATAL))], how="horizontal")
            yield from out.to_arrow().cast(_arrow_schema(table, ctx)).to_batches()
    return run


def _arrow_schema(table: str, ctx: rules.Context) -> pa.Schema:
    arrow = {pl.Date: pa.date32(), pl.Int64: pa.int64(), pl.Float64: pa.float64(), pl.Boolean: pa.bool_()}
    fields = [(LINE, pa.int64()), (NFIELDS, pa.int64())] + [(c.name, pa.string()) for c in schemas.TABLES[table]]
    for n, d in _typed_schema(table, ctx).items():
        fields.append((TYPED + n, pa.int64() if d.is_integer() else pa.float64() if d.is_float()
                       else arrow.get(d, pa.string())))
    return pa.schema(fields + [(REASON, pa.string()), (FATAL, pa.string())])


def _fatal_batch(exc: FatalInputError, validate: bool, table: str, ctx: rules.Context) -> pa.RecordBatch:
    if not validate:
        return pa.record_batch({LINE: pa.array([exc.line], pa.int64()), FATAL: pa.array([exc.rule], pa.string())})
    schema = _arrow_schema(table, ctx)
    cols = {f.name: pa.array([None], f.type) for f in schema}
    cols[LINE] = pa.array([exc.line], pa.int64())
    cols[FATAL] = pa.array([exc.rule], pa.string())
    return pa.record_batch(cols, schema=schema)


# ---- linking: conflicting patients, orphans ---------------------------------------------------

def _link_patients(rows: dict[str, object]) -> dict[str, object]:
    """Quarantine conflicting duplicate patients, and every row whose patient is not accepted.

    The reason texts are `pipeline.inputs.ingest._link_patients`'s; the steps are keyed by
    `patient_id` (an aggregation and joins), never a global window. Dropped duplicates
    (`_first` false) stay in the frames for the counting, and take no part here.
    """
    from pyspark.sql import functions as F

    pid = F.col("patient_id")
    kept = F.col("_first") & pid.isNotNull()
    patients = rows["patients"]
    per_id = (patients.where(kept).groupBy("patient_id")
              .agg(F.count(F.lit(1)).alias("_n"), F.array_sort(F.collect_list(LINE)).alias("_lines")))
    n = F.col("_n")
    lines = F.array_join(F.slice(F.col("_lines"), 1, LINES_SHOWN).cast("array<string>"), ", ")
    more = F.when(n > LINES_SHOWN, F.format_string(" and %d more", n - LINES_SHOWN)).otherwise(F.lit(""))
    conflict = F.format_string("patient_id '%s' is on %d rows with different content (lines %s%s)",
                               pid, n, lines, more)
    patients = (patients.join(per_id, on="patient_id", how="left")
                .withColumn(REASON, F.when(F.col("_first") & (n > 1), F.concat_ws("; ", F.col(REASON), conflict))
                            .otherwise(F.col(REASON)))
                .drop("_n", "_lines"))
    out = {"patients": patients}
    status = patients.where(kept).groupBy("patient_id").agg(F.max(F.col(REASON).isNull()).alias("_accepted"))
    for table, frame in rows.items():
        if table == "patients":
            continue
        acc = F.col("_accepted")
        unknown = F.when(acc.isNull(), F.format_string("patient_id '%s' is not in patients.csv", pid)) \
            .otherwise(F.format_string("patient_id '%s' was quarantined in patients.csv", pid))
        orphan = pid.isNotNull() & (acc.isNull() | ~acc)
        out[table] = (frame.join(status, on="patient_id", how="left")
                      .withColumn(REASON, F.when(orphan, F.concat_ws("; ", F.col(REASON), unknown))
                                  .otherwise(F.col(REASON)))
                      .drop("_accepted"))
    return out
