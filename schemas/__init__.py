"""pandera schemas (polars backend) of the registry export, one module per table.

Each module has `schema(ctx)`, the row rules of its table over the raw strings, and
`typed(ctx)`, the expressions that turn an accepted row into typed columns.
"""

from schemas import conditions, function_tests, labs, mri, patients, relapses, treatments, visits
from schemas.contract import REQUIRED_TABLE, TABLES, ColumnSpec
from schemas.rules import Context

MODULES = {
    "patients": patients, "visits": visits, "relapses": relapses, "treatments": treatments,
    "labs": labs, "function_tests": function_tests, "conditions": conditions, "mri": mri,
}

__all__ = ["MODULES", "TABLES", "REQUIRED_TABLE", "ColumnSpec", "Context"]
