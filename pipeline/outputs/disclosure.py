"""Shareable counts: site_counts.csv and summary_public.json, with small-cell suppression.

Counts leave the registry (to a sponsor, a steering committee), so a small count
must not single out patients. A count from 1 to `min_cell - 1` is shown as
`<{min_cell}` (primary suppression). Because the table carries its own totals (a
site's population is the sum of its three statuses; the totals row is the sum of the
sites), one hidden cell in a row or column could be recovered by subtraction; so
further cells are hidden (complementary suppression, shown as `*`) until no hidden
cell is determined by the table's linear relations. That is checked exactly: a cell
is determined iff every solution of the relations, with the visible cells fixed,
gives it the same value, i.e. its coordinate vanishes on the null space of the
hidden cells' coefficient matrix.

The table is small (sites x 4), so the loop below runs over cells, never patients.

    >>> import numpy as np
    >>> suppress(np.array([[10, 2, 3, 5], [10, 1, 4, 5]]), 5)[0].tolist()
    [[0, 1, 1, 0], [0, 1, 1, 0], [0, 1, 2, 0]]
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from pipeline.core.files import write_csv, write_json
from pipeline.outputs.tables import STATUSES

VISIBLE, PRIMARY, COMPLEMENT = 0, 1, 2
COLUMNS = ("population", *STATUSES)


def relations(n_rows: int) -> np.ndarray:
    """The linear relations of an (n_rows + totals) x 4 table, flattened row-major.

    Row r: population = eligible + possible + ineligible. Column c: total = sum of rows.
    """
    m, k = n_rows + 1, len(COLUMNS)
    eqs = []
    for r in range(m):
        e = np.zeros((m, k))
        e[r, 0], e[r, 1:] = 1, -1
        eqs.append(e.ravel())
    for c in range(k):
        e = np.zeros((m, k))
        e[:n_rows, c], e[n_rows, c] = 1, -1
        eqs.append(e.ravel())
    return np.array(eqs)


def determined(a: np.ndarray, hidden: np.ndarray) -> np.ndarray:
    """Indices of hidden cells whose value follows from the relations and the visible cells."""
    idx = np.flatnonzero(hidden)
    if idx.size == 0:
        return idx
    sub = a[:, idx]
    _, s, vt = np.linalg.svd(sub)
    rank = int((s > 1e-9).sum())
    null = vt[rank:]  # basis of the null space of `sub`, one row per direction
    if null.shape[0] == 0:
        return idx
    free = np.abs(null).max(axis=0) > 1e-9
    return idx[~free]


def suppress(values: np.ndarray, min_cell: int) -> tuple[np.ndarray, np.ndarray]:
    """Mark cells of a sites x (population, eligible, possible, ineligible) table.

    `values` has no totals row; it is added. Returns (marks, table with totals), where
    marks are VISIBLE, PRIMARY or COMPLEMENT per cell.
    """
    values = np.asarray(values, dtype=np.int64).reshape(-1, len(COLUMNS))
    table = np.vstack([values, values.sum(axis=0, keepdims=True)])
    marks = np.where((table >= 1) & (table < min_cell), PRIMARY, VISIBLE)
    a = relations(values.shape[0])
    flat_vals = table.ravel()
    n_cols = len(COLUMNS)
    while True:
        flat = marks.ravel()
        stuck = determined(a, flat != VISIBLE)
        if stuck.size == 0:
            return marks, table
        # Candidates: visible cells sharing a relation with a determined cell. Take the
        # one that leaves the fewest cells determined; then a non-zero, smallest value
        # first, so that as little as possible is hidden and a hidden 0 is a last resort.
        related = np.abs(a[:, stuck]).max(axis=1) > 0
        touching = np.abs(a[related]).max(axis=0) > 0
        pool = np.flatnonzero(touching & (flat == VISIBLE))
        if pool.size == 0:  # cannot happen for this table shape; hide every visible cell rather than leak
            marks[marks == VISIBLE] = COMPLEMENT
            continue

        def cost(j: int) -> tuple:
            trial = flat != VISIBLE
            trial[j] = True
            return (determined(a, trial).size, flat_vals[j] == 0, flat_vals[j], j)

        best = min(pool, key=cost)
        marks[divmod(int(best), n_cols)] = COMPLEMENT


def shown(value: int, mark: int, min_cell: int) -> str:
    return {VISIBLE: str(int(value)), PRIMARY: f"<{min_cell}", COMPLEMENT: "*"}[int(mark)]


def site_counts(by_site: dict[str, dict[str, int]], min_cell: int) -> tuple[pl.DataFrame, dict]:
    """site_counts.csv (strings, suppressed) and the suppressed totals, from `summary.json` `by_site`."""
    sites = list(by_site)
    values = np.array([[sum(by_site[s].values()), *(by_site[s][k] for k in STATUSES)] for s in sites],
                      dtype=np.int64).reshape(-1, len(COLUMNS))
    marks, table = suppress(values, min_cell)
    cells = [[shown(v, m, min_cell) for v, m in zip(row_v, row_m)] for row_v, row_m in zip(table, marks)]
    frame = pl.DataFrame({"site_id": sites, **{c: [row[i] for row in cells[:-1]] for i, c in enumerate(COLUMNS)}},
                         schema={"site_id": pl.Utf8, **{c: pl.Utf8 for c in COLUMNS}})
    totals = dict(zip(COLUMNS, cells[-1]))
    return frame, totals


def _json_cell(text: str) -> int | str:
    """A visible count as a number, a suppressed one as its marker."""
    return int(text) if text.isdigit() else text


def public_summary(summary: dict, sites: pl.DataFrame, totals: dict, min_cell: int) -> dict:
    """What may leave the registry: aggregate counts only, suppressed; no patient ids, no paths."""
    return {
        "trial": summary["trial"], "as_of": summary["as_of"], "version": summary["version"],
        "min_cell": min_cell,
        "legend": {f"<{min_cell}": f"a count from 1 to {min_cell - 1}",
                   "*": "hidden so that a small count cannot be recovered by subtraction"},
        "totals": {c: _json_cell(v) for c, v in totals.items()},
        "by_site": {row["site_id"]: {c: _json_cell(row[c]) for c in COLUMNS} for row in sites.iter_rows(named=True)},
    }


def write(summary: dict, folder: Path, min_cell: int) -> dict:
    sites, totals = site_counts(summary["by_site"], min_cell)
    if "expected_eligible" in summary:  # pipeline/outputs/expected.py: suppressed as the counts are
        from pipeline.outputs.expected import site_column
        sites = sites.with_columns(site_column(summary["expected_eligible"], sites, min_cell))
    write_csv(sites, folder / "site_counts.csv")
    public = public_summary(summary, sites, totals, min_cell)
    write_json(public, folder / "summary_public.json")
    return public
