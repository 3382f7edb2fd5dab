"""docs/trial-language.md is executable: what it shows must be what the code does.

- every ```toml block with `[[criteria]]` is a valid trial file (given an `id` and a `title`
  when it has none) and gives the same evaluation on both engines;
- the two worked examples hold at their boundaries, on both engines;
- the boundary tables of `episodes`, `events_during`, `years_since_by_value` and
  `recent_progression`, and the examples of `in_listed`/`prefix_listed` and `any` in a `where`,
  hold on both engines;
- every node type has a `### <type>` section that names each of its fields;
- every ```sql block is a real excerpt of the SQL of a criterion of the page;
- section 11 lists every bundled trial's criteria with their kinds, node types and tables;
- docs/writing-a-trial.md: the tutorial's commands run in order, its cookbook loads, and its two
  invented patterns decide as it says.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import tomllib
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from pipeline.core.dialect import Dialect
from pipeline.core.errors import UsageError
from pipeline.core.vocabulary import load_vocabulary
from pipeline.criteria.load import Criterion, Trial, apply_overrides, parse_trial
from pipeline.criteria.nodes import NODE_TYPES
from pipeline.criteria.to_sql import criterion_query, render
from pipeline.engines import evaluate
from pipeline.inputs.ingest import ingest
from tests.conftest import ENGINES, ROOT, TODAY, write_export

DOC = ROOT / "docs" / "trial-language.md"
D = dt.date(2024, 6, 30)
SAMPLES = ROOT / "data_samples" / "default"
SAMPLES_AS_OF = dt.date(2026, 11, 1)  # the reference date the samples were drawn around


def days(n: int) -> str:
    """D + n days, as the export writes dates."""
    return (D + dt.timedelta(days=n)).isoformat()


# ---------------------------------------------------------------- reading the page

def doc_text() -> str:
    return DOC.read_text("utf-8") if DOC.is_file() else ""


def fenced(text: str, lang: str) -> list[str]:
    """The bodies of the ```<lang> blocks, in order."""
    return re.findall(rf"^```{lang}[ \t]*\n(.*?)^```[ \t]*$", text, re.S | re.M)


def criteria_blocks() -> list[str]:
    return [b for b in fenced(doc_text(), "toml") if "[[criteria]]" in b]


def as_trial(block: str, n: int) -> Trial:
    """A block as a trial file: `id` and `title` are added when the block has none."""
    head = tomllib.loads(block.split("[[criteria]]", 1)[0])
    prefix = "" if "id" in head else f'id = "doc_example_{n}"\n'
    prefix += "" if "title" in head else f'title = "Example {n} of docs/trial-language.md"\n'
    return parse_trial(prefix + block, f"{DOC.name}, example {n}")


def block_id(block: str) -> str:
    m = re.search(r'^id\s*=\s*"([^"]+)"', block.split("[[criteria]]", 1)[1], re.M)
    return m.group(1) if m else "?"


BLOCKS = criteria_blocks()


def all_criteria() -> dict[str, tuple[Trial, Criterion]]:
    out = {}
    for n, block in enumerate(BLOCKS):
        trial = as_trial(block, n)
        for c in trial.criteria:
            out.setdefault(c.id, (trial, c))
    return out


def only(cid: str, overrides: list[str] | None = None) -> Trial:
    """The page's criterion `cid` alone in a trial (with --set overrides applied)."""
    found = all_criteria()
    assert cid in found, f"docs/trial-language.md has no [[criteria]] example with id {cid!r}"
    trial, crit = found[cid]
    return apply_overrides(dataclasses.replace(trial, criteria=[crit]), overrides or [])


def sections(text: str, level: int = 3) -> dict[str, str]:
    """Heading text -> body, for headings of `level`; a body ends at the next heading of that
    level or above. Lines inside fenced code are never headings."""
    out: dict[str, str] = {}
    current, body, in_code = None, [], False
    for line in text.splitlines():
        if line.startswith("```"):
            in_code = not in_code
        m = None if in_code else re.match(r"^(#{1,6}) (.*)$", line)
        if m and len(m.group(1)) <= level:
            if current is not None:
                out[current] = "\n".join(body)
            current, body = (m.group(2).strip(), []) if len(m.group(1)) == level else (None, [])
            continue
        body.append(line)
    if current is not None:
        out[current] = "\n".join(body)
    return out


# ---------------------------------------------------------------- exports

def registry(folder: Path):
    return ingest(folder, Dialect(), load_vocabulary(), today=TODAY, max_reject=1.0)


