"""`msfeas run --history MONTHS`: each date is exactly a separate run at that date (both engines, the
sample and random exports), new and lost candidates recomputed independently from the per-date
evaluations, one reading of the export, one SQL text per criterion, the files and the report section."""

from __future__ import annotations

import datetime as dt
import json
import random
import re
from pathlib import Path

import polars as pl
import pytest

from pipeline.cli import main
from pipeline.criteria import load_trial
from pipeline.outputs import report
from pipeline.quality import stage as quality
from pipeline.recruitment import history, projection
from pipeline.recruitment import stage as recruitment
from pipeline.run import RunOptions, run
from pipeline.synth import generate, write_export
from tests.conftest import ENGINES, ROOT, TODAY

SAMPLE = ROOT / "data_samples" / "default"
AS_OF = dt.date(2026, 11, 1)
FILES = ["history.csv", "history_by_site.csv", "history_new.csv", "history_lost.csv", "projection.csv",
         "projection_pool.csv", "projection_backtest_pool.csv", "projection_backtest.csv"]


@pytest.fixture(autouse=True)
def fixed_today(monkeypatch):
    """The CLI's today (ingest quarantines dates after it) is the one the separate runs are given."""
    monkeypatch.setenv("MSFEAS_TODAY", TODAY.isoformat())


def read(path: Path) -> pl.DataFrame:
    return pl.read_csv(path, infer_schema_length=0)


def ints(frame: pl.DataFrame, cols) -> pl.DataFrame:
    return frame.with_columns([pl.col(c).cast(pl.Int64) for c in cols])


def test_history_dates():
    assert history.history_dates(AS_OF, 3) == [dt.date(2026, 8, 31), dt.date(2026, 9, 30), dt.date(2026, 10, 31), AS_OF]
    dates = history.history_dates(AS_OF, 24)
    assert len(dates) == 25 and dates[0] == dt.date(2024, 11, 30) and dates[-2] == dt.date(2026, 10, 31)
    # D a month end: its own month is not among the months before it; February of a leap year
    assert history.history_dates(dt.date(2024, 3, 31), 2) == [dt.date(2024, 1, 31), dt.date(2024, 2, 29),
                                                               dt.date(2024, 3, 31)]
    assert history.history_dates(dt.date(2025, 1, 15), 1) == [dt.date(2024, 12, 31), dt.date(2025, 1, 15)]
    assert history.add_months(dt.date(2026, 1, 31), 1) == dt.date(2026, 2, 28)
    assert history.add_months(dt.date(2026, 3, 31), -13) == dt.date(2025, 2, 28)


# ---- each date as a separate run, and new/lost recomputed from the separate runs' evaluations ----

def separate_run(export: Path, out: Path, day: dt.date, engine: str, trial: str, monkeypatch) -> tuple[dict, pl.DataFrame]:
    """`msfeas run --as-of day` (pipeline.run.run, the CLI's own call), without the quality checks:
    they never change a count, and skipping them keeps 25 runs per engine affordable."""
    with monkeypatch.context() as m:
        m.setattr(quality, "run_quality", lambda *a, **k: {"n_findings": 0, "findings": [], "seconds": {"frames": 0}})
        result = run(RunOptions(input=export, out=out, as_of=day, trials=[load_trial(trial)], engine=engine,
                                today=TODAY))
    return result.summary, pl.read_parquet(out / "evaluation.parquet")


