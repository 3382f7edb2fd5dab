"""The workbench of report.html (pipeline/outputs/workbench/, pipeline/outputs/templates/workbench.js), in headless Chromium.

- On the samples (a real `msfeas run`, every bundled trial): untick each criterion in turn, and
  move each slider to several positions (and several sliders at once): the page's funnel,
  attrition table and per-site counts equal those computed from the engines' own evaluation
  with the corresponding `--set` (polars and duckdb; the criteria a `--set` changes are
  evaluated again by the engine, the others are the run's), or from evaluation.parquet without
  the unticked criteria. The page's "copy as command" line, run as it is, gives the page's counts.
- On random exports (synthetic, with values put on the thresholds' edges: durations of exactly
  20 years, birthdays on D, ratios of exactly 5 x ULN, LVEF of exactly 50, unknown sexes), for
  the bundled trials and a trial of nested rules written here (any/all/not over slidable and
  fixed nodes, a count with both limits, a parameter shared by two nodes): the same.
- No patient id in the file; no request but the file itself; keyboard and screen-reader access
  (labels, values as text, focus order); the shareable page's suppression (the rule of
  site_counts.csv, computed again in Python); the page's inflate on random data.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import json
import random
import re
import shlex
import zlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import polars as pl
import pytest

from pipeline import synth
from pipeline.cli import main
from pipeline.core.dialect import Dialect
from pipeline.core.errors import UsageError
from pipeline.core.vocabulary import load_vocabulary
from pipeline.criteria import apply_overrides, bundled_trials, load_trial
from pipeline.criteria.load import parse_trial
from pipeline.engines import ENGINES, evaluate, overall_status
from pipeline.inputs.ingest import ingest
from pipeline.outputs import audit, report, tables, workbench
from pipeline.outputs.audit import COMPLEMENT, PRIMARY, VISIBLE, exact_audit
from pipeline.outputs.disclosure import relations, site_counts
from tests.conftest import ROOT, TODAY, write_export

AS_OF = dt.date(2026, 11, 1)
SAMPLES = ROOT / "data_samples" / "default"
RUN_SET = "edss_range.max_edss=7.0"  # the sample runs change one threshold: its slider starts there

READ = """() => {
  const num = t => { t = t.trim(); return /^[0-9,]+$/.test(t) ? Number(t.replace(/,/g, '')) : t; };
  const funnel = {};
  document.querySelectorAll('#wb-funnel [data-wb]').forEach(e => { funnel[e.dataset.wb] = num(e.textContent); });
  const attrition = [...document.querySelectorAll('#wb-attrition tbody tr[data-criterion]')].map(tr => {
    const row = {step: num(tr.cells[0].textContent), criterion: tr.dataset.criterion};
    tr.querySelectorAll('[data-k]').forEach(td => { row[td.dataset.k] = num(td.textContent); });
    return row; });
  const sites = {};
  document.querySelectorAll('#wb-sites tbody tr').forEach(tr => {
    const row = {}; tr.querySelectorAll('[data-k]').forEach(td => { row[td.dataset.k] = num(td.textContent); });
    sites[tr.dataset.site] = row; });
  return {funnel, attrition, sites, command: document.getElementById('wb-command').textContent};
}"""

SLIDE = """([id, pos]) => {
  const el = document.querySelector(`input[type=range][data-slider="${id}"]`);
  el.value = String(pos); el.dispatchEvent(new Event('input', {bubbles: true}));
  return Number(el.value); }"""

TICK = """([id, on]) => {
  const el = document.getElementById('wb-on-' + id);
  if (el.checked !== on) { el.checked = on; el.dispatchEvent(new Event('change', {bubbles: true})); } }"""


# ---------------------------------------------------------------- what the page must show

def view(ev: pl.DataFrame, kept: list[str]) -> dict:
    """The funnel, attrition and site counts of an evaluation judged on the `kept` criteria (tables.py)."""
    status = overall_status(kept) if kept else pl.lit("eligible")
    ev = ev.with_columns(status.alias("status"))
    counts = tables.counts(ev)
    sites = {s: {"population": sum(v.values()), **v} for s, v in tables.by_site(ev).items()}
    sites[""] = {k: counts[k] for k in ("population", "eligible", "possible", "ineligible")}
    return {"funnel": sites[""], "attrition": tables.attrition(ev, SimpleNamespace(ids=kept)).to_dicts(),
            "sites": sites}


class Oracle:
    """Counts of the engines with `--set`s: each criterion a --set changes is evaluated again by the engine."""

    def __init__(self, registry, trial, as_of: dt.date, bases: dict[str, pl.DataFrame]):
        self.registry, self.trial, self.as_of, self.bases = registry, trial, as_of, bases
        self.memo: dict = {}

    def evaluation(self, engine: str, sets: dict[str, str]) -> pl.DataFrame:
        ev = self.bases[engine]
        if not sets:
            return ev
        changed = sorted({k.split(".")[0] for k in sets})
        for cid in changed:
            mine = {k: v for k, v in sets.items() if k.split(".")[0] == cid}
            key = (engine, cid, tuple(sorted(mine.items())))
            if key not in self.memo:
                t = apply_overrides(self.trial, [f"{k}={v}" for k, v in mine.items()])
                sub = dataclasses.replace(t, criteria=[c for c in t.criteria if c.id == cid])
                got = evaluate(self.registry, sub, self.as_of, engine)
                assert got["patient_id"].equals(ev["patient_id"])
                self.memo[key] = got[cid]
            ev = ev.with_columns(self.memo[key])
        return ev

    def prefetch(self, sid: str, labels: list[str]) -> None:
        """The criterion of slider `sid` at several positions, as copies in one evaluation per engine."""
        cid = sid.split(".")[0]
        copies, keys = [], []
        for i, label in enumerate(labels):
            try:
                t = apply_overrides(self.trial, [f"{sid}={label}"])
            except UsageError:  # a position msfeas refuses (min above max): the page stops short of it
                continue
            copies.append(dataclasses.replace(next(c for c in t.criteria if c.id == cid), id=f"{cid}_v{i}"))
            keys.append((cid, ((sid, label),)))
        if not copies:
            return
        for engine in ENGINES:
            got = evaluate(self.registry, dataclasses.replace(self.trial, criteria=copies), self.as_of, engine)
            assert got["patient_id"].equals(self.bases[engine]["patient_id"])
            for c, (cid_, sets) in zip(copies, keys):
                self.memo[(engine, cid_, sets)] = got[c.id].alias(cid)

    def view(self, engine: str, sets: dict[str, str], off: set[str]) -> dict:
        return view(self.evaluation(engine, sets), [c for c in self.trial.ids if c not in off])


class Bench:
    """The workbench in a page: its payload, and its controls driven as a user's input would."""

    def __init__(self, page):
        self.page = page
        self.payload = page.evaluate("() => JSON.parse(document.getElementById('wb-data').textContent)")
        self.sliders = self.payload["sliders"]
        self.pos = {s["id"]: s["initial"] for s in self.sliders}
        self.off: set[str] = set()

    def slide(self, sid: str, pos: int) -> int:
        self.pos[sid] = self.page.evaluate(SLIDE, [sid, pos])
        return self.pos[sid]

    def tick(self, cid: str, on: bool) -> None:
        self.page.evaluate(TICK, [cid, on])
        (self.off.discard if on else self.off.add)(cid)

    def sets(self) -> dict[str, str]:
        return {s["id"]: s["labels"][self.pos[s["id"]]] for s in self.sliders if self.pos[s["id"]] != s["initial"]}

    def read(self) -> dict:
        got = self.page.evaluate(READ)
        got.pop("command")
        return got

    def reset(self) -> None:
        for s in self.sliders:
            self.slide(s["id"], s["initial"])
        for cid in list(self.off):
            self.tick(cid, True)


