"""The accepted export: typed tables, quarantine and row accounting (the result of `ingest`).

Kept apart from `pipeline.ingest` so that what only uses a validated export (the engines,
the quality stage, a run that reads it from the cache) does not load the validation stack.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import polars as pl

from pipeline.dialect import Dialect


@dataclass
class TableInput:
    """Row accounting of one table, as written to `summary.json` `inputs`."""

    present: bool
    rows_read: int = 0
    rows_accepted: int = 0
    rows_quarantined: int = 0
    duplicates_dropped: int = 0
    file: str | None = None

    def as_dict(self) -> dict:
        d = asdict(self)
        if d["file"] is None:
            d.pop("file")
        return d


@dataclass
class Registry:
    """The accepted export: typed tables (empty when absent: see `absent`) and accounting."""

    tables: dict[str, pl.DataFrame]
    inputs: dict[str, TableInput]
    quarantine: dict[str, pl.DataFrame] = field(default_factory=dict)
    dialect: Dialect = field(default_factory=Dialect)
    read_seconds: float = 0.0  # of the ingest time, reading the files (the rest is validating)

    @property
    def absent(self) -> list[str]:
        return [t for t, inp in self.inputs.items() if not inp.present]
