"""The status of a criterion from value codes: the rules `workbench.js` mirrors line for line.

A value is stored as its place among a slider's grid points (see the package's docstring);
every comparison a node makes with a grid point follows from that code alone.
"""

from __future__ import annotations

import numpy as np
import polars as pl

PID = "patient_id"
STATUS = ("pass", "fail", "unknown", "screening")
PASS, FAIL, UNKNOWN, SCREENING = range(4)
CODE = {s: i for i, s in enumerate(STATUS)}


def codes(values: pl.Series, grid: list[float]) -> np.ndarray:
    """2 * #(G < v) + (v in G); -1 for a missing value. G sorted ascending."""
    g = np.asarray(grid, dtype=np.float64)
    v = values.cast(pl.Float64).to_numpy()  # a missing value is NaN here
    below = np.searchsorted(g, v, side="left")
    out = 2 * below + (np.searchsorted(g, v, side="right") - below)
    out[np.isnan(v)] = -1
    return out.astype(np.int64, copy=False)


def ge(c: int, i: int) -> bool:
    """v >= G[i] for the value of code c."""
    return i < (c >> 1) + (c & 1)


def le(c: int, i: int) -> bool:
    """v <= G[i]."""
    return i >= (c >> 1)


def leaf_status(kind: str, t: tuple, idx: dict[str, int | None], otherwise: int = FAIL) -> int:
    """A slidable node's status from its value codes `t` and its bounds as grid indices (None: no bound).

    The same rules as `to_polars` (and `workbench.js`, which mirrors this function).
    """
    if kind in ("latest_value", "age", "count"):
        (c,) = t
        if c < 0:
            return UNKNOWN
        lo, hi = (idx["min"], idx["max"]) if kind != "count" else (idx["at_least"], idx["at_most"])
        ok = (lo is None or ge(c, lo)) and (hi is None or le(c, hi))
        return PASS if ok else (otherwise if kind == "count" else FAIL)
    if kind == "lab_uln":
        (c,) = t
        if c < 0:
            return UNKNOWN
        return FAIL if not le(c, idx["max_uln"]) else PASS
    if kind == "years_since":
        c, fallback = t
        if c < 0:
            return UNKNOWN
        below = not ge(c, idx["max_years"])
        if not fallback:
            return PASS if below else FAIL
        return UNKNOWN if below else FAIL
    if kind == "creatinine_clearance":
        form, a, b = t
        lo = idx["min_crcl"]
        if form == 0:
            return UNKNOWN
        if form == 1:
            return FAIL if not ge(a, lo) else PASS
        if not ge(a, lo):  # unknown sex: the male value below fails, the female one at or above passes
            return FAIL
        return PASS if ge(b, lo) else UNKNOWN
    if kind == "years_since_by_value":
        c, fallback, w = t
        if c < 0:
            return UNKNOWN
        above, below, step = idx["max_years_above"], idx["max_years_at_or_below"], idx["step"]
        lo, hi = min(above, below), max(above, below)
        if w >= 0:
            limit = above if not le(w, step) else below
            short = not ge(c, limit)
            return (PASS if short else FAIL) if not fallback else (UNKNOWN if short else FAIL)
        if not fallback:
            return PASS if not ge(c, lo) else FAIL if ge(c, hi) else UNKNOWN
        return FAIL if ge(c, hi) else UNKNOWN
    raise AssertionError(kind)


def combine(op: str, parts: list[np.ndarray]) -> np.ndarray:
    """all / any / not on status codes, three-valued as in `to_polars._combine` and `_not`."""
    if op == "not":
        s = parts[0]
        return np.where(s == PASS, FAIL, np.where(s == FAIL, PASS, UNKNOWN)).astype(np.int8)
    first, last = (FAIL, PASS) if op == "all" else (PASS, FAIL)
    stack = np.stack(parts)
    return np.where((stack == first).any(axis=0), first,
                    np.where((stack == UNKNOWN).any(axis=0), UNKNOWN, last)).astype(np.int8)


def bound_index(bound: dict, positions: dict[int, int], sliders: list[dict]) -> int | None:
    if "fixed" in bound:
        return bound["fixed"]
    p = positions[bound["slider"]]
    if "idx" in bound:
        return bound["idx"][p]
    return None if sliders[bound["slider"]]["labels"][p] == "none" else p - bound["offset"]


def tree_status(tree: dict, columns: list, positions: dict[int, int], sliders: list[dict],
                rows: dict | None = None) -> np.ndarray:
    """Status codes of a criterion tree per patient (or per row of `rows`: column index -> key array)."""
    op = tree["op"]
    if op in ("all", "any", "not"):
        return combine(op, [tree_status(ch, columns, positions, sliders, rows) for ch in tree["of"]])
    col = columns[tree["col"]]
    keys = col.keys if rows is None else rows[tree["col"]]
    if op == "col":
        table = np.asarray(col.entries, dtype=np.int8)
    else:
        idx = {fld: bound_index(bd, positions, sliders) for fld, bd in tree["bounds"].items()}
        table = np.array([leaf_status(tree["kind"], e, idx, tree.get("otherwise", FAIL)) for e in col.entries],
                         dtype=np.int8)
    return table[keys]
