"""pandera schemas (polars backend) of the registry export, one module per table.

Each module has `schema(ctx)`, the row rules of its table over the raw strings, and
`typed(ctx)`, the expressions that turn an accepted row into typed columns. The table
modules (and pandera with them) are imported on first use of `MODULES` or `Context`:
the contract's tables and code lists (`schemas.contract`, `schemas.codes`) are plain
data, so a run that reads its validated export from the cache never loads pandera.
"""

from importlib import import_module

from schemas.contract import REQUIRED_TABLE, TABLES, ColumnSpec

_TABLE_MODULES = ("patients", "visits", "relapses", "treatments", "labs", "function_tests", "conditions", "mri")


def __getattr__(name: str):
    if name == "MODULES":
        modules = {t: import_module(f"schemas.{t}") for t in _TABLE_MODULES}
        globals()["MODULES"] = modules
        return modules
    if name == "Context":
        from schemas.rules import Context
        return Context
    if name in _TABLE_MODULES or name == "rules":
        return import_module(f"schemas.{name}")
    raise AttributeError(f"module 'schemas' has no attribute {name!r}")


__all__ = ["MODULES", "TABLES", "REQUIRED_TABLE", "ColumnSpec", "Context"]
