"""Recruitment history (`msfeas run --history MONTHS`): the trial judged at past dates, and the flow of candidates.

The reference dates are the last day of each of the MONTHS calendar months before the
month of D, then D itself (`history_dates`). At each date the trial is judged with
exactly the rules of a run at that date, on the registry the run has already read and
validated (no re-reading, no re-validation per date): `pipeline.engines.dated.Dated`
gives each date's statuses, exactly those of `pipeline.engines.evaluate(registry, trial,
date, engine)` without the evidence columns, with what does not depend on the date done
once (see its docstring). Nothing dated after a date is used at that date, because
every criterion already ignores what is dated after its reference date; data entered
later about earlier dates are used as the export holds them (the export has no entry
dates). With DuckDB, each criterion's query text is the same for every date, with
`$as_of` bound as a parameter; with Polars, the same compiled criteria build each date's
lazy plans with the date as a literal.

Only statuses are kept per date (a candidate mask and the first failing criterion), so
memory stays that of one evaluation plus counts. What is written (per trial folder):

- `history.csv`: as_of, population, eligible, possible, ineligible, new_candidates,
  lost_candidates (new and lost empty on the first row);
- `history_by_site.csv`: the same with `site_id` after `as_of`, every site at every date;
- `history_new.csv`: as_of, patient_id, site_id, status: who became a candidate at which date;
- `history_lost.csv`: as_of, patient_id, site_id, first_failed_criterion: who stopped
  being a candidate, and the criterion (in trial order) that failed first for them.
"""

from __future__ import annotations

import calendar
import datetime as dt
from dataclasses import dataclass
from typing import Callable

import polars as pl

from pipeline.outputs.tables import STATUSES

PID = "patient_id"
COUNT_COLUMNS = ("population", *STATUSES, "new_candidates", "lost_candidates")
CANDIDATE = ("eligible", "possible")


def month_end(year: int, month: int) -> dt.date:
    return dt.date(year, month, calendar.monthrange(year, month)[1])


def add_months(day: dt.date, k: int) -> dt.date:
    """`day` moved by k calendar months, the day of month clipped to the month's length."""
    y, m = divmod(day.month - 1 + k, 12)
    year, month = day.year + y, m + 1
    return dt.date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def history_dates(as_of: dt.date, months: int) -> list[dt.date]:
    """The last day of each of the `months` calendar months before the month of `as_of`, then `as_of`."""
    out = []
    for k in range(months, 0, -1):
        first = add_months(as_of.replace(day=1), -k)
        out.append(month_end(first.year, first.month))
    return out + [as_of]


@dataclass
class History:
    dates: list[dt.date]
    sites: list[str]
    totals: pl.DataFrame  # history.csv
    by_site: pl.DataFrame  # history_by_site.csv
    new: pl.DataFrame  # history_new.csv
    lost: pl.DataFrame  # history_lost.csv

    def summary(self) -> dict:
        """summary.json `history`: the dates, the totals and the lost candidates by first failed criterion."""
        rows = self.totals.to_dicts()
        by_criterion = (self.lost.group_by("first_failed_criterion").len()
                        .sort(["len", "first_failed_criterion"], descending=[True, False]))
        return {
            "months": len(self.dates) - 1,
            "first_date": self.dates[0].isoformat(), "last_date": self.dates[-1].isoformat(),
            "new_candidates": int(sum(r["new_candidates"] or 0 for r in rows)),
            "lost_candidates": int(sum(r["lost_candidates"] or 0 for r in rows)),
            "candidates_first_date": rows[0]["eligible"] + rows[0]["possible"],
            "candidates_last_date": rows[-1]["eligible"] + rows[-1]["possible"],
            "lost_by_first_failed_criterion": {c: int(n) for c, n in by_criterion.iter_rows()},
            "files": ["history.csv", "history_by_site.csv", "history_new.csv", "history_lost.csv"],
        }


def first_failed(ids: list[str]) -> pl.Expr:
    """The first criterion (in trial order) whose column is `fail`; null when none fails."""
    if not ids:
        return pl.lit(None, pl.Utf8)
    return pl.coalesce([pl.when(pl.col(c) == "fail").then(pl.lit(c)) for c in ids])


