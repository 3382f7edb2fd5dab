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
from pipeline.engines import expected
from pipeline.inputs.registry import Registry
from pipeline.recruitment import history, projection

EXPECTED_DRAWS = 1000  # the expected eligible at each history date (the run's own at D has pipeline.engines.expected.DRAWS)


@dataclass
class HistoryOptions:
    months: int
    projection_months: int = 12
    target: int | None = None  # this registry's share of the enrolment; None: no time to target
    conversion: float | tuple[float, float] | None = None  # None: the forecast is in candidates, not enrolments
    screening_capacity: int | dict[str, int] | None = None  # per month, all sites or per site; None: unlimited
    screen_pass: float | None = None  # chance a screened eligible patient passes the screening-only criteria


def eligible_chance(summary: dict) -> float | None:
    """The chance that a candidate at D is eligible once screened for its unknown criteria: the expected eligible
    (pipeline/outputs/expected.py, in the summary) over the candidates; None when there is none."""
    e = summary.get("expected_eligible")
    pool = summary.get("eligible", 0) + summary.get("possible", 0)
    if not e or not pool:
        return None
    return min(1.0, e["expected"] / pool)


def reentry_share(hist: history.History) -> float:
    """The share of new candidates in the history who had been candidates before (lost, then back)."""
    if hist.new.height == 0:
        return 0.0
    back = hist.new.join(hist.lost.select("patient_id", pl.col("as_of").alias("lost_at")), on="patient_id",
                         how="inner").filter(pl.col("lost_at") < pl.col("as_of")).select("as_of", "patient_id").unique()
    return back.height / hist.new.height


def run(registry: Registry, trial: Trial, as_of: dt.date, engine: str, evaluation: pl.DataFrame,
        opts: HistoryOptions, folder: Path, summary: dict) -> dict:
    from pipeline.engines.dated import Dated  # here: it brings sqlglot, which a run without history never needs

    dates = history.history_dates(as_of, opts.months)

    dated = Dated(registry, trial, engine)  # the tables registered and the queries compiled once for all dates

    cut = projection.add_months(as_of, -projection.BACKTEST_MONTHS)
    cut_day = max([d for d in dates[:-1] if d <= cut], default=None)
    per_date, kept = [], {}

    def at(day: dt.date) -> pl.DataFrame:
        # D itself is the run's own evaluation, made once; the other dates' statuses are those of
        # `evaluate` at that date, without its evidence columns (tests/test_history.py checks each date).
        ev = evaluation if day == as_of else dated.at(day)
        # the expected eligible at each date (at D, the run's own)
        e = summary.get("expected_eligible") if day == as_of else None
        e = e or expected.estimate(ev, trial.ids, draws=EXPECTED_DRAWS)
        per_date.append({"as_of": day, "expected_eligible": e["expected"], "low_80": e["low_80"],
                         "high_80": e["high_80"]})
        if day == cut_day:
            kept["cut"] = ev.select("patient_id", "site_id", "status", *trial.ids)
        return ev

    try:
        hist = history.replay(dates, trial.ids, at)
    finally:
        dated.close()
    files.write_csv(hist.totals, folder / "history.csv")
    files.write_csv(hist.by_site, folder / "history_by_site.csv")
    files.write_csv(hist.new.sort("as_of", "patient_id"), folder / "history_new.csv")
    files.write_csv(hist.lost.sort("as_of", "patient_id"), folder / "history_lost.csv")

    flow = projection.Flow.from_history(hist.by_site, hist.dates)
    proj = projection.project(flow, as_of, None, opts.projection_months, opts.target, opts.conversion,
                              "--target" if opts.target is not None else None,
                              screening_capacity=opts.screening_capacity, screen_pass=opts.screen_pass,
                              reentry=reentry_share(hist), planned_enrolment=trial.planned_enrolment,
                              eligible_chance=eligible_chance(summary))
    files.write_csv(proj.table, folder / "projection.csv")
    files.write_csv(proj.pool_table, folder / "projection_pool.csv")
    written = ["projection.csv", "projection_pool.csv"]
    if proj.backtest is not None:
        files.write_csv(proj.backtest, folder / "projection_backtest.csv")
        files.write_csv(proj.pool_backtest, folder / "projection_backtest_pool.csv")
        written += ["projection_backtest.csv", "projection_backtest_pool.csv"]
    summary["history"] = hist.summary()
    files.write_csv(pl.DataFrame(per_date, schema={"as_of": pl.Date, "expected_eligible": pl.Float64,
                                                   "low_80": pl.Int64, "high_80": pl.Int64}),
                    folder / "history_expected.csv")
    summary["history"]["files"].append("history_expected.csv")
    summary["history"]["expected_eligible"] = [{**r, "as_of": r["as_of"].isoformat()} for r in per_date]
    if "cut" in kept and proj.record["backtest"].get("available"):
        # What was learnt later: the patients possible at the cut whose unknown criteria are all known at D.
        learnt = expected.learnt_later(kept["cut"], evaluation.select("patient_id", "site_id", "status", *trial.ids),
                                       trial.ids)
        proj.record["backtest"]["expected_eligible"] = {"date": cut_day.isoformat(), **learnt}
    summary["projection"] = {**proj.record, "files": written}
    return report_model(hist, proj, summary["history"]["expected_eligible"])


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


