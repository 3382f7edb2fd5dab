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
    """The linear part of the rule (`audit.linear_suppression`), with cells decided elsewhere (`fixed`)
    kept and never chosen: `suppress` in `workbench.js`."""
    from pipeline.outputs.audit import linear_suppression

    return linear_suppression(values, relations, min_cell, fixed).tolist()


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
    """What a shareable page shows for `counts` (from `recount`): the text of every cell of the sites
    table (sites then "all sites"; population, eligible, possible, ineligible), protected as
    site_counts.csv is (`audit.protect`, `protect` in workbench.js). The attrition shows no counts."""
    from pipeline.outputs.audit import DisclosureError, protect
    from pipeline.outputs.disclosure import relations, shown

    values = []
    for s in sites:
        v = counts["by_site"][s]
        values += [v["eligible"] + v["possible"] + v["ineligible"], v["eligible"], v["possible"], v["ineligible"]]
    values += [counts["population"], counts["eligible"], counts["possible"], counts["ineligible"]]
    try:
        marks = protect(values, relations(len(sites)), min_cell)
    except DisclosureError:  # the page withholds a table that no suppression protects
        return {"site": ["–"] * len(values), "marks": None, "values": values}
    return {"site": [shown(v, m, min_cell) for v, m in zip(values, marks)], "marks": marks.tolist(), "values": values}