def patient(pid: str, **kw) -> dict:
    return {"patient_id": pid, "site_id": "S1", "sex": "F", "birth_date": "1980-01-01", "onset_date": "2015-01-01",
            "diagnosis_date": "2016-01-01", "ms_course": "RRMS", "research_consent": "Y"} | kw


def mixed_tables() -> dict[str, list[dict]]:
    """A small export with something for every node type, around D and at its boundaries."""
    pts = [
        patient("m01"),
        patient("m02", sex="M", birth_date="2006-07-01", onset_date=None, diagnosis_date="2000-01-01",
                ms_course="SPMS", research_consent="N"),
        patient("m03", sex=None, birth_date=None, onset_date=None, diagnosis_date=None, ms_course=None,
                research_consent=None, death_date=days(0)),
        patient("m04", birth_date="1960-02-29", onset_date=days(1), diagnosis_date="2003-01-01", ms_course="PPMS",
                death_date=days(1)),
        patient("m05", sex="M", birth_date="1990-06-30", onset_date="1995-01-01", ms_course="CIS"),
        patient("m06", sex="U", birth_date="1975-03-15"),
    ]

    def visit(pid, n, **kw):
        return {"patient_id": pid, "visit_date": days(n)} | kw

    visits = [
        visit("m01", -800, edss="2.0", weight_kg="70"), visit("m01", -700, edss="2.0"),
        visit("m01", -400, edss="3.5", karnofsky="80"), visit("m01", -300, edss="3.5"),
        visit("m01", -30, edss="6.5", karnofsky="70", weight_kg="68"), visit("m01", -30, edss="7.0", weight_kg="66"),
        visit("m02", -100, edss="4.0", karnofsky="20", weight_kg="90"), visit("m02", 1, edss="1.0"),
        visit("m03", -10, karnofsky="90"),
        visit("m05", -365, edss="3.0", weight_kg="55"), visit("m05", -366, edss="8.0"),
        visit("m06", -5, weight_kg="60", edss="5.0"), visit("m06", -200, edss="4.0"),
    ]
    relapses = [{"patient_id": p, "onset_date": days(n)} for p, n in
                [("m01", 0), ("m01", -365), ("m02", -366), ("m02", 0), ("m04", 1), ("m05", -20), ("m06", -700)]]
    treatments = [
        {"patient_id": "m01", "drug": "Avonex", "start_date": days(-1000), "end_date": days(-600),
         "stop_reason": "inefficacy"},
        {"patient_id": "m01", "drug": "fingolimod", "start_date": days(-599)},
        {"patient_id": "m02", "drug": "Tysabri", "start_date": days(-200)},
        {"patient_id": "m05", "drug": "mitoxantrone", "start_date": days(-100)},
        {"patient_id": "m06", "drug": "teriflunomide", "start_date": days(-900), "end_date": days(-100)},
    ]

    def lab(pid, n, test, value, unit, ref_high=None):
        return {"patient_id": pid, "sample_date": days(n), "test": test, "value": value, "unit": unit,
                "ref_high": ref_high}

    labs = [
        lab("m01", -10, "AST", "200", "U/L"), lab("m01", -10, "AST", "100", "U/L", "30"),
        lab("m01", -10, "ALT", "45", "IU/L"), lab("m01", -10, "TBIL", "1.2", "mg/dL"),
        lab("m01", -10, "CREAT", "90", "umol/L", "100"), lab("m01", -100, "CREAT", "300", "umol/L"),
        lab("m02", -5, "CREAT", "1.4", "mg/dL"), lab("m02", -5, "AST", "201", "U/L"),
        lab("m05", -3, "CREAT", "60", "µmol/L"), lab("m05", -3, "CREAT", "1.0", "mg/dL"),
        lab("m06", -1, "CREAT", "120", "umol/L"), lab("m06", 2, "AST", "500", "U/L"),
    ]
    tests = [{"patient_id": p, "test_date": days(n), "test": t, "value": v} for p, n, t, v in [
        ("m01", -50, "LVEF", "50"), ("m01", -50, "FEV1", "69.9"), ("m01", -50, "DLCO", "80"),
        ("m02", -10, "lvef", "60"), ("m02", -10, "LVEF", "45"), ("m02", -400, "FEV1", "90"),
        ("m05", -365, "FEV1", "70"), ("m05", -365, "DLCO", "70"),
    ]]
    conditions = [
        {"patient_id": "m01", "code": "C50.9", "category": "malignancy", "onset_date": "2010-01-01",
         "end_date": days(-1826)},
        {"patient_id": "m02", "code": "c44.1", "category": "Malignancy", "onset_date": "2020-01-01"},
        {"patient_id": "m03", "category": "infection", "infection_type": "bacterial", "onset_date": days(-10)},
        {"patient_id": "m04", "category": "malignancy"},
        {"patient_id": "m05", "category": "cardiac", "severity": "severe", "onset_date": "2020-01-01",
         "end_date": days(-1)},
        {"patient_id": "m06", "category": "infection", "infection_type": "fungal", "controlled": "N",
         "onset_date": days(-3), "impairs_consent": "Y"},
    ]
    mri = [{"patient_id": "m01", "scan_date": days(-40), "gd_lesions": "2", "new_t2_lesions": "1"},
           {"patient_id": "m02", "scan_date": days(-40)}]
    return {"patients": pts, "visits": visits, "relapses": relapses, "treatments": treatments, "labs": labs,
            "function_tests": tests, "conditions": conditions, "mri": mri}


