"""The workbench model for report.html: the payload, the page's script and the command line it shows.
"""

from __future__ import annotations

import datetime as dt
import json
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Iterator

import polars as pl

from pipeline.criteria import Trial
from pipeline.outputs.settings import Rerun
from pipeline.outputs.workbench import model
from pipeline.outputs.workbench.encoding import _encode
from pipeline.outputs.workbench.model import _Build, _place, _site_column
from pipeline.outputs.workbench.rules import STATUS
from pipeline.outputs.workbench.scales import _label


def _command(opts: Rerun, trial: Trial) -> dict:
    """The `msfeas run` line of this run, without --out and --set (the page adds those): the input and a
    trial file as absolute paths (the line runs from any folder), and the engine of this run."""
    where = str(opts.input) if "://" in str(opts.input) else str(Path(opts.input).resolve())  # a URL stays
    args = ["msfeas", "run", "--input", where, "--out", "RUN_DIR", "--as-of", opts.as_of.isoformat()]
    options = {"format": "--input-format", "site": "--site", "cdm_schema": "--cdm-schema",
               "vocab_schema": "--vocab-schema", "profile": "--omop-profile"}  # another input format's
    for key, flag in options.items():
        value = opts.source_options.get(key)
        if value and value != "auto":
            args += [flag, str(Path(value).resolve()) if key == "profile" else str(value)]
    src = trial.source
    args += ["--trial", src.removeprefix("bundled trial ") if src.startswith("bundled trial ")
             else str(Path(src).resolve())]
    engine = getattr(opts, "engine", "polars")
    if engine != "polars":
        args += ["--engine", engine]
        if engine == "spark" and getattr(opts, "spark_master", "local[*]") != "local[*]":
            args += ["--spark-master", opts.spark_master]
    for key, value in (opts.dialect_overrides or {}).items():
        if value is not None:
            args += [f"--{key.replace('_', '-')}", str(value)]
    if opts.drug_lines:
        args += ["--drug-lines", str(opts.drug_lines)]
    if opts.max_reject != 0.05:
        args += ["--max-reject", f"{opts.max_reject * 100:g}%"]
    if opts.min_cell != 5:
        args += ["--min-cell", str(opts.min_cell)]
    if opts.shareable:
        args += ["--shareable"]
    # Parameters this run changed that no slider carries: they stay as they were.
    kept = []
    for c in trial.criteria:
        for p in sorted(c.overridden):
            kept.append({"id": f"{c.id}.{p}", "label": _set_text(c.parameters[p], c.param_types[p])})
    return {"args": args, "kept": kept}


def _trial_file(trial: Trial) -> dict | None:
    """The trial file cut at its `[[criteria]]` lines: the header and one block per criterion, in order, so
    that the page can offer the file without the criteria left out. None when the file is not laid out so
    (each block must parse to its criterion, as in the whole file); the page then says what to remove."""
    import tomllib

    from pipeline.criteria.load import _load_text

    src = trial.source.removeprefix("bundled trial ")
    try:
        text = _load_text(src)[0]
        whole = tomllib.loads(text)
    except Exception:  # noqa: BLE001 - no download offered; the command's comment says what to do
        return None
    lines = text.splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if line.strip() == "[[criteria]]"]
    if not starts:
        return None
    header = "".join(lines[:starts[0]])
    blocks = ["".join(lines[a:b]) for a, b in zip(starts, [*starts[1:], len(lines)])]
    try:
        if [tomllib.loads(header + b)["criteria"][0] for b in blocks] != whole.get("criteria") or \
                {k: v for k, v in tomllib.loads(header).items()} != {k: v for k, v in whole.items() if k != "criteria"}:
            return None
    except Exception:  # noqa: BLE001
        return None
    if [c.get("id") for c in whole["criteria"]] != trial.ids:
        return None
    return {"header": header, "blocks": [b if b.endswith("\n") else b + "\n" for b in blocks]}


def _set_text(value: Any, typ: str) -> str:
    if value is None:
        return "none"
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return _label(value, typ.startswith("int")) if isinstance(value, (int, float)) else str(value)


def build(evaluation: pl.DataFrame, trial: Trial, tables: dict[str, pl.DataFrame], absent: list[str],
          as_of: dt.date, rerun: Rerun | None = None, shareable: bool = False, min_cell: int = 5,
          parts: Callable[[], Iterator[dict[str, pl.DataFrame]]] | None = None, kept=None) -> dict:
    """The workbench model for the report: `json` (the embedded payload) and plain facts for the template.

    `parts`: for a sharded export (pipeline/inputs/shards.py), its shards' tables in turn; `tables`
    then needs only the whole patients table. `kept`: where criteria's parts of the page are kept
    for a re-run on the same export (`load(criterion)` a `Part` or None, `store(criterion, part)`;
    pipeline/ops/results_cache.py). `rerun`: what the page's command line repeats of this run.
    """
    b = _Build(evaluation, trial, tables, set(absent), as_of, parts=parts)
    site_col, sites = _site_column(b)
    criteria = []
    for c in trial.criteria:
        part = kept.load(c) if kept is not None else None
        if part is None:
            part = model._part(b, c)
            if kept is not None:
                kept.store(c, part)
        criteria.append(_place(b, part))
    encoded, _ = _encode(b.columns)
    columns = [{"name": c.name, "dict": c.entries} for c in b.columns]
    command = _command(rerun, trial) if rerun is not None else {"args": ["msfeas", "run"], "kept": []}
    # Parameters changed for this run but carried by a slider: the slider says so (its --set stays).
    slid = {s["id"] for s in b.sliders}
    command["kept"] = [k for k in command["kept"] if k["id"] not in slid]
    sliders = [{k: v for k, v in s.items() if k != "values"} for s in b.sliders]
    payload = {
        "version": 1, "trial": trial.id, "as_of": as_of.isoformat(), "population": evaluation.height,
        "sites": sites, "site_col": site_col, "statuses": list(STATUS),
        "criteria": criteria, "sliders": sliders, "columns": columns, **encoded,
        "command": command, "shareable": bool(shareable), "min_cell": int(min_cell),
        "trial_file": _trial_file(trial),
    }
    text = json.dumps(payload, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return {"json": text, "payload": payload, "notes": b.notes, "shareable": bool(shareable),
            "min_cell": int(min_cell), "n_sliders": len(b.sliders), "script": script()}


def script() -> str:
    text = resources.files("pipeline.outputs").joinpath("templates/workbench.js").read_text("utf-8")
    assert "</script" not in text.lower() and "<!--" not in text
    return text


def embed(text: str) -> str:
    """JSON made safe inside <script type="application/json">: no `<`, `>` or `&` as such."""
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
