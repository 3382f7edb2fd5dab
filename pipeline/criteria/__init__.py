"""The criteria language: trial criteria as data, compiled to Polars, to SQL and to text.

- `nodes`: the vocabulary (node types, fields, design checks);
- `load`: trial files (TOML) -> `Trial` of `Criterion`s with resolved node trees;
- `to_polars`, `to_sql`, `to_text`: one compiler per output, one function per node type;
- `contract`: what the language knows of the export contract.

docs/trial-language.md is the user's guide.
"""

from pipeline.criteria.load import Criterion, Trial, apply_overrides, bundled_trials, load_trial
from pipeline.criteria.nodes import NODE_TYPES, DesignError, Node

__all__ = ["Criterion", "Trial", "apply_overrides", "bundled_trials", "load_trial", "NODE_TYPES", "DesignError",
           "Node"]