@pytest.fixture(scope="module")
def registries(tmp_path_factory):
    """(registry, reference date) pairs: the small mixed export, and the bundled sample export."""
    out = [(registry(write_export(tmp_path_factory.mktemp("mixed"), mixed_tables())), D)]
    if SAMPLES.is_dir():
        out.append((registry(SAMPLES), SAMPLES_AS_OF))
    return out


def on_both(reg, trial: Trial, as_of: dt.date) -> pl.DataFrame:
    """The evaluation on every engine; they must be equal. Returns it (from the first engine)."""
    results = {e: evaluate(reg, trial, as_of, e) for e in ENGINES}
    first = results[ENGINES[0]]
    for e in ENGINES[1:]:
        assert_frame_equal(first, results[e], check_exact=True)
    return first


def statuses(evaluation: pl.DataFrame, cid: str) -> dict[str, str]:
    return dict(evaluation.select("patient_id", cid).iter_rows())


# ---------------------------------------------------------------- every example runs, alike on both engines

def test_the_page_has_examples():
    assert DOC.is_file(), "docs/trial-language.md is missing"
    assert len(BLOCKS) >= 2
    for cid in ("relapses_last_year", "no_recent_malignancy"):
        assert cid in all_criteria()


@pytest.mark.parametrize("n", range(len(BLOCKS)), ids=[block_id(b) for b in BLOCKS])
def test_example_loads_and_runs_alike_on_both_engines(n, registries):
    trial = as_trial(BLOCKS[n], n)
    for reg, as_of in registries:
        evaluation = on_both(reg, trial, as_of)
        for c in trial.criteria:
            assert evaluation[c.id].null_count() == 0
            assert set(evaluation[c.id].unique()) <= {"pass", "fail", "unknown", "screening"}
            for name in c.evidence:
                assert f"{c.id}__{name}" in evaluation.columns


# ---------------------------------------------------------------- worked example (a)

def test_example_a_is_written_as_the_page_says():
    crit = only("relapses_last_year").criteria[0]
    node = crit.node
    assert (node.type, node["table"], node["within_days"], node["at_least"]) == ("count", "relapses", 365, 2)
    assert node.params == {"within_days": "window_days", "at_least": "min_relapses"}
    assert crit.parameters == {"min_relapses": 2, "window_days": 365}
    assert crit.tables == ["relapses"]


A_TABLES = {
    "patients": [patient(p) for p in ("a_d_and_365", "a_d_and_366", "a_d_and_after_d", "a_none")],
    "relapses": [{"patient_id": p, "onset_date": days(n)} for p, n in [
        ("a_d_and_365", 0), ("a_d_and_365", -365),
        ("a_d_and_366", 0), ("a_d_and_366", -366),
        ("a_d_and_after_d", 0), ("a_d_and_after_d", 1),
    ]],
}


@pytest.fixture(scope="module")
def a_registry(tmp_path_factory):
    return registry(write_export(tmp_path_factory.mktemp("a"), A_TABLES))


def test_example_a_boundaries(a_registry):
    ev = on_both(a_registry, only("relapses_last_year"), D)
    assert statuses(ev, "relapses_last_year") == {
        "a_d_and_365": "pass", "a_d_and_366": "fail", "a_d_and_after_d": "fail", "a_none": "fail"}
    assert dict(ev.select("patient_id", "relapses_last_year__relapses_in_window").iter_rows()) == {
        "a_d_and_365": 2, "a_d_and_366": 1, "a_d_and_after_d": 1, "a_none": 0}


