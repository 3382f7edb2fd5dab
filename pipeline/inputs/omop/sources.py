"""Where OMOP tables are: a folder of CSV or Parquet files, a DuckDB file, a PostgreSQL database.

Every source answers SQL (`query`, an Arrow-backed polars frame): a folder and a DuckDB file through
an in-memory DuckDB (files as views of typed columns; a DuckDB file attached read-only), PostgreSQL
through ADBC's libpq driver in a READ ONLY transaction. The reader (`reader.py`) pushes its filters
and aggregates into these queries, so only the mapped rows and columns are read.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import polars as pl

from pipeline.core.errors import FatalInputError, UsageError, some
from pipeline.inputs.omop.tables import COLUMNS, SUFFIXES, VOCABULARY, Source, sql_ids  # noqa: F401 - re-exported


class DuckSource(Source):
    """A folder (CSV or Parquet files as views of typed columns) or a DuckDB file attached read-only."""

    def __init__(self, kind: str, label: str):
        import duckdb

        super().__init__(kind, label)
        self.con = duckdb.connect(":memory:")

    def query(self, sql: str) -> pl.DataFrame:
        import duckdb

        try:
            return self.con.sql(sql).pl()
        except duckdb.Error as exc:
            raise FatalInputError(self.label, f"cannot be read: {str(exc).splitlines()[0]}") from None

    def close(self) -> None:
        self.con.close()


def is_omop_folder(path: Path) -> bool:
    """A folder holding an OMOP table as `<table>.csv` or `<table>.parquet` (any case; `person` is the one
    required, and its absence is then said as such) and no `patients.csv`."""
    try:
        names = {p.name.lower() for p in path.iterdir()}
    except OSError:
        return False
    tables = {f"{t}{s}" for t in COLUMNS if t not in VOCABULARY and t != "cdm_source" for s in SUFFIXES}
    return bool(tables & names) and "patients.csv" not in names


def open_folder(folder: Path) -> DuckSource:
    src = DuckSource("folder", str(folder))
    delimiter, encoding = ",", "utf-8"
    toml = folder / "export.toml"
    if toml.is_file():
        try:
            conf = tomllib.loads(toml.read_text("utf-8"))
        except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise FatalInputError(str(toml), f"cannot be read: {exc}") from None
        delimiter = {"\\t": "\t"}.get(conf.get("delimiter", ","), conf.get("delimiter", ","))
        encoding = conf.get("encoding", "utf-8")
    found: dict[str, list[Path]] = {}
    for p in sorted(folder.iterdir()):
        for suffix in SUFFIXES:
            name = p.name.lower()
            if name.endswith(suffix) and name[:-len(suffix)] in COLUMNS:
                found.setdefault(name[:-len(suffix)], []).append(p)
    for table, paths in found.items():
        if len(paths) > 1:
            raise FatalInputError(f"{folder}: table {table}", f"{len(paths)} files are this table "
                                  f"({some(p.name for p in paths)}); keep one")
        path = paths[0]
        lit = "'" + str(path).replace("'", "''") + "'"
        if path.name.lower().endswith(".parquet"):
            raw = f"read_parquet({lit})"
        else:
            enc = encoding.lower().replace("_", "-")
            enc_arg = "" if enc in ("utf-8", "utf8", "utf-8-sig") else f", encoding = '{enc}'"
            raw = (f"read_csv({lit}, header = true, all_varchar = true, delim = '{delimiter}', "
                   f"quote = '\"'{enc_arg})")
        names = {r[0].lower(): r[0] for r in src.con.sql(f"DESCRIBE SELECT * FROM {raw}").fetchall()}
        src.columns[table] = set(names)
        select = [f'TRY_CAST("{names[c]}" AS {typ}) AS {c}' for c, (typ, _) in COLUMNS[table].items()
                  if c in names]
        src.con.sql(f"CREATE VIEW {table} AS SELECT {', '.join(select) or '1 AS none'} FROM {raw}")
        src.tables[table] = table
    return src


def open_duckdb(path: Path, schema: str | None, vocab_schema: str | None = None) -> DuckSource:
    import duckdb

    if not path.is_file():
        raise FatalInputError(str(path), "is not a DuckDB database (no such file)")
    src = DuckSource("duckdb", str(path))
    lit = "'" + str(path).replace("'", "''") + "'"
    try:
        src.con.sql(f"ATTACH {lit} AS omop (READ_ONLY)")
    except duckdb.Error as exc:
        raise FatalInputError(str(path), f"cannot be opened as a DuckDB database: "
                              f"{str(exc).splitlines()[0]}") from None
    src.schema = schema or "main"
    src.vocab_schema = vocab_schema or src.schema
    rows = src.con.execute("SELECT lower(table_name), table_name, lower(column_name), table_schema FROM "
                           "information_schema.columns WHERE table_catalog = 'omop' AND table_schema IN (?, ?)",
                           [src.schema, src.vocab_schema]).fetchall()
    if not [r for r in rows if r[3] == src.schema]:
        schemas = [r[0] for r in src.con.sql("SELECT DISTINCT table_schema FROM information_schema.tables "
                                             "WHERE table_catalog = 'omop'").fetchall()]
        raise FatalInputError(str(path), f"schema '{src.schema}' holds no tables (--cdm-schema; schemas with "
                              f"tables: {some(schemas) or 'none'})")
    for lower, name, col, in_schema in rows:
        if lower in COLUMNS and in_schema == (src.vocab_schema if lower in VOCABULARY else src.schema):
            src.tables[lower] = f'omop."{in_schema}"."{name}"'
            src.columns.setdefault(lower, set()).add(col)
    return src


URL = re.compile(r"postgres(ql)?://", re.I)


def is_postgres_url(text: str) -> bool:
    return bool(URL.match(text))


def safe_url(url: str) -> str:
    """The URL as it may be shown: user, host, port and database, never a password."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    user = f"{parts.username}@" if parts.username else ""
    port = f":{parts.port}" if parts.port else ""
    return f"postgresql://{user}{host}{port}{parts.path}"


