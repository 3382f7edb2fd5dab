"""The OMOP tables and columns msfeas reads, and what every source answers (`Source`)."""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from pipeline.core.errors import FatalInputError, some

# The OMOP CDM 5.4 columns read, with their types; `required` ones must be in the table.
COLUMNS: dict[str, dict[str, tuple[str, bool]]] = {
    "person": {"person_id": ("BIGINT", True), "gender_concept_id": ("BIGINT", True),
               "year_of_birth": ("INTEGER", True), "month_of_birth": ("INTEGER", False),
               "day_of_birth": ("INTEGER", False), "birth_datetime": ("TIMESTAMP", False),
               "care_site_id": ("BIGINT", False)},
    "death": {"person_id": ("BIGINT", True), "death_date": ("DATE", True)},
    "condition_occurrence": {"person_id": ("BIGINT", True), "condition_concept_id": ("BIGINT", True),
                             "condition_start_date": ("DATE", True), "condition_end_date": ("DATE", False),
                             "condition_source_value": ("VARCHAR", False),
                             "condition_source_concept_id": ("BIGINT", False)},
    "drug_exposure": {"person_id": ("BIGINT", True), "drug_concept_id": ("BIGINT", True),
                      "drug_exposure_start_date": ("DATE", True), "drug_exposure_end_date": ("DATE", False),
                      "stop_reason": ("VARCHAR", False)},
    "measurement": {"person_id": ("BIGINT", True), "measurement_concept_id": ("BIGINT", True),
                    "measurement_date": ("DATE", True), "value_as_number": ("DOUBLE", True),
                    "unit_concept_id": ("BIGINT", False), "range_high": ("DOUBLE", False)},
    "observation": {"person_id": ("BIGINT", True), "observation_concept_id": ("BIGINT", True),
                    "observation_date": ("DATE", True), "value_as_concept_id": ("BIGINT", False),
                    "observation_source_value": ("VARCHAR", False)},
    "cdm_source": {"cdm_source_name": ("VARCHAR", False), "cdm_source_abbreviation": ("VARCHAR", False),
                   "cdm_version": ("VARCHAR", False), "source_release_date": ("DATE", False)},
    "concept": {"concept_id": ("BIGINT", True), "concept_name": ("VARCHAR", True),
                "vocabulary_id": ("VARCHAR", True), "concept_code": ("VARCHAR", True)},
    "concept_ancestor": {"ancestor_concept_id": ("BIGINT", True), "descendant_concept_id": ("BIGINT", True)},
}
VOCABULARY = ("concept", "concept_ancestor")
SUFFIXES = (".csv", ".parquet")


def sql_ids(ids) -> str:
    """A SQL list of concept ids (integers only: no injection possible), or a never-true list."""
    ids = sorted({int(i) for i in ids})
    return "(" + ", ".join(str(i) for i in ids) + ")" if ids else "(NULL)"


@dataclass
class Source:
    """An open OMOP source: its tables (lower-case name -> qualified SQL name) and their columns."""

    kind: str
    label: str  # for messages and the summary: never a password
    tables: dict[str, str] = field(default_factory=dict)
    columns: dict[str, set[str]] = field(default_factory=dict)
    schema: str | None = None
    vocab_schema: str | None = None

    def query(self, sql: str) -> pl.DataFrame:  # pragma: no cover - each kind has its own
        raise NotImplementedError

    def close(self) -> None:
        pass

    def has(self, table: str) -> bool:
        return table in self.tables

    def col(self, table: str, name: str) -> str:
        """A column of the select list: the column, or a typed NULL when an optional one is missing."""
        if name in self.columns.get(table, ()):
            return name
        return f"CAST(NULL AS {COLUMNS[table][name][0]}) AS {name}"

    def check_columns(self) -> None:
        """Fatal: a required column of a table read missing from it."""
        for table, cols in COLUMNS.items():
            if table not in self.tables:
                continue
            missing = [c for c, (_, req) in cols.items() if req and c not in self.columns[table]]
            if missing:
                raise FatalInputError(f"{self.label}: table {table}",
                                      f"required column '{missing[0]}' is missing (found: "
                                      f"{some(sorted(self.columns[table]), 10)})", column=missing[0])

    def describe(self) -> dict:
        return {"kind": self.kind, "source": self.label, **({"schema": self.schema} if self.schema else {}),
                **({"vocab_schema": self.vocab_schema} if self.vocab_schema and
                   self.vocab_schema != self.schema else {})}