def test_example_a_with_set(a_registry):
    wider = on_both(a_registry, only("relapses_last_year", ["relapses_last_year.window_days=366"]), D)
    assert statuses(wider, "relapses_last_year")["a_d_and_366"] == "pass"
    fewer = on_both(a_registry, only("relapses_last_year", ["relapses_last_year.min_relapses=1"]), D)
    assert statuses(fewer, "relapses_last_year") == {
        "a_d_and_365": "pass", "a_d_and_366": "pass", "a_d_and_after_d": "pass", "a_none": "fail"}


def test_example_a_without_relapses_is_unknown(tmp_path):
    reg = registry(write_export(tmp_path / "x", {"patients": A_TABLES["patients"]}))
    ev = on_both(reg, only("relapses_last_year"), D)
    assert set(ev["relapses_last_year"]) == {"unknown"}
    assert ev["relapses_last_year__relapses_in_window"].null_count() == ev.height


# ---------------------------------------------------------------- worked example (b)

def test_example_b_is_written_as_the_page_says():
    node = only("no_recent_malignancy").criteria[0].node
    assert (node.type, node["table"], node["within_days"], node["at_most"]) == ("count", "conditions", 1826, 0)
    assert node["where"] == {"category": {"equals": "malignancy"}}


B_CASES = {  # patient -> (malignancy row or None, expected status)
    "b_ended_d_minus_1826": ({"onset_date": "2010-01-01", "end_date": days(-1826)}, "fail"),
    "b_ended_d_minus_1827": ({"onset_date": "2010-01-01", "end_date": days(-1827)}, "pass"),
    "b_ended_on_d": ({"onset_date": "2010-01-01", "end_date": days(0)}, "fail"),
    "b_ongoing": ({"onset_date": "2015-01-01"}, "fail"),
    "b_ongoing_no_onset": ({}, "fail"),
    "b_onset_after_d": ({"onset_date": days(1)}, "pass"),
    "b_no_malignancy": (None, "pass"),
}


def test_example_b_boundaries(tmp_path):
    conditions = [{"patient_id": p, "category": "malignancy", "code": "C50.9"} | row
                  for p, (row, _) in B_CASES.items() if row is not None]
    conditions.append({"patient_id": "b_no_malignancy", "category": "cardiac", "onset_date": "2015-01-01"})
    reg = registry(write_export(tmp_path / "b", {"patients": [patient(p) for p in B_CASES],
                                                  "conditions": conditions}))
    ev = on_both(reg, only("no_recent_malignancy"), D)
    assert statuses(ev, "no_recent_malignancy") == {p: want for p, (_, want) in B_CASES.items()}


# ---------------------------------------------------------------- parameters as the page says

def test_numbers_keep_their_kind():
    """`30` stays a whole number (a fraction is refused by --set); `6.5` is a float (7 becomes 7.0)."""
    karnofsky = only("karnofsky")
    assert karnofsky.criteria[0].param_types["min_karnofsky"] == "int?"
    with pytest.raises(UsageError, match="'25.5' is not a whole number"):
        apply_overrides(karnofsky, ["karnofsky.min_karnofsky=25.5"])
    assert karnofsky.criteria[0].parameters["max_karnofsky"] is None
    edss = only("edss_range", ["edss_range.max_edss=7"]).criteria[0]
    assert edss.parameters["max_edss"] == 7.0 and isinstance(edss.parameters["max_edss"], float)


# ---------------------------------------------------------------- the node sections

def test_every_node_type_has_a_section_naming_its_fields():
    found = sections(doc_text())
    for name, spec in NODE_TYPES.items():
        assert name in found, f"docs/trial-language.md has no `### {name}` section"
        missing = [f for f in spec.fields if f"`{f}`" not in found[name]]
        assert not missing, f"the `### {name}` section does not mention the field(s) {missing}"


def _contains(lines: list[str], piece: list[str], start: int) -> int | None:
    """The index after the first contiguous match of `piece` in `lines` from `start`, else None."""
    for i in range(start, len(lines) - len(piece) + 1):
        if lines[i:i + len(piece)] == piece:
            return i + len(piece)
    return None


def test_sql_excerpts_are_real():
    """Each ```sql block (pieces separated by a `...` line) is cut from the SQL of a criterion of the page."""
    rendered = [[line.strip() for line in render(criterion_query(c.node), "duckdb").splitlines()]
                for _, c in all_criteria().values()]
    blocks = fenced(doc_text(), "sql")
    assert blocks
    for block in blocks:
        pieces, piece = [], []
        for line in block.splitlines():
            if line.strip() == "...":
                pieces.append(piece)
                piece = []
            elif line.strip():
                piece.append(line.strip())
        pieces.append(piece)

        def matches(lines):
            at = 0
            for p in pieces:
                at = _contains(lines, p, at)
                if at is None:
                    return False
            return True
        assert any(matches(lines) for lines in rendered), f"not the SQL of any example:\n{block}"


