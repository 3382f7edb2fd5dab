"""What judging the criteria depends on: one value, built once by the run."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field


@dataclass(frozen=True)
class JudgeSettings:
    """The engines' settings (from `msfeas run`'s options; `pipeline.run.RunOptions.judge`): the
    reference date, the engine, and where Spark runs when the engine is Spark."""

    as_of: dt.date
    engine: str = "polars"
    spark_master: str = "local[*]"
    spark_conf: dict[str, str] = field(default_factory=dict)
