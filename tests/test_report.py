"""report.html renders in headless Chromium, offline, with the numbers of summary.json."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.outputs.report import external_references
from tests.conftest import ROOT

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-quic"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report") / "run"
    assert main(["run", "--input", str(ROOT / "data_samples/default"), "--out", str(out), "--as-of", "2026-11-01",
                 "--set", "edss_range.max_edss=7.0"]) == 0
    return out


def number(text: str) -> int:
    return int(text.replace(",", "").strip())


def test_report_is_self_contained(run_dir):
    html = (run_dir / "report.html").read_text("utf-8")
    assert external_references(html) == []
    # Scripts only inline (the workbench's code and data); nothing linked or embedded from elsewhere.
    assert all(" src" not in tag for tag in re.findall(r"<script[^>]*>", html.lower()))
    assert "<link" not in html.lower() and "<img" not in html.lower()


def test_external_reference_detector_catches_one():
    assert external_references('<img src="https://cdn.example/x.png">')
    assert external_references("<style>@import url(x.css)</style>")
    assert external_references('<a href="quality/index.html">docs</a>')
    assert not external_references('<a href="#criteria">criteria</a>')


def test_report_renders_in_chromium(run_dir, tmp_path):
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "Chromium is missing: `make test` installs it (Debian package chromium)"
    summary = json.loads((run_dir / "summary.json").read_text())
    with open(run_dir / "attrition.csv", newline="") as fh:
        attrition = list(csv.DictReader(fh))
    url = (run_dir / "report.html").resolve().as_uri()
    errors, requests = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)  # a fresh temporary profile
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("request", lambda r: requests.append(r.url))
        page.goto(url, wait_until="load")
        head = {k: number(page.locator(f'[data-summary="{k}"]').inner_text())
                for k in ("population", "eligible", "possible", "ineligible", "range_low", "range_high")}
        title = page.title()
        rows = page.locator("#criteria tbody tr").count()
        marked = page.locator("#criteria tbody mark").all_inner_texts()
        svg_bars = page.locator("#attrition svg rect").count()
        shot = tmp_path / "report.png"
        page.screenshot(path=str(shot), full_page=True)
        if os.environ.get("MSFEAS_KEEP_SCREENSHOT"):
            shutil.copy(shot, os.environ["MSFEAS_KEEP_SCREENSHOT"])
        fit = {}
        for width in (1280, 1440):  # common laptop widths: the criteria table stays inside its card
            page.set_viewport_size({"width": width, "height": 900})
            fit[width] = page.evaluate("""() => {
                const card = document.querySelector('#criteria'), table = card.querySelector('table');
                return {table_right: table.getBoundingClientRect().right, card_right: card.getBoundingClientRect().right,
                        card_overflow: card.scrollWidth - card.clientWidth,
                        page_overflow: document.documentElement.scrollWidth - window.innerWidth}; }""")
        browser.close()
    assert errors == []
    assert requests == [url], f"the report loaded something besides itself: {requests}"
    assert head == {"population": summary["population"], "eligible": summary["eligible"],
                    "possible": summary["possible"], "ineligible": summary["ineligible"],
                    "range_low": summary["eligible"], "range_high": summary["eligible"] + summary["possible"]}
    assert summary["as_of"] in title
    assert rows == len(attrition) == len(summary["parameters"])
    assert marked == ["max_edss = 7.0"]  # the override is highlighted, and only it
    assert svg_bars >= 2 * len(attrition)
    assert shot.stat().st_size > 10_000
    for width, box in fit.items():
        assert box["table_right"] <= box["card_right"] and box["card_overflow"] == 0, (width, box)
        assert box["page_overflow"] == 0, (width, box)


def test_engines_write_the_same_report_and_shareable_files(run_dir, tmp_path):
    out = tmp_path / "duck"
    assert main(["run", "--input", str(ROOT / "data_samples/default"), "--out", str(out), "--as-of", "2026-11-01",
                 "--set", "edss_range.max_edss=7.0", "--engine", "duckdb"]) == 0
    for name in ("site_counts.csv", "summary_public.json"):
        assert (out / name).read_bytes() == (run_dir / name).read_bytes(), name
    duck = (out / "report.html").read_text("utf-8")
    polars = (run_dir / "report.html").read_text("utf-8")
    # The engine's name, in the header and the run table, and in the workbench's command (--engine duckdb).
    assert duck.replace(',"--engine","duckdb"', "").replace("duckdb", "polars") == polars
    assert duck.count("duckdb") == 3 and ',"--engine","duckdb"' in duck


def test_compiled_templates_are_kept_only_in_the_cache(tmp_path):
    """The report's templates compiled once into the cache folder (`.templates`, owner only, passed
    over by the eviction of old exports) and reused by the next run; with --no-cache nothing is kept
    (the default cache is pointed at a folder of its own to see that)."""
    import stat
    import subprocess
    import sys

    env = {**os.environ, "MSFEAS_CACHE": str(tmp_path / "default")}
    cache = tmp_path / "cache"
    pages, stamps = [], []
    for i, extra in enumerate((["--no-cache"], ["--cache", str(cache)], ["--cache", str(cache)])):
        out = tmp_path / f"r{i}"
        subprocess.run([sys.executable, "-m", "pipeline", "run", "--input", str(ROOT / "data_samples" / "default"),
                        "--out", str(out), "--as-of", "2026-11-01", *extra], env=env, check=True, capture_output=True)
        pages.append((out / "report.html").read_text("utf-8"))
        if i:
            stamps.append({f.name: f.stat().st_mtime_ns for f in (cache / ".templates").iterdir()})
    assert not (tmp_path / "default").exists()  # --no-cache kept nothing, not even compiled templates
    assert len(stamps[0]) >= 2 and stamps[0] == stamps[1]  # compiled once, then read
    assert stat.S_IMODE((cache / ".templates").stat().st_mode) == 0o700
    # The same page either way, up to the run's own timings.
    times = re.compile(r"\d+(\.\d+)? s\b|\d+\.\d+|\d{4}-\d\d-\d\dT[\d:.+]+")
    assert times.sub("#", pages[0]) == times.sub("#", pages[2])