# ---------------------------------------------------------------- the bundled trials, as section 11 lists them

def _rule_types(node) -> str:
    """A rule as section 11 writes it: `type`, with its sub-nodes in parentheses."""
    inner = f" ({', '.join(_rule_types(c) for c in node.children)})" if node.children else ""
    return f"`{node.type}`{inner}"


def test_bundled_trials_section_lists_every_criterion():
    from pipeline.criteria.load import bundled_trials, load_trial

    found = sections(doc_text())
    for tid in bundled_trials():
        assert tid in found, f"section 11 of docs/trial-language.md has no `### {tid}`"
        rows = re.findall(r"^\| (\d+) \| `(\w+)` \| ([a-z ]+) \| (.+?) \| ([a-z_, ]*?) ?\|$", found[tid], re.M)
        want = [(str(i), c.id, c.kind, _rule_types(c.node), ", ".join(c.tables))
                for i, c in enumerate(load_trial(tid).criteria, start=1)]
        assert rows == want, f"the table of `### {tid}` is not the bundled trial"


# ---------------------------------------------------------------- the boundaries of the newer node sections

def _run(tmp_path, cid: str, tables: dict, overrides: list[str] | None = None) -> pl.DataFrame:
    return on_both(registry(write_export(tmp_path, tables)), only(cid, overrides), D)


def _evidence(ev: pl.DataFrame, cid: str, name: str) -> dict:
    return dict(ev.select("patient_id", f"{cid}__{name}").iter_rows())


EPISODE_CASES = {  # patient -> (relapse onsets, scans (day, gd, new_t2), status, known, possible)
    "ep_30_days": ([-100, -70], [], "pass", 2, 2),
    "ep_29_days": ([-100, -71], [], "fail", 1, 1),
    "ep_chain": ([-100, -80, -60], [], "pass", 2, 2),
    "ep_relapse_and_scan": ([-10], [(-5, None, 2)], "fail", 1, 1),
    "ep_same_day": ([-10], [(-10, 3, None)], "fail", 1, 1),
    "ep_first_day": ([-1095, -500], [], "pass", 2, 2),
    "ep_before_window": ([-1096, -500], [], "fail", 1, 1),
    "ep_after_d": ([-10, 1], [], "fail", 1, 1),
    "ep_undetermined": ([-200], [(-100, 0, None)], "unknown", 1, 2),
    "ep_inactive": ([-200], [(-100, 0, 0)], "fail", 1, 1),
    "ep_none": ([], [], "fail", 0, 0),
    "ep_three": ([-300, -200, -100], [], "pass", 2, 2),  # 3 episodes, counted up to min_episodes
}


def _episode_tables(cases: dict) -> dict:
    return {"patients": [patient(p) for p in cases],
            "relapses": [{"patient_id": p, "onset_date": days(n)} for p, c in cases.items() for n in c[0]],
            "mri": [{"patient_id": p, "scan_date": days(n), "gd_lesions": gd, "new_t2_lesions": t2}
                    for p, c in cases.items() for n, gd, t2 in c[1]]}


def test_episodes_boundaries(tmp_path):
    ev = _run(tmp_path / "e", "disease_activity", _episode_tables(EPISODE_CASES))
    assert statuses(ev, "disease_activity") == {p: c[2] for p, c in EPISODE_CASES.items()}
    assert _evidence(ev, "disease_activity", "episodes_known") == {p: c[3] for p, c in EPISODE_CASES.items()}
    assert _evidence(ev, "disease_activity", "episodes_possible") == {p: c[4] for p, c in EPISODE_CASES.items()}


def test_episodes_without_mri_is_unknown(tmp_path):
    tables = _episode_tables(EPISODE_CASES)
    del tables["mri"]
    ev = _run(tmp_path / "e", "disease_activity", tables)
    assert set(ev["disease_activity"]) == {"unknown"}


def test_episodes_gap_zero_is_a_design_error():
    """Section 9: a gap of 0 would count one date again, so gap_days must be at least 1."""
    from pipeline.core.errors import UsageError
    from pipeline.criteria.load import load_trial
    with pytest.raises(UsageError, match="gap_days: must be greater than 0"):
        load_trial("nct04047628", ["disease_activity.episode_gap_days=0"])