def report_model(hist: history.History, proj: projection.Projection, summary_expected: list[dict] | None = None) -> dict:
    rows = [{"as_of": r["as_of"].isoformat(), "pool": r["eligible"] + r["possible"], "eligible": r["eligible"],
             "possible": r["possible"], "new": r["new_candidates"], "lost": r["lost_candidates"]}
            for r in hist.totals.iter_rows(named=True)]
    by_date = {e["as_of"]: e for e in summary_expected} if summary_expected else {}
    for r in rows:
        r["expected"] = by_date.get(r["as_of"])
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
    # One chart of the pool: the history's dates, then the projection's months continuing it from D.
    m = len(fan)  # months 0 (D) .. M
    total = n + m - 1
    pool_hist = [r["pool"] for r in rows]
    chart_top = _ticks(max(pool_hist + [f["high_95"] for f in fan]) or 1)[-1]
    FH = 240
    px = [round(LEFT + (W - LEFT - RIGHT) * i / max(total - 1, 1), 2) for i in range(total)]
    fx = px[n - 1:]

    def band(points: list[dict], lo: str, hi: str, top: float, height: float, xs: list[float]) -> str:
        upper = [f"{xs[i]},{_y(f[hi], top, height)}" for i, f in enumerate(points)]
        lower = [f"{xs[i]},{_y(f[lo], top, height)}" for i, f in reversed(list(enumerate(points)))]
        return " ".join(upper + lower)

    fan_model = {
        "history": [{"x": px[i], "y": _y(r["pool"], chart_top, FH), "as_of": r["as_of"], "pool": r["pool"]}
                    for i, r in enumerate(rows)],
        "history_line": " ".join(f"{px[i]},{_y(r['pool'], chart_top, FH)}" for i, r in enumerate(rows)),
        "points": [{**f, "x": fx[i], "y": _y(f["median"], chart_top, FH)} for i, f in enumerate(fan)],
        "band95": band(fan, "low_95", "high_95", chart_top, FH, fx),
        "band80": band(fan, "low_80", "high_80", chart_top, FH, fx),
        "median": " ".join(f"{fx[i]},{_y(f['median'], chart_top, FH)}" for i, f in enumerate(fan)),
        "ticks": [{"v": t, "y": _y(t, chart_top, FH)} for t in _ticks(chart_top) if t <= chart_top],
        "d_x": fx[0], "height": FH,
        "labels": [{"x": px[i], "text": r["as_of"][:7]} for i, r in enumerate(rows) if i % 3 == 0]
                  + [{"x": fx[j], "text": f["end_date"][:7]} for j, f in enumerate(fan) if j and j % 3 == 0],
    }
    # New and lost per month below it: the history's bars, then the projection's medians (80 % whiskers).
    bands = proj.bands
    proj_new, proj_lost = bands["new"][1:], bands["lost"][1:]
    ftop = _ticks(max([max(r["new"] or 0, r["lost"] or 0) for r in rows]
                      + [b["high_80"] for b in proj_new + proj_lost] + [1]))[-1]
    FLH, half = 180, 80
    fbw = round((W - LEFT - RIGHT) / max(total, 1) * 0.6, 2)
    flows = [{"x": px[i], "new": r["new"], "lost": r["lost"], "projected": False, "label": r["as_of"],
              "h_new": round(half * (r["new"] or 0) / ftop, 2), "h_lost": round(half * (r["lost"] or 0) / ftop, 2)}
             for i, r in enumerate(rows) if i > 0]
    for j, (a, b) in enumerate(zip(proj_new, proj_lost)):
        flows.append({"x": fx[j + 1], "new": a["median"], "lost": b["median"], "projected": True, "label": a["end_date"],
                      "new_80": [a["low_80"], a["high_80"]], "lost_80": [b["low_80"], b["high_80"]],
                      "h_new": round(half * a["median"] / ftop, 2), "h_lost": round(half * b["median"] / ftop, 2),
                      "w_new": [round(half * a["low_80"] / ftop, 2), round(half * a["high_80"] / ftop, 2)],
                      "w_lost": [round(half * b["low_80"] / ftop, 2), round(half * b["high_80"] / ftop, 2)]})
    flow_model = {"bars": flows, "bw": fbw, "height": FLH, "mid": FLH / 2, "d_x": fx[0],
                  "ticks": [{"v": t, "h": round(half * t / ftop, 2)} for t in _ticks(ftop) if t <= ftop]}
    enrol = None
    if "enrolled" in bands:
        eb = bands["enrolled"]
        target = rec["target"]
        etop = _ticks(max([b["high_95"] for b in eb] + ([target] if target else [])) or 1)[-1]
        EH = 200
        ex = [round(LEFT + (W - LEFT - RIGHT) * i / max(len(eb) - 1, 1), 2) for i in range(len(eb))]
        enrol = {"points": [{**b, "x": ex[i], "y": _y(b["median"], etop, EH)} for i, b in enumerate(eb)],
                 "band80": band(eb, "low_80", "high_80", etop, EH, ex), "band95": band(eb, "low_95", "high_95", etop, EH, ex),
                 "median": " ".join(f"{ex[i]},{_y(b['median'], etop, EH)}" for i, b in enumerate(eb)),
                 "ticks": [{"v": t, "y": _y(t, etop, EH)} for t in _ticks(etop) if t <= etop],
                 "target_y": _y(target, etop, EH) if target else None, "height": EH}
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
        pb = proj.pool_backtest.filter((pl.col("site_id") == projection.TOTAL) & (pl.col("quantity") == "pool")).to_dicts()
        ptop = _ticks(max([max(r["high_95"], r["observed"]) for r in pb] + [1]))[-1]
        for i, r in enumerate(pb):
            r["end_date"] = r["end_date"].isoformat()
            r["x"] = _x(i, len(pb))
            for c in ("low_95", "low_80", "high_80", "high_95", "observed"):
                r[f"y_{c}"] = _y(r[c], ptop, BH)
        bt["pool_rows"] = pb
        bt["pool_ticks"] = [{"v": t, "y": _y(t, ptop, BH)} for t in _ticks(ptop) if t <= ptop]
    return {
        "rows": rows, "pool_ticks": [{"v": t, "y": _y(t, pool_top, H)} for t in _ticks(pool_top) if t <= pool_top],
        "flow_ticks": [{"v": t, "h": round((H / 2 - 10) * t / flow_top, 2)} for t in _ticks(flow_top) if t <= flow_top],
        "height": H, "bw": round(bw, 2), "W": W, "LEFT": LEFT, "RIGHT": RIGHT,
        "summary": hist.summary(), "sites": sites,
        "projection": rec, "fan": fan_model, "flow": flow_model, "enrol": enrol, "monthly": monthly, "backtest": bt,
        "notes": [w for w in (fit_in_words(rec["fit"], "new"),
                              fit_in_words(rec["loss_fit"], "loss")) if w],
        "reliable_coverage": projection.RELIABLE_COVERAGE,
        "conversion_text": None if rec["conversion"] is None else _conv(rec["conversion"]).replace("..", " to "),
    }


