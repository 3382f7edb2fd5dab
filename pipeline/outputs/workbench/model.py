"""Each criterion's part of the page: its status or value-code columns, its sliders, checked at build.
"""

from __future__ import annotations

import copy
import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np
import polars as pl

from pipeline.criteria import Trial
from pipeline.criteria.load import Criterion
from pipeline.criteria.nodes import Node
from pipeline.outputs.workbench.encoding import _Column
from pipeline.outputs.workbench.rules import (
    CODE,
    PID,
    STATUS,
    codes,
    tree_status,
)
from pipeline.outputs.workbench.scales import KINDS, ONE_REQUIRED, ORDERED, _label, _positions, _scale


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


def _site_column(b: _Build) -> tuple[int, list[str]]:
    sites = sorted(b.ev["site_id"].unique().to_list())
    keys = b.ev["site_id"].replace_strict({s: i for i, s in enumerate(sites)}, return_dtype=pl.Int64).to_numpy()
    return b.column("site", keys, list(range(len(sites)))), sites
