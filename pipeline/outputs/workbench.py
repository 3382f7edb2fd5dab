"""The report as a workbench: the data behind report.html's criterion toggles and threshold sliders.

The page recomputes the funnel (eligible, possible, ineligible), the attrition table and the
per-site counts when a criterion is switched off or a threshold is moved. It holds no
patient rows: only what those counts need, grouped into distinct combinations with a count.

**What is embedded.** For each patient: the site, and per criterion either its status code
(a criterion that cannot be slid) or, for a criterion whose rule compares per-patient values
with a threshold, the *codes* of those values. A combination of site and codes that several
patients share is stored once with their number. No id, name, date of birth or date is held.

**Exactness by construction.** A slider offers a fixed list of positions (a grid at the
value's clinical resolution: EDSS 0.5, age 1 year, years 0.1, ratios to the ULN 0.01, ...,
plus the run's own value and the trial file's). A value v is stored as its place among the
grid points G of its node: code = 2 * #(G < v) + (1 if v is a grid point), computed here with
the same float comparison the engines make (the --set value is parsed with `float()`, as
`load.coerce` does, and SQL reads it through its shortest repr, as `to_sql.lit` writes it).
Every comparison the node makes with a grid point i then follows from the code alone:
v >= G[i] iff i < s + e, v <= G[i] iff i >= s (s = code // 2, e = code % 2). So every slider
position maps to the decision a run with that `--set` makes, not to an approximation. Values
outside the grid fall into its two ends, where every position decides them alike.

**Checked at build.** Each slidable criterion is recomputed here from the codes at the run's
own settings (`leaf_status`, the same rules as `workbench.js`) and compared with the run's
status of every patient; a criterion that does not reproduce exactly is embedded as a plain
status column (it can be toggled, not slid) and the page says so. The tests compare the
page's counts with real runs at other positions, on both engines.

**Size.** Columns are dictionary-coded (one or two bytes per value), the rows sorted, the
counts written as LEB128 varints, the whole deflated (raw DEFLATE, inflated by the page's
own script: nothing is fetched) and base64-encoded.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import json
import zlib
from dataclasses import dataclass, field
from decimal import Decimal
from importlib import resources
from typing import Any, Callable, Iterator

import numpy as np
import polars as pl

from pipeline.criteria import Trial
from pipeline.criteria.load import Criterion
from pipeline.criteria.nodes import Node

PID = "patient_id"
STATUS = ("pass", "fail", "unknown", "screening")
PASS, FAIL, UNKNOWN, SCREENING = range(4)
CODE = {s: i for i, s in enumerate(STATUS)}

# ---------------------------------------------------------------- slider scales


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


# ---------------------------------------------------------------- codes and the rules on codes

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


# ---------------------------------------------------------------- building

@dataclass
class _Column:
    name: str
    keys: np.ndarray  # one int64 key per patient
    entries: list  # key -> what the page reads (a status code, or a tuple of value codes)


@dataclass
class _Build:
    ev: pl.DataFrame
    trial: Trial
    tables: dict[str, pl.DataFrame]
    absent: set[str]
    as_of: dt.date
    columns: list[_Column] = field(default_factory=list)
    sliders: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    _extra: pl.DataFrame | None = None
    parts: Callable[[], Iterator[dict[str, pl.DataFrame]]] | None = None  # a sharded export's shards, in turn

    def column(self, name: str, keys: np.ndarray, entries: list) -> int:
        # int64 always: an export of no patient gives empty columns of no particular type
        self.columns.append(_Column(name, np.asarray(keys, dtype=np.int64), entries))
        return len(self.columns) - 1

    def status_column(self, name: str, statuses: pl.Series) -> int:
        keys = statuses.replace_strict(CODE, return_dtype=pl.Int64).to_numpy()
        return self.column(name, keys, list(range(len(STATUS))))

    @property
    def in_spark(self) -> bool:
        """The Spark engine's tables are Spark DataFrames: the workbench asks Spark, not Polars."""
        return not isinstance(self.tables["patients"], pl.DataFrame)

    def patients(self) -> pl.DataFrame:
        """sex, birth date and the patients' dates, in the evaluation's order."""
        if self._extra is None:
            patients = self.tables["patients"]
            if self.in_spark:  # one row per patient, like the evaluation itself
                from pipeline.engines.spark.frames import to_polars

                patients = to_polars(patients)
            self._extra = self.ev.select(PID).join(patients, on=PID, how="left", maintain_order="left")
        return self._extra

    def node_frame(self, node: Node) -> pl.DataFrame:
        """A part of a rule judged on its own by the run's engine: patient_id, status, evidence."""
        if self.in_spark:
            from pipeline.criteria.load import Criterion
            from pipeline.engines import spark_engine

            part = Criterion(id="_part", kind="inclusion", text="", rule={}, parameters={}, param_types={}, node=node)
            return spark_engine.evaluate(self.tables, [part], self.as_of)["_part"]
        from pipeline.criteria.to_polars import Ctx, compile_node

        def judge(tables: dict[str, pl.DataFrame]) -> pl.DataFrame:
            return compile_node(node, Ctx({k: v.lazy() for k, v in tables.items()}, self.as_of)).collect()

        if self.parts is not None:  # per patient, so shard by shard (pipeline/inputs/shards.py)
            return pl.concat([judge(tables) for tables in self.parts()], how="vertical_relaxed")
        return judge(self.tables)

    def evidence(self, cid: str, name: str) -> pl.Series:
        return self.ev[f"{cid}__{name}"]

    def subtree(self, node: Node) -> pl.Series:
        """The statuses of a part of a rule that cannot be slid, from the run's engine."""
        got = self.node_frame(node)
        return self.ev.select(PID).join(got.select(PID, "status"), on=PID, how="left",
                                        maintain_order="left")["status"]