def positions(slider: dict, rnd: random.Random, extra: int = 2) -> list[int]:
    """Both ends, the neighbours of the run's position, and a few at random."""
    n, i0 = len(slider["labels"]), slider["initial"]
    want = {0, n - 1, i0 - 1, i0 + 1, i0 + 5, *(rnd.randrange(n) for _ in range(extra))}
    return sorted(p for p in want if 0 <= p < n and p != i0)


def check(bench: Bench, oracle: Oracle, what: str) -> None:
    got = bench.read()
    for engine in ENGINES:
        want = oracle.view(engine, bench.sets(), bench.off)
        assert got == want, f"{what} ({engine}): sets {bench.sets()}, off {sorted(bench.off)}"


def exercise(bench: Bench, oracle: Oracle, toggle_base: pl.DataFrame, seed: int, extra: int = 2,
             joint: int = 4) -> int:
    """Untick each criterion in turn, move each slider, then several at once; returns the checks made."""
    n = 0
    assert bench.read() == view(toggle_base, oracle.trial.ids), "the page starts at the run's counts"
    for cid in oracle.trial.ids:
        bench.tick(cid, False)
        assert bench.read() == view(toggle_base, [c for c in oracle.trial.ids if c != cid]), f"without {cid}"
        bench.tick(cid, True)
        n += 1
    rnd = random.Random(seed)
    for s in bench.sliders:
        moves = positions(s, rnd, extra)
        oracle.prefetch(s["id"], [s["labels"][p] for p in moves])
        for p in moves:
            bench.slide(s["id"], p)
            check(bench, oracle, f"{s['id']} at {s['labels'][bench.pos[s['id']]]}")
            n += 1
        bench.slide(s["id"], s["initial"])
    for _ in range(joint):  # several thresholds moved and criteria left out at once
        for s in rnd.sample(bench.sliders, min(len(bench.sliders), rnd.randint(2, 5))):
            bench.slide(s["id"], rnd.randrange(len(s["labels"])))
        for cid in rnd.sample(oracle.trial.ids, 2):
            bench.tick(cid, False)
        check(bench, oracle, "several at once")
        bench.reset()
        n += 1
    assert bench.read() == view(toggle_base, oracle.trial.ids)
    return n


# ---------------------------------------------------------------- fixtures

class Opened:
    def __init__(self, browser, path: Path, viewport=(1280, 900)):
        self.url = path.resolve().as_uri()
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
        self.page = self.context.new_page()
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.goto(self.url, wait_until="load")
        assert self.page.evaluate("window.msfeasWorkbenchError || null") is None

    def close(self):
        assert self.errors == []
        assert self.requests == [self.url], f"the page loaded something besides itself: {self.requests}"
        self.context.close()


@pytest.fixture(scope="module")
def registry():
    return ingest(SAMPLES, Dialect(), load_vocabulary(), today=TODAY, max_reject=1.0)


_RUNS: dict = {}


def sample_run(tmp_path_factory, trial_id: str, *extra: str) -> Path:
    key = (trial_id, extra)
    if key not in _RUNS:
        out = tmp_path_factory.mktemp("wb") / "run"
        assert main(["run", "--input", str(SAMPLES), "--out", str(out), "--as-of", AS_OF.isoformat(),
                     "--trial", trial_id, "--set", RUN_SET, *extra]) == 0
        _RUNS[key] = out
    return _RUNS[key]


def bases(registry, trial, as_of, run_eval: pl.DataFrame | None = None) -> dict[str, pl.DataFrame]:
    out = {e: evaluate(registry, trial, as_of, e) for e in ENGINES}
    if run_eval is not None:
        assert out["polars"].equals(run_eval)
    assert out["polars"].equals(out["duckdb"])
    return out


# ---------------------------------------------------------------- the samples, through a real run

