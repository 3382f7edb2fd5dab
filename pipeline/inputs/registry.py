"""The accepted export: typed tables, quarantine and row accounting (the result of `ingest`).

Kept apart from `pipeline.inputs.ingest` so that what only uses a validated export (the engines,
the quality stage, a run that reads it from the cache) does not load the validation stack.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Collection, Iterator

import polars as pl

from pipeline.core.dialect import Dialect
from pipeline.inputs.shards import Shards


@dataclass
class TableInput:
    """Row accounting of one table, as written to `summary.json` `inputs`."""

    present: bool
    rows_read: int = 0
    rows_accepted: int = 0
    rows_quarantined: int = 0
    duplicates_dropped: int = 0
    file: str | None = None
    # Rows of the source file(s) not mapped to this table, by reason (another input format, such as
    # the MSDA Core Dataset, whose files hold more than the contract's table): not part of rows_read.
    passed_over: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict:
        d = asdict(self)
        if d["file"] is None:
            d.pop("file")
        if not d["passed_over"]:
            d.pop("passed_over")
        return d


@dataclass
class Registry:
    """The accepted export: typed tables (empty when absent: see `absent`) and accounting.

    A large export is kept in patient shards on disk (`shards`, pipeline/inputs/shards.py): then
    `tables` holds the whole patients table (in shard order) and lazy scans of the others,
    and what judges patients goes through `parts()`, one shard at a time.
    """

    tables: dict[str, pl.DataFrame]
    inputs: dict[str, TableInput]
    quarantine: dict[str, pl.DataFrame] = field(default_factory=dict)
    dialect: Dialect = field(default_factory=Dialect)
    read_seconds: float = 0.0  # of the ingest time, reading the files (the rest is validating)
    shards: Shards | None = None
    shard_sizes: list[int] = field(default_factory=list)  # patients per shard, in `tables["patients"]`'s order
    source: dict | None = None  # another input format (OMOP, MSDA CDS): what was read, its own accounting; None: CSV
    # Birth dates known only as an interval (OMOP: the year, or year and month, of birth): patient_id,
    # birth_earliest, birth_latest, for patients whose birth_date is empty. The engines judge both ends.
    birth_intervals: pl.DataFrame | None = None

    def first_record(self):
        """The earliest date recorded in the export's clinical tables (visits, relapses, MRI, labs, ...;
        not birth dates), or None. An `--as-of` before it judges every patient on no data at all."""
        import datetime as dt

        firsts: list[dt.date] = []
        for name, frame in self.tables.items():
            if name == "patients" or not isinstance(frame, (pl.DataFrame, pl.LazyFrame)):
                continue
            try:
                lazy = frame.lazy()
                if pl.Date not in lazy.collect_schema().dtypes():
                    continue
                row = lazy.select(pl.col(pl.Date).min()).collect().row(0)
            except Exception:  # noqa: BLE001 - a hint, never a reason to stop the run
                continue
            firsts += [v for v in row if isinstance(v, dt.date)]
        return min(firsts) if firsts else None

    def as_of_warning(self, as_of) -> str | None:
        """Why `as_of` makes a misleading population (issue 32), or None: before the export's first record,
        or a date by which more than half of the patients were not yet born or not yet diagnosed
        (the population still counts them)."""
        first = self.first_record()
        if first is not None and as_of < first:
            return (f"--as-of {as_of} is before the export's first record ({first}): every criterion is judged "
                    "on no data at all")
        patients = self.tables.get("patients")
        if not isinstance(patients, pl.DataFrame) or patients.height == 0:
            return None
        cols = [c for c in ("birth_date", "diagnosis_date") if c in patients.columns
                and patients.schema[c] == pl.Date]
        if not cols:
            return None
        later = patients.select(pl.any_horizontal([pl.col(c) > as_of for c in cols]).fill_null(False).sum()).item()
        if later * 2 > patients.height:
            return (f"--as-of {as_of}: {later:,} of {patients.height:,} patients were born or diagnosed after it, "
                    "yet they are counted in the population (and mostly ineligible); is the date right?")
        return None

    @property
    def absent(self) -> list[str]:
        return [t for t, inp in self.inputs.items() if not inp.present]

    @property
    def n_shards(self) -> int:
        return self.shards.k if self.shards is not None else 1

    def part(self, i: int, only: Collection[str] | None = None) -> dict[str, pl.DataFrame | pl.LazyFrame]:
        """Shard `i`'s tables, in memory (unsharded: the tables themselves). `only`: those in memory,
        the others as lazy scans of the shard (read if used after all)."""
        if self.shards is None:
            return self.tables
        start = sum(self.shard_sizes[:i])
        return self.shards.load(i, self.tables["patients"].slice(start, self.shard_sizes[i]), only)

    def parts(self, only: Collection[str] | None = None) -> Iterator[dict[str, pl.DataFrame | pl.LazyFrame]]:
        """Every shard's tables in turn; each shard's patients in `tables["patients"]`'s order."""
        for i in range(self.n_shards):
            yield self.part(i, only)
