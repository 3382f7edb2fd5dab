"""Slider scales: the positions a threshold may take, at the clinical resolution of its measurement.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import polars as pl

from pipeline.criteria.nodes import Node


@dataclass(frozen=True)
class Scale:
    """A slider's positions: lo .. hi by step (decimal text, so that each label parses to its grid point)."""

    lo: str
    hi: str
    step: str
    unit: str = ""


# Latest values by (table, column): the clinical resolution of each measurement.
VALUE_SCALES = {
    ("visits", "edss"): Scale("0", "10", "0.5", "EDSS points"),
    ("visits", "karnofsky"): Scale("0", "100", "10", "%"),
    ("visits", "weight_kg"): Scale("30", "200", "1", "kg"),
    ("function_tests", "value"): Scale("0", "150", "1", "%"),
    ("mri", "gd_lesions"): Scale("0", "50", "1", "lesions"),
    ("mri", "new_t2_lesions"): Scale("0", "50", "1", "lesions"),
}
AGE = Scale("0", "100", "1", "years")
YEARS = Scale("0.1", "60", "0.1", "years")
ULN = Scale("0.5", "10", "0.01", "× ULN")
CRCL = Scale("10", "200", "1", "mL/min")
COUNT = Scale("0", "20", "1", "")


def _data_scale(values: pl.Series) -> Scale:
    """A scale for a column the table above does not know: its observed range, about 100 steps."""
    v = values.drop_nulls().cast(pl.Float64)
    if v.len() == 0:
        return Scale("0", "100", "1")
    lo, hi = float(v.min()), float(v.max())
    step = Decimal(1)
    while (hi - lo) / float(step) > 200:
        step *= 10
    while (hi - lo) / float(step) < 20 and step > Decimal("0.001"):
        step /= 10
    lo_d = (Decimal(repr(lo)) / step).to_integral_value(rounding="ROUND_FLOOR") * step
    hi_d = (Decimal(repr(hi)) / step).to_integral_value(rounding="ROUND_CEILING") * step
    return Scale(str(lo_d), str(hi_d), str(step))


def _positions(scale: Scale, integer: bool) -> list[tuple[str, float]]:
    lo, hi, step = Decimal(scale.lo), Decimal(scale.hi), Decimal(scale.step)
    if integer:
        step = max(step, Decimal(1)).to_integral_value()
        lo = lo.to_integral_value(rounding="ROUND_CEILING")
    out, k = [], 0
    while lo + k * step <= hi:
        d = lo + k * step
        text = str(int(d)) if integer else (str(d) if d.as_tuple().exponent < 0 else f"{d}.0")
        out.append((text, float(text)))
        k += 1
    return out


def _label(value: Any, integer: bool) -> str:
    if value is None:
        return "none"
    return str(int(value)) if integer else repr(float(value))


# ---------------------------------------------------------------- the node types that can be slid

@dataclass(frozen=True)
class Bound:
    grid: str  # which of the node's values it is compared with
    phrase: str  # "at least", "at most", "less than", ...
    edge: str  # "min" or "max": which side a "none" position (no limit) sits on


@dataclass(frozen=True)
class Kind:
    bounds: dict[str, Bound]

    def what(self, node: Node, fld: str) -> str:
        t = node.type
        if t == "latest_value":
            return f"latest {node['label'] or node['column']}"
        if t == "age":
            return "age"
        if t == "years_since":
            return f"years since {node['column']}"
        if t == "lab_uln":
            return f"latest {node['test']} as a multiple of its upper limit of normal"
        if t == "creatinine_clearance":
            return "creatinine clearance (Cockcroft-Gault)"
        if t == "count":
            return f"number of {node['table']} rows" + (" (distinct dates)" if node["distinct_dates"] else "")
        if t == "years_since_by_value":
            if fld == "step":
                return f"latest {node['value_column']}: the step between the two limits"
            side = "above the step" if fld == "max_years_above" else "at or below the step"
            return f"years since {node['column']}, when the latest {node['value_column']} is {side}"
        raise AssertionError(t)


KINDS = {
    "latest_value": Kind({"min": Bound("v", "at least", "min"), "max": Bound("v", "at most", "max")}),
    "age": Kind({"min": Bound("v", "at least", "min"), "max": Bound("v", "at most", "max")}),
    "years_since": Kind({"max_years": Bound("v", "less than", "max")}),
    "lab_uln": Kind({"max_uln": Bound("v", "at most", "max")}),
    "creatinine_clearance": Kind({"min_crcl": Bound("v", "at least", "min")}),
    "count": Kind({"at_least": Bound("v", "at least", "min"), "at_most": Bound("v", "at most", "max")}),
    "years_since_by_value": Kind({"step": Bound("w", "above", "max"),
                                  "max_years_above": Bound("v", "less than", "max"),
                                  "max_years_at_or_below": Bound("v", "less than", "max")}),
}
# Pairs of bounds that msfeas refuses crossed (min above max is a design error, exit 2), and the
# node types that refuse both of them none ("give min, max or both").
ORDERED = {"latest_value": ("min", "max"), "age": ("min", "max"), "count": ("at_least", "at_most")}
ONE_REQUIRED = {"age", "count"}


def _scale(node: Node, grid: str, values: dict[str, pl.Series]) -> Scale:
    t = node.type
    if t == "latest_value" or (t == "years_since_by_value" and grid == "w"):
        key = (node["table"], node["column"]) if t == "latest_value" else (node["value_table"], node["value_column"])
        return VALUE_SCALES.get(key) or _data_scale(values[grid])
    return {"age": AGE, "years_since": YEARS, "years_since_by_value": YEARS, "lab_uln": ULN,
            "creatinine_clearance": CRCL, "count": COUNT}[t]