@pytest.mark.parametrize("trial_id", bundled_trials())
def test_the_page_counts_as_the_engines_on_the_samples(trial_id, tmp_path_factory, browser, registry):
    run = sample_run(tmp_path_factory, trial_id)
    html = (run / "report.html").read_text("utf-8")
    parquet = pl.read_parquet(run / "evaluation.parquet")
    # No patient id anywhere in the file (the data are combinations of codes with a count).
    ids = parquet["patient_id"].to_list()
    assert not [i for i in ids if i in html]
    assert not re.search(r"P\d{7}", html)
    assert report.external_references(html) == []
    trial = load_trial(trial_id, [RUN_SET])
    oracle = Oracle(registry, trial, AS_OF, bases(registry, trial, AS_OF, parquet))
    opened = Opened(browser, run / "report.html")
    bench = Bench(opened.page)
    assert bench.payload["population"] == parquet.height
    assert bench.sliders, "every bundled trial has thresholds to slide"
    by_id = {s["id"]: s for s in bench.sliders}
    assert by_id["edss_range.max_edss"]["labels"][by_id["edss_range.max_edss"]["initial"]] == "7.0"
    assert by_id["edss_range.max_edss"]["overridden"]
    checks = exercise(bench, oracle, parquet, seed=len(trial_id))
    assert checks > 2 * len(bench.sliders)
    opened.close()


def test_slidable_criteria_are_derived_from_the_rules(registry):
    """Which thresholds slide: the parameters that are only a threshold of a node comparing one value."""
    got = {t: [s["id"] for s in workbench.build(evaluate(registry, load_trial(t), AS_OF), load_trial(t),
                                                   registry.tables, registry.absent, AS_OF)["payload"]["sliders"]]
           for t in bundled_trials()}
    assert got["nct04203017"] == [
        "adult.min_age", "adult.max_age", "edss_range.min_edss", "edss_range.max_edss", "disease_duration.max_years",
        "lvef.min_lvef", "pulmonary_function.min_fev1", "pulmonary_function.min_dlco", "organ_function.ast_max_uln",
        "organ_function.alt_max_uln", "organ_function.tbil_max_uln", "organ_function.creat_max_uln",
        "creatinine_clearance.min_crcl", "karnofsky.min_karnofsky"]
    assert got["nct04047628"] == ["age_range.min_age", "age_range.max_age", "edss_range.min_edss",
                                  "edss_range.max_edss"]
    assert got["nct04411641"] == [
        "age_range.min_age", "age_range.max_age", "edss_range.min_edss", "edss_range.max_edss",
        "disease_duration_by_edss.edss_step", "disease_duration_by_edss.max_years_above_step",
        "disease_duration_by_edss.max_years_at_or_below_step"]
    # Look-backs, lists, progression and infections are not thresholds of one value: toggled only.
    trial = parse_trial(NESTED, "nested.toml")
    wb = workbench.build(evaluate(registry, trial, AS_OF), trial, registry.tables, registry.absent, AS_OF)
    assert [s["id"] for s in wb["payload"]["sliders"]] == [
        "adult_or_consent.min_age", "not_high_edss.above", "relapses.at_least", "relapses.at_most",
        "duration_and_labs.max_years", "duration_and_labs.ast_max", "crcl.min_crcl", "duration_by_edss.edss_step",
        "duration_by_edss.above", "duration_by_edss.below", "shared_limit.min_pct"]
    assert wb["notes"] == []
    odd = {c["id"]: c for c in wb["payload"]["criteria"]}["odd"]
    assert odd["sliders"] == [] and odd["tree"]["op"] == "col"


@pytest.mark.parametrize("engine", ENGINES)
def test_the_copied_command_gives_the_page_counts(engine, tmp_path_factory, tmp_path, browser):
    """Move thresholds (one to "none"), copy the command, run it as it is: the run's counts are the page's."""
    run = sample_run(tmp_path_factory, "nct04203017")
    opened = Opened(browser, run / "report.html")
    bench = Bench(opened.page)
    by_id = {s["id"]: s for s in bench.sliders}
    bench.slide("adult.max_age", by_id["adult.max_age"]["labels"].index("65"))
    bench.slide("disease_duration.max_years", by_id["disease_duration.max_years"]["labels"].index("25.5"))
    bench.slide("organ_function.creat_max_uln", by_id["organ_function.creat_max_uln"]["labels"].index("1.25"))
    bench.slide("lvef.min_lvef", 0)  # none: no lower limit
    page = bench.read()
    text = opened.page.locator("#wb-command").inner_text()
    assert "#" not in text  # no criterion left out: the command says it all
    args = shlex.split(text)
    assert args[:2] == ["msfeas", "run"] and "RUN_DIR" in args
    for want in ["adult.max_age=65", "disease_duration.max_years=25.5", "organ_function.creat_max_uln=1.25",
                 "lvef.min_lvef=none", RUN_SET]:
        assert want in args, want
    opened.page.click("#wb-copy")
    opened.page.wait_for_function("document.getElementById('wb-copied').textContent !== ''")
    out = tmp_path / "again"
    args = [str(out) if a == "RUN_DIR" else a for a in args[2:]]
    assert main(["run", *args, "--engine", engine]) == 0
    summary = json.loads((out / "summary.json").read_text())
    want = {"funnel": {k: summary[k] for k in ("population", "eligible", "possible", "ineligible")},
            "attrition": pl.read_csv(out / "attrition.csv").to_dicts(),
            "sites": {s: {"population": sum(v.values()), **v} for s, v in summary["by_site"].items()}}
    want["sites"][""] = want["funnel"]
    assert page == want
    # A criterion left out cannot be a --set: the command runs the page's trial file without it.
    bench.tick("karnofsky", False)
    text = opened.page.locator("#wb-command").inner_text()
    assert "nct04203017-without-karnofsky.toml" in text.splitlines()[0]
    assert text.splitlines()[1].startswith("# nct04203017-without-karnofsky.toml is the trial file without karnofsky")
    assert "karnofsky" in opened.page.locator("#wb-dropped").inner_text()
    opened.close()


# ---------------------------------------------------------------- random exports, edges, nested rules

