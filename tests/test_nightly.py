"""`msfeas nightly`: atomic run folders under kill, the lock, repeatability, changes, volume guard, modes."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from pipeline.cli import main
from tests.conftest import ROOT, write_export

SAMPLE = ROOT / "data_samples" / "default"
D1, D2, D3 = "2026-11-01", "2026-11-02", "2026-11-03"


def nightly_cmd(export: Path, runs: Path, as_of: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "pipeline", "nightly", "--input", str(export), "--runs-dir", str(runs),
            "--as-of", as_of, *extra]


def nightly(export: Path, runs: Path, as_of: str, *extra: str) -> subprocess.CompletedProcess:
    """The nightly in this process (quick: great-expectations is imported once); the kill and
    lock tests use real processes (`nightly_cmd`)."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = main(nightly_cmd(export, runs, as_of, *extra)[3:])
    return subprocess.CompletedProcess([], rc, "", err.getvalue())


def latest(runs: Path) -> str:
    return os.readlink(runs / "latest")


def wait_for(pred, timeout=120.0, what="condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def partials(runs: Path) -> list[Path]:
    return [p for p in runs.iterdir() if ".partial-" in p.name]


@pytest.fixture(scope="module")
def export(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("export") / "e"
    shutil.copytree(SAMPLE, folder)
    return folder


def comparable(folder: Path) -> dict[str, bytes]:
    """Every result file, minus what may differ between two runs of the same inputs: timings, times, logs."""
    out = {}
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder).as_posix()
        if p.is_dir() or rel == "run.log":
            continue
        data = p.read_bytes()
        if rel == "summary.json":
            d = json.loads(data)
            d.pop("timings_seconds")
            data = json.dumps(d, sort_keys=True).encode()
        elif rel == "manifest.json":
            d = json.loads(data)
            for k in ("started", "ended", "stages_seconds"):
                d.pop(k)
            data = json.dumps(d, sort_keys=True).encode()
        out[rel] = data
    return out


@pytest.mark.parametrize("moment", ["early", "quality"])
def test_kill_mid_run_leaves_latest_on_the_previous_run(export, tmp_path, moment):
    runs = tmp_path / "runs"
    assert nightly(export, runs, D1).returncode == 0
    before = comparable(runs / D1)
    for day in (D2, D1):  # a new day, then a re-run of the existing day
        proc = subprocess.Popen(nightly_cmd(export, runs, day), cwd=ROOT, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        if moment == "early":
            wait_for(lambda: partials(runs), what="the partial folder")
        else:
            wait_for(lambda: any((p / "quality").exists() for p in partials(runs)), what="the quality stage")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        assert latest(runs) == D1
        assert not (runs / D2).exists()
        assert comparable(runs / D1) == before  # the complete run is untouched
        assert all(p.name.startswith(".") for p in partials(runs))
    done = nightly(export, runs, D2)
    assert done.returncode == 0, done.stderr
    assert latest(runs) == D2 and partials(runs) == []
    assert "interrupted run" in (runs / D2 / "run.log").read_text()


def test_second_nightly_exits_3_and_a_stale_lock_is_taken_over(export, tmp_path):
    runs = tmp_path / "runs"
    first = subprocess.Popen(nightly_cmd(export, runs, D1), cwd=ROOT, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
    wait_for(lambda: runs.exists() and partials(runs), what="the first run to hold the lock")
    t = time.monotonic()
    second = nightly(export, runs, D1)
    assert second.returncode == 3
    assert time.monotonic() - t < 30
    assert "another msfeas nightly is running" in second.stderr and str(first.pid) in second.stderr
    assert first.wait(timeout=300) == 0, first.stderr.read()
    assert latest(runs) == D1

    # A lock file left by a killed run: its holder is gone, so its flock is gone too.
    (runs / ".lock").write_text(json.dumps({"pid": 999999, "host": "gone", "started": "2026-11-02T03:00:00"}))
    again = nightly(export, runs, D2)
    assert again.returncode == 0, again.stderr
    log = (runs / D2 / "run.log").read_text()
    assert "took over a stale lock" in log and "999999" in log
    assert again.stderr == ""  # a night that succeeds is quiet (issue 32): the warning is in run.log


def test_same_inputs_give_identical_files_and_a_rerun_replaces_the_day(export, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for runs in (a, b):
        assert nightly(export, runs, D1).returncode == 0
        assert nightly(export, runs, D2).returncode == 0
    assert comparable(a / D2) == comparable(b / D2)
    assert nightly(export, a, D2).returncode == 0  # re-run of the same day: same result, compared with D1
    assert comparable(a / D2) == comparable(b / D2)
    manifest = json.loads((a / D2 / "manifest.json").read_text())
    assert manifest["previous_run"] == D1 and manifest["exit_status"] == 0
    assert manifest["inputs"]["patients"]["rows"] == 2004 and len(manifest["inputs"]["visits"]["sha256"]) == 64
    assert manifest["trial"]["sha256"] and manifest["versions"]["polars"] and manifest["host"]
    assert set(manifest["stages_seconds"]) >= {"ingest_validate", "evaluate", "quality", "write", "report"}
    assert (a / D2 / "changes.csv").read_text().count("\n") == 1  # header only: nothing changed
    for line in (a / D2 / "run.log").read_text().splitlines():
        assert {"time", "level", "stage", "message"} <= set(json.loads(line))


def test_changes_list_exactly_the_changed_patients(export, tmp_path):
    runs = tmp_path / "runs"
    assert nightly(export, runs, D1).returncode == 0
    ev = pl.read_parquet(runs / D1 / "evaluation.parquet")
    crit = [c for c in ev.columns if c not in ("patient_id", "site_id", "status") and "__" not in c]
    n_fail = pl.sum_horizontal([(pl.col(c) == "fail").cast(pl.Int64) for c in crit])
    gainers = ev.filter((pl.col("informed_consent") == "fail") & (n_fail == 1))["patient_id"].head(2).to_list()
    losers = ev.filter(pl.col("status").is_in(["eligible", "possible"]) & (pl.col("informed_consent") == "pass"))[
        "patient_id"].head(3).to_list()
    assert len(gainers) == 2 and len(losers) == 3
    changed = tmp_path / "changed"
    shutil.copytree(export, changed)
    pats = pl.read_csv(changed / "patients.csv", infer_schema=False)
    pats = pats.with_columns(
        pl.when(pl.col("patient_id").is_in(gainers)).then(pl.lit("Y"))
        .when(pl.col("patient_id").is_in(losers)).then(pl.lit("N"))
        .otherwise(pl.col("research_consent")).alias("research_consent"))
    pats.write_csv(changed / "patients.csv", null_value="")
    # Control: the same export a day later changes nobody, so what follows is the edit alone.
    control = tmp_path / "control"
    assert nightly(export, control, D1).returncode == 0 and nightly(export, control, D2).returncode == 0
    assert (control / D2 / "changes.csv").read_text().count("\n") == 1

    assert nightly(changed, runs, D2).returncode == 0
    with open(runs / D2 / "changes.csv", newline="") as fh:
        rows = {r["patient_id"]: r for r in csv.DictReader(fh)}
    assert set(rows) == set(gainers) | set(losers)
    for pid in gainers:
        assert rows[pid]["change"] == "became_candidate" and rows[pid]["previous_status"] == "ineligible"
    for pid in losers:
        assert rows[pid]["change"] == "no_longer_candidate" and "informed_consent" in rows[pid]["failing_criteria"]
    summary = json.loads((runs / D2 / "summary.json").read_text())
    assert summary["changes"]["became_candidate"] == 2 and summary["changes"]["no_longer_candidate"] == 3
    assert 'data-changes="no_longer_candidate">3<' in (runs / D2 / "report.html").read_text()


def test_volume_drop_stops_with_4_naming_the_table(export, tmp_path):
    runs = tmp_path / "runs"
    assert nightly(export, runs, D1).returncode == 0
    shrunk = tmp_path / "shrunk"
    shutil.copytree(export, shrunk)
    lines = (shrunk / "visits.csv").read_text().splitlines(keepends=True)
    (shrunk / "visits.csv").write_text("".join(lines[: int(len(lines) * 0.7)]))
    res = nightly(shrunk, runs, D2)
    assert res.returncode == 4
    assert "visits.csv" in res.stderr and "--accept-volume-drop" in res.stderr
    assert "patients.csv" not in res.stderr.split("(", 1)[1]  # only the table that shrank is named
    assert not (runs / D2).exists() and latest(runs) == D1 and partials(runs) == []
    assert "visits.csv" in (runs / f"failed-{D2}.log").read_text()
    ok = nightly(shrunk, runs, D2, "--accept-volume-drop")
    assert ok.returncode == 0 and latest(runs) == D2
    assert "accepted" in (runs / D2 / "run.log").read_text()
    # within the allowed share: no stop
    assert nightly(shrunk, tmp_path / "other", D1).returncode == 0
    assert nightly(shrunk, tmp_path / "other", D2, "--max-drop", "50").returncode == 0


def test_retention_keeps_n_runs(export, tmp_path):
    runs = tmp_path / "runs"
    for day in (D1, D2, D3):
        assert nightly(export, runs, day, "--keep", "2").returncode == 0
    assert sorted(p.name for p in runs.iterdir()
                  if not p.name.startswith(".") and p.name not in ("latest", "status.json")) == [D2, D3]


FORMULAS = ["=HYPERLINK(\"http://evil\",\"x\")", "+SUM(1,2)", "-2+3", "@cmd", "=1+1"]


def test_formula_cells_are_neutralised_and_modes_are_private(tmp_path):
    pats = [{"patient_id": f"P{i}", "site_id": site, "sex": "F", "birth_date": "1980-01-01",
             "onset_date": "2015-01-01", "ms_course": "RRMS", "research_consent": "Y"}
            for i, site in enumerate(FORMULAS)]
    pats.append({"patient_id": "-R000360", "site_id": "S1", "sex": "F", "birth_date": "1980-01-01",
                 "onset_date": "2015-01-01", "ms_course": "RRMS", "research_consent": "Y"})
    treatments = [{"patient_id": "P0", "drug": "=cmd|' /C calc'!A0", "start_date": "2016-01-01"}]
    visits = [{"patient_id": "P1", "visit_date": "2025-01-01", "edss": "3.0"},
              {"patient_id": "-R000360", "visit_date": "2025-01-01", "edss": "99"}]  # quarantined, id as written
    folder = write_export(tmp_path / "e", {"patients": pats, "treatments": treatments, "visits": visits})
    runs = tmp_path / "runs"
    res = nightly(folder, runs, D1, "--max-reject", "100")
    assert res.returncode == 0, res.stderr
    run_dir = runs / D1
    texts_seen = []
    for path in run_dir.rglob("*.csv"):
        with open(path, newline="") as fh:
            for row in csv.reader(fh):
                for cell in row:
                    texts_seen.append(cell)
                    assert cell[:1] not in ("=", "@", "\t", "\r"), cell
                    if cell[:1] in ("+", "-"):  # only a number, an id or a cell reference may start so
                        assert re.fullmatch(r"[+-][A-Za-z0-9_.\-]*", cell), cell
    assert "'=HYPERLINK(\"http://evil\",\"x\")" in texts_seen and "'-2+3" in texts_seen
    assert "'=cmd|' /C calc'!A0" in texts_seen  # the quarantined drug, as written but inert
    assert "-R000360" in texts_seen and "'-R000360" not in texts_seen  # a valid id joins with evaluation.parquet
    assert "-R000360" in pl.read_parquet(run_dir / "evaluation.parquet")["patient_id"].to_list()
    assert stat.S_IMODE(runs.stat().st_mode) == 0o700
    for p in [run_dir, *run_dir.rglob("*")]:
        mode = stat.S_IMODE(p.stat().st_mode)
        assert mode == (0o700 if p.is_dir() else 0o600), (p, oct(mode))


@pytest.mark.parametrize("cell,kept", [
    ("-R000360", True), ("-2.5", True), ("+B12", True), ("R-1", True), ("-", True), ("plain text", True),
    ("-2+3", False), ("+SUM(1,2)", False), ("=1+1", False), ("@cmd", False), ("\tx", False), ("\rx", False),
    ("-cmd|' /C calc'!A0", False), ("-A1\n=1", False), ("- x", False), ("+41 79 123", False)])
def test_formula_rule(cell, kept):
    from pipeline.core.files import neutralise
    got = neutralise(pl.DataFrame({"c": [cell]}))["c"][0]
    assert got == (cell if kept else "'" + cell)


def test_nightly_usage_errors(tmp_path):
    with pytest.raises(SystemExit) as exc:
        main(["nightly", "--input", str(SAMPLE)])
    assert exc.value.code == 2
    assert main(["nightly", "--input", str(SAMPLE), "--runs-dir", str(tmp_path / "r"), "--keep", "0"]) == 2


def test_changes_leave_out_patients_quarantined_tonight():
    """The contract keeps quarantined patients out of every output but the quarantine files."""
    from pipeline.nightly import changes
    prev = pl.DataFrame({"patient_id": ["A", "B", "C"], "site_id": ["S"] * 3,
                         "status": ["eligible", "possible", "possible"], "k": ["pass", "unknown", "unknown"]})
    now = pl.DataFrame({"patient_id": ["A"], "site_id": ["S"], "status": ["ineligible"], "k": ["fail"]})
    got = changes(prev, now, ["k"], quarantined=pl.Series(["B"]))
    assert got.select("patient_id", "change", "failing_criteria").rows() == [
        ("A", "no_longer_candidate", "k"), ("C", "no_longer_candidate", None)]
    assert changes(prev, now, ["k"]).height == 3
