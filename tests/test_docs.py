"""docs/trial-language.md is executable: what it shows must be what the code does.

- every ```toml block with `[[criteria]]` is a valid trial file (given an `id` and a `title`
  when it has none) and gives the same evaluation on both engines;
- the two worked examples hold at their boundaries, on both engines;
- every node type has a `### <type>` section that names each of its fields;
- every ```sql block is a real excerpt of the SQL of a criterion of the page.
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

from pipeline.criteria.load import Criterion, Trial, apply_overrides, parse_trial
from pipeline.criteria.nodes import NODE_TYPES
from pipeline.criteria.to_sql import criterion_query, render
from pipeline.dialect import Dialect
from pipeline.engines import evaluate
from pipeline.errors import UsageError
from pipeline.ingest import ingest
from pipeline.vocabulary import load_vocabulary
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
    with pytest.raises(UsageError, match="'25.5' is not a valid int"):
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
