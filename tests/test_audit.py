"""The audit of shareable tables (integer programming over every published number) and the
suppression that passes it: hand-made disclosed, narrowed and safe tables, the issue's examples,
random tables, and the files of shareable runs on the samples and on synthetic exports."""

from __future__ import annotations

import csv
import itertools
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.cli import main
from pipeline.outputs import audit, disclosure
from pipeline.outputs.audit import COMPLEMENT, PRIMARY, VISIBLE, exact_audit
from pipeline.outputs.disclosure import COLUMNS, relations
from tests.conftest import ROOT, synthetic_export


def brute_force(values, marks, rel, n, cap=30):
    """Every feasible assignment of the hidden cells (each 0..cap), by enumeration: an independent audit."""
    values = np.asarray(values)
    hidden = np.flatnonzero(np.asarray(marks) != VISIBLE)
    ranges = [list(range(1, n)) if marks[j] == PRIMARY else [0, *range(n, cap + 1)] for j in hidden]
    combos = np.array(list(itertools.product(*ranges)), dtype=np.int64).reshape(-1, hidden.size)
    x = np.repeat(values[None, :], len(combos), axis=0)
    x[:, hidden] = combos
    ok = np.abs(x @ np.asarray(rel).T).max(axis=1) < 1e-9
    return {int(j): set(combos[ok, i].tolist()) for i, j in enumerate(hidden)}


def table(rows):
    v = np.array(rows, dtype=np.int64)
    return np.vstack([v, v.sum(axis=0)]).ravel()


def test_the_issues_site_row_is_disclosed():
    # SITE01,408,<5,<5,400 beside a second site: the linear check passes it, the audit does not.
    vals = table([[408, 4, 4, 400], [300, 10, 20, 270]])
    rel = relations(2)
    old = audit.linear_suppression(vals, rel, 5)
    assert old.reshape(3, 4)[0].tolist() == [VISIBLE, PRIMARY, PRIMARY, VISIBLE]  # what was released
    found = {f.cell: f for f in exact_audit(vals, old, rel, 5)}
    assert found["cell 1"].problem == "disclosed" and (found["cell 1"].low, found["cell 1"].high) == (4, 4)
    assert found["cell 2"].problem == "disclosed"
    new = audit.protect(vals, rel, 5)
    assert exact_audit(vals, new, rel, 5) == []
    assert new.reshape(3, 4)[0, 3] != VISIBLE  # the 400 is hidden now


def test_narrowed_but_not_fixed():
    # e + p = 3 with both <5: each is 1..2, never 3 or 4.
    vals = table([[203, 1, 2, 200], [300, 10, 20, 270]])
    rel = relations(2)
    marks = np.zeros(12, dtype=int)
    marks[[1, 2, 5, 6, 9, 10]] = [PRIMARY, PRIMARY, COMPLEMENT, COMPLEMENT, COMPLEMENT, COMPLEMENT]
    found = {f.cell: f for f in exact_audit(vals, marks, rel, 5)}
    assert found["cell 1"].problem == "narrowed" and (found["cell 1"].low, found["cell 1"].high) == (1, 2)
    assert "cell 5" not in found  # 10 with 20: free to move together


def test_a_safe_table_passes_and_agrees_with_enumeration():
    vals = table([[20, 2, 8, 10], [20, 3, 7, 10], [25, 5, 10, 10]])
    rel = relations(3)
    marks = np.zeros(16, dtype=int)
    marks[[1, 2, 5, 6, 13, 14]] = [PRIMARY, COMPLEMENT, PRIMARY, COMPLEMENT, COMPLEMENT, COMPLEMENT]
    assert exact_audit(vals, marks, rel, 5) == []


def test_attrition_small_then_star_between_two_shown_remainders():
    # The chain r0 - e1 - r1 = 0, r1 - e2 - r2 = 0: r0 = 100 and r2 = 94 shown, e1 = 1 (<5), r1 = 99 (*)
    # and e2 = 5 (*): e1 + e2 = 6 with e1 in 1..4 and e2 0 or >= 5 pins e2 = 5 and e1 = 1.
    rel = np.array([[1, -1, -1, 0, 0], [0, 0, 1, -1, -1]], dtype=float)
    vals = np.array([100, 1, 99, 5, 94])
    marks = np.array([VISIBLE, PRIMARY, COMPLEMENT, COMPLEMENT, VISIBLE])
    found = {f.cell: f for f in exact_audit(vals, marks, rel, 5)}
    assert found["cell 1"].problem == "disclosed" and found["cell 1"].low == 1
    assert found["cell 3"].problem == "disclosed" and found["cell 3"].low == 5
    new = audit.protect(vals, rel, 5)
    assert exact_audit(vals, new, rel, 5) == []


def test_a_hidden_zero_under_a_small_total_is_fixed_and_stays_shown():
    vals = table([[100, 0, 50, 50], [100, 1, 49, 50], [100, 0, 40, 60]])
    rel = relations(3)
    assert set(audit.structural_zeros(vals, rel, 5)) >= {1, 9}
    marks = np.zeros(16, dtype=int)
    marks[[1, 2, 5, 6, 13, 14]] = [COMPLEMENT, COMPLEMENT, PRIMARY, COMPLEMENT, PRIMARY, COMPLEMENT]
    assert any(f.cell == "cell 1" and f.problem == "disclosed" for f in exact_audit(vals, marks, rel, 5))
    new = audit.protect(vals, rel, 5)
    assert new[1] == VISIBLE and new[9] == VISIBLE and exact_audit(vals, new, rel, 5) == []


