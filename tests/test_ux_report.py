"""Issue 32: what the report and the overview say (no browser): the overview carries the terminal's history,
forecast, time to target and data-quality findings, criteria go by their short labels, the headline and the
criteria show percentages, screening-only criteria are counted as such, and trial files may label criteria."""

from __future__ import annotations

import re

import pytest

from pipeline.cli import main
from pipeline.core.errors import UsageError
from tests.conftest import ROOT


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("uxr") / "run"
    mp = pytest.MonkeyPatch()
    mp.setenv("MSFEAS_TODAY", "2026-11-30")
    try:
        assert main(["run", "--input", str(ROOT / "data_samples" / "default"), "--out", str(out),
                     "--trial", "nct04203017", "--trial", "nct04047628", "--history", "6", "--target", "10",
                     "--conversion", "0.3", "--no-cache"]) == 0
    finally:
        mp.undo()
    return out


def test_overview_has_history_forecast_time_to_target_quality_and_labels(run_dir):
    import json
    html = (run_dir / "report.html").read_text()
    for trial in ("nct04203017", "nct04047628"):
        s = json.loads((run_dir / trial / "summary.json").read_text())
        card = html.split(f'data-trial="{trial}"', 1)[1].split("</section>", 1)[0]
        h, p = s["history"], s["projection"]
        assert f"{h['new_candidates']:,} new candidates, {h['lost_candidates']:,} lost" in card
        assert f"{p['expected_new_candidates']:.1f} new" in card
        t = p["time_to_target"]
        assert t is not None and "to enrol 10" in card
        if t["months_median"] is not None:
            assert f"<b>{t['months_median']} months</b>" in card
        e = s["expected_eligible"]
        assert f"{e['expected']:.1f} (80 %: {e['low_80']:,} .. {e['high_80']:,})" in card
        findings = [f for f in s["quality"]["findings"] if not f["ok"]]
        from markupsafe import escape
        quality = card.split("Data quality", 1)[1]
        assert quality.count("<tr><td>") == len(findings) or (not findings and "no finding" in quality)
        for f in findings:
            assert escape(f["finding"]) in quality
        assert re.search(r"eligible <span class=\"pct\">\d+\.\d %</span>", card)
    assert "activity_on_dmt" not in html.split('id="tables"')[0] or "Activity on a DMT" in html
    # criteria by label, the id beside it
    assert re.search(r"<td>[A-Z][^<]+ <span class=\"muted\">\([a-z_]+\)</span></td>", html)


def test_report_percentages_screening_and_labels(run_dir):
    html = (run_dir / "nct04203017" / "report.html").read_text()
    assert re.search(r'data-pct="eligible">\d+\.\d %<', html)
    assert "Karnofsky index</text>" in html and ">karnofsky</text>" not in html  # the chart uses labels
    # vasopressor_support: every patient is `screening`, said as such, not "0 fail · 0 unknown"
    line = re.search(r"<text[^>]*>No vasopressors</text>.*?class=\"crit-counts\">([^<]*)<", html, re.S)
    assert line and line.group(1).startswith("screening: all"), line and line.group(1)
    assert "screening only" in html
    assert re.search(r'class="axis"[^>]*>patients</text>', html)  # histograms have a y axis


def test_label_is_optional_checked_and_kept_by_set(tmp_path):
    from pipeline.criteria import apply_overrides, load_trial
    from pipeline.outputs.report import labels
    t = load_trial("nct04203017")
    assert all(c.label for c in t.criteria)
    assert labels(apply_overrides(t, ["edss_range.max_edss=7"]))["edss_range"] == "EDSS range"
    src = (ROOT / "pipeline" / "trials" / "nct04203017.toml").read_text()
    unlabelled = tmp_path / "t.toml"
    unlabelled.write_text(re.sub(r'^label = .*\n', "", src, flags=re.M))
    u = load_trial(str(unlabelled))
    assert labels(u)["edss_range"] == "edss_range" and u.ids == t.ids
    bad = tmp_path / "bad.toml"
    bad.write_text(src.replace('label = "EDSS range"', 'label = "' + "x" * 41 + '"'))
    with pytest.raises(UsageError, match="label must be a short text"):
        load_trial(str(bad))
