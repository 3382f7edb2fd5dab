"""Shareable counts: site_counts.csv and summary_public.json, with small-cell suppression.

Counts leave the registry (to a sponsor, a steering committee), so a small count
must not single out patients. A count from 1 to `min_cell - 1` is shown as
`<{min_cell}` (primary suppression). Because the table carries its own totals (a
site's population is the sum of its three statuses; the totals row is the sum of the
sites), one hidden cell in a row or column could be recovered by subtraction; so
further cells are hidden (complementary suppression, shown as `*`) until no hidden
cell is determined by the table's linear relations, and then until the audit of
`pipeline/outputs/audit.py` passes: what the totals and the `<N` / `*` bounds imply
together (integer programming) must leave every `<N` cell able to be 1 and N-1, and
no hidden cell fixed. The exact audit runs again on the table before it is written.

A shareable report's workbench shows the same table for the run's own settings (the same
function, so the same cells), and for every other state its own table, protected the same way.

The table is small (sites x 4), so the loop below runs over cells, never patients.

    >>> import numpy as np
    >>> suppress(np.array([[10, 2, 3, 5], [10, 1, 4, 5]]), 5)[0].tolist()
    [[0, 1, 1, 0], [0, 1, 1, 0], [0, 1, 2, 0]]
    >>> suppress(np.array([[408, 4, 4, 400], [300, 10, 20, 270]]), 5)[0].tolist()[0]
    [0, 1, 1, 2]
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from pipeline.core.files import write_csv, write_json
from pipeline.outputs import audit
from pipeline.outputs.audit import COMPLEMENT, PRIMARY, VISIBLE, determined  # noqa: F401 - determined: re-exported
from pipeline.outputs.tables import STATUSES

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


def suppress(values: np.ndarray, min_cell: int, names: list[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Mark cells of a sites x (population, eligible, possible, ineligible) table.

    `values` has no totals row; it is added. Returns (marks, table with totals), where
    marks are VISIBLE, PRIMARY or COMPLEMENT per cell; the marks pass the audit.
    """
    values = np.asarray(values, dtype=np.int64).reshape(-1, len(COLUMNS))
    table = np.vstack([values, values.sum(axis=0, keepdims=True)])
    marks = audit.protect(table.ravel(), relations(values.shape[0]), min_cell, names)
    return marks.reshape(table.shape), table


def site_values(by_site: dict[str, dict[str, int]]) -> np.ndarray:
    """The sites x (population, eligible, possible, ineligible) table of `summary.json` `by_site`."""
    return np.array([[sum(by_site[s].values()), *(by_site[s][k] for k in STATUSES)] for s in by_site],
                    dtype=np.int64).reshape(-1, len(COLUMNS))


def shown(value: int, mark: int, min_cell: int) -> str:
    return {VISIBLE: str(int(value)), PRIMARY: f"<{min_cell}", COMPLEMENT: "*"}[int(mark)]


def site_counts(by_site: dict[str, dict[str, int]], min_cell: int) -> tuple[pl.DataFrame, dict]:
    """site_counts.csv (strings, suppressed) and the suppressed totals, from `summary.json` `by_site`."""
    sites = list(by_site)
    values = site_values(by_site)
    names = [f"site_counts.csv {s} {c}" for s in [*sites, "totals"] for c in COLUMNS]
    marks, table = suppress(values, min_cell, names)
    cells = [[shown(v, m, min_cell) for v, m in zip(row_v, row_m)] for row_v, row_m in zip(table, marks)]
    frame = pl.DataFrame({"site_id": sites, **{c: [row[i] for row in cells[:-1]] for i, c in enumerate(COLUMNS)}},
                         schema={"site_id": pl.Utf8, **{c: pl.Utf8 for c in COLUMNS}})
    totals = dict(zip(COLUMNS, cells[-1]))
    return frame, totals


def read_back(sites: pl.DataFrame, totals: dict, min_cell: int) -> tuple[np.ndarray, list[str]]:
    """The marks a reader sees in the published site table (sites then totals, row-major), and cell names."""
    rows = [[row[c] for c in COLUMNS] for row in sites.iter_rows(named=True)] + [[str(totals[c]) for c in COLUMNS]]
    marks = np.array([[PRIMARY if t == f"<{min_cell}" else COMPLEMENT if t == "*" else VISIBLE for t in r]
                      for r in rows])
    names = [f"{s} {c}" for s in [*sites["site_id"].to_list(), "totals"] for c in COLUMNS]
    return marks, names


def _json_cell(text: str) -> int | str:
    """A visible count as a number, a suppressed one as its marker."""
    return int(text) if text.isdigit() else text


def public_summary(summary: dict, sites: pl.DataFrame, totals: dict, min_cell: int) -> dict:
    """What may leave the registry: aggregate counts only, suppressed; no patient ids, no paths."""
    return {
        "trial": summary["trial"], "as_of": summary["as_of"], "version": summary["version"],
        "min_cell": min_cell,
        "legend": {f"<{min_cell}": f"a count from 1 to {min_cell - 1}",
                   "*": f"0 or at least {min_cell}, hidden so that no small count can be recovered or narrowed "
                        "from the others"},
        "totals": {c: _json_cell(v) for c, v in totals.items()},
        "by_site": {row["site_id"]: {c: _json_cell(row[c]) for c in COLUMNS} for row in sites.iter_rows(named=True)},
    }


def write(summary: dict, folder: Path, min_cell: int) -> dict:
    """site_counts.csv and summary_public.json, each audited (`audit.check`) before it is written."""
    sites, totals = site_counts(summary["by_site"], min_cell)
    values = site_values(summary["by_site"])
    table = np.vstack([values, values.sum(axis=0, keepdims=True)])
    marks, names = read_back(sites, totals, min_cell)
    # What leaves: the values behind each shown text must be the true counts, and the audit must pass.
    for t, v, m in zip([*np.ravel([[r[c] for c in COLUMNS] for r in sites.iter_rows(named=True)]),
                        *[totals[c] for c in COLUMNS]], table.ravel(), marks.ravel()):
        if m == VISIBLE and t != str(int(v)):
            raise audit.DisclosureError(f"site_counts.csv shows {t!r} for a count of {v}")
    audit.check(table.ravel(), marks.ravel(), relations(len(sites)), min_cell,
                [f"site_counts.csv {n}" for n in names], "site_counts.csv")
    if "expected_eligible" in summary:  # pipeline/outputs/expected.py: suppressed as the counts are
        from pipeline.outputs.expected import site_column
        sites = sites.with_columns(site_column(summary["expected_eligible"], sites, min_cell))
    write_csv(sites, folder / "site_counts.csv")
    public = public_summary(summary, sites, totals, min_cell)
    pmarks = np.array([[PRIMARY if v == f"<{min_cell}" else COMPLEMENT if v == "*" else VISIBLE
                        for v in row.values()] for row in [*public["by_site"].values(), public["totals"]]])
    if not np.array_equal(pmarks, marks):  # the same table as site_counts.csv, audited above, or audited again
        audit.check(table.ravel(), pmarks.ravel(), relations(len(sites)), min_cell,
                    [f"summary_public.json {n}" for n in names], "summary_public.json")
    write_json(public, folder / "summary_public.json")
    return public