def _site_counts(frame: pl.DataFrame, sites: pl.DataFrame) -> pl.DataFrame:
    """Per site: population and the three statuses (every site, zero where none)."""
    got = frame.group_by("site_id").agg(pl.len().alias("population"),
                                        *[(pl.col("status") == s).sum().alias(s) for s in STATUSES])
    return (sites.join(got, on="site_id", how="left", maintain_order="left")
            .with_columns([pl.col(c).fill_null(0).cast(pl.Int64) for c in ("population", *STATUSES)]))


def replay(dates: list[dt.date], criteria_ids: list[str],
           evaluate_at: Callable[[dt.date], pl.DataFrame]) -> History:
    """Judge at each date (`evaluate_at(date)` gives that date's evaluation matrix) and derive the history.

    The evaluations must all hold the same patients in the same order (every evaluation of
    one registry does: all accepted patients, sorted by patient_id); that is checked.
    """
    base: pl.DataFrame | None = None
    sites: pl.DataFrame | None = None
    prev: pl.Series | None = None
    total_rows, site_rows, new_frames, lost_frames = [], [], [], []
    for day in dates:
        ev = evaluate_at(day).select(PID, "site_id", "status", first_failed(criteria_ids).alias("first_failed_criterion"))
        if base is None:
            base = ev.select(PID, "site_id")
            sites = base.select("site_id").unique().sort("site_id")
        elif not (ev[PID].equals(base[PID]) and ev["site_id"].equals(base["site_id"])):
            raise RuntimeError(f"the evaluation at {day} holds other patients than at {dates[0]}")
        cand = ev["status"].is_in(CANDIDATE)
        counts = _site_counts(ev, sites)
        if prev is None:
            counts = counts.with_columns(pl.lit(None, pl.Int64).alias("new_candidates"),
                                         pl.lit(None, pl.Int64).alias("lost_candidates"))
        else:
            flags = ev.with_columns((cand & ~prev).alias("_new"), (prev & ~cand).alias("_lost"))
            moved = flags.group_by("site_id").agg(pl.col("_new").sum().alias("new_candidates"),
                                                  pl.col("_lost").sum().alias("lost_candidates"))
            counts = (counts.join(moved, on="site_id", how="left", maintain_order="left")
                      .with_columns([pl.col(c).fill_null(0).cast(pl.Int64) for c in ("new_candidates", "lost_candidates")]))
            new_frames.append(flags.filter("_new").select(pl.lit(day).alias("as_of"), PID, "site_id", "status"))
            lost_frames.append(flags.filter("_lost").select(pl.lit(day).alias("as_of"), PID, "site_id",
                                                            "first_failed_criterion"))
        site_rows.append(counts.select(pl.lit(day).alias("as_of"), "site_id", *COUNT_COLUMNS))
        total_rows.append({"as_of": day, "population": ev.height,
                           **{st: int((ev["status"] == st).sum()) for st in STATUSES},
                           "new_candidates": None if prev is None else int((cand & ~prev).sum()),
                           "lost_candidates": None if prev is None else int((prev & ~cand).sum())})
        prev = cand
    by_site = pl.concat(site_rows)
    totals = pl.DataFrame(total_rows, schema={"as_of": pl.Date, **{c: pl.Int64 for c in COUNT_COLUMNS}})
    empty_new = pl.DataFrame(schema={"as_of": pl.Date, PID: pl.Utf8, "site_id": pl.Utf8, "status": pl.Utf8})
    empty_lost = pl.DataFrame(schema={"as_of": pl.Date, PID: pl.Utf8, "site_id": pl.Utf8,
                                      "first_failed_criterion": pl.Utf8})
    new = pl.concat(new_frames) if new_frames else empty_new
    lost = pl.concat(lost_frames) if lost_frames else empty_lost
    return History(dates=list(dates), sites=sites["site_id"].to_list(), totals=totals, by_site=by_site,
                   new=new.select(empty_new.columns).cast(empty_new.schema),
                   lost=lost.select(empty_lost.columns).cast(empty_lost.schema))