NESTED = """
id = "wbtest"
title = "Nested rules for the workbench test"

[[criteria]]
id = "adult_or_consent"
kind = "inclusion"
text = "Adult, or consented to research (an any over a slidable node and a fixed one)."
parameters = { min_age = 18 }
rule = { type = "any", of = [ { type = "age", min = "$min_age" }, { type = "patient_code", column = "research_consent", pass = ["Y"], fail = ["N"], otherwise = "unknown" } ] }

[[criteria]]
id = "not_high_edss"
kind = "exclusion"
text = "Not an EDSS at or above a limit (a not over a slidable node; the limit may be none)."
parameters = { above = 6.0 }
rule = { type = "not", rule = { type = "latest_value", table = "visits", column = "edss", lookback_days = 365, tie = "highest", min = "$above", as = "edss", label = "EDSS" } }

[[criteria]]
id = "relapses"
kind = "inclusion"
text = "Between a and b relapses in two years, else unknown (a count with both limits; no evidence column)."
parameters = { at_least = 1, at_most = 3 }
rule = { type = "count", table = "relapses", within_days = 730, at_least = "$at_least", at_most = "$at_most", otherwise = "unknown" }

[[criteria]]
id = "duration_and_labs"
kind = "inclusion"
text = "A short disease, AST below a limit and no severe illness; or not (dead or at most 40)."
parameters = { max_years = 16.0, ast_max = 3.0 }
[criteria.rule]
type = "any"
of = [
  { type = "all", of = [
    { type = "years_since", column = "onset_date", max_years = "$max_years" },
    { type = "lab_uln", test = "AST", lookback_days = 90, max_uln = "$ast_max", default_uln = 40.0, as = "ast" },
    { type = "count", table = "conditions", where = { severity = "severe" }, within_days = 0, at_most = 0 } ] },
  { type = "not", rule = { type = "all", of = [ { type = "date_on_or_before", column = "death_date" }, { type = "age", max = 40 } ] } },
]

[[criteria]]
id = "crcl"
kind = "exclusion"
text = "Creatinine clearance (unknown sexes judged on both values)."
parameters = { min_crcl = 60.0 }
rule = { type = "creatinine_clearance", lab_lookback_days = 90, weight_lookback_days = 365, min_crcl = "$min_crcl", female_factor = 0.85, creat_default_uln_umol = 110.0, creat_umol_per_mg_dl = 88.4 }

[[criteria]]
id = "duration_by_edss"
kind = "inclusion"
text = "Disease duration below a limit that depends on the EDSS (no fallback date)."
parameters = { edss_step = 4.0, above = 16.0, below = 8.0 }
rule = { type = "years_since_by_value", column = "onset_date", value_table = "visits", value_column = "edss", lookback_days = 365, tie = "highest", step = "$edss_step", max_years_above = "$above", max_years_at_or_below = "$below" }

[[criteria]]
id = "shared_limit"
kind = "exclusion"
text = "FEV1 and DLCO at least one shared limit (one parameter, two nodes; the look-back is no threshold)."
parameters = { min_pct = 70.0, lookback_days = 365 }
rule = { type = "all", of = [ { type = "latest_value", table = "function_tests", column = "value", where = { test = "FEV1" }, lookback_days = "$lookback_days", tie = "lowest", min = "$min_pct", as = "fev1" }, { type = "latest_value", table = "function_tests", column = "value", where = { test = "DLCO" }, lookback_days = "$lookback_days", tie = "lowest", min = "$min_pct", as = "dlco" } ] }

[[criteria]]
id = "odd"
kind = "inclusion"
text = "A parameter that is a threshold and a window at once: not slidable."
parameters = { n = 2 }
rule = { type = "count", table = "relapses", within_days = "$n", at_most = "$n" }

[[criteria]]
id = "screen"
kind = "exclusion"
text = "Judged at screening."
rule = { type = "screening" }
"""


def edge_export(folder: Path, n: int, seed: int) -> Path:
    """A synthetic export with values put on the thresholds' edges (and, for an odd seed, no function_tests)."""
    D = synth.REF
    t = synth.generate(n, seed)
    rng = np.random.default_rng(seed)
    p = t["patients"]
    pick = lambda share: pl.Series(rng.random(n) < share)  # noqa: E731
    days = pl.Series([D - dt.timedelta(days=int(d)) for d in rng.choice([7304, 7305, 7306, 5843, 5844, 5845, 2922], n)])
    births = pl.Series([D.replace(year=D.year - int(a)) + dt.timedelta(days=int(k)) for a, k in
                        zip(rng.choice([17, 18, 40, 41, 55, 60, 65], n), rng.choice([0, 0, 1, -1], n))])
    p = p.with_columns(
        pl.when(pick(.35)).then(days).otherwise(pl.col("onset_date")).alias("onset_date"),
        pl.when(pick(.3)).then(births).otherwise(pl.col("birth_date")).alias("birth_date"),
        pl.when(pick(.08)).then(None).otherwise(pl.col("sex")).alias("sex"))
    p = p.with_columns(pl.when(pick(.1)).then(None).otherwise(pl.col("onset_date")).alias("onset_date"))
    p = p.with_columns(pl.when(pl.col("onset_date").is_null() & pick(.5)).then(days)
                       .otherwise(pl.col("diagnosis_date")).alias("diagnosis_date"))
    t["patients"] = p
    ids = p["patient_id"].to_list()
    some = lambda share: [i for i in ids if rng.random() < share]  # noqa: E731
    recent = D - dt.timedelta(days=1)

    def add(table: str, rows: list[dict]) -> None:
        frame = t[table]
        t[table] = pl.concat([frame, pl.DataFrame(rows, schema=frame.schema)])

    lab = [("AST", [200.0, 199.9, 200.1, 120.0, 40.0], "U/L", None), ("ALT", [200.0, 201.0, 60.0], "U/L", 40.0),
           ("TBIL", [31.5, 42.0, 1.8], "umol/L", None), ("CREAT", [220.0, 110.0, 300.0, 60.0], "umol/L", None)]
    add("labs", [{"patient_id": i, "sample_date": recent, "test": test, "value": float(rng.choice(vals)),
                  "unit": unit, "ref_high": ref} for i in some(.3) for test, vals, unit, ref in lab])
    add("function_tests", [{"patient_id": i, "test_date": recent, "test": test, "value": float(rng.choice(vals))}
                           for i in some(.25) for test, vals in (("LVEF", [50.0, 49.9, 50.1, 30.0]),
                                                                  ("FEV1", [70.0, 69.9, 70.1]),
                                                                  ("DLCO", [70.0, 70.1, 40.0]))])
    add("visits", [{"patient_id": i, "visit_date": recent, "edss": float(rng.choice([3.0, 4.0, 5.0, 6.0, 6.5, 7.0])),
                    "karnofsky": int(rng.choice([20, 30, 40])), "weight_kg": float(rng.choice([50.0, 72.0]))}
                   for i in some(.3)])
    if seed % 2:  # an absent optional table: its criteria are unknown, whatever the threshold
        del t["function_tests"]
    synth.write_export(t, folder)
    return folder