def check_against_separate_runs(folder: Path, export: Path, tmp: Path, engine: str, trial: str, monkeypatch) -> int:
    """Every row of history.csv and history_by_site.csv against a separate run at its date; new and lost
    candidates (counts, who, first failed criterion) recomputed from those runs' evaluations."""
    ids = load_trial(trial).ids
    totals = ints(read(folder / "history.csv"), ["population", "eligible", "possible", "ineligible",
                                                  "new_candidates", "lost_candidates"])
    by_site = ints(read(folder / "history_by_site.csv"), ["population", "eligible", "possible", "ineligible",
                                                          "new_candidates", "lost_candidates"])
    new_rows = read(folder / "history_new.csv")
    lost_rows = read(folder / "history_lost.csv")
    dates = [dt.date.fromisoformat(d) for d in totals["as_of"].to_list()]
    assert dates == history.history_dates(AS_OF if export == SAMPLE else dates[-1], len(dates) - 1)
    prev: dict[str, str] | None = None
    for i, day in enumerate(dates):
        s, ev = separate_run(export, tmp / f"{engine}-{day}", day, engine, trial, monkeypatch)
        row = totals.row(i, named=True)
        assert row["as_of"] == s["as_of"]
        assert [row[k] for k in ("population", "eligible", "possible", "ineligible")] == \
            [s[k] for k in ("population", "eligible", "possible", "ineligible")], day
        mine = by_site.filter(pl.col("as_of") == day.isoformat())
        assert mine["site_id"].to_list() == sorted(s["by_site"]), day
        for r in mine.iter_rows(named=True):
            want = s["by_site"][r["site_id"]]
            assert [r[k] for k in ("eligible", "possible", "ineligible")] == \
                [want[k] for k in ("eligible", "possible", "ineligible")], (day, r["site_id"])
            assert r["population"] == sum(want.values())
        # New and lost, from this run's evaluation and the previous date's, in plain Python.
        status = dict(zip(ev["patient_id"].to_list(), ev["status"].to_list()))
        site = dict(zip(ev["patient_id"].to_list(), ev["site_id"].to_list()))
        cand = {p for p, st in status.items() if st in ("eligible", "possible")}
        if prev is None:
            assert row["new_candidates"] is None and row["lost_candidates"] is None
            assert mine["new_candidates"].null_count() == mine.height
        else:
            was = {p for p, st in prev.items() if st in ("eligible", "possible")}
            new, lost = cand - was, was - cand
            assert (row["new_candidates"], row["lost_candidates"]) == (len(new), len(lost)), day
            for r in mine.iter_rows(named=True):
                assert r["new_candidates"] == sum(site[p] == r["site_id"] for p in new)
                assert r["lost_candidates"] == sum(site[p] == r["site_id"] for p in lost)
            got_new = new_rows.filter(pl.col("as_of") == day.isoformat())
            assert got_new["patient_id"].to_list() == sorted(new)
            assert got_new["status"].to_list() == [status[p] for p in sorted(new)]
            assert got_new["site_id"].to_list() == [site[p] for p in sorted(new)]
            got_lost = lost_rows.filter(pl.col("as_of") == day.isoformat())
            assert got_lost["patient_id"].to_list() == sorted(lost)
            rows = {r["patient_id"]: r for r in ev.filter(pl.col("patient_id").is_in(list(lost))).iter_rows(named=True)}
            first = [next(c for c in ids if rows[p][c] == "fail") for p in sorted(lost)]
            assert got_lost["first_failed_criterion"].to_list() == first, day
        prev = status
    return len(dates)


@pytest.mark.parametrize("engine", ENGINES)
def test_sample_history_equals_separate_runs(engine, tmp_path, monkeypatch):
    out = tmp_path / "hist"
    assert main(["run", "--input", str(SAMPLE), "--out", str(out), "--as-of", AS_OF.isoformat(), "--history", "24",
                 "--engine", engine]) == 0
    assert check_against_separate_runs(out, SAMPLE, tmp_path, engine, "nct04203017", monkeypatch) == 25
    # One of the dates as a complete `msfeas run --as-of`, nothing stubbed.
    totals = read(out / "history.csv")
    for i in (12,):
        day = totals["as_of"][i]
        assert main(["run", "--input", str(SAMPLE), "--out", str(tmp_path / f"full-{day}"), "--as-of", day,
                     "--engine", engine]) == 0
        s = json.loads((tmp_path / f"full-{day}" / "summary.json").read_text())
        assert [int(totals[k][i]) for k in ("population", "eligible", "possible", "ineligible")] == \
            [s[k] for k in ("population", "eligible", "possible", "ineligible")]


@pytest.mark.parametrize("seed", [3, 29])
def test_random_exports_history_equals_separate_runs(seed, tmp_path, monkeypatch):
    rng = random.Random(seed)
    export = tmp_path / "export"
    write_export(generate(rng.randint(120, 300), seed=seed), export, with_bad_rows=rng.random() < 0.5)
    as_of = dt.date(2024, 1, 1) + dt.timedelta(days=rng.randint(0, 1030))
    trial = rng.choice(["nct04203017", "nct04047628", "nct04411641"])
    months = rng.randint(4, 8)
    for engine in ENGINES:
        out = tmp_path / f"hist-{engine}"
        assert main(["run", "--input", str(export), "--out", str(out), "--as-of", as_of.isoformat(), "--history",
                     str(months), "--engine", engine, "--trial", trial]) == 0
        assert check_against_separate_runs(out, export, tmp_path, engine, trial, monkeypatch) == months + 1


