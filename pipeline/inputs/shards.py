"""A large export, kept on disk in patient shards and judged one shard at a time.

Every criterion, every quality frame and every part of the workbench is a fact about one
patient, computed from that patient's own rows. So an export too large to judge in memory
at once can be cut by patient into shards, each judged alone, and the per-patient results
put back together. A shard is a range of patient ids (cut at equal counts of the accepted
patients), so the shards' evaluations, each sorted by patient id, follow each other in
order: the whole evaluation is the same, byte for byte, however many shards there are
(tests/test_shards.py).

The ingest's streaming pass over a table writes its rows straight into the shards, as
LZ4-compressed Arrow IPC files `<folder>/<table>/_shard=<k>/*.ipc`, with each row's line,
hash and screen beside its typed columns; the table is never in memory whole and is
written once. The rows the ingest then sets aside (exact duplicates, quarantined rows)
are few: their lines are kept (`<table>/_dropped.ipc`) and left out when a shard is read.
The patients table, one row per patient, is also kept in memory whole, in shard order.

Memory is then the patients table plus one shard's tables and working memory, instead of
every table and the working memory of the whole registry: what lets ten million patients
(14 GB of typed tables) be judged on a 24 GiB machine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Collection

import polars as pl

PATIENTS_PER_SHARD = 250_000  # up to this an export is judged in memory, whole (see README, Performance)
SHARD = "_shard"
PID = "patient_id"
LINE = "_line"


def shard_count(patients: int, per_shard: int = PATIENTS_PER_SHARD) -> int:
    """How many shards an export of `patients` accepted patients is cut into (1: not cut)."""
    return max(1, -(-patients // per_shard))


def bounds(accepted: pl.Series, k: int) -> pl.Series:
    """The first patient id of each shard after the first: `k` ranges of about equal counts."""
    ids = accepted.sort()
    return ids.gather([len(ids) * j // k for j in range(1, k)])


def shard_key(cuts: pl.Series) -> pl.Expr:
    """Which shard a row belongs to: how many cuts its patient id is at or after (a row without a
    patient id goes to the first; it is quarantined, and so never read)."""
    # A sum of comparisons rather than a search: a partitioned write takes only row-wise keys, and
    # there are few cuts (39 for ten million patients; a string comparison each, about 1 s per
    # 23 million rows for all 39).
    pid = pl.col(PID)
    return pl.sum_horizontal([pid >= c for c in cuts], ignore_nulls=True).cast(pl.Int32).alias(SHARD)


def write(rows: pl.LazyFrame, folder: Path, table: str, cuts: pl.Series) -> None:
    """A table's rows written in shards (streaming, in row order within each shard)."""
    rows.sink_ipc(pl.PartitionBy(folder / table, key=shard_key(cuts), include_key=False), compression="lz4",
                  mkdir=True)


def files(folder: Path, table: str, which) -> list[Path]:
    """The files of a table's shards `which`, in shard order."""
    return [f for j in which for f in sorted((folder / table / f"{SHARD}={j}").glob("*.ipc"))]


def finish(folder: Path, table: str, schema: pl.Schema, dropped: pl.Series | None = None) -> None:
    """Beside a table's shards: its typed schema (a shard may hold none of its rows) and the lines
    of the rows written there but not accepted."""
    (folder / table).mkdir(parents=True, exist_ok=True)
    pl.DataFrame(schema=schema).write_ipc(folder / table / "_schema.ipc")
    lines = dropped if dropped is not None else pl.Series(LINE, [], dtype=pl.Int64)
    pl.DataFrame({LINE: lines.cast(pl.Int64)}).write_ipc(folder / table / "_dropped.ipc")


@dataclass
class Shards:
    """The shard files of an export: `k` shards of each of `schemas` (table name -> typed schema)."""

    folder: Path
    k: int
    schemas: dict[str, pl.Schema]
    dropped: dict[str, pl.Series] = field(default_factory=dict)

    @classmethod
    def open(cls, folder: Path, k: int, tables: list[str]) -> "Shards":
        """The shards of `tables` in `folder`, as `finish` left them."""
        return cls(folder, k, {t: pl.read_ipc_schema(folder / t / "_schema.ipc") for t in tables},
                   {t: pl.read_ipc(folder / t / "_dropped.ipc")[LINE] for t in tables})

    def files(self, table: str, i: int | None = None) -> list[Path]:
        """The files of shard `i` of a table (every shard's when None)."""
        return files(self.folder, table, range(self.k) if i is None else [i])

    def table(self, table: str, i: int) -> pl.DataFrame:
        """Shard `i` of a table, in memory: its accepted rows in line order, its typed columns."""
        return self.scan(table, i).collect().rechunk()

    def scan(self, table: str, i: int | None = None) -> pl.LazyFrame:
        """Shard `i` of a table (all shards when None), lazily: accepted rows, typed columns."""
        files = self.files(table, i)
        if not files:
            return pl.LazyFrame(schema=self.schemas[table])
        rows = pl.scan_ipc(files)
        dropped = self.dropped.get(table)
        if dropped is not None and dropped.len():
            rows = rows.filter(~pl.col(LINE).is_in(dropped.implode()))
        return rows.select(list(self.schemas[table]))

    def load(self, i: int, patients: pl.DataFrame | None = None,
             only: Collection[str] | None = None) -> dict[str, pl.DataFrame | pl.LazyFrame]:
        """Shard `i` of every table; `patients`: its patients, if already in memory. `only`: the tables
        to read into memory (default all); the others are lazy scans, read only if used."""
        return {t: patients if t == "patients" and patients is not None
                else self.table(t, i) if only is None or t in only else self.scan(t, i) for t in self.schemas}

    def patients(self) -> tuple[pl.DataFrame, list[int]]:
        """The whole patients table in shard order, and how many patients each shard has."""
        parts = [self.table("patients", i) for i in range(self.k)]
        return pl.concat(parts, rechunk=True), [p.height for p in parts]

    def moved(self, folder: Path) -> "Shards":
        return Shards(folder, self.k, self.schemas, self.dropped)

    def as_dict(self) -> dict:
        """What the cache's registry.json records to open them again."""
        return {"k": self.k, "tables": list(self.schemas)}


def open_in(registry, store: Shards, patients: pl.DataFrame | None = None) -> None:
    """Make `registry` a sharded one over `store`: the patients table whole (in shard order), the
    other tables as lazy scans, and the shards' sizes. `patients`: already read (the shards moved)."""
    if patients is None:
        patients, sizes = store.patients()
    else:
        sizes = registry.shard_sizes
    registry.shards, registry.shard_sizes = store, sizes
    registry.tables = {t: patients if t == "patients" else store.scan(t) for t in store.schemas}

