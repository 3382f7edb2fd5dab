"""An OMOP CDM in PostgreSQL, read through ADBC's libpq driver into Arrow.

The session is READ ONLY (every transaction of it); the reader's filters and aggregates run on the
server, so only the mapped rows and columns cross the wire. The password comes from PGPASSWORD or
~/.pgpass (libpq reads them itself); a URL holding one is refused before this module is reached
(`sources.check_url`), and no message here repeats the URL as given.
"""

from __future__ import annotations

import polars as pl

from pipeline.core.errors import FatalInputError, some
from pipeline.inputs.omop.tables import COLUMNS, VOCABULARY, Source

PG_TYPES = {"DOUBLE": "DOUBLE PRECISION"}


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text.replace("IO: ", "").strip()


class PgSource(Source):
    conn = None

    @classmethod
    def open(cls, url: str, label: str, schema: str, vocab_schema: str | None) -> "PgSource":
        try:
            import adbc_driver_postgresql.dbapi as dbapi
        except ImportError:  # pragma: no cover - a dependency of the package
            raise FatalInputError(label, "PostgreSQL needs the package adbc-driver-postgresql (make setup)") from None
        src = cls("postgresql", label)
        src.schema, src.vocab_schema = schema, vocab_schema or schema
        try:
            src.conn = dbapi.connect(url)
        except Exception as exc:  # noqa: BLE001 - libpq's reason, one line, never the URL as given
            raise FatalInputError(label, f"cannot connect: {_first_line(exc)}") from None
        src._execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
        src._execute("SET default_transaction_read_only = on")
        rows = src.query(
            "SELECT lower(table_schema) AS s, table_schema AS sn, lower(table_name) AS t, table_name AS tn, "
            "lower(column_name) AS c FROM information_schema.columns WHERE table_schema IN "
            f"('{_lit(src.schema)}', '{_lit(src.vocab_schema)}')")
        if not rows.filter(pl.col("sn") == src.schema).height:
            schemas = src.query("SELECT DISTINCT table_schema AS s FROM information_schema.tables WHERE table_schema "
                                "NOT IN ('pg_catalog', 'information_schema')")["s"].to_list()
            src.close()
            raise FatalInputError(label, f"schema '{schema}' holds no tables (--cdm-schema; schemas with tables: "
                                  f"{some(sorted(schemas)) or 'none'})")
        for r in rows.iter_rows(named=True):
            table = r["t"]
            if table not in COLUMNS:
                continue
            want = src.vocab_schema if table in VOCABULARY else src.schema
            if r["sn"] != want:
                continue
            src.tables[table] = f'"{r["sn"]}"."{r["tn"]}"'
            src.columns.setdefault(table, set()).add(r["c"])
        return src

    def _execute(self, sql: str) -> None:
        cur = self.conn.cursor()
        try:
            cur.execute(sql)
        finally:
            cur.close()

    def query(self, sql: str) -> pl.DataFrame:
        cur = self.conn.cursor()
        try:
            cur.execute(sql)
            return pl.from_arrow(cur.fetch_arrow_table())
        except Exception as exc:  # noqa: BLE001 - the server's reason, one line
            raise FatalInputError(self.label, f"cannot be read: {_first_line(exc)}") from None
        finally:
            cur.close()

    def col(self, table: str, name: str) -> str:
        if name in self.columns.get(table, ()):
            return name
        typ = COLUMNS[table][name][0]
        return f"CAST(NULL AS {PG_TYPES.get(typ, typ)}) AS {name}"

    def close(self) -> None:
        if self.conn is not None:
            try:
                self.conn.rollback()
            except Exception:  # noqa: BLE001 - nothing was written; closing is all that is left
                pass
            self.conn.close()
            self.conn = None


def _lit(text: str) -> str:
    return text.replace("'", "''")
