"""What writing a run's files depends on: one value each, built once by the run."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class OutputSettings:
    """The outputs stage's settings (`pipeline.run.RunOptions.output`): where the run folder goes,
    whether an existing one may be replaced (and stay readable until the next sweep: the nightly),
    and the protection of shareable counts."""

    out: Path
    min_cell: int = 5
    shareable: bool = False
    force: bool = False
    keep_replaced: bool = False


@dataclass(frozen=True)
class Rerun:
    """What the report's `msfeas run` line repeats of the run that wrote it (the workbench's command)."""

    input: Path
    as_of: dt.date
    engine: str = "polars"
    dialect_overrides: dict = field(default_factory=dict)
    drug_lines: str | None = None
    max_reject: float = 0.05
    min_cell: int = 5
    shareable: bool = False
    spark_master: str = "local[*]"
    # --input as given and its format's options (pipeline.run.RunOptions.source_options)
    source_options: dict = field(default_factory=dict)
