"""Each criterion's results kept for what-if re-runs (pipeline/ops/results_cache.py): a re-run judges only
the criteria whose rule changed, and its outputs are exactly those of a run that judged everything."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

import polars as pl
import pytest

from pipeline import engines
from pipeline.cli import main
from pipeline.criteria.load import load_trial
from pipeline.ops import results_cache
from pipeline.outputs import workbench
from tests.conftest import synthetic_export
from tests.test_cache import same_outputs

AS_OF = dt.date(2026, 11, 1)


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    return synthetic_export(tmp_path_factory, "results", seed=11)


def run(export, out, *extra):
    return main(["run", "--input", str(export), "--out", str(out), "--as-of", AS_OF.isoformat(), "--force", *extra])


def judged_fresh(export, out, *extra):
    """What a run judging every criterion writes (no cache at all)."""
    assert run(export, out, "--no-cache", *extra) == 0
    return out


def taken(folder) -> str | None:
    """The run log's line on criteria taken from the cache, if any."""
    for line in (folder / "run.log").read_text().splitlines():
        msg = json.loads(line)["message"]
        if "criteria as an earlier run" in msg:
            return msg
    return None


def counting(monkeypatch):
    """How many criteria each engine call judges."""
    seen: list[str] = []
    real = engines._evaluation

    def spy(eng, tables, criteria, *a, **k):
        seen.extend(c.id for c in criteria)
        return real(eng, tables, criteria, *a, **k)
    monkeypatch.setattr(engines, "_evaluation", spy)
    return seen


def building(monkeypatch):
    """The criteria whose part of the report's workbench is built (not found kept)."""
    built: list[str] = []
    real = workbench.model._part

    def spy(b, crit):
        built.append(crit.id)
        return real(b, crit)
    monkeypatch.setattr(workbench.model, "_part", spy)
    return built


@pytest.mark.parametrize("engine", ["polars", "duckdb"])
@pytest.mark.parametrize("shards", [None, "40"])
def test_a_whatif_rerun_judges_only_the_changed_criterion(export, tmp_path, monkeypatch, engine, shards):
    c = tmp_path / "cache"
    extra = ["--engine", engine, "--cache", str(c), *(["--shard-patients", shards] if shards else [])]
    assert run(export, tmp_path / "first", *extra) == 0
    assert taken(tmp_path / "first") is None
    seen, built = counting(monkeypatch), building(monkeypatch)
    assert run(export, tmp_path / "whatif", *extra, "--set", "edss_range.max_edss=7.0") == 0
    monkeypatch.undo()
    assert set(seen) == {"edss_range"}  # on every shard, and nothing else
    assert built == ["edss_range"]
    n = len(load_trial("nct04203017").criteria)
    assert taken(tmp_path / "whatif").startswith(f"{n - 1} of {n} criteria")
    fresh = judged_fresh(export, tmp_path / "fresh", "--engine", engine, "--set", "edss_range.max_edss=7.0")
    same_outputs(tmp_path / "whatif", fresh)
    # and back: every criterion now stored, none judged, still the same outputs
    seen, built = counting(monkeypatch), building(monkeypatch)
    assert run(export, tmp_path / "back", *extra) == 0
    monkeypatch.undo()
    assert seen == [] and built == []
    same_outputs(tmp_path / "back", tmp_path / "first")


def test_another_trial_finds_the_same_rule_under_another_name(export, tmp_path, monkeypatch):
    c = tmp_path / "cache"
    assert run(export, tmp_path / "a", "--cache", str(c), "--trial", "nct04203017") == 0
    seen = counting(monkeypatch)
    assert run(export, tmp_path / "b", "--cache", str(c), "--trial", "nct04411641") == 0
    monkeypatch.undo()
    other = load_trial("nct04411641")
    first = {results_cache.key(x.node, "polars", AS_OF) for x in load_trial("nct04203017").criteria}
    shared = [x.id for x in other.criteria if results_cache.key(x.node, "polars", AS_OF) in first]
    assert shared, "the two trials share no rule: pick another pair"
    assert set(seen) == {x.id for x in other.criteria} - set(shared)
    same_outputs(tmp_path / "b", judged_fresh(export, tmp_path / "fresh", "--trial", "nct04411641"))


def test_the_key_is_the_rule_the_date_and_the_engine(tmp_path):
    trial = load_trial("nct04203017")
    node = next(x.node for x in trial.criteria if x.id == "edss_range")
    k = results_cache.key(node, "polars", AS_OF)
    assert results_cache.key(node, "polars", AS_OF) == k
    assert results_cache.key(node, "duckdb", AS_OF) != k
    assert results_cache.key(node, "polars", AS_OF - dt.timedelta(days=1)) != k
    moved = dataclasses.replace(node, path="elsewhere", params={})
    assert results_cache.key(moved, "polars", AS_OF) == k  # its place and its parameters' names do not matter
    changed = dataclasses.replace(node, args={**node.args, "max": 7.0})
    assert results_cache.key(changed, "polars", AS_OF) != k
    other = load_trial("nct04203017", ["edss_range.max_edss=7.0"])
    assert results_cache.key(next(x.node for x in other.criteria if x.id == "edss_range"), "polars", AS_OF) != k


