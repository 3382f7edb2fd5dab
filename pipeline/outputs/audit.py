"""The audit of a shareable table, and the suppression that passes it.

**What a reader knows.** A published table is a set of cells tied by linear relations (a
site's population is the sum of its three statuses; a total is the sum of the sites; in the
attrition chain, what remains after a step is what remained before it less what it
excluded). A shown count is fixed. `<N` says the count is one of 1..N-1. `*` says the count
is 0 or at least N, since every count 1..N-1 is shown as `<N`. Together these are integer
constraints, and a reader who solves them learns each hidden cell's *feasible set*.

**The rule (the audit).** A hidden cell is protected when its feasible set spans its
protection interval: a `<N` cell must remain able to be 1 and N-1 (its feasible minimum
is at most 1 and maximum at least N-1), and a `*` cell must not be fixed (two values at
least). What the `<N` marks imply on their own, whatever the numbers, is not asked of any
suppression (none could hide it): a `<N` total of two `<N` cells is at least 2, and each of
them at most N-2. So the interval of a `<N` cell is 1..N-1 narrowed to `structure_bounds`. `exact_audit` computes this with integer programming (SciPy's HiGHS `milp`), with
the `*` disjunction modelled by a binary per cell (x = 0, or N <= x <= M). This is the
audit of tau-ARGUS and of Hundepool et al., *Statistical Disclosure Control* (Wiley 2012),
section 4.3.4 ("interval disclosure"): the linear-determinacy check of `disclosure.determined`
misses it (`SITE01,408,<5,<5,400`: eligible + possible = 8 with both at most 4, so both are 4).

**Suppression that passes it.** After the primary and the linear complementary suppression,
`protect` hides further cells until a *sound check* passes, audit-driven and greedy as the
iterative methods of the agencies (Repsilber's hypercube method in tau-ARGUS/GHMITER picks,
per unprotected primary cell, the cheapest further cells of its hypercubes; here a failing
cell takes the smallest visible non-zero count that shares a relation with it, zeros last,
and the check is run again). The sound check is the audit on a *subset* of the reader's
feasible region: each `*` cell on its own side (0 stays 0, a count of at least N stays at
least N), which is convex; a cell that passes there passes for the reader, whose region is
larger. It is solved as a linear program whose optimal vertices must be integral to count
(an integral vertex is a feasible integer point, so the witness is real); the relations of
these tables are network matrices (totally unimodular), so vertices are integral and nothing
is lost. `workbench.js` runs the same check with its own simplex, so the page's suppression of
each state is the one computed here (`linear_program` is the same algorithm in Python).

A `*` cell whose count is 0 cannot move on its side, so it is checked apart: it is not fixed
when it can reach N with the other cells on their sides (one more linear program). A zero that
is a part of a `<N` total could only be 0 if hidden: it stays shown (`structural_zeros`).

Before any shareable output is written, `exact_audit` runs on what will be published (with the
reader's full region); a failure after `protect` is a bug: `DisclosureError` (exit 70) names the
cell, never a silent release.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

VISIBLE, PRIMARY, COMPLEMENT = 0, 1, 2
EPS = 1e-7
POOL = 16  # candidates weighed per round of the linear suppression (workbench.js: the same)


class DisclosureError(Exception):
    """A shareable table would disclose or narrow a hidden count: a bug, exit 70."""


@dataclass
class Finding:
    cell: str
    mark: int
    value: int
    low: int
    high: int
    problem: str

    def __str__(self) -> str:
        shown = "<N" if self.mark == PRIMARY else "*"
        return f"{self.cell} ({shown}, count {self.value}): {self.problem}, feasible {self.low}..{self.high}"


def upper_bound(values, min_cell: int) -> int:
    """A bound above every count of the table (the audit's region may stop there: a smaller region
    than the reader's only makes the audit stricter)."""
    return int(2 * max([int(v) for v in values] + [0]) + 2 * min_cell + 10)


def _system(values, marks, relations):
    """The hidden cells and their relations with the visible cells moved to the right-hand side."""
    values = np.asarray(values, dtype=np.int64)
    marks = np.asarray(marks)
    a = np.asarray(relations, dtype=float).reshape(-1, values.size)
    hidden = np.flatnonzero(marks != VISIBLE)
    vis = np.flatnonzero(marks == VISIBLE)
    rhs = -(a[:, vis] @ values[vis].astype(float)) if vis.size else np.zeros(a.shape[0])
    sub = a[:, hidden]
    keep = np.abs(sub).max(axis=1) > 0 if hidden.size else np.zeros(a.shape[0], bool)
    # A relation with no hidden cell must hold among the visible ones (it does, they are true counts).
    return hidden, sub[keep], rhs[keep]


_BOUNDS: dict[tuple, tuple[dict[int, int], dict[int, int]]] = {}


def structure_bounds(marks, relations, min_cell: int) -> tuple[dict[int, int], dict[int, int]]:
    """`_structure_bounds`, kept per (`<N` cells, relations, N): they depend on nothing else, and
    the suppression asks for them at every round."""
    marks = np.asarray(marks)
    a = np.asarray(relations, dtype=float).reshape(-1, marks.size)
    key = (tuple(np.flatnonzero(marks == PRIMARY)), marks.size, a.tobytes(), int(min_cell))
    if key not in _BOUNDS:
        if len(_BOUNDS) > 256:
            _BOUNDS.clear()
        _BOUNDS[key] = _structure_bounds(np.where(marks == PRIMARY, PRIMARY, VISIBLE), a, min_cell)
    return _BOUNDS[key]


def _structure_bounds(marks, relations, min_cell: int) -> tuple[dict[int, int], dict[int, int]]:
    """Per `<N` cell, the range the marks alone imply: every `<N` cell in 1..N-1, every other cell
    (shown or not) free from 0 up, except the parts of a `<N` total, 0 unless `<N`; a linear program (the relations are network matrices, so its
    optimal vertices are integral)."""
    marks = np.asarray(marks)
    a = np.asarray(relations, dtype=float).reshape(-1, marks.size)
    big = 1e6
    lo = np.where(marks == PRIMARY, 1.0, 0.0)
    hi = np.where(marks == PRIMARY, float(min_cell - 1), big)
    for row in a:  # a part of a `<N` total that is not `<N` itself is 0, whatever the numbers
        nz = np.flatnonzero(row)
        for t in nz:
            others = [j for j in nz if j != t]
            if marks[t] == PRIMARY and others and all(np.sign(row[j]) == -np.sign(row[t]) for j in others):
                for j in others:
                    if marks[j] != PRIMARY:
                        hi[j] = 0
    lows, highs = {}, {}
    for j in np.flatnonzero(marks == PRIMARY):
        c = np.zeros(marks.size)
        c[j] = 1
        xmin, xmax = linear_program(c, a, np.zeros(a.shape[0]), lo, hi), linear_program(-c, a, np.zeros(a.shape[0]), lo, hi)
        lows[int(j)] = int(np.ceil(xmin[j] - EPS)) if xmin is not None else 1
        highs[int(j)] = int(np.floor(xmax[j] + EPS)) if xmax is not None else min_cell - 1
    return lows, highs


def exact_audit(values, marks, relations, min_cell: int, names=None) -> list[Finding]:
    """Hidden cells whose feasible set, for a reader of the published table, is too narrow.

    Integer programming over every published number: visible cells fixed, `<N` in 1..N-1,
    `*` in {0} or N..M, all relations. A `<N` cell fails unless 1 and N-1 are both feasible;
    a `*` cell fails when fixed.
    """
    from scipy.optimize import Bounds, LinearConstraint, milp

    values = np.asarray(values, dtype=np.int64)
    marks = np.asarray(marks)
    names = names or [f"cell {j}" for j in range(values.size)]
    hidden, a, b = _system(values, marks, relations)
    h = hidden.size
    if h == 0:
        return []
    big = upper_bound(values, min_cell)
    stars = [i for i, j in enumerate(hidden) if marks[j] == COMPLEMENT]
    n = h + len(stars)  # x (hidden cells), then a binary per `*` cell: 1 when it is at least N
    lo, hi = np.zeros(n), np.zeros(n)
    for i, j in enumerate(hidden):
        lo[i], hi[i] = (1, min_cell - 1) if marks[j] == PRIMARY else (0, big)
    lo[h:], hi[h:] = 0, 1
    rows, low_r, high_r = [], [], []
    for r in range(a.shape[0]):
        rows.append(np.concatenate([a[r], np.zeros(len(stars))]))
        low_r.append(b[r])
        high_r.append(b[r])
    for s, i in enumerate(stars):  # x >= N z and x <= M z
        e = np.zeros(n)
        e[i], e[h + s] = 1, -min_cell
        rows.append(e), low_r.append(0), high_r.append(np.inf)
        e = np.zeros(n)
        e[i], e[h + s] = 1, -big
        rows.append(e), low_r.append(-np.inf), high_r.append(0)
    cons = [LinearConstraint(np.array(rows), low_r, high_r)] if rows else []
    integrality = np.ones(n)

    def solve(i: int, sign: float, fix: int | None = None):
        c = np.zeros(n)
        c[i] = sign
        lb, ub = lo.copy(), hi.copy()
        if fix is not None:
            lb[i] = ub[i] = fix
        res = milp(c, constraints=cons, integrality=integrality, bounds=Bounds(lb, ub))
        if res.status == 2:  # infeasible
            return None
        if res.status != 0:
            raise DisclosureError(f"the audit's integer program failed on {names[hidden[i]]}: {res.message}")
        return res.x

    found = []
    lows, highs = structure_bounds(marks, relations, min_cell)
    seen: list[np.ndarray] = []  # integer solutions found so far: feasible points for every cell
    for i, j in enumerate(hidden):
        if marks[j] == PRIMARY:
            if any(w[i] <= max(1, lows[j]) for w in seen) and any(w[i] >= min(min_cell - 1, highs[j]) for w in seen):
                continue
        elif len({int(w[i]) for w in seen}) >= 2:
            continue
        xmin, xmax = solve(i, 1.0), solve(i, -1.0)
        seen += [np.round(x[:h]).astype(np.int64) for x in (xmin, xmax) if x is not None]
        if xmin is None or xmax is None:
            raise DisclosureError(f"the audit found the published table inconsistent at {names[j]}")
        low, high = int(round(xmin[i])), int(round(xmax[i]))
        if marks[j] == PRIMARY and (low > max(1, lows[j]) or high < min(min_cell - 1, highs[j])):
            found.append(Finding(names[j], PRIMARY, int(values[j]), low, high,
                                 "narrowed" if low < high else "disclosed"))
        elif marks[j] == COMPLEMENT and low == high:
            found.append(Finding(names[j], COMPLEMENT, int(values[j]), low, high, "disclosed"))
    return found


# ---------------------------------------------------------------- the sound check and the suppression

def linear_program(c, a_eq, b_eq, lo, hi):
    """min c.x subject to a_eq x = b_eq, lo <= x <= hi: an optimal vertex, or None when infeasible.

    HiGHS's dual simplex (a vertex of the polytope), the role of `lp` in workbench.js.
    """
    from scipy.optimize import linprog

    res = linprog(c, A_eq=a_eq if len(b_eq) else None, b_eq=b_eq if len(b_eq) else None,
                  bounds=list(zip(lo, hi)), method="highs-ds")
    if res.status == 2:
        return None
    if res.status != 0:
        raise DisclosureError(f"the suppression's linear program failed: {res.message}")
    return res.x


def _integral(x) -> bool:
    return x is not None and bool(np.all(np.abs(x - np.round(x)) < EPS))


def structural_zeros(values, relations, min_cell: int) -> list[int]:
    """Zero cells that a `*` could never protect: a part of a sum whose total is `<N` (a relation
    t - sum(parts) = 0 with t shown as `<N`) is at most N-1, so hidden it could only be 0. They stay
    shown and are never chosen as complements."""
    vals = np.asarray(values, dtype=np.int64)
    a = np.asarray(relations, dtype=float).reshape(-1, vals.size)
    primary = (vals >= 1) & (vals < min_cell)
    out = set()
    for row in a:
        nz = np.flatnonzero(row)
        for t in nz:
            if not primary[t]:
                continue
            others = [j for j in nz if j != t]
            if others and all(np.sign(row[j]) == -np.sign(row[t]) for j in others):
                out.update(int(j) for j in others if vals[j] == 0)
    return sorted(out)


def failing(values, marks, relations, min_cell: int, lp=linear_program, first: bool = False) -> list[int]:
    """Hidden cells that the sound check cannot clear (indices into `values`); [] when all pass.
    `first`: stop at the first such cell (the suppression hides one more cell per round).

    Sound: a cell cleared here is protected for a reader: its witnesses are integral points of a
    subset of the reader's feasible region (each `*` on its own side). Every integral optimum found
    is kept as a witness for the cells after it, so most cells need no linear program of their own;
    which cells pass does not depend on that (where the optima are integral, as on these tables).
    """
    values = np.asarray(values, dtype=np.int64)
    marks = np.asarray(marks)
    hidden, a, b = _system(values, marks, relations)
    if hidden.size == 0:
        return []
    big = upper_bound(values, min_cell)
    lo, hi = np.zeros(hidden.size), np.zeros(hidden.size)
    for i, j in enumerate(hidden):
        if marks[j] == PRIMARY:
            lo[i], hi[i] = 1, min_cell - 1
        else:
            lo[i], hi[i] = (0, 0) if values[j] == 0 else (min_cell, big)
    out: list[int] = []
    lows, highs = structure_bounds(marks, relations, min_cell)
    witnesses: list[np.ndarray] = []

    def solve(i: int, sign: float):
        c = np.zeros(hidden.size)
        c[i] = sign
        x = lp(c, a, b, lo, hi)
        if not _integral(x):
            return None
        x = np.round(x).astype(np.int64)
        witnesses.append(x)
        return x

    for i, j in enumerate(hidden):
        ok = True
        if marks[j] == COMPLEMENT and values[j] == 0:  # can it be N or more, the others on their sides?
            c = np.zeros(hidden.size)
            c[i] = 1
            l2, h2 = lo.copy(), hi.copy()
            l2[i], h2[i] = min_cell, big
            ok = _integral(lp(c, a, b, l2, h2))
        elif marks[j] == PRIMARY:
            need_lo, need_hi = max(1, lows[j]), min(min_cell - 1, highs[j])
            has_lo = any(w[i] <= need_lo for w in witnesses)
            if not has_lo:
                x = solve(i, 1.0)
                has_lo = x is not None and x[i] <= need_lo
            has_hi = has_lo and any(w[i] >= need_hi for w in witnesses)
            if has_lo and not has_hi:
                x = solve(i, -1.0)
                has_hi = x is not None and x[i] >= need_hi
            ok = has_lo and has_hi
        else:
            seen = {int(w[i]) for w in witnesses}
            if len(seen) < 2:
                x = solve(i, 1.0)
                if x is None:
                    ok = False
                else:
                    seen.add(int(x[i]))
                    if len(seen) < 2:
                        x = solve(i, -1.0)
                        ok = x is not None and len(seen | {int(x[i])}) >= 2
        if not ok:
            out.append(int(j))
            if first:
                return out
    return out


def determined(a: np.ndarray, hidden: np.ndarray) -> np.ndarray:
    """Indices of hidden cells whose value follows from the relations and the visible cells: those
    that are zero in every vector of the null space of the hidden cells' columns. By row reduction
    to reduced echelon form (a pivot column whose row has no entry in a free column is determined),
    as `determined` in workbench.js; a singular value decomposition gives the same and is slower."""
    idx = np.flatnonzero(hidden)
    if idx.size == 0:
        return idx
    rows = np.array(a[:, idx], dtype=float)
    m, h = rows.shape
    pivot_row = np.full(h, -1)
    r = 0
    for j in range(h):
        if r >= m:
            break
        best = r + int(np.argmax(np.abs(rows[r:, j])))
        if abs(rows[best, j]) < 1e-9:
            continue
        rows[[r, best]] = rows[[best, r]]
        rows[r] /= rows[r, j]
        f = rows[:, j].copy()
        f[r] = 0
        f[np.abs(f) <= 1e-12] = 0
        rows -= np.outer(f, rows[r])
        pivot_row[j] = r
        r += 1
    free_cols = pivot_row < 0
    out = [idx[j] for j in range(h) if pivot_row[j] >= 0 and
           not (np.abs(rows[pivot_row[j], free_cols]) > 1e-9).any()]
    return np.array(out, dtype=idx.dtype)


def linear_suppression(values, relations, min_cell: int, fixed: dict[int, int] | None = None) -> np.ndarray:
    """Primary marks (1..N-1), then complementary until no hidden cell is determined by the relations.

    `fixed` (cell -> mark): cells decided elsewhere, kept and never chosen. The choice order of
    `disclosure.suppress`: the candidate leaving the fewest cells determined, then non-zero, smallest.
    """
    fixed = fixed or {}
    vals = np.asarray(values, dtype=np.int64)
    a = np.asarray(relations, dtype=float).reshape(-1, vals.size)
    marks = np.array([fixed.get(j, PRIMARY if 1 <= v < min_cell else VISIBLE) for j, v in enumerate(vals)])
    free = np.array([j not in fixed for j in range(len(vals))], dtype=bool)
    while True:
        stuck = determined(a, marks != VISIBLE)
        if stuck.size == 0:
            return marks
        related = np.abs(a[:, stuck]).max(axis=1) > 0
        touching = np.abs(a[related]).max(axis=0) > 0
        pool = np.flatnonzero(touching & (marks == VISIBLE) & free)
        if pool.size == 0:  # determined through hidden cells only: any visible cell may help
            pool = np.flatnonzero((marks == VISIBLE) & free)
        if pool.size == 0:
            return marks
        # The POOL smallest (non-zero first) are weighed: each weighing is a singular value decomposition.
        pool = sorted(pool.tolist(), key=lambda j: (vals[j] == 0, vals[j], j))[:POOL]

        def cost(j: int) -> tuple:
            trial = marks != VISIBLE
            trial[j] = True
            return (determined(a, trial).size, vals[j] == 0, vals[j], j)

        marks[min(pool, key=cost)] = COMPLEMENT


def protect(values, relations, min_cell: int, names=None, fixed: dict[int, int] | None = None,
            lp=linear_program, audit: bool = True) -> np.ndarray:
    """Marks (VISIBLE, PRIMARY, COMPLEMENT) per cell that pass the audit.

    Linear suppression first (never hiding a `structural_zeros` cell); then, while the sound check
    finds a cell it cannot clear (the first, in cell order), hide the
    visible cell with the smallest count (non-zero first, then the lowest index) among those sharing
    a relation with that cell (any visible cell if none does). Then the exact audit, which
    must pass: `DisclosureError` otherwise, naming the cell.
    """
    fixed = fixed or {}
    vals = np.asarray(values, dtype=np.int64)
    a = np.asarray(relations, dtype=float).reshape(-1, vals.size)
    key = (vals.tobytes(), a.tobytes(), a.shape, int(min_cell), tuple(sorted(fixed.items())))
    if key in _PROTECTED:  # the report's table for the run's own settings is site_counts.csv's
        marks = _PROTECTED[key].copy()
        if audit:
            check(vals, marks, a, min_cell, names, "the suppressed table")
        return marks
    fixed = {**{j: VISIBLE for j in structural_zeros(vals, a, min_cell)}, **fixed}
    marks = linear_suppression(vals, a, min_cell, fixed)
    free = np.array([j not in fixed for j in range(vals.size)], dtype=bool)
    while True:
        bad = failing(vals, marks, a, min_cell, lp, first=True)
        if not bad:
            break
        related = np.abs(a[:, bad]).max(axis=1) > 0
        touching = np.abs(a[related]).max(axis=0) > 0
        pool = np.flatnonzero(touching & (marks == VISIBLE) & free)
        if pool.size == 0:
            pool = np.flatnonzero((marks == VISIBLE) & free)
        if pool.size == 0:
            break  # nothing left to hide: the exact audit below decides
        marks[min(pool, key=lambda j: (vals[j] == 0, vals[j], j))] = COMPLEMENT
    if len(_PROTECTED) > 64:
        _PROTECTED.clear()
    _PROTECTED[key] = marks.copy()
    if audit:
        check(vals, marks, a, min_cell, names, "the suppressed table")
    return marks


_PROTECTED: dict[tuple, np.ndarray] = {}
_PASSED: set[tuple] = set()


def check(values, marks, relations, min_cell: int, names=None, what: str = "a shareable table") -> None:
    """The release gate: the exact audit must find nothing, else `DisclosureError` (exit 70). A table
    that passed once in this process (the same counts, marks and relations) is not solved again."""
    vals = np.asarray(values, dtype=np.int64)
    m = np.asarray(marks, dtype=np.int64)
    a = np.asarray(relations, dtype=float).reshape(-1, vals.size)
    key = (vals.tobytes(), m.tobytes(), a.tobytes(), a.shape, int(min_cell))
    if key in _PASSED:
        return
    found = exact_audit(values, marks, relations, min_cell, names)
    if not found:
        if len(_PASSED) > 256:
            _PASSED.clear()
        _PASSED.add(key)
    if found:
        more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
        raise DisclosureError(f"{what} would disclose a hidden count: {found[0]}{more}")