# ---- the terminal's lines (pipeline.cli prints them) ----

def _iv(b: dict) -> str:
    return f"{b['median']:,} (80 %: {b['low_80']:,} .. {b['high_80']:,})"


WORDS = {"new": ("rates of new candidates", "rate of new candidates"), "loss": ("loss rates", "loss rate")}


def fit_in_words(fit: dict, what: str) -> str | None:
    """A sentence when the fit put every site at one rate (alpha at the upper bound of its grid)."""
    if fit.get("alpha_at_upper_bound"):
        many, one = WORDS[what]
        return (f"the sites' {many} differ no more than chance would make them, so the fit put every site at one "
                f"common {one} (alpha_at_upper_bound): the per-site figures are that common {one}, not the "
                f"sites' own")
    return None


def _conv(c) -> str:
    return f"{c[0]:g}..{c[1]:g}" if isinstance(c, list) else f"{c:g}"


def terminal_lines(s: dict) -> list[str]:
    from pipeline.recruitment.projection import RELIABLE_COVERAGE

    if "projection" not in s:
        return []
    h, p = s["history"], s["projection"]
    bt = p["backtest"]
    n = p["months"]
    out = [f"history: {h['months']} months from {h['first_date']}: {h['new_candidates']:,} new candidates, "
           f"{h['lost_candidates']:,} lost, pool {h['candidates_first_date']:,} -> {h['candidates_last_date']:,} "
           f"(history.csv)",
           f"forecast in {n} months: {p['expected_new_candidates']:.1f} new (80 %: {p['new_candidates_80'][0]:,} .. "
           f"{p['new_candidates_80'][1]:,}), {p['expected_lost_candidates']:.1f} lost; pool {p['pool']:,} -> "
           f"{_iv(p['pool_at_end'])}; distinct candidates {_iv(p['cumulative_candidates_at_end'])} "
           f"(projection_pool.csv)"]
    if p.get("enrolled_at_end"):
        out.append(f"enrolled in {n} months at a conversion of {_conv(p['conversion'])}: {_iv(p['enrolled_at_end'])}")
    t = p["time_to_target"]
    if t is None:
        out.append(f"time to target: none ({p['time_to_target_reason']})"
                   + (f"; the trial plans {p['planned_enrolment']:,} worldwide" if p.get("planned_enrolment") else ""))
    else:
        def m(v):
            return f"more than {t['max_months']}" if v is None else f"{v}"
        head = f"time to {p['target']:,} enrolled (conversion {_conv(p['conversion'])}; {p['pool']:,} candidates now): "
        if t["months_median"] is None:
            out.append(head + f"more than {t['max_months']} months (reached within them in "
                       f"{100 * t['share_reached_within_max']:.0f} % of the simulations)")
        else:
            out.append(head + f"median {t['months_median']} months (80 %: {m(t['months_low_80'])} .. "
                       f"{m(t['months_high_80'])})")
    if bt.get("available"):
        label = "" if p["reliable"] else f"; UNRELIABLE (below {RELIABLE_COVERAGE})"
        q = bt.get("quantities", {})
        extra = "".join(f", {k} {q[k]['coverage_80']:.2f}" for k in ("lost", "pool") if k in q)
        out.append(f"back-test (fit to {bt['fit_until']}, {bt['test_months']} months x sites), coverage of the 80 % "
                   f"intervals: new candidates {bt['coverage_80']:.2f}{extra}{label}")
    else:
        out.append(f"back-test: not available ({bt['reason']})")
    for f, what in ((p["fit"], "new"), (p["loss_fit"], "loss")):
        words = fit_in_words(f, what)
        if words:
            out.append("note: " + words)
    return out