def page_for(folder: Path, registry, trial, as_of: dt.date, ev: pl.DataFrame, shareable=False, min_cell=5) -> Path:
    """A page holding the workbench alone (the report's own template part and script)."""
    wb = workbench.build(ev, trial, registry.tables, registry.absent, as_of, None, shareable, min_cell)
    assert wb["notes"] == [], wb["notes"]
    html = report._env().from_string(
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>workbench</title></head><body><main>'
        '{% include "workbench.html.j2" %}</main></body></html>').render(workbench=report._workbench(wb))
    path = folder / f"{trial.id}.html"
    path.write_text(html, "utf-8")
    return path


@pytest.mark.parametrize("seed", [5])
def test_the_page_counts_as_the_engines_on_random_exports(seed, tmp_path, browser):
    export = edge_export(tmp_path / "export", 400 if seed == 5 else 150, seed)
    reg = ingest(export, Dialect(), load_vocabulary(), today=TODAY, max_reject=1.0)
    assert ("function_tests" in reg.absent) == bool(seed % 2)
    # 16 and 20 years are 5844 and 7305 days exactly; 8 years 2922 days.
    trials = [parse_trial(NESTED, "nested.toml"), load_trial("nct04203017" if seed == 5 else "nct04411641")]
    for trial in trials:
        base = bases(reg, trial, synth.REF)
        oracle = Oracle(reg, trial, synth.REF, base)
        opened = Opened(browser, page_for(tmp_path, reg, trial, synth.REF, base["polars"]))
        bench = Bench(opened.page)
        exercise(bench, oracle, base["polars"], seed=seed, extra=1, joint=3)
        opened.close()


@pytest.mark.parametrize("patients", [0, 1])
def test_an_export_of_no_patient_or_one(patients, tmp_path, browser):
    rows = [{"patient_id": "Z1", "site_id": "S1", "sex": "U", "birth_date": "1980-05-05", "onset_date": "2001-01-01"}]
    write_export(tmp_path / "export", {"patients": rows[:patients]})
    reg = ingest(tmp_path / "export", Dialect(), load_vocabulary(), today=TODAY, max_reject=1.0)
    trial = load_trial("nct04203017")
    base = bases(reg, trial, AS_OF)
    opened = Opened(browser, page_for(tmp_path, reg, trial, AS_OF, base["polars"]))
    bench = Bench(opened.page)
    assert bench.read() == view(base["polars"], trial.ids)
    assert bench.read()["funnel"]["population"] == patients
    bench.tick("alive", False)
    bench.slide("adult.min_age", 50)
    check(bench, Oracle(reg, trial, AS_OF, base), "a tiny export")
    opened.close()


# ---------------------------------------------------------------- access, suppression, inflate

def test_keyboard_and_screen_reader_access(tmp_path_factory, browser):
    run = sample_run(tmp_path_factory, "nct04203017")
    opened = Opened(browser, run / "report.html")
    page = opened.page
    bench = Bench(page)
    crits = bench.payload["criteria"]
    # Every toggle is a labelled checkbox, every slider a labelled range with its value as text.
    for c in crits:
        box = page.get_by_role("checkbox", name=re.compile(rf"^{c['id']}\b"))
        assert box.count() == 1 and box.is_checked()
    for s in bench.sliders:
        slider = page.get_by_role("slider", name=re.compile(rf"^{s['param']}:"))
        assert slider.count() >= 1
        text = page.locator(f'input[data-slider="{s["id"]}"]').get_attribute("aria-valuetext")
        assert s["what"] in text and s["labels"][s["initial"]] in text.replace("no upper limit", "none").replace(
            "no lower limit", "none")
    # Focus moves through the controls in the order they are listed: each criterion's toggle, then
    # its sliders, then the reset button, the command and the copy button.
    order = []
    for c in crits:
        order.append(f"wb-on-{c['id']}")
        order += [f"wb-s-{i}" for i in c["sliders"]]
    order += ["wb-reset", "wb-command", "wb-copy"]
    page.focus(f"#{order[0]}")
    seen = [page.evaluate("document.activeElement.id")]
    for _ in order[1:]:
        page.keyboard.press("Tab")
        seen.append(page.evaluate("document.activeElement.id"))
    assert seen == order
    # The keyboard alone: Space unticks, arrows move a slider; the counts and the spoken status follow.
    before = bench.read()["funnel"]
    page.focus("#wb-on-progression_on_therapy")
    page.keyboard.press("Space")
    assert not page.is_checked("#wb-on-progression_on_therapy")
    after = bench.read()["funnel"]
    assert after["ineligible"] < before["ineligible"]
    page.wait_for_function("document.getElementById('wb-live').textContent.includes('eligible')")
    live = page.locator("#wb-live").inner_text()
    assert f"ineligible {after['ineligible']:,}" in live
    page.keyboard.press("Space")
    sid = "edss_range.max_edss"
    el = page.locator(f'input[data-slider="{sid}"]')
    el.focus()
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("ArrowLeft")
    assert "6.0" in el.get_attribute("aria-valuetext")
    assert page.locator(f"#{el.get_attribute('id')}-out").inner_text().startswith("6.0")
    assert "edss_range.max_edss=6.0" in page.locator("#wb-command").inner_text()
    page.keyboard.press("End")  # the last position of a limit that may be none: no limit
    assert el.get_attribute("aria-valuetext").endswith("no upper limit")
    page.click("#wb-reset")
    assert bench.read()["funnel"] == before
    # The page stays inside the window at common widths.
    for width in (1280, 1440):
        page.set_viewport_size({"width": width, "height": 900})
        assert page.evaluate("document.documentElement.scrollWidth - window.innerWidth") == 0
    opened.close()