def _known(b: _Build, column: str | None) -> np.ndarray:
    if column is None:
        return np.zeros(b.ev.height, dtype=bool)
    c = b.patients()[column]
    return (c.is_not_null() & (c <= b.as_of)).fill_null(False).to_numpy()


def _values(b: _Build, cid: str, node: Node) -> dict[str, pl.Series]:
    """The per-patient values a slidable node compares (grid name -> values), from the run's evidence."""
    t = node.type
    if t in ("latest_value", "age", "years_since", "lab_uln"):
        return {"v": b.evidence(cid, node["as"])}
    if t == "years_since_by_value":
        return {"v": b.evidence(cid, node["as"]), "w": b.evidence(cid, node["value_as"])}
    if t == "creatinine_clearance":
        return {"v": _crcl_values(b, cid, node)}
    if t == "count":
        if node["as"]:
            return {"v": b.evidence(cid, node["as"])}
        named = copy.copy(node)
        named.args = {**node.args, "as": "_n"}
        got = b.node_frame(named)
        return {"v": b.ev.select(PID).join(got.select(PID, "_n"), on=PID, how="left", maintain_order="left")["_n"]}
    raise AssertionError(t)


def _crcl_values(b: _Build, cid: str, node: Node) -> pl.DataFrame:
    """The clearance as the engines compute it: the patient's own (sex known), else male and female."""
    from pipeline.criteria.polars_helpers import age_years

    f = pl.DataFrame({"sex": b.patients()["sex"], "birth_date": b.patients()["birth_date"],
                      "creat_mg_dl": b.evidence(cid, "creat_mg_dl"), "weight": b.evidence(cid, "weight"),
                      "crcl": b.evidence(cid, "crcl")})
    a = age_years(pl.col("birth_date"), b.as_of)
    male = (pl.lit(140, pl.Int64) - a).cast(pl.Float64) * pl.col("weight") / (pl.lit(72.0) * pl.col("creat_mg_dl"))
    return f.select(pl.col("sex").is_in(["F", "M"]).fill_null(False).alias("known"), "crcl",
                    male.alias("male"), (male * node["female_factor"]).alias("female"))


def _leaf_tuples(b: _Build, cid: str, node: Node, grids: dict[str, list[float]],
                 values: dict[str, Any]) -> tuple[np.ndarray, list[tuple]]:
    """Per patient a key, and the distinct value-code tuples (key order)."""
    t = node.type
    if t == "creatinine_clearance":
        f = values["v"]
        g = grids["v"]
        own, male, female = codes(f["crcl"], g), codes(f["male"], g), codes(f["female"], g)
        known = f["known"].to_numpy()
        form = np.where(male < 0, 0, np.where(known, 1, 2))
        comps = [form, np.where(form == 1, own, np.where(form == 2, male, -1)), np.where(form == 2, female, -1)]
    elif t == "years_since":
        c = codes(values["v"], grids["v"])
        comps = [c, np.where(c < 0, 0, ~_known(b, node["column"])).astype(np.int64)]
    elif t == "years_since_by_value":
        c = codes(values["v"], grids["v"])
        comps = [c, np.where(c < 0, 0, ~_known(b, node["column"])).astype(np.int64), codes(values["w"], grids["w"])]
    else:
        comps = [codes(values["v"], grids["v"])]
    return _pack(comps)


