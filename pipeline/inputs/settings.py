"""What reading and validating a source depends on: one value, built once by the run."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class InputSettings:
    """The inputs stage's settings (from `msfeas run`'s options; `pipeline.run.RunOptions.inputs`).

    `per_shard`: accepted patients above which the export is kept on disk in patient shards
    (pipeline/inputs/shards.py); None: judged whole, whatever its size.
    """

    source: Path
    today: dt.date
    dialect_overrides: dict = field(default_factory=dict)
    drug_lines: str | None = None
    max_reject: float = 0.05
    per_shard: int | None = None
    # what --input is and how to read it when it is not a CSV export (--input-format, --site, ...)
    source_options: dict = field(default_factory=dict)