def test_a_shareable_report_suppresses_small_counts(tmp_path_factory, browser, registry):
    run = sample_run(tmp_path_factory, "nct04203017", "--shareable", "--min-cell", "10")
    html = (run / "report.html").read_text("utf-8")
    for section in ('id="headline"', 'id="attrition"', 'id="criteria"', 'id="sites"', 'id="settle"'):
        assert section not in html, section  # unsuppressed counts are left out of a shareable report
    assert 'id="wb-shareable"' in html and 'id="inputs"' in html
    trial = load_trial("nct04203017", [RUN_SET])
    oracle = Oracle(registry, trial, AS_OF, bases(registry, trial, AS_OF, pl.read_parquet(run / "evaluation.parquet")))
    opened = Opened(browser, run / "report.html")
    bench = Bench(opened.page)
    sites = sorted(bench.payload["sites"])

    def shown() -> dict:
        got = opened.page.evaluate(READ)
        cells = []
        for s in sites + [""]:
            cells += [str(got["sites"][s][k]).replace(",", "") for k in ("population", "eligible", "possible",
                                                                         "ineligible")]
        assert all(set(a) == {"step", "criterion"} for a in got["attrition"])  # no counts per step
        return {"site": cells}

    def want(sets: dict, off: set) -> dict:
        counts = oracle.view("polars", sets, off)
        counts = {"population": counts["funnel"]["population"], **counts["funnel"], "attrition": counts["attrition"],
                  "by_site": {s: {k: v for k, v in counts["sites"][s].items() if k != "population"} for s in sites}}
        view = workbench.shareable_view(counts, sites, 10)
        # Every table the page shows passes the exact audit (integer programming over what it shows).
        marks = [PRIMARY if t == "<10" else COMPLEMENT if t == "*" else VISIBLE for t in view["site"]]
        assert "–" in view["site"] or exact_audit(view["values"], marks, relations(len(sites)), 10) == [], view
        return {"site": view["site"]}

    first = shown()
    assert first == want({}, set())
    frame, totals = site_counts(json.loads((run / "summary.json").read_text())["by_site"], 10)
    assert first["site"] == [v for row in frame.drop("site_id").rows() for v in row] + list(totals.values())
    assert "<10" in first["site"] and "*" in first["site"]
    rnd = random.Random(3)
    for _ in range(4):
        for s in rnd.sample(bench.sliders, 3):
            bench.slide(s["id"], rnd.randrange(len(s["labels"])))
        cid = rnd.choice(trial.ids)
        bench.tick(cid, False)
        assert shown() == want(bench.sets(), bench.off)
        bench.reset()
    opened.close()


def test_a_shareable_overview_has_no_counts():
    trial = load_trial("nct04203017")
    row = {"population": 4321, "eligible": 3, "possible": 77, "ineligible": 4241, **{
        f"excluding_{i}{k}": None for i in (1, 2, 3) for k in ("", "_n_fail")},
        "expected_eligible": None, "months_to_target": None}
    model = {"s": {"as_of": "2026-11-01", "engine": "polars", "version": "x", "warnings": [],
                   "candidate_patients": {"any_trial": 80, "by_number_of_trials": {"1": 80}}},
             "trials": [{"trial": trial, "row": row, "tables": []}]}
    assert "4,321" in report.render({**model, "shareable": False}, "overview.html.j2")
    html = report.render({**model, "shareable": True}, "overview.html.j2")
    assert 'id="shareable"' in html and not re.search(r">\s*(4,321|3|77|80|4,241)\s*<", html)


def test_suppression_of_the_page_is_the_rule_of_site_counts():
    """shareable_view (the page's rule, mirrored) gives site_counts.csv's cells for the same counts."""
    rnd = np.random.default_rng(7)
    for _ in range(12):
        n_sites = int(rnd.integers(1, 6))
        values = rnd.choice([0, 1, 2, 3, 4, 6, 9, 15, 40], size=(n_sites, 3))
        by = {f"S{i}": dict(zip(("eligible", "possible", "ineligible"), map(int, values[i]))) for i in range(n_sites)}
        frame, totals = site_counts(by, 5)
        counts = {"population": int(values.sum()), **{k: int(values[:, j].sum()) for j, k in
                                                      enumerate(("eligible", "possible", "ineligible"))},
                  "by_site": by}
        got = workbench.shareable_view(counts, list(by), 5)["site"]
        assert got == [v for row in frame.drop("site_id").rows() for v in row] + list(totals.values())


