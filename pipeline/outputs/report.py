"""report.html: the feasibility report, one self-contained file a registry analyst can open offline.

Everything is inlined (styles, SVG charts, the workbench's script and data); no script, font
or style is fetched, so the file opens from a hospital PC with no internet. The numbers come from the same
frames as `summary.json` and `attrition.csv`; the page is rendered from
`templates/report.html.j2` with autoescaping (site ids and reasons are data, never markup).

The report is deterministic: two runs on the same inputs give the same bytes, and the
two engines differ only in the engine's name.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import jinja2
import polars as pl

from pipeline.criteria import Trial

# Evidence shown as distributions of the candidates: which node's evidence, label, bin width, unit.
DISTRIBUTIONS = [
    (lambda n: n.type == "latest_value" and n["column"] == "edss", "EDSS (latest within the look-back)", 0.5, ""),
    (lambda n: n.type == "age", "Age at the reference date", 5, "years"),
    (lambda n: n.type == "years_since" and n["column"] == "onset_date", "Disease duration", 2, "years"),
]


_bytecode: jinja2.BytecodeCache | None = None


def cache_templates(folder: Path | None) -> None:
    """Keep the compiled report templates in `folder` (None: compile them at every run).

    Compiling the report's templates takes about 0.2 s, a fifth of a what-if re-run at 20,000
    patients. jinja2 keys each compiled template by its source's checksum, so an edited
    template is never served stale. `pipeline.run` passes a folder inside the user's cache
    (`--cache`; a dot folder, which the eviction of old exports passes over), and None with
    `--no-cache`, which stores nothing.
    """
    global _bytecode
    if folder is None:
        _bytecode = None
        return
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        _bytecode = jinja2.FileSystemBytecodeCache(str(folder))
    except OSError:  # a cache that cannot be written costs time, never the run
        _bytecode = None


def _env() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.PackageLoader("pipeline.outputs", "templates"),
                             autoescape=jinja2.select_autoescape(["html", "j2"]), bytecode_cache=_bytecode,
                             trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined)
    env.filters["n"] = lambda v: f"{int(v):,}"
    env.filters["pct"] = lambda v, d: f"{100.0 * v / d:.1f} %" if d else "-"
    return env


def _settle(evaluation: pl.DataFrame, trial: Trial) -> list[dict]:
    """For possible patients: per criterion, how many have it unknown, and for how many it is the only one."""
    ids = trial.ids
    possible = evaluation.filter(pl.col("status") == "possible")
    if not ids or possible.height == 0:
        return []
    unknown = possible.select([(pl.col(c) == "unknown").cast(pl.Int64).alias(c) for c in ids])
    n_unknown = unknown.sum_horizontal()
    sums = unknown.select(
        *[pl.col(c).sum().alias(f"{c}|n") for c in ids],
        *[((pl.col(c) == 1) & (n_unknown == 1)).sum().alias(f"{c}|only") for c in ids]).row(0, named=True)
    rows = [{"criterion": c.id, "settle": c.settle or c.text, "n": sums[f"{c.id}|n"], "only": sums[f"{c.id}|only"]}
            for c in trial.criteria if sums[f"{c.id}|n"] > 0]
    return sorted(rows, key=lambda r: (-r["n"], r["criterion"]))


def _histogram(values: pl.Series, width: float) -> dict:
    """Counts per bin [k*width, (k+1)*width), plus the count without a value."""
    present = values.drop_nulls()
    missing = values.len() - present.len()
    if present.len() == 0:
        return {"bins": [], "missing": missing, "max": 0}
    lo = math.floor(float(present.min()) / width)
    hi = math.floor(float(present.max()) / width)
    counts = (present.to_frame("v").select((pl.col("v") / width).floor().cast(pl.Int64).alias("k"))
              .group_by("k").len())
    got = dict(counts.iter_rows())
    bins = [{"lo": k * width, "hi": (k + 1) * width, "n": int(got.get(k, 0))} for k in range(lo, hi + 1)]
    return {"bins": bins, "missing": missing, "max": max(b["n"] for b in bins)}


def _distributions(candidates: pl.DataFrame, trial: Trial) -> list[dict]:
    """One histogram per kind of value in DISTRIBUTIONS, from the first criterion (in order) that has it."""
    out, shown = [], set()
    for c in trial.criteria:
        for node in c.node.walk():
            for matches, label, width, unit in DISTRIBUTIONS:
                col = f"{c.id}__{node.spec.evidence(node)[0]}" if matches(node) else None
                if col in candidates.columns and label not in shown:
                    shown.add(label)
                    hist = _histogram(candidates[col].cast(pl.Float64), width)
                    out.append({"label": label, "criterion": c.id, "unit": unit, "width": width, **hist})
    return out


def _quarantine_reasons(quarantine: dict[str, pl.DataFrame], top: int = 10) -> list[dict]:
    """The most frequent reasons, with quoted values generalised so that like reasons group."""
    frames = [f.select(pl.lit(t).alias("table"), pl.col("_reason")) for t, f in quarantine.items() if f.height]
    if not frames:
        return []
    reasons = (pl.concat(frames)
               .with_columns(pl.col("_reason").str.replace_all(r"'[^']*'", "'…'").alias("reason"))
               .group_by("table", "reason").len()
               .sort(["len", "table", "reason"], descending=[True, False, False]).head(top))
    return [{"table": t, "reason": r, "n": n} for t, r, n in reasons.iter_rows()]


def _fmt_param(value) -> str:
    if value is None:
        return "none"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


def build(summary: dict, evaluation: pl.DataFrame, attrition: pl.DataFrame, trial: Trial,
          quarantine: dict[str, pl.DataFrame], candidates: pl.DataFrame, history: dict | None = None,
          workbench: dict | None = None) -> dict:
    """The report's model: plain data, so that the template only lays it out."""
    attr = attrition.to_dicts()
    by_id = {row["criterion"]: row for row in attr}
    criteria = [{
        "id": c.id, "kind": c.kind, "text": c.text, "judged": c.judged,
        "parameters": [{"name": k, "value": _fmt_param(v), "overridden": k in c.overridden}
                       for k, v in c.parameters.items()],
        **by_id[c.id]} for c in trial.criteria]
    sites = [{"site": s, **v, "candidates": v["eligible"] + v["possible"], "population": sum(v.values())}
             for s, v in summary["by_site"].items()]
    sites.sort(key=lambda r: (-r["candidates"], r["site"]))
    quality = summary.get("quality") or {}
    return {
        "s": summary, "trial": trial, "criteria": criteria, "attrition": attr,
        # A criterion's short label (`label` in the trial file, issue 32), else its id: charts and the overview.
        "labels": labels(trial),
        "overrides": [f"{c.id}.{k}" for c in trial.criteria for k in sorted(c.overridden)],
        "settle": _settle(evaluation, trial),
        "sites": sites, "max_site": max([r["candidates"] for r in sites] + [1]),
        "distributions": _distributions(candidates, trial),
        "reasons": _quarantine_reasons(quarantine),
        "inputs": summary["inputs"],
        "findings": quality.get("findings", []),
        "tables_read": tables_read(trial, summary["absent_tables"]),
        "history": history,  # --history: the recruitment section (pipeline/recruitment/stage.py), else None
        # The workbench (pipeline/outputs/workbench/): toggles and sliders; a shareable report shows counts only there.
        "workbench": _workbench(workbench), "shareable": bool(workbench and workbench["shareable"]),
    }