def test_a_damaged_or_foreign_result_is_judged_again(export, tmp_path, monkeypatch):
    c = tmp_path / "cache"
    assert run(export, tmp_path / "first", "--cache", str(c)) == 0
    (folder,) = c.glob("*/criteria")
    files = sorted(p for p in folder.glob("*.ipc") if p.name != results_cache.PATIENTS
                   and not p.name.startswith("part-"))
    files[0].write_bytes(b"not an arrow file")
    parts = sorted(folder.glob("part-*.json"))
    parts[0].write_text("{")
    parts[1].with_suffix(".ipc").write_bytes(b"")
    seen, built = counting(monkeypatch), building(monkeypatch)
    assert run(export, tmp_path / "again", "--cache", str(c)) == 0
    monkeypatch.undo()
    assert len(seen) >= 1 and len(built) == 2
    same_outputs(tmp_path / "again", tmp_path / "first")
    # stored ids of other patients: nothing stored is used, every criterion is judged
    ids = pl.read_ipc(folder / results_cache.PATIENTS)
    ids.with_columns(pl.col("patient_id").reverse()).write_ipc(folder / results_cache.PATIENTS)
    seen = counting(monkeypatch)
    assert run(export, tmp_path / "foreign", "--cache", str(c)) == 0
    monkeypatch.undo()
    assert len(seen) == len(load_trial("nct04203017").criteria)
    assert taken(tmp_path / "foreign") is None
    same_outputs(tmp_path / "foreign", tmp_path / "first")
    assert pl.read_ipc(folder / results_cache.PATIENTS).equals(ids)  # stored again, right


def test_only_the_most_recent_results_are_kept(export, tmp_path, monkeypatch):
    monkeypatch.setattr(results_cache, "KEEP", 2)
    c = tmp_path / "cache"
    for i, edss in enumerate(["5.0", "5.5", "6.0", "6.5"]):
        assert run(export, tmp_path / f"r{i}", "--cache", str(c), "--set", f"edss_range.max_edss={edss}") == 0
    (folder,) = c.glob("*/criteria")
    trial = load_trial("nct04203017", ["edss_range.max_edss=6.5"])
    current = {f"{results_cache.key(x.node, 'polars', AS_OF)}.ipc" for x in trial.criteria}
    names = {p.name for p in folder.glob("*.ipc") if not p.name.startswith("part-")} - {results_cache.PATIENTS}
    assert current <= names and len(names - current) == 2  # the run's own, and the two most recent others
    parts = {p.stem for p in folder.glob("part-*.json")}
    assert {p.stem for p in folder.glob("part-*.ipc")} == parts
    assert len(parts) == len(trial.criteria) + 2


def test_no_cache_keeps_no_results(export, tmp_path, monkeypatch):
    monkeypatch.setenv("MSFEAS_CACHE", str(tmp_path / "c"))
    assert run(export, tmp_path / "a", "--no-cache") == 0
    assert not (tmp_path / "c").exists()
    assert results_cache.for_run(None, "k", "polars", AS_OF) is None
    assert results_cache.for_run(tmp_path, "k", "spark", AS_OF) is None


def test_evaluate_with_known_results_of_other_patients_judges_everything(export):
    from pipeline.core.dialect import load_dialect
    from pipeline.core.vocabulary import load_vocabulary
    from pipeline.inputs.ingest import ingest

    reg = ingest(export, load_dialect(export, {}), load_vocabulary(None), today=AS_OF)
    trial = load_trial("nct04203017")
    whole = engines.evaluate(reg, trial, AS_OF)
    cid = trial.criteria[0].id
    stored = whole.select(pl.col(cid).alias("status"))
    assert engines.evaluate(reg, trial, AS_OF, known=engines.Known(whole["patient_id"], {cid: stored})).equals(whole)
    wrong = engines.Known(whole["patient_id"].reverse(), {cid: stored.with_columns(pl.lit("pass").alias("status"))})
    assert engines.evaluate(reg, trial, AS_OF, known=wrong).equals(whole)
    right_but_changed = engines.Known(whole["patient_id"], {cid: stored.with_columns(pl.lit("fail").alias("status"))})
    got = engines.evaluate(reg, trial, AS_OF, known=right_but_changed)
    assert (got[cid] == "fail").all() and (got["status"] == "ineligible").all()  # the known ones are taken as given