def test_what_the_marks_alone_imply_is_not_a_leak():
    # A site of 2 patients, 1 possible and 1 ineligible: its population is `<5` and the sum of two `<5`,
    # so at least 2 whatever is hidden; the audit asks no suppression to hide that (none could).
    vals = table([[2, 0, 1, 1]])
    rel = relations(1)
    lows, highs = audit.structure_bounds(np.array([PRIMARY, VISIBLE, PRIMARY, PRIMARY] * 2), rel, 5)
    assert (lows[0], highs[0]) == (2, 4) and (lows[2], highs[2]) == (1, 3)
    marks, _ = disclosure.suppress(vals.reshape(2, 4)[:1], 5)
    assert exact_audit(vals, marks.ravel(), rel, 5) == []


sites = st.lists(st.tuples(st.integers(0, 9), st.integers(0, 9), st.integers(0, 60)), min_size=1, max_size=5)


@settings(max_examples=12, deadline=None)
@given(sites, st.sampled_from([5, 10]))
def test_protected_random_tables_pass_the_audit(rows, n):
    values = np.array([[e + p + i, e, p, i] for e, p, i in rows])
    marks, tab = disclosure.suppress(values, n)  # raises DisclosureError if the gate fails
    flat = marks.ravel()
    assert exact_audit(tab.ravel(), flat, relations(len(rows)), n) == []
    shown = tab.ravel()[flat == VISIBLE]
    assert not ((shown >= 1) & (shown < n)).any()


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 6), st.integers(0, 6), st.integers(0, 9)), min_size=1, max_size=2))
def test_the_audit_agrees_with_enumeration(rows):
    values = np.array([[e + p + i, e, p, i] for e, p, i in rows])
    tab = np.vstack([values, values.sum(axis=0)]).ravel()
    rel = relations(len(rows))
    marks = audit.linear_suppression(tab, rel, 5)
    if not 0 < (marks != VISIBLE).sum() <= 4:
        return
    cap = int(tab.max()) + 1
    brute = brute_force(tab, marks, rel, 5, cap=cap)
    bad = {int(f.cell.split()[1]) for f in exact_audit(tab, marks, rel, 5)}
    lows, highs = audit.structure_bounds(marks, rel, 5)
    for j, vals in brute.items():
        if marks[j] == PRIMARY:
            leak = min(vals) > max(1, lows[j]) or max(vals) < min(4, highs[j])
        else:
            leak = len(vals) < 2
        assert leak == (j in bad), (j, vals)


def published(folder, n):
    """The site table as published (site_counts.csv rows, summary_public.json totals): values and marks."""
    with open(folder / "site_counts.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    public = json.loads((folder / "summary_public.json").read_text())
    summary = json.loads((folder / "summary.json").read_text())
    truth = disclosure.site_values(summary["by_site"])
    tab = np.vstack([truth, truth.sum(axis=0)]).ravel()
    texts = [r[c] for r in rows for c in COLUMNS] + [str(public["totals"][c]) for c in COLUMNS]
    jtexts = [str(public["by_site"][r["site_id"]][c]) for r in rows for c in COLUMNS] + \
        [str(public["totals"][c]) for c in COLUMNS]
    assert texts == jtexts
    marks = np.array([PRIMARY if t == f"<{n}" else COMPLEMENT if t == "*" else VISIBLE for t in texts])
    for t, v, m in zip(texts, tab, marks):
        assert (m == VISIBLE and int(t) == v) or (m == PRIMARY and 1 <= v < n) or (m == COMPLEMENT and
                                                                                  (v == 0 or v >= n))
    return tab, marks, len(rows)


@pytest.mark.parametrize("n", [5, 10])
def test_the_samples_shareable_files_pass(tmp_path, n):
    out = tmp_path / "run"
    assert main(["run", "--input", str(ROOT / "data_samples/default"), "--out", str(out), "--as-of", "2026-11-01",
                 "--trial", "nct04047628", "--trial", "nct04203017", "--trial", "nct04411641",
                 "--min-cell", str(n), "--shareable"]) == 0
    for trial in ("nct04047628", "nct04203017", "nct04411641"):
        tab, marks, n_sites = published(out / trial, n)
        assert exact_audit(tab, marks, relations(n_sites), n) == [], trial
        # The shareable report shows no row, quarantine or quality count outside the workbench.
        html = (out / trial / "report.html").read_text("utf-8")
        rest = html[html.index('<section id="inputs">'):]
        assert 'class="num"' not in rest and "rows read" not in rest, trial
        assert 'id="attrition"' not in html and 'id="sites"' not in html


@pytest.mark.parametrize("seed,n", [(11, 5), (12, 10)])
def test_random_exports_shareable_files_pass(tmp_path_factory, tmp_path, seed, n):
    export = synthetic_export(tmp_path_factory, f"audit{seed}", patients=120, seed=seed)
    out = tmp_path / "run"
    assert main(["run", "--input", str(export), "--out", str(out), "--as-of", "2026-11-01",
                 "--min-cell", str(n), "--shareable"]) == 0
    tab, marks, n_sites = published(out, n)
    assert exact_audit(tab, marks, relations(n_sites), n) == []


def test_a_failing_audit_stops_the_run_with_70(tmp_path, monkeypatch, capsys):
    # A suppression that misses interval disclosure (the linear check alone) must never be released.
    monkeypatch.setattr(audit, "failing", lambda *a, **k: [])
    monkeypatch.setattr(audit, "_PROTECTED", {})  # nothing protected earlier in this process is reused
    monkeypatch.setattr(audit, "_PASSED", set())
    out = tmp_path / "run"
    code = main(["run", "--input", str(ROOT / "data_samples/default"), "--out", str(out), "--as-of", "2026-11-01",
                 "--trial", "nct04047628", "--shareable"])
    assert code == 70
    err = capsys.readouterr().err
    assert "would disclose a hidden count" in err and "site_counts.csv SITE" in err
    assert not (out / "site_counts.csv").exists()
