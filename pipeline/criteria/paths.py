"""Where msfeas's SQL lives (a module of its own: the compiled-query cache needs it without sqlglot)."""

from __future__ import annotations

from pathlib import Path


def sql_dir() -> Path:
    """`sql/` of the checkout (editable install) or the copy shipped inside the package."""
    here = Path(__file__).resolve().parent.parent
    for candidate in (here / "_sql", here.parent / "sql"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("the sql/ folder of msfeas is missing from this installation")
