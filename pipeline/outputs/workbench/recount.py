"""The page's arithmetic in Python, for the tests: the counts `workbench.js` shows for a state, and its suppression.
"""

from __future__ import annotations

import numpy as np

from pipeline.outputs.workbench.encoding import _Column, decode
from pipeline.outputs.workbench.rules import FAIL, PASS, SCREENING, STATUS, tree_status


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
