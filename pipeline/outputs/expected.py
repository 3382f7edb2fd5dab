"""The expected eligible in the run's files: the estimate is `pipeline/engines/expected.py` (the `--history`
stage uses it too); here, its column of site_counts.csv, suppressed as the counts are."""

from __future__ import annotations

import polars as pl

from pipeline.engines.expected import ASSUMPTIONS, DRAWS, SEED, criterion_rates, estimate, learnt_later  # noqa: F401


def site_column(expected: dict, sites: pl.DataFrame, min_cell: int) -> pl.Series:
    """site_counts.csv `expected_eligible`, suppressed as the counts are: a site's figure (rounded) is shown only
    when its eligible and possible counts are both shown; a rounded figure from 1 to min_cell - 1 is shown as
    `<min_cell`; when exactly one site's figure is hidden, the next smallest is hidden too (`*`), so that the
    total cannot give it back by subtraction."""
    by_site = expected.get("by_site", {})
    values = [int(round(by_site.get(s, {}).get("expected", 0))) for s in sites["site_id"].to_list()]
    visible = [e.isdigit() and p.isdigit() for e, p in zip(sites["eligible"].to_list(), sites["possible"].to_list())]
    cells = []
    for v, ok in zip(values, visible):
        cells.append("*" if not ok else (f"<{min_cell}" if 1 <= v < min_cell else str(v)))
    hidden = [i for i, c in enumerate(cells) if not c.isdigit()]
    if len(hidden) == 1:
        shown_ = [i for i, c in enumerate(cells) if c.isdigit()]
        if shown_:
            cells[min(shown_, key=lambda i: (values[i], i))] = "*"
    return pl.Series("expected_eligible", cells, dtype=pl.Utf8)
