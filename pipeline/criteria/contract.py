"""What the criteria language knows of the export contract: tables, columns, dates and codes.

A trial file is checked against this before any data is read, so that a criterion
naming a table, a column or a code the export cannot hold is an error of the trial
file, not an empty result. Everything here is read from `schemas/` (the contract as
code), so a table added to the contract is known to the language at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import schemas

# How a table's rows lie in time. An event table has one date per row; an episode
# table has a start and an end (an empty end means ongoing; an empty start, for
# conditions, means the onset is unknown and counts as "before").
EVENT_DATE = {"visits": "visit_date", "relapses": "onset_date", "labs": "sample_date",
              "function_tests": "test_date", "mri": "scan_date"}
EPISODE_DATES = {"conditions": ("onset_date", "end_date"), "treatments": ("start_date", "end_date")}

# Columns that ingest adds to an accepted table beside the contract's own.
DERIVED_COLUMNS = {"treatments": {"line": "int"}}


def _codes() -> dict[tuple[str, str], tuple[list[str] | None, str]]:
    """(table, column) -> (allowed codes or None for any code, case the accepted table holds)."""
    from schemas import codes

    out: dict[tuple[str, str], tuple[list[str] | None, str]] = {
        ("patients", "sex"): (codes.SEXES, "upper"),
        ("patients", "ms_course"): (codes.COURSES, "upper"),
        ("patients", "research_consent"): (codes.YES_NO, "upper"),
        ("conditions", "category"): (codes.CATEGORIES, "lower"),
        ("conditions", "severity"): (codes.SEVERITIES, "lower"),
        ("conditions", "infection_type"): (codes.INFECTION_TYPES, "lower"),
        ("conditions", "controlled"): (codes.YES_NO, "upper"),
        ("conditions", "impairs_consent"): (codes.YES_NO, "upper"),
        ("conditions", "code"): (None, "upper"),
        ("function_tests", "test"): (codes.FUNCTION_TESTS, "upper"),
        ("labs", "test"): (None, "upper"),
        ("labs", "unit"): (None, "unit"),
        # Drugs are held as generic names (the vocabulary is configuration, so any name).
        ("treatments", "drug"): (None, "lower"),
    }
    out[("treatments", "stop_reason")] = (list(codes.STOP_REASONS), "lower")
    return out


@dataclass(frozen=True)
class Column:
    table: str
    name: str
    type: str  # "str", "date", "float", "int"
    codes: list[str] | None = None  # allowed codes of a code column (None: any, or not a code column)
    case: str | None = None  # "upper" / "lower" for a code column

    @property
    def is_code(self) -> bool:
        return self.case is not None

    def fold(self, code: str) -> str:
        """A code as the accepted table holds it (codes are matched case-insensitively)."""
        code = code.strip()
        if self.case == "unit":  # the spelling ingest gives the criteria's units (IU/L is held as U/L)
            from schemas.codes import LAB_UNITS
            return {k: v for units in LAB_UNITS.values() for k, v in units.items()}.get(code.lower(), code)
        return code.upper() if self.case == "upper" else code.lower() if self.case == "lower" else code


def tables() -> list[str]:
    return list(schemas.TABLES)


def column(table: str, name: str) -> Column | None:
    codes = _codes()
    for spec in schemas.TABLES.get(table, ()):
        if spec.name == name:
            allowed, case = codes.get((table, name), (None, None))
            return Column(table, name, spec.type, allowed, case)
    typ = DERIVED_COLUMNS.get(table, {}).get(name)
    return Column(table, name, typ) if typ else None


def columns(table: str) -> list[str]:
    return [c.name for c in schemas.TABLES.get(table, ())] + list(DERIVED_COLUMNS.get(table, {}))


def optional_tables() -> list[str]:
    return [t for t in schemas.TABLES if t != schemas.REQUIRED_TABLE]
