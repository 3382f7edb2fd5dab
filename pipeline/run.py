"""One run: ingest, validate, evaluate, write, into a run folder that appears only when complete.

The folder is built beside its final place under a temporary name and renamed into
place at the end, so a fatal error, a crash or a kill never leaves a folder that
looks like a result.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from pipeline import __version__, disclosure, outputs, quality, report
from pipeline.dialect import load_dialect
from pipeline.engines import evaluate
from pipeline.errors import UsageError
from pipeline.ingest import Registry, ingest
from pipeline.trial import Trial
from pipeline.vocabulary import load_vocabulary


@dataclass
class RunOptions:
    input: Path
    out: Path
    as_of: dt.date
    trial: Trial
    engine: str = "polars"
    dialect_overrides: dict = field(default_factory=dict)
    drug_lines: str | None = None
    max_reject: float = 0.05
    min_cell: int = 5
    force: bool = False
    today: dt.date = field(default_factory=dt.date.today)


@dataclass
class RunResult:
    out: Path
    summary: dict
    attrition: pl.DataFrame
    timings: dict[str, float]


def _check_out(out: Path, force: bool) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not force:
        raise UsageError(f"--out {out} exists and is not empty; pass --force to replace it")


def run(opts: RunOptions) -> RunResult:
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    _check_out(opts.out, opts.force)
    dialect = load_dialect(opts.input, opts.dialect_overrides) if opts.input.is_dir() else None
    vocab = load_vocabulary(opts.drug_lines)
    registry: Registry = ingest(opts.input, dialect, vocab, today=opts.today, max_reject=opts.max_reject)
    timings["ingest_validate"] = time.perf_counter() - t0

    t1 = time.perf_counter()
    evaluation = evaluate(registry, opts.trial, opts.as_of, opts.engine)
    timings["evaluate"] = time.perf_counter() - t1

    attr = outputs.attrition(evaluation, opts.trial)
    cands = outputs.candidates(evaluation, opts.trial)
    summary = {
        "trial": opts.trial.id, "as_of": opts.as_of.isoformat(), "engine": opts.engine, "version": __version__,
        **outputs.counts(evaluation), "by_site": outputs.by_site(evaluation),
        "parameters": opts.trial.parameters_record(),
        "inputs": {t: i.as_dict() for t, i in registry.inputs.items()},
        "absent_tables": registry.absent,
        "dialect": vars(registry.dialect) if registry.dialect else None,
        "drug_lines": vocab.source,
        "quality": None,
        "timings_seconds": None,  # filled below; the only engine- and machine-dependent field
    }
    opts.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{opts.out.name}.partial-", dir=opts.out.parent))
    try:
        t2 = time.perf_counter()
        summary["quality"] = quality.run_quality(registry, opts.trial, opts.as_of, tmp / "quality")
        timings["quality"] = time.perf_counter() - t2
        seconds = summary["quality"].pop("seconds")  # timings live in timings_seconds only
        timings["quality_frames"] = seconds["frames"]

        t3 = time.perf_counter()
        evaluation.write_parquet(tmp / "evaluation.parquet", statistics=False)
        outputs.write_csv(cands, tmp / "candidates.csv")
        outputs.write_csv(attr, tmp / "attrition.csv")
        qdir = tmp / "quarantine"
        qdir.mkdir()
        for table, frame in registry.quarantine.items():
            outputs.write_csv(frame, qdir / f"{table}.csv")
        disclosure.write(evaluation, summary, tmp, opts.min_cell)
        timings["write"] = time.perf_counter() - t3

        t4 = time.perf_counter()
        report.write(tmp / "report.html", summary, evaluation, attr, opts.trial, registry.quarantine, cands)
        timings["report"] = time.perf_counter() - t4
        timings["total"] = time.perf_counter() - t0
        summary["timings_seconds"] = {k: round(v, 3) for k, v in timings.items()}
        outputs.write_json(summary, tmp / "summary.json")
        if opts.out.exists():
            shutil.rmtree(opts.out)
        os.replace(tmp, opts.out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return RunResult(opts.out, summary, attr, timings)
