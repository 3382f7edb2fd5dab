"""The drug vocabulary: brand and generic names mapped to a generic name and a line.

Registries write drug names as brands ("Tysabri"), generic names with spaces or
hyphens ("Interferon beta-1a") or with underscores. All of them are folded to one
key here so that a single `replace_strict` maps a whole column at once.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import polars as pl

from pipeline.core.errors import UsageError


def drug_key(expr: pl.Expr) -> pl.Expr:
    """Fold a drug name column for lookup: trimmed, lower case, runs of spaces/hyphens as `_`.

    >>> pl.select(drug_key(pl.lit(" Interferon beta-1a "))).item()
    'interferon_beta_1a'
    """
    return expr.str.strip_chars().str.to_lowercase().str.replace_all(r"[\s\-_]+", "_")


def _fold(name: str) -> str:
    return re.sub(r"[\s\-_]+", "_", name.strip().lower())


@dataclass(frozen=True)
class DrugVocabulary:
    """Folded name -> generic name, and generic name -> line (1, 2 or None for "other")."""

    generic_of: dict[str, str]
    line_of: dict[str, int | None]
    source: str

    def generic(self, expr: pl.Expr) -> pl.Expr:
        """The generic name of a drug column; null for a name outside the vocabulary."""
        return drug_key(expr).replace_strict(self.generic_of, default=None, return_dtype=pl.Utf8)

    def line(self, generic_expr: pl.Expr) -> pl.Expr:
        """The line of therapy of a generic-name column (null for "other" lines)."""
        return generic_expr.replace_strict(self.line_of, default=None, return_dtype=pl.Int64)


def load_vocabulary(path: str | Path | None = None) -> DrugVocabulary:
    """Load the drug/line configuration: the bundled default, or a user's replacement file."""
    if path is None:
        text = resources.files("pipeline.config").joinpath("drug_lines.toml").read_text("utf-8")
        source = "bundled drug_lines.toml"
    else:
        try:
            text = Path(path).read_text("utf-8")
        except OSError as exc:
            raise UsageError(f"cannot read the drug line file {path}: {exc.strerror}") from None
        source = str(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{source}: not valid TOML: {exc}") from None
    generic_of: dict[str, str] = {}
    line_of: dict[str, int | None] = {}
    for generic, entry in data.items():
        if not isinstance(entry, dict) or "line" not in entry:
            raise UsageError(f"{source}: [{generic}] needs a `line` (1, 2 or \"other\")")
        line = entry["line"]
        if line not in (1, 2, "other"):
            raise UsageError(f"{source}: [{generic}] line must be 1, 2 or \"other\", not {line!r}")
        key = _fold(generic)
        line_of[key] = None if line == "other" else int(line)
        generic_of[key] = key
        for brand in entry.get("brands", []):
            generic_of[_fold(brand)] = key
    return DrugVocabulary(generic_of, line_of, source)