def _pack(comps: list[np.ndarray]) -> tuple[np.ndarray, list[tuple]]:
    """Per patient the rank of its tuple of codes among the distinct tuples, and those tuples in order.

    A tuple is a number in mixed radix (each code + 1, below its base); when the numbers are few
    enough to count (the usual case), the ranks come from a table of them, in linear time, rather
    than by sorting a million numbers for each column of the page."""
    key = np.zeros(len(comps[0]), dtype=np.int64)
    mult, radix = 1, []
    for c in comps:
        base = int(c.max(initial=0)) + 2
        key += (c + 1) * mult
        radix.append((mult, base))
        mult *= base
    if mult <= 1 << 22:
        present = np.bincount(key, minlength=mult) > 0
        uniq = np.flatnonzero(present)
        rank = (np.cumsum(present) - 1)[key]
    else:
        uniq, rank = np.unique(key, return_inverse=True)
    entries = [tuple(int(u) // m % b - 1 for m, b in radix) for u in uniq]
    return rank.astype(np.int64, copy=False), entries


def _uses(crit: Criterion) -> dict[str, list[tuple[Node, str]]]:
    """Parameter -> the (node, field) places it is used (where filters and sources included)."""
    out: dict[str, list[tuple[Node, str]]] = {}
    for n in crit.node.walk():
        for fld, param in n.params.items():
            out.setdefault(param, []).append((n, fld))
    return out


def _slidable(crit: Criterion) -> dict[str, list[tuple[Node, str]]]:
    """The parameters that are only ever a threshold of a slidable node."""
    out = {}
    for param, uses in _uses(crit).items():
        if all(n.type in KINDS and fld in KINDS[n.type].bounds for n, fld in uses):
            out[param] = uses
    return out


def _slider_positions(crit: Criterion, param: str, node: Node, fld: str,
                      values: dict) -> list[tuple[str, float | None]]:
    typ = crit.param_types[param]
    integer, nullable = typ.startswith("int"), typ.endswith("?")
    bound = KINDS[node.type].bounds[fld]
    pos = dict((v, t) for t, v in _positions(_scale(node, bound.grid, values), integer))
    current = crit.parameters[param]
    if current is not None:
        pos.setdefault(float(current), _label(current, integer))
    out = [(t, v) for v, t in sorted(pos.items())]
    if nullable:
        none = ("none", None)
        out = [none] + out if bound.edge == "min" else out + [none]
    return out


def _index(grid: list[float], value: float | None) -> int | None:
    return None if value is None else grid.index(float(value))


def _criterion(b: _Build, crit: Criterion) -> dict:
    cid = crit.id
    entry = {"id": cid, "kind": crit.kind, "text": crit.text, "sliders": [], "note": None}
    slidable = _slidable(crit)
    if set(crit.tables) & b.absent:
        if slidable:
            entry["note"] = "reads a table absent from this export: unknown for every patient, whatever the threshold"
        slidable = {}
    leaves = {id(n) for uses in slidable.values() for n, _ in uses}
    if not leaves:
        entry["tree"] = {"op": "col", "col": b.status_column(f"{cid}", b.ev[cid])}
        return entry

    n_cols, n_sliders = len(b.columns), len(b.sliders)
    # One slider per parameter, its positions from the first node that uses it.
    slider_of: dict[str, int] = {}
    node_values = {id(n): _values(b, cid, n) for n in crit.node.walk() if id(n) in leaves}
    for param, uses in slidable.items():
        node, fld = uses[0]
        positions = _slider_positions(crit, param, node, fld, node_values[id(node)])
        kind = KINDS[node.type].bounds[fld]
        current = crit.parameters[param]
        initial = next(i for i, (_, v) in enumerate(positions)
                       if (v is None and current is None) or (v is not None and current is not None
                                                               and v == float(current)))
        slider_of[param] = len(b.sliders)
        b.sliders.append({
            "id": f"{cid}.{param}", "criterion": cid, "param": param,
            "what": KINDS[node.type].what(node, fld), "phrase": kind.phrase, "edge": kind.edge,
            "unit": _scale(node, kind.grid, node_values[id(node)]).unit,
            "labels": [t for t, _ in positions], "values": [v for _, v in positions], "initial": initial,
            "overridden": param in crit.overridden})
        entry["sliders"].append(slider_of[param])

    def build(node: Node) -> dict:
        if id(node) in leaves:
            return leaf(node)
        if node.type in ("all", "any", "not") and any(id(n) in leaves for n in node.walk()):
            return {"op": node.type, "of": [build(ch) for ch in node.children]}
        return {"op": "col", "col": b.status_column(f"{cid}:{node.path}", b.subtree(node))}

    def leaf(node: Node) -> dict:
        kind = KINDS[node.type]
        values = node_values[id(node)]
        grids: dict[str, set[float]] = {}
        for fld, bound in kind.bounds.items():
            g = grids.setdefault(bound.grid, set())
            param = node.params.get(fld)
            if param in slider_of:
                g.update(v for v in b.sliders[slider_of[param]]["values"] if v is not None)
            elif node[fld] is not None:
                g.add(float(node[fld]))
        sorted_grids = {k: sorted(v) for k, v in grids.items()}
        bounds = {}
        for fld, bound in kind.bounds.items():
            g, param = sorted_grids[bound.grid], node.params.get(fld)
            if param in slider_of:
                s = b.sliders[slider_of[param]]
                idx = [_index(g, v) for v in s["values"]]
                offset = {p - i for p, i in enumerate(idx) if i is not None}
                if len(offset) == 1 and idx.count(None) == s["values"].count(None):
                    # The usual case: the node's grid is the slider's positions (index = position - offset).
                    bounds[fld] = {"slider": slider_of[param], "offset": offset.pop()}
                else:
                    bounds[fld] = {"slider": slider_of[param], "idx": idx}
            else:
                bounds[fld] = {"fixed": _index(g, node[fld]), "value": node[fld]}
        keys, entries = _leaf_tuples(b, cid, node, sorted_grids, values)
        out = {"op": "leaf", "kind": node.type, "col": b.column(f"{cid}:{node.path}", keys, entries),
               "bounds": bounds}
        if node.type == "count":
            out["otherwise"] = CODE[node["otherwise"]]
        if node.type in ORDERED:
            lo, hi = ORDERED[node.type]
            out["ordered"] = [lo, hi]
            out["required"] = node.type in ONE_REQUIRED
        return out

    tree = build(crit.node)
    # The check: the codes at the run's own settings give the run's status, patient by patient.
    got = tree_status(tree, b.columns, {i: s["initial"] for i, s in enumerate(b.sliders)}, b.sliders)
    want = b.ev[cid].replace_strict(CODE, return_dtype=pl.Int8).to_numpy()
    if not np.array_equal(got, want):
        del b.columns[n_cols:], b.sliders[n_sliders:]
        entry["sliders"] = []
        entry["note"] = "its thresholds cannot be slid here: the page could not reproduce the run's statuses exactly"
        b.notes.append(f"{cid}: {int((got != want).sum())} statuses differ; embedded as a status column")
        entry["tree"] = {"op": "col", "col": b.status_column(f"{cid}", b.ev[cid])}
        return entry
    entry["tree"] = tree
    return entry


@dataclass
class Part:
    """What one criterion adds to the page: its entry, its columns, its sliders and its notes.

    Indices in `entry` (columns, sliders) count from the part's own first column and slider, so
    that a part can be kept (a what-if re-run finds the parts of the criteria it did not change,
    pipeline/ops/results_cache.py) and placed again among other criteria's."""

    entry: dict
    columns: list[_Column]
    sliders: list[dict]
    notes: list[str]


def _shifted(entry: dict, columns: int, sliders: int) -> dict:
    """A copy of a criterion's entry with its column and slider indices moved by `columns`, `sliders`."""
    def tree(node: dict) -> dict:
        node = dict(node)
        if "col" in node:
            node["col"] += columns
        if "bounds" in node:
            node["bounds"] = {f: {**bd, "slider": bd["slider"] + sliders} if "slider" in bd else dict(bd)
                              for f, bd in node["bounds"].items()}
        if "of" in node:
            node["of"] = [tree(ch) for ch in node["of"]]
        return node
    return {**entry, "sliders": [j + sliders for j in entry["sliders"]], "tree": tree(entry["tree"])}


def _part(b: _Build, crit: Criterion) -> Part:
    """The criterion's part of the page, built from the run's evaluation (and tables, for subtrees)."""
    n_cols, n_sliders, n_notes = len(b.columns), len(b.sliders), len(b.notes)
    entry = _criterion(b, crit)
    part = Part(_shifted(entry, -n_cols, -n_sliders), b.columns[n_cols:], b.sliders[n_sliders:], b.notes[n_notes:])
    del b.columns[n_cols:], b.sliders[n_sliders:], b.notes[n_notes:]
    return part


def _place(b: _Build, part: Part) -> dict:
    entry = _shifted(part.entry, len(b.columns), len(b.sliders))
    b.columns += part.columns
    b.sliders += part.sliders
    b.notes += part.notes
    return entry


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


def _site_column(b: _Build) -> tuple[int, list[str]]:
    sites = sorted(b.ev["site_id"].unique().to_list())
    keys = b.ev["site_id"].replace_strict({s: i for i, s in enumerate(sites)}, return_dtype=pl.Int64).to_numpy()
    return b.column("site", keys, list(range(len(sites)))), sites


# ---------------------------------------------------------------- the page's payload

def _leb128(values: np.ndarray) -> bytes:
    """Unsigned LEB128 of each value (7 bits a byte, low first, high bit set on all but the last),
    vectorised: one pass per byte position (at most 10 for 64 bits), not one per value."""
    v = np.asarray(values, dtype=np.uint64)
    if not v.size:
        return b""
    n_bytes = np.ones(v.shape, dtype=np.int64)
    rest = v >> np.uint64(7)
    while rest.any():
        n_bytes += rest > 0
        rest >>= np.uint64(7)
    k = np.arange(int(n_bytes.max()))  # byte positions
    groups = ((v[:, None] >> (np.uint64(7) * k.astype(np.uint64))) & np.uint64(0x7F)).astype(np.uint8)
    groups |= np.where(k[None, :] < n_bytes[:, None] - 1, 0x80, 0).astype(np.uint8)  # more bytes follow
    return groups[k[None, :] < n_bytes[:, None]].tobytes()


def _words(columns: list[tuple[str, int]]) -> list[list[tuple[str, int]]]:
    """Columns (name, number of distinct keys 0 .. n-1), in turn, packed into as few 64-bit words as
    hold them: each takes the bits its largest key needs, the first most significant."""
    words: list[list[tuple[str, int]]] = [[]]
    used = 0
    for name, n in columns:
        bits = max(1, (n - 1).bit_length())
        if used + bits > 64:
            words.append([])
            used = 0
        words[-1].append((name, bits))
        used += bits
    return words


def packed_keys(columns: list[tuple[str, int]]) -> list[pl.Expr]:
    """Sort keys equivalent to sorting by `columns` (name, number of distinct keys 0 .. n-1) in turn,
    packed into as few 64-bit words as hold them (`_words`). One or two integer keys sort many
    times faster than twenty columns (1.3 s to 0.18 s for a million rows), and in the same order."""
    keys = []
    for word in _words(columns):
        key = pl.lit(0, pl.UInt64)
        for name, bits in word:
            key = key * pl.lit(1 << bits, pl.UInt64) + pl.col(name).cast(pl.UInt64)
        keys.append(key)
    return keys


def unpacked(columns: list[tuple[str, int]]) -> list[pl.Expr]:
    """The columns back from the words `packed_keys` made of them (named w0, w1, ...)."""
    out = []
    for j, word in enumerate(_words(columns)):
        shift = 0
        for name, bits in reversed(word):
            out.append((pl.col(f"w{j}") // pl.lit(1 << shift, pl.UInt64) % pl.lit(1 << bits, pl.UInt64))
                       .cast(pl.Int64).alias(name))
            shift += bits
    return out


def _encode(columns: list[_Column]) -> tuple[dict, dict]:
    """Distinct combinations with their count, column by column, deflated; and the row count."""
    frame = pl.DataFrame({f"c{i}": c.keys for i, c in enumerate(columns)})
    # Rows sorted by the columns of fewest distinct values first: long runs, which deflate well.
    # Grouped and sorted on the columns packed into one or two words, which is the same grouping
    # and the same order as on the columns themselves (the packing is exact): 1.5 to 1.0 s for ten
    # million rows of 23 columns, the same at a million.
    order = sorted(frame.columns, key=lambda c: (len(columns[int(c[1:])].entries), int(c[1:])))
    sizes = [(c, len(columns[int(c[1:])].entries)) for c in order]
    words = [f"w{j}" for j in range(len(_words(sizes)))]
    grouped = (frame.select([k.alias(w) for k, w in zip(packed_keys(sizes), words)])
               .group_by(words).len("n").sort(words)
               .select(*unpacked(sizes), "n"))
    raw = bytearray()
    widths = []
    for i, c in enumerate(columns):
        width = 1 if len(c.entries) <= 256 else 2
        widths.append(width)
        raw += grouped[f"c{i}"].to_numpy().astype("<u1" if width == 1 else "<u2").tobytes()
    raw += _leb128(grouped["n"].to_numpy())
    deflate = zlib.compressobj(6, zlib.DEFLATED, -15, 8)  # level 9: 5 % smaller, 15 times slower
    packed = deflate.compress(bytes(raw)) + deflate.flush()
    return ({"rows": grouped.height, "raw_bytes": len(raw), "widths": widths,
             "data": base64.b64encode(packed).decode("ascii")},
            {f"c{i}": grouped[f"c{i}"].to_numpy() for i in range(len(columns))} | {"n": grouped["n"].to_numpy()})


def decode(payload: dict) -> dict[str, np.ndarray]:
    """The rows of a payload as the page reads them (for tests): c0.. (dictionary indices) and n."""
    raw = zlib.decompress(base64.b64decode(payload["data"]), -15)
    assert len(raw) == payload["raw_bytes"]
    rows, out, pos = payload["rows"], {}, 0
    for i, width in enumerate(payload["widths"]):
        out[f"c{i}"] = np.frombuffer(raw, dtype="<u1" if width == 1 else "<u2", count=rows, offset=pos).astype(np.int64)
        pos += rows * width
    counts, v, shift = [], 0, 0
    for byte in raw[pos:]:
        v |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            counts.append(v)
            v, shift = 0, 0
    out["n"] = np.asarray(counts, dtype=np.int64)
    assert len(counts) == rows
    return out


def _command(opts, trial: Trial) -> dict:
    """The `msfeas run` line of this run, without --out and --set (the page adds those)."""
    args = ["msfeas", "run", "--input", str(opts.input), "--out", "RUN_DIR", "--as-of", opts.as_of.isoformat()]
    src = trial.source
    args += ["--trial", src.removeprefix("bundled trial ") if src.startswith("bundled trial ") else src]
    for key, value in (opts.dialect_overrides or {}).items():
        if value is not None:
            args += [f"--{key.replace('_', '-')}", str(value)]
    if opts.drug_lines:
        args += ["--drug-lines", str(opts.drug_lines)]
    if opts.max_reject != 0.05:
        args += ["--max-reject", f"{opts.max_reject * 100:g}%"]
    if opts.min_cell != 5:
        args += ["--min-cell", str(opts.min_cell)]
    if getattr(opts, "shareable", False):
        args += ["--shareable"]
    # Parameters this run changed that no slider carries: they stay as they were.
    kept = []
    for c in trial.criteria:
        for p in sorted(c.overridden):
            kept.append({"id": f"{c.id}.{p}", "label": _set_text(c.parameters[p], c.param_types[p])})
    return {"args": args, "kept": kept}


def _set_text(value: Any, typ: str) -> str:
    if value is None:
        return "none"
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return _label(value, typ.startswith("int")) if isinstance(value, (int, float)) else str(value)


def build(evaluation: pl.DataFrame, trial: Trial, tables: dict[str, pl.DataFrame], absent: list[str],
          as_of: dt.date, opts=None, shareable: bool = False, min_cell: int = 5,
          parts: Callable[[], Iterator[dict[str, pl.DataFrame]]] | None = None, kept=None) -> dict:
    """The workbench model for the report: `json` (the embedded payload) and plain facts for the template.

    `parts`: for a sharded export (pipeline/inputs/shards.py), its shards' tables in turn; `tables`
    then needs only the whole patients table. `kept`: where criteria's parts of the page are kept
    for a re-run on the same export (`load(criterion)` a `Part` or None, `store(criterion, part)`;
    pipeline/ops/results_cache.py).
    """
    b = _Build(evaluation, trial, tables, set(absent), as_of, parts=parts)
    site_col, sites = _site_column(b)
    criteria = []
    for c in trial.criteria:
        part = kept.load(c) if kept is not None else None
        if part is None:
            part = _part(b, c)
            if kept is not None:
                kept.store(c, part)
        criteria.append(_place(b, part))
    encoded, _ = _encode(b.columns)
    columns = [{"name": c.name, "dict": c.entries} for c in b.columns]
    command = _command(opts, trial) if opts is not None else {"args": ["msfeas", "run"], "kept": []}
    # Parameters changed for this run but carried by a slider: the slider says so (its --set stays).
    slid = {s["id"] for s in b.sliders}
    command["kept"] = [k for k in command["kept"] if k["id"] not in slid]
    sliders = [{k: v for k, v in s.items() if k != "values"} for s in b.sliders]
    payload = {
        "version": 1, "trial": trial.id, "as_of": as_of.isoformat(), "population": evaluation.height,
        "sites": sites, "site_col": site_col, "statuses": list(STATUS),
        "criteria": criteria, "sliders": sliders, "columns": columns, **encoded,
        "command": command, "shareable": bool(shareable), "min_cell": int(min_cell),
    }
    text = json.dumps(payload, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return {"json": text, "payload": payload, "notes": b.notes, "shareable": bool(shareable),
            "min_cell": int(min_cell), "n_sliders": len(b.sliders), "script": script()}


def script() -> str:
    text = resources.files("pipeline.outputs").joinpath("templates/workbench.js").read_text("utf-8")
    assert "</script" not in text.lower() and "<!--" not in text
    return text


def embed(text: str) -> str:
    """JSON made safe inside <script type="application/json">: no `<`, `>` or `&` as such."""
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


# ---------------------------------------------------------------- the page's arithmetic, in Python (for tests)

def recount(payload: dict, positions: dict[str, int] | None = None, off: set[str] | frozenset = frozenset()) -> dict:
    """The counts the page shows for slider positions (slider id -> position) and criteria left out.

    The same sums as `workbench.js` `compute`: population, eligible, possible, ineligible,
    by_site and attrition (as `outputs.attrition`, steps numbered over the criteria kept).
    """
    rows = decode(payload)
    pos = {i: s["initial"] for i, s in enumerate(payload["sliders"])}
    by_id = {s["id"]: i for i, s in enumerate(payload["sliders"])}
    for sid, p in (positions or {}).items():
        pos[by_id[sid]] = p
    cols = [_Column(c["name"], np.zeros(0, dtype=np.int64),
                    [tuple(e) if isinstance(e, list) else e for e in c["dict"]]) for c in payload["columns"]]
    keys = {i: rows[f"c{i}"] for i in range(len(cols))}
    kept = [c for c in payload["criteria"] if c["id"] not in off]
    status = (np.stack([tree_status(c["tree"], cols, pos, payload["sliders"], keys) for c in kept]) if kept
              else np.zeros((0, len(rows["n"]))))
    n = rows["n"]
    fail = status == FAIL
    any_fail = fail.any(axis=0)
    all_pass = np.isin(status, (PASS, SCREENING)).all(axis=0)
    overall = np.where(any_fail, 2, np.where(all_pass, 0, 1))
    totals = {s: int(n[overall == i].sum()) for i, s in enumerate(("eligible", "possible", "ineligible"))}
    site = keys[payload["site_col"]]
    by_site = {name: {s: int(n[(site == j) & (overall == i)].sum())
                      for i, s in enumerate(("eligible", "possible", "ineligible"))}
               for j, name in enumerate(payload["sites"])}
    attrition, cum, prev = [], np.zeros(len(n), dtype=bool), int(n.sum())
    n_fails = fail.sum(axis=0)
    for k, c in enumerate(kept):
        cum = cum | fail[k]
        remaining = int(n[~cum].sum())
        attrition.append({"step": k + 1, "criterion": c["id"],
                          **{f"n_{s}": int(n[status[k] == i].sum()) for i, s in enumerate(STATUS)},
                          "remaining": remaining, "excluded": prev - remaining,
                          "gain": int(n[fail[k] & (n_fails == 1)].sum())})
        prev = remaining
    return {"population": int(n.sum()), **totals, "by_site": by_site, "attrition": attrition}


def suppress_cells(values: list[int], relations: np.ndarray, min_cell: int,
                   fixed: dict[int, int] | None = None) -> list[int]:
    """`disclosure.suppress` over any linear relations, with cells decided elsewhere (`fixed`) kept
    and never chosen: the rule `workbench.js` applies to the site table and the attrition chain."""
    from pipeline.outputs.disclosure import COMPLEMENT, PRIMARY, VISIBLE, determined

    fixed = fixed or {}
    vals = np.asarray(values, dtype=np.int64)
    marks = np.array([fixed.get(j, PRIMARY if 1 <= v < min_cell else VISIBLE) for j, v in enumerate(vals)])
    free = np.array([j not in fixed for j in range(len(vals))])
    while True:
        stuck = determined(relations, marks != VISIBLE)
        if stuck.size == 0:
            return marks.tolist()
        related = np.abs(relations[:, stuck]).max(axis=1) > 0
        touching = np.abs(relations[related]).max(axis=0) > 0
        pool = np.flatnonzero(touching & (marks == VISIBLE) & free)
        if pool.size == 0:
            rest = (marks == VISIBLE) & free
            if not rest.any():
                return marks.tolist()
            marks[rest] = COMPLEMENT
            continue

        def cost(j: int) -> tuple:
            trial = marks != VISIBLE
            trial[j] = True
            return (determined(relations, trial).size, vals[j] == 0, vals[j], j)

        marks[min(pool, key=cost)] = COMPLEMENT


def chain_relations(k: int) -> np.ndarray:
    """The attrition chain as `workbench.js` lays it out: cells [P, I, e1..ek, r1..r(k-1)]."""
    n = 2 + k + max(k - 1, 0)
    eqs = []
    for i in range(1, k + 1):
        e = np.zeros(n)
        e[0 if i == 1 else 2 + k + i - 2] += 1
        e[2 + i - 1] -= 1
        if i == k:
            e[0] -= 1
            e[1] += 1
        else:
            e[2 + k + i - 1] -= 1
        eqs.append(e)
    return np.array(eqs).reshape(k, n)


def shareable_view(counts: dict, sites: list[str], min_cell: int) -> dict:
    """What a shareable page shows for `counts` (from `recount`): the text of every cell."""
    from pipeline.outputs.disclosure import PRIMARY, VISIBLE, relations, shown

    values = []
    for s in sites:
        v = counts["by_site"][s]
        values += [v["eligible"] + v["possible"] + v["ineligible"], v["eligible"], v["possible"], v["ineligible"]]
    values += [counts["population"], counts["eligible"], counts["possible"], counts["ineligible"]]
    site_marks = suppress_cells(values, relations(len(sites)), min_cell)
    attr = counts["attrition"]
    k = len(attr)
    fixed = {0: site_marks[len(sites) * 4], 1: site_marks[len(sites) * 4 + 3]}
    chain = [counts["population"], counts["ineligible"], *[a["excluded"] for a in attr],
             *[a["remaining"] for a in attr[:-1]]]
    chain_marks = suppress_cells(chain, chain_relations(k), min_cell, fixed) if k else [fixed[0], fixed[1]]
    remaining = [shown(v, m, min_cell) for v, m in zip(chain[2 + k:], chain_marks[2 + k:])]
    if k:
        last = attr[-1]["remaining"]
        mark = PRIMARY if 1 <= last < min_cell else VISIBLE if fixed[0] == fixed[1] == VISIBLE else 2
        remaining.append(shown(last, mark, min_cell))
    return {"site": [shown(v, m, min_cell) for v, m in zip(values, site_marks)],
            "excluded": [shown(v, m, min_cell) for v, m in zip(chain[2:2 + k], chain_marks[2:2 + k])],
            "remaining": remaining}