EVENTS_DURING_CASES = {  # patient -> (treatment or None, relapse onsets, scans (day, gd, new_t2), status)
    "ed_day_29": (("fingolimod", -200, None, None), [-171], [], "fail"),
    "ed_day_30": (("fingolimod", -200, None, None), [-170], [], "pass"),
    "ed_brand": (("Gilenya", -200, None, None), [-10], [], "pass"),
    "ed_end_day": (("natalizumab", -400, -100, None), [-100], [], "pass"),
    "ed_after_end": (("natalizumab", -400, -100, None), [-99], [], "fail"),
    "ed_undetermined": (("ocrelizumab", -400, None, None), [], [(-50, 0, None)], "unknown"),
    "ed_inefficacy_30": (("fingolimod", -400, -370, "inefficacy"), [], [], "unknown"),
    "ed_inefficacy_29": (("fingolimod", -400, -371, "inefficacy"), [], [], "fail"),
    "ed_inefficacy_old": (("fingolimod", -1500, -1096, "inefficacy"), [], [], "fail"),
    "ed_event_old": (("fingolimod", -2000, None, None), [-1096], [], "fail"),
    "ed_not_listed": (("Avonex", -400, None, None), [-10], [], "fail"),
    "ed_future": (("fingolimod", 5, None, None), [10], [], "fail"),
    "ed_no_treatment": (None, [-10], [], "fail"),
}


def test_events_during_boundaries(tmp_path):
    cases = EVENTS_DURING_CASES
    treatments = [{"patient_id": p, "drug": t[0], "start_date": days(t[1]),
                   "end_date": None if t[2] is None else days(t[2]), "stop_reason": t[3]}
                  for p, (t, *_) in cases.items() if t is not None]
    tables = {"patients": [patient(p) for p in cases], "treatments": treatments,
              "relapses": [{"patient_id": p, "onset_date": days(n)} for p, c in cases.items() for n in c[1]],
              "mri": [{"patient_id": p, "scan_date": days(n), "gd_lesions": gd, "new_t2_lesions": t2}
                      for p, c in cases.items() for n, gd, t2 in c[2]]}
    ev = _run(tmp_path / "e", "activity_on_dmt", tables)
    assert statuses(ev, "activity_on_dmt") == {p: c[3] for p, c in cases.items()}
    del tables["treatments"]
    ev = _run(tmp_path / "absent", "activity_on_dmt", tables)
    assert set(ev["activity_on_dmt"]) == {"unknown"}


DURATION_CASES = {  # patient -> (onset, diagnosis (days from D), latest EDSS, status, years)
    "yv_low_3652": (-3652, None, "5.0", "pass", 3652 / 365.25),
    "yv_low_3653": (-3653, None, "5.0", "fail", 3653 / 365.25),
    "yv_high_7304": (-7304, None, "5.5", "pass", 7304 / 365.25),
    "yv_high_7305": (-7305, None, "5.5", "fail", 20.0),
    "yv_no_edss_3652": (-3652, None, None, "pass", 3652 / 365.25),
    "yv_no_edss_5000": (-5000, None, None, "unknown", 5000 / 365.25),
    "yv_no_edss_7305": (-7305, None, None, "fail", 20.0),
    "yv_dx_3653": (None, -3653, "4.0", "fail", 3653 / 365.25),
    "yv_dx_3000": (None, -3000, "4.0", "unknown", 3000 / 365.25),
    "yv_dx_no_edss_7305": (None, -7305, None, "fail", 20.0),
    "yv_no_dates": (None, None, "4.0", "unknown", None),
}


def test_years_since_by_value_boundaries(tmp_path):
    cases = DURATION_CASES
    pts = [patient(p, onset_date=None if o is None else days(o), diagnosis_date=None if dx is None else days(dx))
           for p, (o, dx, *_) in cases.items()]
    visits = [{"patient_id": p, "visit_date": days(-10), "edss": c[2]} for p, c in cases.items() if c[2]]
    ev = _run(tmp_path / "y", "disease_duration_by_edss", {"patients": pts, "visits": visits})
    assert statuses(ev, "disease_duration_by_edss") == {p: c[3] for p, c in cases.items()}
    assert _evidence(ev, "disease_duration_by_edss", "years") == {p: c[4] for p, c in cases.items()}
    assert _evidence(ev, "disease_duration_by_edss", "edss") == {
        p: None if c[2] is None else float(c[2]) for p, c in cases.items()}
    ev = _run(tmp_path / "absent", "disease_duration_by_edss", {"patients": pts})
    assert set(ev["disease_duration_by_edss"]) == {"unknown"}