def test_replay_arithmetic_on_crafted_statuses():
    """Patients who come, go and come back; a site with nobody new; the first failing criterion in trial order."""
    ids = ["a", "b", "c"]
    days = [dt.date(2026, 1, 31), dt.date(2026, 2, 28), dt.date(2026, 3, 31), dt.date(2026, 4, 15)]
    # per date: patient -> (a, b, c)
    plan = {
        "P1": ["ppp", "ppf", "ppp", "ppp"],  # lost at 2 (c), back at 3
        "P2": ["upp", "upp", "fpf", "fpf"],  # possible, lost at 3 (a before c)
        "P3": ["fpp", "ppp", "ppp", "pfp"],  # new at 2, lost at 4 (b)
        "P4": ["fff", "fff", "fff", "fff"],  # never
        "P5": ["ppu", "ppu", "ppu", "ppp"],  # possible then eligible: no change of candidacy
    }
    sites = {"P1": "S1", "P2": "S1", "P3": "S2", "P4": "S2", "P5": "S3"}
    code = {"p": "pass", "f": "fail", "u": "unknown"}

    def at(day):
        j = days.index(day)
        rows = [{"patient_id": p, "site_id": sites[p], **{c: code[v[j][k]] for k, c in enumerate(ids)}}
                for p, v in plan.items()]
        frame = pl.DataFrame(rows)
        any_fail = pl.any_horizontal(*[pl.col(c) == "fail" for c in ids])
        all_pass = pl.all_horizontal(*[pl.col(c) == "pass" for c in ids])
        return frame.with_columns(pl.when(any_fail).then(pl.lit("ineligible")).when(all_pass).then(pl.lit("eligible"))
                                  .otherwise(pl.lit("possible")).alias("status"))

    h = history.replay(days, ids, at)
    assert h.totals.select("new_candidates", "lost_candidates").rows() == [(None, None), (1, 1), (1, 1), (0, 1)]
    assert h.totals["eligible"].to_list() == [1, 1, 2, 2] and h.totals["population"].to_list() == [5] * 4
    assert h.new.select(pl.col("as_of").cast(pl.Utf8), "patient_id", "status").rows() == [
        ("2026-02-28", "P3", "eligible"), ("2026-03-31", "P1", "eligible")]
    assert h.lost.select(pl.col("as_of").cast(pl.Utf8), "patient_id", "first_failed_criterion").rows() == [
        ("2026-02-28", "P1", "c"), ("2026-03-31", "P2", "a"), ("2026-04-15", "P3", "b")]
    s3 = h.by_site.filter(pl.col("site_id") == "S3")
    assert s3["new_candidates"].to_list() == [None, 0, 0, 0] and s3["possible"].to_list() == [1, 1, 1, 0]
    assert h.summary()["lost_by_first_failed_criterion"] == {"a": 1, "b": 1, "c": 1}


# ---- how the dates are evaluated ----

