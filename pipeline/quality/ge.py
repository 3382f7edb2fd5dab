"""`--quality ge`: the suites run by great-expectations itself, the reference the native checks are held to.

GE validates pandas frames (or Spark DataFrames with the Spark engine); its raw results
are written without run ids and times, so two runs give the same bytes. GE's own logging
is silenced: a problem it meets is a finding's error, never text on stderr.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from pathlib import Path

import polars as pl

from pipeline.core.files import write_json
from pipeline.quality.checks import observed_figure as _observed


def _columns_used(expectations: list[dict], columns: list[str]) -> list[str]:
    """The frame's columns that the expectations name, in frame order.

    GE converts, and fingerprints by hashing, every column of the frame it is given;
    ids and drug names that no expectation reads would only cost time (about a
    second at a million patients).
    """
    named = {v for e in expectations for k, v in e.get("kwargs", {}).items() if k.startswith("column")}
    return [c for c in columns if c in named]


def _to_pandas(frame: pl.DataFrame):
    """pandas for GE: dates as datetime64 (GE compares those), booleans kept."""
    return frame.with_columns(pl.col(pl.Date).cast(pl.Datetime("ms"))).to_pandas()


def _silence_ge() -> None:
    """GE logs its own errors (with tracebacks) to stderr when nothing else handles them; a run
    reports GE's problems itself (a finding's `error`, the quality stage's error), in one line."""
    gx_log = logging.getLogger("great_expectations")
    if not any(isinstance(h, logging.NullHandler) for h in gx_log.handlers):
        gx_log.addHandler(logging.NullHandler())
    gx_log.propagate = False


def _no_doctest_exit() -> None:
    """Keep pyspark from ending the process when GE imports it.

    With pyspark installed, GE imports `pyspark.sql.connect`, which takes a process whose
    `__main__` has neither a spec nor a file (`python -c`, pytest-xdist's workers) for a
    doctest run and calls `sys.exit(0)` when its optional gRPC packages are missing: a
    silent exit with status 0 in the middle of a run. Such a `__main__` is given a file name.
    """
    main = sys.modules.get("__main__")
    if main is not None and getattr(main, "__spec__", None) is None and not hasattr(main, "__file__"):
        main.__file__ = "<msfeas>"


def _context():
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")  # no calls home from a hospital network
    _silence_ge()
    _no_doctest_exit()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import great_expectations as gx
        from great_expectations.data_context.types.base import DataContextConfig, InMemoryStoreBackendDefaults

        # In memory, and no temporary docs site of GE's own (it would leave a folder in /tmp each run).
        config = DataContextConfig(store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False))
        ctx = gx.get_context(mode="ephemeral", project_config=config)
    ctx.variables.progress_bars = {"globally": False}  # quiet under cron
    return gx, ctx


def raw_result(result) -> dict:
    """GE's validation result as JSON, minus what differs between two runs of the same data
    (run and validation ids, times, batch markers, the expectations' random ids)."""
    d = result.to_json_dict()
    for r in d.get("results", []):
        r.get("expectation_config", {}).pop("id", None)
    return {"suite_name": d.get("suite_name"), "success": d.get("success"), "statistics": d.get("statistics"),
            "great_expectations_version": (d.get("meta") or {}).get("great_expectations_version"),
            "results": d.get("results", [])}


def _finding(table: str, exp: dict, result, sampled: bool, rows: int) -> dict:
    r = result.result or {}
    meta = exp.get("meta", {})
    out = {
        "table": table, "id": meta.get("id", exp["type"]), "finding": meta.get("finding", exp["type"]),
        "expectation": exp["type"], "ok": bool(result.success), "sampled": sampled, "rows_checked": rows,
    }
    if "unexpected_count" in r:
        out["count"] = int(r["unexpected_count"])
    if "observed_value" in r:
        out["observed"] = _observed(r["observed_value"])
    if result.exception_info and result.exception_info.get("raised_exception"):
        out["ok"] = False
        out["error"] = str(result.exception_info.get("exception_message"))
    return out


def _validate(gx, ctx, name: str, expectations: list[dict], frame, result_format, meta: dict | None = None,
              spark: bool = False):
    """Run `expectations` as the GE suite `name` on a pandas (or Spark) `frame`; the validation result."""
    suite = ctx.suites.add(gx.ExpectationSuite(name=name, expectations=[dict(e) for e in expectations],
                                               meta=meta or {}))
    source = ctx.data_sources.add_spark(name) if spark else ctx.data_sources.add_pandas(name)
    batch = source.add_dataframe_asset(name).add_batch_definition_whole_dataframe("accepted rows")
    vd = ctx.validation_definitions.add(gx.ValidationDefinition(name=name, data=batch, suite=suite))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return vd.run(batch_parameters={"dataframe": frame}, result_format=result_format)


def run_ge(parts, frames: dict, spark: bool, results_dir: Path | None) -> list[dict]:
    """The suites run by great-expectations on pandas frames (or its Spark execution engine)."""
    gx, ctx = _context()
    findings = []
    for table, name, sampled, exps, suite in parts:
        frame = frames[name]
        used = frame.select(_columns_used(exps, frame.columns))
        if spark:  # GE computes each metric as its own Spark job: the frame is built once, not per metric
            used = used.cache()
        rows = used.count() if spark else frame.height
        result = _validate(gx, ctx, name, exps, used if spark else _to_pandas(used), "BASIC", suite.get("meta"),
                           spark)
        if results_dir is not None:
            write_json(raw_result(result), results_dir / f"{name}.json")
        by_id = {e.get("meta", {}).get("id"): e for e in exps}
        for res in result.results:
            exp = by_id.get((res.expectation_config.meta or {}).get("id"), {"type": res.expectation_config.type})
            findings.append(_finding(table, exp, res, sampled, rows))
        if spark:
            used.unpersist()
    return findings