PROGRESSION_CASES = {  # patient -> (EDSS visits (day, edss), status)
    "rp_confirmed_84": ([(-400, 4.0), (-200, 5.0), (-116, 5.0)], "pass"),
    "rp_83_days": ([(-400, 4.0), (-200, 5.0), (-117, 5.0)], "unknown"),
    "rp_dip": ([(-400, 4.0), (-200, 5.0), (-150, 4.5), (-50, 5.0)], "unknown"),
    "rp_stable": ([(-400, 4.0), (-200, 4.5), (-100, 4.5)], "fail"),
    "rp_only_baseline": ([(-400, 4.0)], "unknown"),
    "rp_no_visits": ([], "unknown"),
    "rp_late_baseline": ([(-300, 3.0), (-200, 4.0), (-100, 4.0)], "pass"),
    "rp_baseline_first_day": ([(-730, 4.0), (-365, 5.0), (-200, 5.0)], "pass"),
    "rp_baseline_too_old": ([(-731, 4.0), (-365, 5.0), (-200, 5.0)], "fail"),
    "rp_step": ([(-400, 5.5), (-200, 6.0), (-100, 6.0)], "pass"),
    "rp_relapse": ([(-400, 4.0), (-200, 5.0), (-100, 5.0)], "unknown"),  # a relapse onset on D - 130
    "rp_after_d": ([(-400, 4.0), (-50, 5.0), (40, 5.0)], "unknown"),
}


def test_recent_progression_boundaries(tmp_path):
    cases = PROGRESSION_CASES
    tables = {"patients": [patient(p) for p in cases],
              "visits": [{"patient_id": p, "visit_date": days(n), "edss": str(e)}
                         for p, (vs, _) in cases.items() for n, e in vs],
              "relapses": [{"patient_id": "rp_relapse", "onset_date": days(-130)}]}
    ev = _run(tmp_path / "r", "recent_progression", tables)
    assert statuses(ev, "recent_progression") == {p: c[1] for p, c in cases.items()}
    row = ev.filter(pl.col("patient_id") == "rp_confirmed_84").row(0, named=True)
    assert (row["recent_progression__baseline_date"], row["recent_progression__baseline_edss"],
            row["recent_progression__worsening_date"], row["recent_progression__worsening_edss"],
            row["recent_progression__confirmed_date"]) == (
        D - dt.timedelta(400), 4.0, D - dt.timedelta(200), 5.0, D - dt.timedelta(116))
    del tables["relapses"]
    ev = _run(tmp_path / "absent", "recent_progression", tables)
    assert set(ev["recent_progression"]) == {"unknown"}


def test_optional_lists_and_any(tmp_path):
    conditions = [{"patient_id": p, "category": "infection", "code": code, "onset_date": onset} for p, code, onset in [
        ("pml_dotted", "A81.2", "2020-01-01"), ("pml_lower", "a812", None), ("pml_longer", "A81.20", "2020-01-01"),
        ("pml_after_d", "A81.2", days(1)), ("pml_other_code", "A81", "2020-01-01")]]
    conditions.append({"patient_id": "pml_other_category", "category": "other", "code": "A81.2",
                       "onset_date": "2020-01-01"})
    pids = [c["patient_id"] for c in conditions] + ["pml_none"]
    mri = [{"patient_id": p, "scan_date": days(n), "gd_lesions": gd, "new_t2_lesions": t2} for p, n, gd, t2 in [
        ("pml_dotted", -10, "2", None), ("pml_lower", -10, "0", "0"), ("pml_longer", -10, None, None),
        ("pml_after_d", -366, "3", "3")]]
    tables = {"patients": [patient(p) for p in pids], "conditions": conditions, "mri": mri}
    ev = _run(tmp_path / "w", "no_pml", tables)
    assert statuses(ev, "no_pml") == {"pml_dotted": "fail", "pml_lower": "fail", "pml_longer": "fail",
                                      "pml_after_d": "pass", "pml_other_code": "pass",
                                      "pml_other_category": "fail", "pml_none": "pass"}
    ev = _run(tmp_path / "c", "no_pml", tables, ["no_pml.categories=infection"])
    assert statuses(ev, "no_pml")["pml_other_category"] == "pass"
    ev = _run(tmp_path / "e", "no_pml", tables, ["no_pml.code_prefixes=[]"])
    assert statuses(ev, "no_pml")["pml_other_code"] == "fail"  # every condition counts
    ev = _run(tmp_path / "m", "active_mri", tables)
    assert {p: s for p, s in statuses(ev, "active_mri").items() if p in {m["patient_id"] for m in mri}} == {
        "pml_dotted": "pass", "pml_lower": "fail", "pml_longer": "fail", "pml_after_d": "fail"}


# ---------------------------------------------------------------- docs/writing-a-trial.md (issue 31)

