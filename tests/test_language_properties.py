"""Properties of the criteria language on random criteria and random exports.

Random trees of all/any/not over random leaves (patient_code, age, years_since,
date_on_or_before, count on random tables with random filters and windows, latest_value,
lab_uln, years_since_by_value, episodes, events_during, and now and then creatinine_clearance,
confirmed_progression or recent_progression) are written as a trial file (TOML text, parsed by
`pipeline.criteria.load.parse_trial`) and evaluated on random small exports (3-5 patients,
dates around D and on the window edges, some optional tables absent):

- the Polars and DuckDB evaluations are identical;
- not(not(x)) is x (status and evidence), and all([any([not(x)])]) is not(x): single-child
  composites are their child, and not swaps pass and fail.

The filters use every predicate (in_listed/prefix_listed with empty lists, `any` of filters),
on codes in another case, empty values and code prefixes with dots.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import zlib

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.core.dialect import Dialect
from pipeline.core.vocabulary import load_vocabulary
from pipeline.criteria.load import parse_trial
from pipeline.engines import evaluate
from pipeline.inputs.ingest import ingest
from tests.conftest import SPARK, TODAY, spark_registry, write_export

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
# Spark as the third engine: fewer examples (a Spark query costs about a second on small data).
SPARK_SETTINGS = settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
VOCABULARY = load_vocabulary()
OPTIONAL = ("visits", "relapses", "treatments", "labs", "function_tests", "conditions", "mri")
# Days before D (negative: after D), around every window edge the leaves use.
OFFSETS = [-10, -1, 0, 1, 29, 30, 31, 89, 90, 91, 364, 365, 366, 800, 3000]


# ---------------------------------------------------------------- random exports

def _day(D: dt.date, offset: int) -> str:
    return (D - dt.timedelta(days=offset)).isoformat()


@st.composite
def exports(draw):
    """(D, {table: rows}) with 3-5 patients; each optional table is present or absent at random."""
    D = draw(st.sampled_from([dt.date(2024, 6, 30), dt.date(2023, 3, 1)]))
    pids = [f"P{i}" for i in range(draw(st.sampled_from([3, 4, 5])))]
    pid = st.sampled_from(pids)

    def date(offsets=OFFSETS):
        return st.sampled_from(offsets).map(lambda o: _day(D, o))

    def maybe(strategy):
        return st.none() | strategy

    adult = D.replace(year=D.year - 18)
    patients = [{
        "patient_id": p, "site_id": draw(st.sampled_from(["S1", "S2"])),
        "sex": draw(st.sampled_from([None, "F", "M", "U", "f"])),
        "birth_date": draw(st.sampled_from([None, adult.isoformat(), (adult + dt.timedelta(days=1)).isoformat(),
                                            "1950-03-01", "2000-02-29", _day(D, -5)])),
        "onset_date": draw(maybe(date(OFFSETS + [7304, 7305]))),
        "diagnosis_date": draw(maybe(date(OFFSETS + [1826, 1827, 7305]))),
        "ms_course": draw(st.sampled_from([None, "RRMS", "spms", "PPMS", "CIS", "UNK"])),
        "research_consent": draw(st.sampled_from([None, "Y", "N", "y"])),
        "death_date": draw(maybe(date([-1, 0, 100]))),
    } for p in pids]
    tables = {"patients": patients}

    def rows(strategy, min_size, max_size):
        return draw(st.lists(strategy, min_size=min_size, max_size=max_size))

    tables["visits"] = rows(st.fixed_dictionaries({
        "patient_id": pid, "visit_date": date(),
        "edss": st.sampled_from([None, "0", "2.0", "3.0", "3.5", "6.0", "6.5", "7.0"]),
        "karnofsky": st.sampled_from([None, "20", "30", "90"]),
        "weight_kg": st.sampled_from([None, "45", "70.5", "90"])}), 6, 16)
    tables["relapses"] = rows(st.fixed_dictionaries({"patient_id": pid, "onset_date": date()}), 1, 5)

    @st.composite
    def episode(draw, start_col, end_col, start_nullable):
        start_off = draw(st.sampled_from(OFFSETS + [5000]))
        start = None if start_nullable and draw(st.booleans()) else _day(D, start_off)
        end = None
        if draw(st.booleans()):
            end_off = draw(st.sampled_from([o for o in OFFSETS if start is None or o <= start_off]))
            end = _day(D, end_off)
        return {start_col: start, end_col: end}

    tables["treatments"] = [{"patient_id": draw(pid), "drug": draw(st.sampled_from(
        ["Tysabri", "Avonex", "Novantrone", "Ocrevus", "natalizumab", "Copaxone", "Gilenya"])),
        "stop_reason": draw(st.sampled_from([None, "inefficacy", "Adverse_Event", "planned", "whatever"]))}
        | draw(episode("start_date", "end_date", False)) for _ in range(draw(st.sampled_from(range(2, 7))))]
    tables["mri"] = rows(st.fixed_dictionaries({
        "patient_id": pid, "scan_date": date(), "gd_lesions": st.sampled_from([None, "0", "1", "3"]),
        "new_t2_lesions": st.sampled_from([None, "0", "2"])}), 1, 6)
    units = {"AST": ["U/L", "IU/L"], "ALT": ["U/L"], "TBIL": ["umol/L", "mg/dL"], "CREAT": ["umol/L", "mg/dL"],
             "GGT": ["U/L"]}
    tables["labs"] = []
    for _ in range(draw(st.sampled_from(range(4, 12)))):
        test = draw(st.sampled_from(sorted(units)))
        tables["labs"].append({
            "patient_id": draw(pid), "sample_date": draw(date()), "test": test,
            "value": draw(st.sampled_from(["0.9", "1.0", "30", "88.4", "200", "300"] + ([] if test == "CREAT" else ["0"]))),
            "unit": draw(st.sampled_from(units[test])), "ref_high": draw(st.sampled_from([None, "1.2", "45", "110"]))})
    tables["function_tests"] = rows(st.fixed_dictionaries({
        "patient_id": pid, "test_date": date(), "test": st.sampled_from(["LVEF", "FEV1", "dlco"]),
        "value": st.sampled_from(["45", "50", "69.9", "70", "80"])}), 2, 8)
    tables["conditions"] = [{
        "patient_id": draw(pid), "code": draw(st.sampled_from([None, "C44.1", "C50.9", "A81.2", "a812", "B20"])),
        "category": draw(st.sampled_from(["malignancy", "infection", "cardiac", "psychiatric"])),
        "severity": draw(st.sampled_from([None, "mild", "severe"])),
        "infection_type": draw(st.sampled_from([None, "bacterial", "fungal", "viral"])),
        "controlled": draw(st.sampled_from([None, "Y", "N"])),
        "impairs_consent": draw(st.sampled_from([None, "Y", "N"]))} | draw(episode("onset_date", "end_date", True))
        for _ in range(draw(st.sampled_from(range(4, 11))))]
    for table in OPTIONAL:
        if not draw(st.sampled_from([True, True, True, True, False])):  # absent about one time in five
            del tables[table]
    return D, tables


# ---------------------------------------------------------------- random criteria
#
# Trees are built from a seeded `random.Random`. With 40 examples, Hypothesis's own draws repeat
# the same small trees (about half were duplicates), and so do drawn integer seeds (14 distinct of
# 40: 0, 3, 192, ...). So the seed mixes a drawn integer with a hash of the drawn export, which is
# almost never repeated: every example gets a new tree, and a replay gets the same one. A failure
# prints the whole trial file (shrinking the export changes the tree, so it stays near the original).

STATUSES = ["pass", "fail", "unknown"]
CODES = {"sex": ["F", "M", "U"], "ms_course": ["RRMS", "SPMS", "PPMS", "CIS", "RIS", "UNK"],
         "research_consent": ["Y", "N"]}
DATE_COLUMNS = ["birth_date", "onset_date", "diagnosis_date", "death_date"]


def _maybe(r: random.Random, value, p: float = 0.5):
    return value if r.random() < p else None


def _bounds(r: random.Random, lows: list, highs: list, need_one: bool):
    lo, hi = r.choice(lows), r.choice(highs)
    if need_one and lo is None and hi is None:
        hi = highs[-1]
    if lo is not None and hi is not None and lo > hi:
        lo, hi = hi, lo
    return lo, hi


def patient_code(r):
    column = r.choice(sorted(CODES))
    codes = CODES[column]
    node = {"type": "patient_code", "column": column, "pass": r.sample(codes, r.randint(0, len(codes)))}
    for key in ("unknown", "fail"):
        if r.random() < 0.5:
            node[key] = [c.lower() if r.random() < 0.3 else c for c in r.sample(codes, r.randint(0, len(codes)))]
    for key in ("missing", "otherwise"):
        node[key] = _maybe(r, r.choice(STATUSES))
    return node


def age(r):
    lo, hi = _bounds(r, [None, 0, 18, 30, 65], [None, 18, 30, 65, 100], need_one=True)
    return {"type": "age", "min": lo, "max": hi, "as": True}


def years_since(r):
    column = r.choice(DATE_COLUMNS[:3])
    return {"type": "years_since", "column": column,
            "fallback": _maybe(r, r.choice([c for c in DATE_COLUMNS[:3] if c != column])),
            "max_years": r.choice([0.5, 5, 20.0, 40]), "as": True}


def date_on_or_before(r):
    return {"type": "date_on_or_before", "column": r.choice(DATE_COLUMNS)}


# Row filters per table, each {column: condition}; a count takes up to two (merged per column).
FILTERS = {
    "visits": [{"edss": {"empty": False}}, {"edss": {"empty": True}}, {"edss": {"min": 3.0}}, {"edss": {"max": 6.5}},
               {"edss": 3.5}, {"karnofsky": [20, 30]}, {"karnofsky": {"not_in": [90]}}, {"karnofsky": {"in_listed": []}},
               {"weight_kg": {"empty": True}}, {"weight_kg": {"min": 50, "max": 80.0}}],
    "relapses": [],
    "treatments": [{"drug": "natalizumab"}, {"drug": ["Tysabri", "interferon_beta_1a"]}, {"drug": "Gilenya"},
                   {"drug": {"not_in": ["ocrelizumab"]}}, {"drug": {"prefix": ["Inter"]}},
                   {"drug": {"in_listed": ["fingolimod", "Copaxone"]}}, {"line": [1, 2]}, {"line": {"not_in": [2]}},
                   {"line": {"empty": True}}, {"line": 2}, {"end_date": {"empty": True}},
                   {"stop_reason": ["inefficacy", "OTHER"]}, {"stop_reason": {"in_listed": []}},
                   {"stop_reason": {"not_in": ["planned"]}}],
    "labs": [{"test": "AST"}, {"test": ["alt", "TBIL"]}, {"test": {"in_listed": ["ast"]}}, {"value": {"min": 1.0}},
             {"value": {"max": 90}}, {"ref_high": {"empty": False}}, {"ref_high": {"min": 40.0}}, {"unit": "U/L"},
             {"unit": {"prefix_listed": []}}, {"test": {"prefix": ["CR", "g"]}}, {"test": {"not_prefix": ["A"]}}],
    "function_tests": [{"test": ["LVEF"]}, {"test": {"not_in": ["fev1"]}}, {"value": {"min": 50}},
                       {"value": {"max": 69.9}}],
    "conditions": [{"code": {"prefix": ["C44", "A81.2"]}}, {"code": {"not_prefix": ["c44"]}}, {"code": {"empty": True}},
                   {"code": ["C50.9", "b20"]}, {"code": {"not_in": ["A812"]}}, {"code": {"prefix_listed": ["a8.12"]}},
                   {"code": {"prefix_listed": []}}, {"category": "malignancy"}, {"category": ["infection", "cardiac"]},
                   {"category": {"in_listed": []}}, {"category": {"prefix": ["Malig"]}}, {"severity": "severe"},
                   {"severity": {"not_in": ["mild"]}}, {"infection_type": ["bacterial", "fungal"]}, {"controlled": "N"},
                   {"controlled": {"empty": True}}, {"impairs_consent": "y"}, {"onset_date": {"empty": True}},
                   {"any": [{"category": "malignancy"}, {"severity": "severe", "controlled": {"not_in": ["Y"]}}]}],
    "mri": [{"gd_lesions": {"min": 1}}, {"gd_lesions": [0, 1]}, {"new_t2_lesions": {"empty": True}},
            {"any": [{"gd_lesions": {"min": 1}}, {"new_t2_lesions": {"min": 1}}]},
            {"any": [{"gd_lesions": {"empty": True}}, {"any": [{"new_t2_lesions": 0}, {"new_t2_lesions": 2}]}]}],
}


def where(r, table):
    out: dict = {}
    for f in r.sample(FILTERS[table], min(len(FILTERS[table]), r.choice([0, 1, 1, 2]))):
        for column, cond in f.items():
            both = isinstance(cond, dict) and isinstance(out.get(column), dict)
            out[column] = {**out[column], **cond} if both else cond
    return out


def count(r):
    table = r.choice(sorted(FILTERS))
    lo, hi = _bounds(r, [None, 0, 1, 2], [None, 0, 1, 3], need_one=True)
    return {"type": "count", "table": table, "where": where(r, table), "within_days": r.choice([None, 0, 30, 90, 365]),
            "at_least": lo, "at_most": hi, "distinct_dates": r.random() < 0.5,
            "otherwise": _maybe(r, r.choice(STATUSES)), "as": r.random() < 0.9 or None}


# (table, number column, filter) of the values that latest_value and years_since_by_value read.
VALUES = [("visits", "edss", {}), ("visits", "karnofsky", {}), ("visits", "weight_kg", {}),
          ("labs", "value", {"test": "CREAT"}), ("labs", "value", {"test": ["AST", "ALT"], "ref_high": {"empty": True}}),
          ("function_tests", "value", {"test": "lvef"}), ("function_tests", "value", {"test": ["FEV1", "DLCO"]}),
          ("mri", "gd_lesions", {})]


def latest_value(r):
    table, column, flt = r.choice(VALUES)
    lo, hi = _bounds(r, [None, 0, 3.0, 30, 50.0], [None, 6.5, 70, 90.0], need_one=False)
    return {"type": "latest_value", "table": table, "column": column, "where": flt,
            "lookback_days": r.choice([0, 30, 90, 365]), "tie": r.choice(["highest", "lowest"]),
            "min": lo, "max": hi, "as": True}


def years_since_by_value(r):
    table, column, flt = r.choice(VALUES)
    node = years_since(r)
    lo, hi = r.choice([(10.0, 20.0), (5, 40), (20.0, 10.0)])
    return node | {"type": "years_since_by_value", "value_table": table, "value_column": column, "where": flt,
                   "lookback_days": r.choice([30, 365]), "tie": r.choice(["highest", "lowest"]),
                   "step": r.choice([1, 5.0, 50.0]), "max_years_above": hi, "max_years_at_or_below": lo,
                   "max_years": None, "value_as": True}


# Event sources of episodes and events_during.
SOURCES = [{"table": "relapses"},
           {"table": "mri", "where": {"any": [{"gd_lesions": {"min": 1}}, {"new_t2_lesions": {"min": 1}}]},
            "possible": {"any": [{"gd_lesions": {"empty": True}}, {"new_t2_lesions": {"empty": True}}]}},
           {"table": "visits", "where": {"edss": {"min": 6.0}}, "possible": {"edss": {"empty": True}}},
           {"table": "labs", "where": {"test": "ast", "value": {"min": 200}}}]


def episodes(r):
    return {"type": "episodes", "events": r.sample(SOURCES, r.randint(1, 2)), "window_days": r.choice([90, 365, 1095]),
            "gap_days": r.choice([1, 30, 90]), "min_episodes": r.choice([1, 2, 3]), "as": True}


def events_during(r):
    if r.random() < 0.7:
        table = "treatments"
        flt = r.choice([{}, {"drug": ["Gilenya", "natalizumab", "ocrelizumab"]}, {"line": 2}])
        unknown_when = r.choice([None, {"stop_reason": ["inefficacy"]}, {"stop_reason": {"in_listed": []}}])
    else:
        table = "conditions"
        flt = r.choice([{}, {"category": "infection"}])
        unknown_when = r.choice([None, {"severity": "severe"}])
    return {"type": "events_during", "events": r.sample(SOURCES, r.randint(1, 2)), "window_days": r.choice([365, 1095]),
            "table": table, "where": flt, "start_offset_days": r.choice([None, 0, 30]), "unknown_when": unknown_when}


def lab_uln(r):
    return {"type": "lab_uln", "test": r.choice(["AST", "ALT", "TBIL", "CREAT", "alt"]),
            "lookback_days": r.choice([0, 30, 90, 365]), "max_uln": r.choice([1.5, 2, 5.0]),
            "default_uln": r.choice([21.0, 40, 110.0]), "umol_per_mg_dl": r.choice([None, 17.1, 88.4]), "as": True}


def creatinine_clearance(r):
    return {"type": "creatinine_clearance", "lab_lookback_days": r.choice([30, 90]), "weight_lookback_days": 365,
            "min_crcl": 60.0, "female_factor": 0.85, "creat_default_uln_umol": 110.0, "creat_umol_per_mg_dl": 88.4}


def confirmed_progression(r):
    return {"type": "confirmed_progression", "lines": r.choice([[1, 2], [2]]), "lag_days": 90,
            "baseline_lookback_days": 365, "late_baseline_days": 90, "increase_below": 1.0, "increase_from": 0.5,
            "increase_step_edss": 6.0, "confirmation_days": r.choice([84, 30]), "relapse_exclusion_days": 30}


def recent_progression(r):
    return {"type": "recent_progression", "window_days": r.choice([365, 800]), "baseline_lookback_days": 365,
            "increase_below": 1.0, "increase_from": 0.5, "increase_step_edss": 5.5,
            "confirmation_days": r.choice([84, 30]), "relapse_exclusion_days": 30}


# Leaf makers and their weights. The fixed blocks are rare: their SQL is long (building it
# dominates the run time), and their evidence names are fixed, so a tree holds at most one.
FIXED = (creatinine_clearance, confirmed_progression, recent_progression)
LEAVES = [(patient_code, 2), (age, 2), (years_since, 1.5), (date_on_or_before, 1), (count, 6), (latest_value, 3),
          (lab_uln, 2), (years_since_by_value, 1.5), (episodes, 1.5), (events_during, 1.5),
          (creatinine_clearance, 0.25), (confirmed_progression, 0.25), (recent_progression, 0.25)]
LIFTABLE = ("within_days", "lookback_days", "at_least", "at_most", "max_years", "min", "max", "max_uln", "default_uln",
            "window_days", "gap_days", "min_episodes", "step")


def random_rule(r: random.Random, max_leaves: int = 4) -> tuple[dict, dict]:
    """(rule, parameters): a random tree of all/any/not with at most `max_leaves` leaves, unique evidence
    names, no field left at None, and some numeric fields given as `$parameters`."""
    budget, names, blocks, params = [max_leaves], iter(range(100)), set(), {}

    def leaf() -> dict:
        maker = r.choices([m for m, _ in LEAVES], [w for _, w in LEAVES])[0]
        if maker in FIXED:
            if blocks:
                maker = date_on_or_before
            blocks.add(maker)
        node = maker(r)
        for key in ("as", "value_as"):
            if node.get(key):
                node[key] = f"ev{next(names)}_{node['type']}"
        node = {k: v for k, v in node.items() if v is not None and v != {}}
        for key in LIFTABLE:
            if key in node and r.random() < 0.2:
                name = f"p{len(params)}"
                params[name], node[key] = node[key], f"${name}"
        return node

    def node(depth: int) -> dict:
        if budget[0] <= 1 or depth >= 4 or r.random() < 0.35:
            budget[0] -= 1
            return leaf()
        kind = r.choice(["all", "any", "not"])
        if kind == "not":
            return {"type": "not", "rule": node(depth + 1)}
        children = []
        for _ in range(r.randint(1, 3)):
            if budget[0] <= 0:
                break
            children.append(node(depth + 1))
        return {"type": kind, "of": children}

    return node(0), params


SEEDS = st.integers(0, 2**32 - 1)


def rng(seed: int, export) -> random.Random:
    return random.Random(seed ^ zlib.crc32(json.dumps(export, sort_keys=True, default=str).encode()))


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return "{ " + ", ".join(f"{k} = {toml_value(x)}" for k, x in v.items()) + " }"


def trial_text(criteria: list[tuple[str, dict, dict]]) -> str:
    out = ['id = "random"', 'title = "Random criteria"']
    for cid, rule, params in criteria:
        out += ["", "[[criteria]]", f'id = "{cid}"', 'kind = "inclusion"', f'text = "Random criterion {cid}"']
        if params:
            out.append(f"parameters = {toml_value(params)}")
        out.append(f"rule = {toml_value(rule)}")
    return "\n".join(out) + "\n"


def _ingest(tmp_path_factory, tables):
    folder = write_export(tmp_path_factory.mktemp("lang") / "export", tables)
    return ingest(folder, Dialect(), VOCABULARY, today=TODAY, max_reject=1.0)


def _random_case(tmp_path_factory, export, seed):
    """A random trial of 2 or 3 random rules on the drawn export: (D, its text, the trial, the registry)."""
    D, tables = export
    r = rng(seed, export)
    text = trial_text([(f"c{i}", *random_rule(r)) for i in range(r.randint(2, 3))])
    return D, text, parse_trial(text, "random trial"), _ingest(tmp_path_factory, tables)


# ---------------------------------------------------------------- properties

@SETTINGS
@given(exports(), SEEDS)
def test_random_criteria_engines_identical(tmp_path_factory, export, seed):
    D, text, trial, reg = _random_case(tmp_path_factory, export, seed)
    a = evaluate(reg, trial, D, "polars")
    b = evaluate(reg, trial, D, "duckdb")
    assert a.equals(b), f"as of {D}, absent {reg.absent}\n{text}\npolars:\n{a}\nduckdb:\n{b}"


@SPARK
@SPARK_SETTINGS
@given(exports(), SEEDS)
def test_random_criteria_spark_identical(tmp_path_factory, export, seed):
    """Random criteria on random exports: Spark's evaluation is identical to DuckDB's (and so Polars')."""
    D, text, trial, reg = _random_case(tmp_path_factory, export, seed)
    a = evaluate(reg, trial, D, "duckdb")
    b = evaluate(spark_registry(reg), trial, D, "spark")
    assert a.equals(b), f"as of {D}, absent {reg.absent}\n{text}\nduckdb:\n{a}\nspark:\n{b}"


@SETTINGS
@given(exports(), SEEDS)
def test_double_negation_and_single_child_composites(tmp_path_factory, export, seed):
    """not(not(x)) = x (status and evidence); all([any([not(x)])]) = not(x): single-child all and any are their
    child, and not swaps pass and fail (three criteria, not four: building the SQL of x dominates the run time)."""
    D, tables = export
    x, params = random_rule(rng(seed, export))
    wrapped = {"x": x, "not_not_x": {"type": "not", "rule": {"type": "not", "rule": x}},
               "all_any_not_x": {"type": "all", "of": [{"type": "any", "of": [{"type": "not", "rule": x}]}]}}
    text = trial_text([(cid, rule, params) for cid, rule in wrapped.items()])
    trial = parse_trial(text, "random trial")
    reg = _ingest(tmp_path_factory, tables)
    evidence = trial.criteria[0].evidence
    flip = {"pass": "fail", "fail": "pass", "unknown": "unknown"}
    for engine in ("polars", "duckdb"):
        ev = evaluate(reg, trial, D, engine)

        def part(cid, status=pl.col):
            return ev.select(status(cid).alias("status"), *[pl.col(f"{cid}__{n}").alias(n) for n in evidence])

        assert part("not_not_x").equals(part("x")), f"{engine}: not(not(x)) differs from x\n{text}"
        flipped = part("all_any_not_x", lambda c: pl.col(c).replace_strict(flip, return_dtype=pl.Utf8))
        assert flipped.equals(part("x")), f"{engine}: all([any([not(x)])]) is not not(x)\n{text}"
