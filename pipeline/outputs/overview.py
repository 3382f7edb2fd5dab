"""Several trials in one run: the overview beside the trials' own folders.

`msfeas run --trial A --trial B` (or `--trial all`) reads and validates the export once;
each trial's files go to `RUN_DIR/<trial id>/` exactly as a one-trial run writes them,
and the run folder also holds:

- `overview.csv`: one row per trial: population, eligible, possible, ineligible, and the
  three criteria that exclude the most (the most patients failing each);
- `candidates_by_trial.csv`: one row per patient and trial for which the patient is a
  candidate (eligible or possible), with the trial's unknown criteria;
- `report.html`: the trials side by side, with which optional tables each trial's
  criteria read and which were absent from the export, linking to each trial's report;
- `summary.json`: the overview's counts (no patient ids).
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from pipeline import __version__
from pipeline.core import files
from pipeline.criteria import Trial
from pipeline.engines.settings import JudgeSettings
from pipeline.inputs.registry import Registry
from pipeline.outputs import report, tables
from pipeline.outputs.settings import OutputSettings

TOP = 3


def overview_rows(trials: list[Trial], summaries: dict[str, dict], attritions: dict[str, pl.DataFrame]) -> list[dict]:
    rows = []
    for trial in trials:
        s, attr = summaries[trial.id], attritions[trial.id]
        row = {"trial": trial.id, "title": trial.title,
               **{k: s[k] for k in ("population", "eligible", "possible", "ineligible")}}
        top = attr.filter(pl.col("n_fail") > 0).sort(["n_fail", "step"], descending=[True, False]).head(TOP)
        ranked = list(top.select("criterion", "n_fail").iter_rows())
        for i in range(TOP):
            crit, n = ranked[i] if i < len(ranked) else (None, None)
            row[f"excluding_{i + 1}"], row[f"excluding_{i + 1}_n_fail"] = crit, n
        e = s.get("expected_eligible") or {}
        row.update({"expected_eligible": e.get("expected"), "expected_eligible_low_80": e.get("low_80"),
                    "expected_eligible_high_80": e.get("high_80")})
        t = (s.get("projection") or {}).get("time_to_target") or {}
        row["months_to_target"] = t.get("months_median")
        rows.append(row)
    return rows


def candidates_by_trial(trials: list[Trial], evaluations: dict[str, pl.DataFrame]) -> pl.DataFrame:
    frames = [tables.candidates(evaluations[t.id], t).select(
        "patient_id", "site_id", pl.lit(t.id).alias("trial"), "status", "unknown_criteria") for t in trials]
    return pl.concat(frames).sort("patient_id", "trial")


def write(folder: Path, trials: list[Trial], judge: JudgeSettings, output: OutputSettings, registry: Registry,
          summaries: dict[str, dict], attritions: dict[str, pl.DataFrame], evaluations: dict[str, pl.DataFrame],
          warnings: list[str]) -> dict:
    """Write the overview files into the run folder and return the run's summary."""
    rows = overview_rows(trials, summaries, attritions)
    files.write_csv(pl.DataFrame(rows, schema_overrides={**{f"excluding_{i + 1}_n_fail": pl.Int64 for i in range(TOP)},
                                                         "expected_eligible": pl.Float64, "months_to_target": pl.Int64,
                                                         "expected_eligible_low_80": pl.Int64,
                                                         "expected_eligible_high_80": pl.Int64}),
                      folder / "overview.csv")
    by_trial = candidates_by_trial(trials, evaluations)
    files.write_csv(by_trial, folder / "candidates_by_trial.csv")
    per_patient = by_trial.group_by("patient_id").agg(pl.len().alias("n_trials"))
    several = dict(per_patient.group_by("n_trials").agg(pl.len().alias("n")).sort("n_trials").iter_rows())
    summary = {
        "trials": [t.id for t in trials], "as_of": judge.as_of.isoformat(), "engine": judge.engine,
        "version": __version__, "overview": rows,
        "candidate_patients": {"any_trial": per_patient.height,
                               "by_number_of_trials": {str(k): int(v) for k, v in several.items()}},
        "inputs": {t: i.as_dict() for t, i in registry.inputs.items()},
        **({"source": registry.source} if registry.source else {}),
        "absent_tables": registry.absent,
        "warnings": warnings,
        "timings_seconds": None,
    }
    # Each trial's history, forecast, time to target and data-quality findings, as the terminal shows them, and
    # its criteria by their short labels (issue 32).
    model = {"s": summary, "trials": [{"trial": t, "row": r, "tables": report.tables_read(t, registry.absent),
                                       "ts": summaries[t.id], "labels": report.labels(t),
                                       "findings": [f for f in (summaries[t.id].get("quality") or {}).get("findings", [])
                                                    if not f.get("ok", True)]}
                                      for t, r in zip(trials, rows)],
             "shareable": output.shareable}  # counts only in the trials' workbenches
    (folder / "report.html").write_text(report.render(model, "overview.html.j2"), "utf-8")
    return summary