TUTORIAL = ROOT / "docs" / "writing-a-trial.md"


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", TUTORIAL.read_text(), re.S)


def test_the_tutorials_commands_run_in_order(tmp_path, monkeypatch, capsys):
    """Each ```sh block's commands, in the page's order, in a folder holding the record and the sample;
    between the first check and the second, the trial file is edited into the page's finished file."""
    import json

    from pipeline.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "data_samples").symlink_to(ROOT / "data_samples")
    (tmp_path / "nct04410978.json").write_text((ROOT / "tests" / "fixtures" / "ctgov" / "nct04410978.json")
                                               .read_text())
    finished = next(b for b in _blocks("toml") if b.startswith("# GEMINI 1"))
    fixture = (ROOT / "tests" / "fixtures" / "ctgov" / "nct04410978.toml").read_text()
    assert fixture.split("\n", 1)[1] == finished, "the page's finished file is tests/fixtures/ctgov/nct04410978.toml"
    blocks = _blocks("sh")
    assert len(blocks) == 4
    outputs = []
    for i, block in enumerate(blocks):
        if i == 1:  # step 2: the analyst replaces the screening bullets
            (tmp_path / "mytrial.toml").write_text(finished)
        for line in block.strip().splitlines():
            assert line.startswith("msfeas "), line
            assert main(line.split()[1:]) == 0, line
            outputs.append(capsys.readouterr().out)
    def counts(out: str, cid: str) -> list[str]:
        return next(line.split()[1:] for line in out.splitlines() if line.startswith(cid + " "))

    imported_check, finished_check = outputs[1], outputs[2]
    assert counts(imported_check, "in04_least_1_following_before") == ["0", "0", "0", "2,000"]  # screening
    assert counts(finished_check, "in04_least_1_following_before") == ["633", "1,367", "0", "0"]
    summary = json.loads((tmp_path / "runs" / "mytrial" / "summary.json").read_text())
    assert summary["trial"] == "nct04410978" and summary["planned_enrolment"] == 900
    assert (tmp_path / "runs" / "mytrial" / "report.html").is_file()
    assert outputs[-1] == (ROOT / "pipeline" / "trials" / "nct04047628.toml").read_text()


def test_the_cookbook_loads():
    cookbook = [b for b in _blocks("toml") if b.startswith("[[criteria]]")]
    assert len(cookbook) == 9
    for block in cookbook:
        trial = parse_trial('id = "t"\ntitle = "T"\n' + block, "writing-a-trial.md")
        assert len(trial.criteria) == 1


def test_the_cookbooks_unknown_pattern_and_category_or_code(tmp_path):
    """'A or B, else unknown when an unassessed record exists' and 'category OR code, minus exclusions'
    decide as the page says."""
    blocks = {re.search(r'id = "(\w+)"', b).group(1): b for b in _blocks("toml") if b.startswith("[[criteria]]")}
    trial = parse_trial('id = "t"\ntitle = "T"\n' + blocks["recent_activity"] + blocks["no_malignancy"], "t")
    D = dt.date(2026, 6, 30)
    write_export(tmp_path, {
        "patients": [{"patient_id": p, "site_id": "S1", "birth_date": "1980-01-01", "sex": "F"}
                     for p in ("P1", "P2", "P3", "P4")],
        "relapses": [{"patient_id": "P1", "onset_date": "2026-03-01"}],
        "mri": [{"patient_id": "P2", "scan_date": "2026-02-01", "gd_lesions": "2", "new_t2_lesions": "0"},
                {"patient_id": "P3", "scan_date": "2026-02-01", "gd_lesions": "", "new_t2_lesions": "1"},
                {"patient_id": "P4", "scan_date": "2026-02-01", "gd_lesions": "0", "new_t2_lesions": "0"}],
        "conditions": [{"patient_id": "P1", "code": "C44.9", "category": "malignancy", "onset_date": "2020-01-01"},
                       {"patient_id": "P2", "code": "C50.1", "category": "other", "onset_date": "2020-01-01"},
                       {"patient_id": "P3", "code": "", "category": "malignancy", "onset_date": "2020-01-01"}],
    })
    reg = ingest(tmp_path, Dialect(), load_vocabulary(), today=TODAY, max_reject=1.0)
    assert reg.inputs["patients"].rows_accepted == 4 and reg.inputs["mri"].rows_accepted == 3
    ev = evaluate(reg, trial, D, "polars").sort("patient_id")
    assert ev["recent_activity"].to_list() == ["pass", "pass", "unknown", "fail"]
    assert ev["no_malignancy"].to_list() == ["pass", "fail", "fail", "pass"]