def check_url(url: str) -> None:
    """Refused: a URL carrying a password (it would land in shell history, ps and cron mail)."""
    try:
        parts = urlsplit(url)
        parts.port
    except ValueError:
        raise UsageError(f"--input {safe_url(url)}: not a valid PostgreSQL URL") from None
    if parts.password is not None or re.search(r"[?&]password=", parts.query, re.I):
        raise UsageError("--input: the PostgreSQL URL holds a password, which would show in the shell history, "
                         "the process list and logs: remove it and set PGPASSWORD or ~/.pgpass instead")


def open_postgres(url: str, schema: str | None, vocab_schema: str | None) -> Source:
    check_url(url)
    from pipeline.inputs.omop.postgres import PgSource

    return PgSource.open(url, safe_url(url), schema or "cdm", vocab_schema)


def open_source(location: str | Path, schema: str | None = None, vocab_schema: str | None = None) -> Source:
    """The OMOP source at `location` (folder, `.duckdb` file or PostgreSQL URL), tables found and checked."""
    text = str(location)
    if is_postgres_url(text):
        src = open_postgres(text, schema, vocab_schema)
    else:
        path = Path(location)
        if path.is_dir():
            src = open_folder(path)
        elif path.suffix.lower() == ".duckdb":
            src = open_duckdb(path, schema, vocab_schema)
        else:
            raise FatalInputError(text, "is not an OMOP source (a folder of OMOP tables, a .duckdb file or a "
                                  "postgresql:// URL)")
    if "person" not in src.tables:
        src.close()
        where = f" (schema '{src.schema}')" if src.schema else ""
        raise FatalInputError(src.label, f"is not an OMOP CDM: it has no person table{where}")
    try:
        src.check_columns()
    except FatalInputError:
        src.close()
        raise
    return src


def env_has_password() -> bool:
    return bool(os.environ.get("PGPASSWORD")) or (Path.home() / ".pgpass").is_file()
