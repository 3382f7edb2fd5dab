"""`--history`: one trial's recruitment history, projection and back-test, written into its folder.

Called by `pipeline.run` for each trial after its files are written and before its
report is drawn. It replays the trial at the history dates (`pipeline.recruitment.history`) on the
registry the run already read and validated, reusing the run's own evaluation at D,
writes `history.csv`, `history_by_site.csv`, `history_new.csv`, `history_lost.csv`,
`projection.csv` and `projection_backtest.csv`, adds `history` and `projection` to the
trial's summary, and returns the model of the report's recruitment section.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from pipeline.core import files
from pipeline.criteria import Trial
from pipeline.inputs.registry import Registry
from pipeline.recruitment import history, projection


@dataclass
class HistoryOptions:
    months: int
    projection_months: int = 12
    target: int | None = None  # None: the trial file's planned_enrolment (if any)
    conversion: float = 1.0


def run(registry: Registry, trial: Trial, as_of: dt.date, engine: str, evaluation: pl.DataFrame,
        opts: HistoryOptions, folder: Path, summary: dict) -> dict:
    from pipeline.engines.dated import Dated  # here: it brings sqlglot, which a run without history never needs

    dates = history.history_dates(as_of, opts.months)

    dated = Dated(registry, trial, engine)  # the tables registered and the queries compiled once for all dates

    def at(day: dt.date) -> pl.DataFrame:
        # D itself is the run's own evaluation, made once; the other dates' statuses are those of
        # `evaluate` at that date, without its evidence columns (tests/test_history.py checks each date).
        return evaluation if day == as_of else dated.at(day)

    try:
        hist = history.replay(dates, trial.ids, at)
    finally:
        dated.close()
    files.write_csv(hist.totals, folder / "history.csv")
    files.write_csv(hist.by_site, folder / "history_by_site.csv")
    files.write_csv(hist.new.sort("as_of", "patient_id"), folder / "history_new.csv")
    files.write_csv(hist.lost.sort("as_of", "patient_id"), folder / "history_lost.csv")

    last = hist.totals.row(-1, named=True)
    pool = last["eligible"] + last["possible"]
    if opts.target is not None:
        target, source = opts.target, "--target"
    elif trial.planned_enrolment is not None:
        target, source = trial.planned_enrolment, "planned_enrolment"
    else:
        target, source = None, None
    proj = projection.project(projection.Flow.from_history(hist.by_site, hist.dates), as_of, pool, opts.projection_months,
                              target, opts.conversion, source)
    files.write_csv(proj.table, folder / "projection.csv")
    if proj.backtest is not None:
        files.write_csv(proj.backtest, folder / "projection_backtest.csv")
    summary["history"] = hist.summary()
    summary["projection"] = {**proj.record, "files": ["projection.csv"] + (
        ["projection_backtest.csv"] if proj.backtest is not None else [])}
    return report_model(hist, proj)


# ---- the report's section: plain numbers and SVG geometry, so that the template only lays them out ----

W, LEFT, RIGHT = 1000, 60, 20


def _ticks(top: float, n: int = 4) -> list[int]:
    """Round tick values from 0 to at least `top`."""
    if top <= 0:
        return [0, 1]
    raw = top / n
    mag = 10 ** (len(str(int(raw))) - 1) if raw >= 1 else 1
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    return [step * i for i in range(0, n + 2) if step * (i - 1) < top]


def _y(value: float, top: float, height: float, pad: float = 10) -> float:
    return round(pad + (height - 2 * pad) * (1 - value / top), 2) if top else height - pad


def _x(i: int, n: int) -> float:
    return round(LEFT + (W - LEFT - RIGHT) * (i + 0.5) / max(n, 1), 2)


def report_model(hist: history.History, proj: projection.Projection) -> dict:
    rows = [{"as_of": r["as_of"].isoformat(), "pool": r["eligible"] + r["possible"], "eligible": r["eligible"],
             "possible": r["possible"], "new": r["new_candidates"], "lost": r["lost_candidates"]}
            for r in hist.totals.iter_rows(named=True)]
    n = len(rows)
    H = 180
    pool_top = _ticks(max(r["pool"] for r in rows) or 1)[-1]
    flow_top = _ticks(max([max(r["new"] or 0, r["lost"] or 0) for r in rows] + [1]))[-1]
    bw = (W - LEFT - RIGHT) / max(n, 1) * 0.38
    for i, r in enumerate(rows):
        r["x"] = _x(i, n)
        r["y_pool"] = _y(r["pool"], pool_top, H)
        half = H / 2
        r["h_new"] = round((half - 10) * (r["new"] or 0) / flow_top, 2)
        r["h_lost"] = round((half - 10) * (r["lost"] or 0) / flow_top, 2)
    sites = []
    wide = hist.by_site.with_columns((pl.col("eligible") + pl.col("possible")).alias("pool"))
    for s in hist.sites:
        mine = wide.filter(pl.col("site_id") == s)
        new = mine["new_candidates"].to_list()
        pools = mine["pool"].to_list()
        top = max([v or 0 for v in new] + [1])
        sites.append({"site": s, "pool_first": pools[0], "pool_last": pools[-1],
                      "new_total": int(sum(v or 0 for v in new)),
                      "lost_total": int(sum(v or 0 for v in mine["lost_candidates"].to_list())),
                      "bars": [{"x": round(4 + 292 * i / n, 2), "h": round(36 * (v or 0) / top, 2), "n": v,
                                "as_of": rows[i]["as_of"]} for i, v in enumerate(new) if i > 0],
                      "bw": round(292 / n * 0.7, 2), "max": top})
    rec = proj.record
    fan = proj.fan
    ttt = rec["time_to_target"]
    needed = ttt["candidates_needed"] if ttt else None
    fan_top = _ticks(max([f["high_95"] for f in fan] + ([needed] if needed else [])) or 1)[-1]
    m = len(fan)
    fx = [round(LEFT + (W - LEFT - RIGHT) * i / max(m - 1, 1), 2) for i in range(m)]
    FH = 240

    def band(lo: str, hi: str) -> str:
        upper = [f"{fx[i]},{_y(f[hi], fan_top, FH)}" for i, f in enumerate(fan)]
        lower = [f"{fx[i]},{_y(f[lo], fan_top, FH)}" for i, f in reversed(list(enumerate(fan)))]
        return " ".join(upper + lower)

    fan_model = {
        "points": [{**f, "x": fx[i], "y": _y(f["median"], fan_top, FH)} for i, f in enumerate(fan)],
        "band95": band("low_95", "high_95"), "band80": band("low_80", "high_80"),
        "median": " ".join(f"{fx[i]},{_y(f['median'], fan_top, FH)}" for i, f in enumerate(fan)),
        "ticks": [{"v": t, "y": _y(t, fan_top, FH)} for t in _ticks(fan_top) if t <= fan_top],
        "target_y": _y(needed, fan_top, FH) if needed is not None else None, "height": FH,
    }
    monthly = proj.table.filter(pl.col("site_id") == projection.TOTAL).to_dicts()
    bt = None
    if proj.backtest is not None:
        tot = proj.backtest.filter(pl.col("site_id") == projection.TOTAL).to_dicts()
        top = _ticks(max([max(r["high_95"], r["observed"]) for r in tot] + [1]))[-1]
        BH, k = 200, len(tot)
        for i, r in enumerate(tot):
            r["end_date"] = r["end_date"].isoformat()
            r["x"] = _x(i, k)
            for c in ("low_95", "low_80", "high_80", "high_95", "observed"):
                r[f"y_{c}"] = _y(r[c], top, BH)
            r["y_expected"] = _y(r["expected_new_candidates"], top, BH)
        site_cells = proj.backtest.filter(pl.col("site_id") != projection.TOTAL)
        per_site = (site_cells.group_by("site_id").agg(pl.col("inside_80").sum().alias("inside"), pl.len().alias("cells"),
                                                       pl.col("observed").sum(), pl.col("expected_new_candidates").sum())
                    .sort("site_id").to_dicts())
        bt = {"rows": tot, "height": BH, "ticks": [{"v": t, "y": _y(t, top, BH)} for t in _ticks(top) if t <= top],
              "per_site": per_site}
    return {
        "rows": rows, "pool_ticks": [{"v": t, "y": _y(t, pool_top, H)} for t in _ticks(pool_top) if t <= pool_top],
        "flow_ticks": [{"v": t, "h": round((H / 2 - 10) * t / flow_top, 2)} for t in _ticks(flow_top) if t <= flow_top],
        "height": H, "bw": round(bw, 2), "W": W, "LEFT": LEFT, "RIGHT": RIGHT,
        "summary": hist.summary(), "sites": sites,
        "projection": rec, "fan": fan_model, "monthly": monthly, "backtest": bt,
        "reliable_coverage": projection.RELIABLE_COVERAGE,
    }