def test_the_page_suppresses_and_inflates_as_python(tmp_path, browser):
    """The page's own suppression (site table and attrition chain) and inflate, on random input."""
    page_file = tmp_path / "api.html"
    page_file.write_text("<!DOCTYPE html><html><head><title>api</title></head><body><script>"
                         + workbench.script() + "</script></body></html>", "utf-8")
    opened = Opened(browser, page_file)
    page = opened.page
    rnd = np.random.default_rng(11)
    for _ in range(15):
        n_sites = int(rnd.integers(1, 7))
        values = rnd.choice([0, 1, 2, 3, 4, 7, 12, 30, 200], size=(n_sites, 3))
        table = np.column_stack([values.sum(axis=1), values])
        full = np.vstack([table, table.sum(axis=0)]).ravel().tolist()
        a = relations(n_sites)
        js = page.evaluate("([v, a, m]) => msfeasWorkbenchApi.suppress(v, a, m)", [full, a.tolist(), 5])
        assert js == workbench.suppress_cells(full, a, 5)
        js = page.evaluate("([v, a, m]) => Array.from(msfeasWorkbenchApi.protect(v, a, m))", [full, a.tolist(), 5])
        assert js == audit.protect(full, a, 5).tolist()  # the page's protection is the audited one
        assert exact_audit(full, js, a, 5) == []
        k = int(rnd.integers(1, 12))
        chain = [int(x) for x in rnd.choice([0, 1, 2, 3, 9, 40], size=2 + k + k - 1)]
        fixed = {0: int(rnd.integers(0, 3)), 1: int(rnd.integers(0, 3))}
        js = page.evaluate("([v, k, m, f]) => "
                           "msfeasWorkbenchApi.suppress(v, msfeasWorkbenchApi.chainRelations(k), m, f)",
                           [chain, k, 5, {str(i): m for i, m in fixed.items()}])
        assert js == workbench.suppress_cells(chain, workbench.chain_relations(k), 5, fixed), (chain, k, fixed)
    for size, level in [(0, 6), (1, 6), (300, 0), (70_000, 0), (5_000, 1), (200_000, 6), (100_000, 9)]:
        raw = bytes(rnd.choice([0, 1, 2, 7, 255], size=size).astype(np.uint8)) + rnd.bytes(size // 10)
        c = zlib.compressobj(level, zlib.DEFLATED, -15)
        packed = c.compress(raw) + c.flush()
        got = page.evaluate("""([b, n]) => { const s = atob(b), a = new Uint8Array(s.length);
            for (let i = 0; i < s.length; i++) a[i] = s.charCodeAt(i);
            return Array.from(msfeasWorkbenchApi.inflateRaw(a, n)).join(','); }""",
                            [base64.b64encode(packed).decode(), len(raw)])
        assert got == ",".join(map(str, raw)), (size, level)
    opened.close()


def test_the_payload_holds_counts_not_patients(registry):
    trial = load_trial("nct04203017")
    ev = evaluate(registry, trial, AS_OF)
    wb = workbench.build(ev, trial, registry.tables, registry.absent, AS_OF)
    text = wb["json"]
    assert not any(i in text for i in ev["patient_id"].to_list())
    assert not re.search(r"\d{4}-\d{2}-\d{2}", text.replace(AS_OF.isoformat(), ""))  # no date but D itself
    rows = workbench.decode(wb["payload"])
    assert rows["n"].sum() == ev.height and len(rows["n"]) == wb["payload"]["rows"] < ev.height
    assert workbench.recount(wb["payload"]) == {**tables.counts(ev), "by_site": tables.by_site(ev),
                                                "attrition": tables.attrition(ev, trial).to_dicts()}


def test_leb128_at_its_byte_boundaries():
    """The counts' encoding, vectorised, against the definition, one value at a time."""
    import numpy as np

    from pipeline.outputs.workbench.encoding import _leb128

    def one(v: int) -> bytes:
        out = bytearray()
        while v >= 0x80:
            out.append((v & 0x7F) | 0x80)
            v >>= 7
        out.append(v)
        return bytes(out)

    values = [0, 1, 127, 128, 255, 16383, 16384, 2**21 - 1, 2**21, 2**35 + 3, 2**63 - 1]
    assert _leb128(np.array(values, dtype=np.uint64)) == b"".join(one(v) for v in values)
    assert _leb128(np.array([127, 128])) == b"\x7f\x80\x01"
    assert _leb128(np.array([], dtype=np.int64)) == b""


@pytest.mark.parametrize("sizes", [[3, 3, 5, 40, 200, 2], [60_000, 60_000, 60_000, 60_000, 3, 7], [1, 2, 256, 257]])
def test_packed_sort_keys_give_the_column_order(sizes):
    """The payload's rows sorted by packed 64-bit words are in the order of a sort by each
    column in turn (one word, several words, a column of one key)."""
    import numpy as np

    from pipeline.outputs.workbench.encoding import packed_keys

    rng = np.random.default_rng(len(sizes))
    frame = pl.DataFrame({f"c{i}": rng.integers(0, n, 5000) for i, n in enumerate(sizes)}).unique()
    frame = frame.with_columns(pl.Series("c0", [sizes[0] - 1] * frame.height)) if sizes[0] == 1 else frame
    order = [f"c{i}" for i in np.argsort(sizes, kind="stable")]
    want = frame.sort(order)
    got = frame.sort(packed_keys([(c, sizes[int(c[1:])]) for c in order]))
    assert got.equals(want)


@pytest.mark.parametrize("sizes", [[3, 3, 5, 40, 200, 2], [60_000, 60_000, 60_000, 60_000, 3, 7], [1, 2, 256, 257],
                                   [2**20, 2**20, 2**20, 5]])
def test_the_payload_rows_are_the_distinct_combinations_in_column_order(sizes):
    """`_encode` groups and sorts on packed words and unpacks them: the same rows, counts and
    order as grouping by the columns themselves and sorting by each in turn (fewest keys first)."""
    import numpy as np

    from pipeline.outputs.workbench.encoding import _Column, _encode

    rng = np.random.default_rng(sum(sizes))
    cols = [_Column(f"x{i}", rng.integers(0, n, 20_000), list(range(n))) for i, n in enumerate(sizes)]
    _, rows = _encode(cols)
    frame = pl.DataFrame({f"c{i}": c.keys for i, c in enumerate(cols)})
    order = sorted(frame.columns, key=lambda c: (sizes[int(c[1:])], int(c[1:])))
    want = frame.group_by(frame.columns).len("n").sort(order)
    got = pl.DataFrame(rows).select(want.columns).cast(want.schema)
    assert got.height > 1 and got.equals(want)


@pytest.mark.parametrize("shape", [[60], [3, 80, 2], [4000, 4000, 3], [1]])
def test_packed_code_tuples_rank_as_sorted(shape):
    """`_pack`: each patient's key is the rank of its code tuple among the distinct tuples, which are
    listed in ascending mixed-radix order (a table of counts for few tuples, a sort for many)."""
    import numpy as np

    from pipeline.outputs.workbench.model import _pack

    rng = np.random.default_rng(len(shape))
    comps = [rng.integers(-1, n, 50_000) for n in shape]
    keys, entries = _pack(comps)
    tuples = list(zip(*[c.tolist() for c in comps]))
    want = sorted(set(tuples), key=lambda t: sum((x + 1) * m for x, m in zip(t, np.cumprod([1] + [
        int(c.max()) + 2 for c in comps[:-1]]).tolist())))
    assert entries == want
    assert [entries[k] for k in keys.tolist()] == tuples


def test_commands_of_any_order_and_left_out_criteria_run(tmp_path_factory, tmp_path, browser, monkeypatch):
    """The issue's failing commands: on NCT04411641 the maximum age to 80, then the minimum to 70 (msfeas
    applies --set values together), and a criterion with a --set left out (the page's trial file without it,
    named in the command). Each command, run as it is from another folder, gives the page's counts; a reload
    keeps the page's state (the URL fragment)."""
    run = sample_run(tmp_path_factory, "nct04411641")
    opened = Opened(browser, run / "report.html")
    bench = Bench(opened.page)
    by_id = {s["id"]: s for s in bench.sliders}
    bench.slide("age_range.max_age", by_id["age_range.max_age"]["labels"].index("80"))
    assert bench.slide("age_range.min_age", by_id["age_range.min_age"]["labels"].index("70")) == \
        by_id["age_range.min_age"]["labels"].index("70")
    bench.tick("edss_range", False)  # it carries the run's --set edss_range.max_edss=7.0
    page = bench.read()
    text = opened.page.locator("#wb-command").inner_text()
    args = shlex.split(text.splitlines()[0])
    assert "edss_range.max_edss=7.0" not in args and "age_range.min_age=70" in args and "age_range.max_age=80" in args
    name = "nct04411641-without-edss_range.toml"
    assert args[args.index("--trial") + 1] == name and name in text.splitlines()[1]
    assert Path(args[args.index("--input") + 1]).is_absolute()
    link = opened.page.locator("#wb-trial-file")
    assert link.is_visible() and link.get_attribute("download") == name
    where = tmp_path / "elsewhere"
    where.mkdir()
    (where / name).write_text(opened.page.evaluate("msfeasWorkbench.trialFileText()"), "utf-8")
    monkeypatch.chdir(where)
    out = tmp_path / "again"
    assert main(["run", *[str(out) if a == "RUN_DIR" else a for a in args[2:]]]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert page["funnel"] == {k: summary[k] for k in ("population", "eligible", "possible", "ineligible")}
    assert page["attrition"] == pl.read_csv(out / "attrition.csv").to_dicts()
    # The other order and the other criterion of the issue, straight: the same run.
    out2 = tmp_path / "other-order"
    swapped = [a.replace("age_range.min_age=70", "X").replace("age_range.max_age=80", "age_range.min_age=70")
               .replace("X", "age_range.max_age=80") for a in args[2:]]
    assert main(["run", *[str(out2) if a == "RUN_DIR" else a for a in swapped]]) == 0
    assert json.loads((out2 / "summary.json").read_text())["by_site"] == summary["by_site"]
    # A reload restores the state from the URL fragment.
    assert opened.page.evaluate("location.hash").startswith("#wb;")
    opened.page.reload(wait_until="load")
    opened.requests.remove(opened.url)
    assert bench.read() == page and opened.page.locator("#wb-command").inner_text() == text
    opened.close()


def test_the_issues_shareable_state_is_protected(tmp_path_factory, browser):
    """NCT04047628 with the minimum age at 38 (the issue: an eligible total of 8 with site cells whose lower
    bounds add up to 8): the page's sites table, read from the screen, passes the exact audit, and so does
    the state restored from a URL fragment with a criterion left out."""
    run = sample_run(tmp_path_factory, "nct04047628", "--shareable")
    opened = Opened(browser, run / "report.html")
    bench = Bench(opened.page)
    sites = bench.payload["sites"]
    by_id = {s["id"]: s for s in bench.sliders}

    def audited() -> list[str]:
        got = opened.page.evaluate(READ)
        texts = [str(got["sites"][s][k]).replace(",", "") for s in sites + [""]
                 for k in ("population", "eligible", "possible", "ineligible")]
        counts = opened.page.evaluate("(() => { const r = msfeasWorkbench.compute(); return r; })()")
        values = []
        for s in sites:
            v = counts["by_site"][s]
            values += [v["eligible"] + v["possible"] + v["ineligible"], v["eligible"], v["possible"], v["ineligible"]]
        values += [counts["population"], counts["eligible"], counts["possible"], counts["ineligible"]]
        marks = [PRIMARY if t == "<5" else COMPLEMENT if t == "*" else VISIBLE for t in texts]
        for t, v, m in zip(texts, values, marks):
            assert (m == VISIBLE and int(t) == v) or (m == PRIMARY and 1 <= v < 5) or (m == COMPLEMENT and
                                                                                      (v == 0 or v >= 5))
        assert exact_audit(values, marks, relations(len(sites)), 5) == []
        return texts

    bench.slide("age_range.min_age", by_id["age_range.min_age"]["labels"].index("38"))
    shown_38 = audited()
    assert "<5" in shown_38
    state = opened.page.evaluate("location.hash")
    assert "age_range.min_age%3A38" in state
    opened.page.evaluate("location.hash = '#wb;off=edss_range;set=' + encodeURIComponent('age_range.min_age:38')")
    opened.page.wait_for_function("!document.getElementById('wb-on-edss_range').checked")
    audited()
    opened.close()