def labels(trial: Trial) -> dict[str, str]:
    return {c.id: getattr(c, "label", None) or c.id for c in trial.criteria}


def _workbench(model: dict | None) -> dict | None:
    """The workbench's data and script as markup: JSON made safe for a script element, and the script."""
    if model is None:
        return None
    from markupsafe import Markup

    from pipeline.outputs.workbench import embed
    return {**model, "embedded": Markup(embed(model["json"])), "script_markup": Markup(model["script"])}


def tables_read(trial: Trial, absent: list[str]) -> list[dict]:
    """The optional tables the trial's criteria read: present or absent, and which criteria read each."""
    out: dict[str, list[str]] = {}
    for c in trial.criteria:
        for t in c.tables:
            out.setdefault(t, []).append(c.id)
    return [{"table": t, "present": t not in absent, "criteria": ids} for t, ids in out.items()]


def render(model: dict, template: str = "report.html.j2") -> str:
    return _env().get_template(template).render(**model)


def write(path: Path, summary: dict, evaluation: pl.DataFrame, attrition: pl.DataFrame, trial: Trial,
          quarantine: dict[str, pl.DataFrame], candidates: pl.DataFrame, history: dict | None = None,
          workbench: dict | None = None) -> None:
    if workbench is not None and workbench["shareable"]:
        audit_shareable(workbench)
    html = render(build(summary, evaluation, attrition, trial, quarantine, candidates, history, workbench))
    path.write_text(html, "utf-8")


def audit_shareable(model: dict) -> None:
    """The release gate of a shareable report: the sites table its workbench shows for the run's own
    settings passes the exact audit (`audit.check`; exit 70 naming the cell otherwise). Every other
    state is protected by the page itself with the same rule (`workbench.js` `protect`). The report
    shows no other patient count (the template leaves them out of a shareable report)."""
    from pipeline.outputs import audit
    from pipeline.outputs.disclosure import COLUMNS, relations
    from pipeline.outputs.workbench import recount, shareable_view

    p = model["payload"]
    view = shareable_view(recount(p), p["sites"], p["min_cell"])
    names = [f"report.html workbench {s} {c}" for s in [*p["sites"], "all sites"] for c in COLUMNS]
    if view["marks"] is None:
        raise audit.DisclosureError("report.html: no suppression protects the workbench's sites table")
    audit.check(view["values"], view["marks"], relations(len(p["sites"])), p["min_cell"], names, "report.html")


EXTERNAL = re.compile(r"""(?:src|href)\s*=\s*["']?\s*(?!#|data:)[^"'\s>]+|@import|url\(\s*["']?(?!#|data:)""", re.I)


def external_references(html: str) -> list[str]:
    """Anything in the page that would load or link outside it (used by the tests)."""
    return EXTERNAL.findall(html)
