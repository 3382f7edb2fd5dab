"""The accepted export held in Spark: typed tables, quarantine and row accounting.

The Spark counterpart of `pipeline.inputs.registry.Registry`, with the same fields, so that the
run, the engines and the writers treat both alike. Tables and quarantined rows stay
Spark DataFrames (nothing of a table is collected into the driver); the accounting is
plain numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pipeline.core.dialect import Dialect
from pipeline.inputs.registry import TableInput


@dataclass
class SparkRegistry:
    """The accepted export in Spark: `tables` and `quarantine` are pyspark DataFrames.

    Column names and types are those of `pipeline.inputs.ingest`'s tables: dates DateType,
    numbers DoubleType, whole numbers LongType, the rest StringType; an absent table is
    an empty DataFrame of that schema. A quarantine frame has the table's raw text
    columns, then `_line` (long) and `_reason` (string), as `pipeline.inputs.ingest` writes it.
    """

    spark: object  # pyspark.sql.SparkSession
    tables: dict[str, object]
    inputs: dict[str, TableInput]
    quarantine: dict[str, object] = field(default_factory=dict)
    dialect: Dialect = field(default_factory=Dialect)
    read_seconds: float = 0.0
    source: None = None  # the CSV contract's export only (pipeline/run.py: another input format says what it read)
    shards: None = None  # Spark partitions the tables itself (pipeline/inputs/shards.py is for the in-process engines)

    @property
    def absent(self) -> list[str]:
        return [t for t, inp in self.inputs.items() if not inp.present]