@pytest.fixture(scope="module")
def small_export(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("hist") / "export"
    write_export(generate(400, seed=11), folder, with_bad_rows=True)
    return folder


def test_one_reading_and_one_sql_text_per_criterion(small_export, tmp_path, monkeypatch):
    import pipeline.engines.dated as dated
    import pipeline.engines.duckdb_engine as dd
    import pipeline.inputs.ingest as ingest_module

    reads, texts, flags, params, sessions, bound = [], [], [], [], [], []
    real_ingest, real_sql, real_session = ingest_module.ingest, dated.history_sql, dd.Session
    monkeypatch.setattr(ingest_module, "ingest", lambda *a, **k: reads.append(1) or real_ingest(*a, **k))

    def spy_sql(node, session):
        sql, dated_ = real_sql(node, session)
        texts.append(sql)
        flags.append(dated_)
        return sql, dated_
    monkeypatch.setattr(dated, "history_sql", spy_sql)

    class SpySession(real_session):
        def __init__(self, *a, **k):
            sessions.append(1)
            super().__init__(*a, **k)

        def query(self, sql, as_of):
            bound.append((sql, as_of))
            return super().query(sql, as_of)
    monkeypatch.setattr(dd, "Session", SpySession)
    real_at = dated.Dated.at
    monkeypatch.setattr(dated.Dated, "at", lambda self, day: params.append(day) or real_at(self, day))
    assert main(["run", "--input", str(small_export), "--out", str(tmp_path / "r"), "--as-of", "2026-06-15",
                 "--history", "6", "--engine", "duckdb", "--no-cache"]) == 0
    assert reads == [1]  # read and validated once
    dates = history.history_dates(dt.date(2026, 6, 15), 6)[:-1]
    assert params == dates  # D is the run's own evaluation
    assert sessions == [1, 1]  # one connection for the run's date, one for all the history dates
    n = len(load_trial("nct04203017").criteria)
    assert len(texts) == n  # one query text per criterion, compiled once for all dates
    assert not any("2026-" in t or "2025-" in t for t in texts)  # $as_of bound, never pasted
    history_queries = bound[n:]  # after the run's own n queries
    # a query that reads the reference date runs at every date; one that does not, once
    assert len(history_queries) == sum(flags) * len(dates) + (n - sum(flags)) and 0 < sum(flags) < n
    assert {sql for sql, _ in history_queries} == set(texts)
    assert {day for _, day in history_queries} - {None} == set(dates)


def test_dated_statuses_equal_evaluate_with_precomputed_levels(small_export):
    """Dated.at (statuses only; DuckDB with the EDSS levels precomputed once) against engines.evaluate,
    at dates around the data, for both progression blocks and both engines."""
    from pipeline.core.dialect import load_dialect
    from pipeline.core.vocabulary import load_vocabulary
    from pipeline.engines import evaluate
    from pipeline.engines.dated import Dated
    from pipeline.inputs.ingest import ingest

    registry = ingest(small_export, load_dialect(small_export, {}), load_vocabulary(None), today=TODAY)
    days = [dt.date(2019, 1, 31), dt.date(2024, 2, 29), dt.date(2025, 7, 31), dt.date(2026, 6, 15), TODAY]
    for trial_id in ("nct04203017", "nct04411641"):
        trial = load_trial(trial_id)
        for engine in ENGINES:
            dated_ = Dated(registry, trial, engine)
            if engine == "duckdb":
                assert all("levels_" in sql for cid, (sql, _) in dated_.sql.items()
                           if cid in ("progression_on_therapy", "recent_progression"))
            for day in days:
                want = evaluate(registry, trial, day, engine).select("patient_id", "site_id", "status", *trial.ids)
                got = dated_.at(day)
                assert got.equals(want), (trial_id, engine, day)
            dated_.close()


def test_engines_and_several_trials_write_the_same_history(small_export, tmp_path):
    assert main(["run", "--input", str(small_export), "--out", str(tmp_path / "all"), "--as-of", "2026-11-01",
                 "--history", "20", "--trial", "all", "--conversion", "0.4"]) == 0
    assert main(["run", "--input", str(small_export), "--out", str(tmp_path / "one"), "--as-of", "2026-11-01",
                 "--history", "20", "--trial", "nct04047628", "--engine", "duckdb", "--conversion", "0.4"]) == 0
    for f in FILES:
        assert (tmp_path / "all" / "nct04047628" / f).read_bytes() == (tmp_path / "one" / f).read_bytes(), f
    duck = (tmp_path / "one" / "report.html").read_text()
    # the page's command names the engine when it is not polars (the only other difference: the engine's name)
    duck = duck.replace(',"--engine","duckdb"', "", 1)
    assert duck.replace("duckdb", "polars") == (tmp_path / "all" / "nct04047628" / "report.html").read_text()
    for t in ("nct04203017", "nct04411641"):
        assert all((tmp_path / "all" / t / f).exists() for f in FILES)
    s = json.loads((tmp_path / "one" / "summary.json").read_text())
    p = s["projection"]
    # the trial's planned enrolment is context, never the target: no --target, no time to target
    assert p["target"] is None and p["planned_enrolment"] == 156 and p["conversion"] == 0.4
    assert p["time_to_target"] is None and "no target" in p["time_to_target_reason"]
    covs = [p["backtest"]["coverage_80"]] + [q["coverage_80"] for q in p["backtest"]["quantities"].values()]
    assert p["backtest"]["available"] and p["reliable"] == (min(covs) >= 0.6)
    assert s["history"]["months"] == 20
    proj = read(tmp_path / "one" / "projection.csv")
    assert proj.columns == ["month", "end_date", "site_id", "expected_new_candidates", "low_80", "high_80",
                            "low_95", "high_95"]
    assert proj.filter(pl.col("site_id") == projection.TOTAL).height == 12


def test_target_and_projection_months_options(small_export, tmp_path, capsys):
    assert main(["run", "--input", str(small_export), "--out", str(tmp_path / "r"), "--as-of", "2026-11-01",
                 "--history", "3", "--target", "7", "--projection-months", "5", "--conversion", "50%"]) == 0
    out = capsys.readouterr().out
    assert "time to 7 enrolled (conversion 0.5;" in out and "back-test: not available" in out
    s = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert s["projection"]["target"] == 7 and s["projection"]["target_source"] == "--target"
    assert s["projection"]["months"] == 5 and s["projection"]["reliable"] is None
    assert read(tmp_path / "r" / "projection.csv")["month"].cast(pl.Int64).max() == 5
    assert not (tmp_path / "r" / "projection_backtest.csv").exists()
    html = (tmp_path / "r" / "report.html").read_text()
    assert 'id="projection"' in html and "Not back-tested" in html


@pytest.mark.parametrize("args", [["--target", "20"], ["--conversion", "0.5"], ["--projection-months", "6"],
                                  ["--history", "0"], ["--history", "x"], ["--history", "3", "--conversion", "0"],
                                  ["--history", "3", "--conversion", "1.5"], ["--history", "3", "--target", "0"]])
def test_usage_errors(args, small_export, tmp_path, capsys):
    try:
        code = main(["run", "--input", str(small_export), "--out", str(tmp_path / "r"), *args])
    except SystemExit as exc:  # argparse's own checks exit from the parser
        code = exc.code
    assert code == 2
    assert not (tmp_path / "r").exists()
    assert "msfeas: error:" in capsys.readouterr().err


def test_without_history_nothing_changes(small_export, tmp_path):
    assert main(["run", "--input", str(small_export), "--out", str(tmp_path / "r"), "--as-of", "2026-11-01"]) == 0
    names = {p.name for p in (tmp_path / "r").iterdir()}
    assert not names & set(FILES)
    s = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert "history" not in s and "projection" not in s
    html = (tmp_path / "r" / "report.html").read_text()
    assert 'id="history"' not in html and 'id="projection"' not in html


def test_unreliable_projection_is_labelled():
    """A flow that jumps a year before D: the back-test fails and the report says so."""
    days = history.history_dates(AS_OF, 24)
    # patient k becomes a candidate at date index start[k]: one a month for a year, then ten a month
    start = [j for j in range(1, 13) for _ in range(1)] + [j for j in range(13, 24) for _ in range(10)]
    pids = [f"P{k:04d}" for k in range(len(start))]

    def at(day):
        j = days.index(day)
        return pl.DataFrame({"patient_id": pids, "site_id": ["S1", "S2"] * (len(pids) // 2) + ["S1"] * (len(pids) % 2),
                             "a": ["pass" if j >= s else "fail" for s in start]}).with_columns(
            pl.when(pl.col("a") == "pass").then(pl.lit("eligible")).otherwise(pl.lit("ineligible")).alias("status"))

    h = history.replay(days, ["a"], at)
    pool = int(h.totals["eligible"][-1])
    p = projection.project(projection.Flow.from_history(h.by_site, days), AS_OF, pool, 12, 500, 1.0, "--target")
    assert p.record["reliable"] is False
    model = recruitment.report_model(h, p)
    colours = {"eligible": "#3a8f5c", "ineligible": "#c8553d"}
    html = report.render({"history": model, "s": {"as_of": AS_OF.isoformat()}, "colours": colours}, "history.html.j2")
    assert 'id="unreliable"' in html and "Unreliable projection" in html
    assert "the projection is unreliable" in html


def test_report_section_in_chromium(small_export, tmp_path):
    from playwright.sync_api import sync_playwright

    from tests.test_report import ARGS, CHROMIUM

    out = tmp_path / "r"
    assert main(["run", "--input", str(small_export), "--out", str(out), "--as-of", "2026-11-01", "--history", "20",
                 "--trial", "nct04047628", "--target", "30", "--conversion", "0.5"]) == 0
    s = json.loads((out / "summary.json").read_text())
    p, t, bt = s["projection"], s["projection"]["time_to_target"], s["projection"]["backtest"]
    totals = read(out / "history.csv")
    backtest = read(out / "projection_backtest.csv").filter(pl.col("site_id") == projection.TOTAL)
    html = (out / "report.html").read_text("utf-8")
    assert report.external_references(html) == []
    assert all(" src" not in tag for tag in re.findall(r"<script[^>]*>", html.lower()))  # the workbench's, inline
    url = out.joinpath("report.html").resolve().as_uri()
    errors, requests = [], []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("request", lambda r: requests.append(r.url))
        page.goto(url, wait_until="load")
        table = page.evaluate("""() => [...document.querySelectorAll('#history-table tbody tr')].map(tr =>
            [tr.dataset.asOf, ...['pool', 'new', 'lost'].map(c => tr.querySelector(`[data-col="${c}"]`).textContent)])""")
        bars = page.evaluate("""() => [...document.querySelectorAll('#history-flow rect.new-bar')].map(r =>
            [r.dataset.asOf, r.dataset.n, r.getBoundingClientRect().height])""")
        fan = page.evaluate("""() => [...document.querySelectorAll('#projection-fan circle.fan-point')].map(c =>
            [+c.dataset.month, +c.dataset.median, +c.getAttribute('data-low-80'), +c.getAttribute('data-high-80')])""")
        band = page.locator("#projection-fan polygon.band80").bounding_box()
        ttt = page.locator("#time-to-target").inner_text()
        needed = page.locator('[data-projection="target"]').inner_text()
        conversion = page.locator('[data-projection="conversion"]').inner_text()
        coverage = page.locator('[data-backtest="coverage_80"]').inner_text()
        total_coverage = page.locator('[data-backtest="total_coverage_80"]').inner_text()
        observed = page.evaluate("""() => [...document.querySelectorAll('#backtest-chart circle.bt-observed')].map(c =>
            [c.dataset.endDate, +c.dataset.observed])""")
        sites = page.locator("#history-sites tbody tr").count()
        assumptions = page.locator("#assumptions").inner_text()
        unreliable = page.locator("#unreliable").count()
        browser.close()
    assert errors == [] and requests == [url]
    want = [[r["as_of"], f"{int(r['eligible']) + int(r['possible']):,}", r["new_candidates"] or "",
             r["lost_candidates"] or ""] for r in totals.iter_rows(named=True)]
    assert table == want
    assert [[a, int(n)] for a, n, _ in bars] == [[r["as_of"], int(r["new_candidates"])] for r in totals.rows(named=True)[1:]]
    assert max(h for *_, h in bars) > 10  # the tallest bar is drawn, not a sliver
    assert len(fan) == p["months"] + 1 and fan[0][1:] == [p["pool"]] * 3
    assert all(lo <= med <= hi for _, med, lo, hi in fan) and band["height"] > 5
    assert needed == str(p["target"]) == "30" and conversion == "0.5"
    want_ttt = "more than 120 months" if t["months_median"] is None else f"{t['months_median']} months"
    assert ttt == want_ttt
    assert coverage == f"{bt['coverage_80']:.2f}" and total_coverage == f"{bt['total_coverage_80']:.2f}"
    inside = sum(int(r["low_80"]) <= int(r["observed"]) <= int(r["high_80"]) for r in backtest.iter_rows(named=True))
    assert round(inside / backtest.height, 4) == bt["total_coverage_80"]
    assert observed == [[r["end_date"], int(r["observed"])] for r in backtest.iter_rows(named=True)]
    assert sites == len(s["by_site"])
    assert "steady rate" in assumptions and "0.5 of screened candidates" in assumptions
    assert unreliable == (0 if p["reliable"] else 1)


@pytest.mark.parametrize("patients", [0, 1])
def test_tiny_exports(patients, tmp_path):
    """No patient at all, or one (one site, no new candidate): the history and a projection still come out."""
    from tests.conftest import write_export as write_rows

    rows = [{"patient_id": "P1", "site_id": "S1", "sex": "F", "birth_date": "1980-01-01", "onset_date": "2020-01-01",
             "diagnosis_date": "2020-02-01", "ms_course": "RRMS", "research_consent": "Y"}][:patients]
    export = write_rows(tmp_path / "e", {"patients": rows})
    assert main(["run", "--input", str(export), "--out", str(tmp_path / "r"), "--as-of", "2026-11-01",
                 "--history", "20"]) == 0
    totals = read(tmp_path / "r" / "history.csv")
    assert totals.height == 21 and set(totals["population"].to_list()) == {str(patients)}
    p = json.loads((tmp_path / "r" / "summary.json").read_text())["projection"]
    assert p["fit"]["method"] == "jeffreys"
    assert p["backtest"]["available"] == bool(patients)
    assert 'id="projection"' in (tmp_path / "r" / "report.html").read_text()
