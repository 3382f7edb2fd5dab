"""`msfeas trial check`: a trial file's design checks, then its data checks against an export.

The design checks are the loader's (`pipeline.criteria.load`): an error exits 2. The data
checks read an export and warn (exit 0) where the trial and the data do not meet:

- every code, test, drug, category or other value a filter names is counted in its table;
  one that matches no row is a warning naming the criterion and the value ("test 'ALTT'
  matches no row of labs.csv: alt_normal will be unknown for every patient"). The same
  warnings (`zero_matches`) go to a run's log and summary;
- a criterion that is unknown for every patient;
- a look-back window reaching before the first date of the table it reads;

and it ends with each criterion's pass / fail / unknown / screening counts.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from pipeline.core.errors import some
from pipeline.criteria import Trial, contract
from pipeline.criteria.nodes import Node
from pipeline.criteria.to_polars import PREDICATES

# The predicates whose values name rows (min/max/empty name none).
NAMING = ("equals", "in", "in_listed", "prefix", "prefix_listed", "not_in", "not_prefix")
# The fields of a window reaching back from D, by node field.
WINDOWS = ("within_days", "lookback_days", "window_days", "lab_lookback_days", "weight_lookback_days",
           "baseline_lookback_days")
NAMES = {("labs", "test"): "test", ("treatments", "drug"): "drug", ("conditions", "code"): "code",
         ("conditions", "category"): "category", ("function_tests", "test"): "test"}


_PLAIN = {"test", "drug", "code", "category", "code prefix", "test prefix"}


@dataclass(frozen=True)
class Probe:
    """One value a criterion's filter names: counted in its table."""

    criterion: str
    path: str  # where in the rule: "rule.of[1].where.code.prefix"
    table: str
    column: str
    predicate: str  # a key of to_polars.PREDICATES
    value: object
    node_type: str
    node_as: str | None = None

    def expr(self) -> pl.Expr:
        value = self.value if self.predicate == "equals" else [self.value]
        positive = self.predicate.replace("not_", "")  # an exclusion's value: the rows it would exclude
        return PREDICATES[positive](pl.col(self.column), value)

    @property
    def what(self) -> str:
        name = NAMES.get((self.table, self.column), self.column)
        return f"{name} prefix" if "prefix" in self.predicate else name

    def consequence(self) -> str:
        if self.node_type == "lab_uln":
            node_path = self.path.rsplit(".", 1)[0]
            if node_path == "rule":
                return f"{self.criterion} will be unknown for every patient"
            return f"{self.criterion}'s {self.node_as} ({node_path}) will be unknown for every patient"
        if self.predicate in ("not_in", "not_prefix"):
            return f"the exclusion at {self.path} of {self.criterion} excludes nothing"
        if self.node_type == "patient_code":
            return f"no patient gets this status in {self.criterion} ({self.path})"
        if self.node_type == "count":
            return f"{self.criterion} counts no row through it ({self.path})"
        return f"the filter at {self.path} of {self.criterion} selects no row"


def _where_probes(where: dict | None, table: str, path: str, cid: str, node: Node) -> list[Probe]:
    out: list[Probe] = []
    for column, preds in (where or {}).items():
        if column == "any":
            for i, sub in enumerate(preds):
                out += _where_probes(sub, table, f"{path}.any[{i}]", cid, node)
            continue
        col = contract.column(table, column)
        if col is None or col.type == "float":
            continue
        for key, value in preds.items():
            if key not in NAMING:
                continue
            values = value if isinstance(value, list) else [value]
            out += [Probe(cid, f"{path}.{column}.{key}", table, column, key if key == "equals" else
                          key.replace("_listed", ""), v, node.type, node.args.get("as")) for v in values]
    return out


def probes(trial: Trial) -> list[Probe]:
    """Every value that a filter of the trial names, with its table and column."""
    out: list[Probe] = []
    for crit in trial.criteria:
        for n in crit.node.walk():
            args = n.args
            if n.type == "lab_uln":
                out.append(Probe(crit.id, f"{n.path}.test", "labs", "test", "equals", args["test"], n.type, args["as"]))
            if n.type == "patient_code":
                for key in ("pass", "unknown", "fail"):
                    out += [Probe(crit.id, f"{n.path}.{key}", "patients", args["column"], "equals", v, n.type)
                            for v in args[key]]
            if n.type == "years_since_by_value":
                out += _where_probes(args["where"], args["value_table"], f"{n.path}.where", crit.id, n)
            elif "where" in args and n.table():
                out += _where_probes(args["where"], n.table(), f"{n.path}.where", crit.id, n)
            if args.get("unknown_when"):
                out += _where_probes(args["unknown_when"], n.table(), f"{n.path}.unknown_when", crit.id, n)
            for i, src in enumerate(args.get("events") or []):
                for key in ("where", "possible"):
                    out += _where_probes(src[key], src["table"], f"{n.path}.events[{i}].{key}", crit.id, n)
    return out


def _file(registry, table: str) -> str:
    inp = registry.inputs.get(table)
    return Path(inp.file).name if inp is not None and getattr(inp, "file", None) else f"{table}.csv"


def _frame(frame, columns: list[str]):
    """The table as Polars reads it. A Spark DataFrame (the Spark engine's tables stay in Spark) is
    brought as the distinct values of the named columns only: whether a value matches no row needs
    no more, and they are few (codes, test names, drug names) whatever the table's size."""
    if isinstance(frame, (pl.DataFrame, pl.LazyFrame)):
        return frame
    from pipeline.engines.spark.frames import to_polars

    return to_polars(frame.select(*columns).distinct())


def zero_matches(trial: Trial, registry) -> list[str]:
    """A warning for each filter naming a value that matches no row of its (present) table: one
    line per filter, naming the criterion and the values."""
    found = probes(trial)
    absent = set(registry.absent)
    empty: dict[tuple[str, str, str], list[Probe]] = {}
    out_empty: list[str] = []
    for table in dict.fromkeys(p.table for p in found):
        if table in absent or table not in registry.tables:
            continue
        mine = [p for p in found if p.table == table]
        frame = _frame(registry.tables[table], sorted({p.column for p in mine}))
        counts = frame.lazy().select(pl.len().alias("rows"), *[p.expr().sum().alias(str(i)) for i, p in
                                                                enumerate(mine)]).collect().row(0)
        if counts[0] == 0:  # one line for an empty table, not one per value
            out_empty.append(f"{_file(registry, table)} has no accepted rows: the filters of "
                             f"{', '.join(dict.fromkeys(p.criterion for p in mine))} select nothing")
            continue
        counts = counts[1:]
        for p, n in zip(mine, counts):
            if n == 0:
                group = empty.setdefault((p.criterion, p.path, table), [])
                if p.value not in [q.value for q in group]:
                    group.append(p)
    out = []
    for (_, _, table), group in empty.items():
        p = group[0]
        if len(group) == 1:
            head = f"{p.what} {p.value!r} matches"
        else:
            plural = p.what + ("es" if p.what.endswith("x") else "s" if p.what in _PLAIN else " values")
            head = f"{plural} {some([repr(q.value) for q in group])} match"
        out.append(f"{head} no row of {_file(registry, table)}: {p.consequence()}")
    return out_empty + out


def _first_dates(registry, tables: set[str]) -> dict[str, dt.date]:
    out = {}
    for t in tables:
        col = contract.EVENT_DATE.get(t) or (contract.EPISODE_DATES.get(t) or (None,))[0]
        if col is None or t in registry.absent or t not in registry.tables:
            continue
        first = registry.tables[t].lazy().select(pl.col(col).min()).collect().item()
        if first is not None:
            out[t] = first
    return out


def short_windows(trial: Trial, registry, as_of: dt.date) -> list[str]:
    """A warning for each window that reaches back before the first date of a table it reads."""
    wanted: list[tuple[str, Node, str, int, list[str]]] = []
    for crit in trial.criteria:
        for n in crit.node.walk():
            reads = [t for t in (n.spec.reads(n) if n.spec.reads else [n.table()]) if t and t != "patients"]
            if n.type == "years_since_by_value":
                reads = [n["value_table"]]
            for f in WINDOWS:
                if isinstance(n.args.get(f), int) and reads:
                    wanted.append((crit.id, n, f, n.args[f], reads))
    first = _first_dates(registry, {t for *_, reads in wanted for t in reads})
    out = []
    for cid, n, f, days, reads in wanted:
        start = as_of - dt.timedelta(days=days)
        late = [(t, first[t]) for t in reads if t in first and first[t] > start]
        for t, d in late:
            out.append(f"{cid}: {n.path}.{f} = {days} looks back to {start}, but the dates of "
                       f"{_file(registry, t)} begin on {d}: earlier events are not in the export")
    return out


def unknown_for_everyone(trial: Trial, registry, evaluation: pl.DataFrame) -> list[str]:
    out = []
    if evaluation.height == 0:
        return out
    absent = set(registry.absent)
    for crit in trial.criteria:
        if (evaluation[crit.id] == "unknown").all():
            missing = [t for t in crit.tables if t in absent]
            why = f": it reads {', '.join(missing)}, absent from the export" if missing else ""
            out.append(f"{crit.id} is unknown for every patient ({evaluation.height:,}){why}")
    return out


def status_counts(trial: Trial, evaluation: pl.DataFrame) -> list[tuple[str, int, int, int, int]]:
    rows = []
    for crit in trial.criteria:
        vc = dict(evaluation[crit.id].value_counts().iter_rows())
        rows.append((crit.id, vc.get("pass", 0), vc.get("fail", 0), vc.get("unknown", 0), vc.get("screening", 0)))
    return rows


@dataclass
class CheckResult:
    lines: list[str]
    warnings: list[str]
    counts: list[tuple[str, int, int, int, int]]


def check(source: str, export: Path | None = None, as_of: dt.date | None = None,
          today: dt.date | None = None) -> CheckResult:
    """Design checks (a UsageError: exit 2), then, with an export, the data checks."""
    from pipeline.criteria import load_trial

    today = today or dt.date.today()
    as_of = as_of or today
    trial = load_trial(source)
    n_params = sum(len(c.parameters) for c in trial.criteria)
    screening = [c.id for c in trial.criteria if c.node.type == "screening"]
    lines = [f"{trial.source}: trial {trial.id}, {len(trial.criteria)} criteria, {n_params} parameters: "
             f"design checks passed"]
    if screening:
        lines.append(f"{len(screening)} criteria are judged at screening only: {', '.join(screening)}")
    if export is None:
        return CheckResult(lines, [], [])
    from pipeline.core.dialect import load_dialect
    from pipeline.core.errors import UsageError
    from pipeline.core.vocabulary import load_vocabulary
    from pipeline.engines import evaluate
    from pipeline.inputs.ingest import ingest

    if not export.is_dir():
        raise UsageError(f"--input {export}: not an export folder")
    # A check reads what it can: rows a run would refuse over --max-reject are counted, not fatal.
    registry = ingest(export, load_dialect(export, {}), load_vocabulary(), today=today, max_reject=1.0)
    evaluation = evaluate(registry, trial, as_of, "polars")
    warnings = zero_matches(trial, registry) + unknown_for_everyone(trial, registry, evaluation) + \
        short_windows(trial, registry, as_of)
    quarantined = sum(i.rows_quarantined for i in registry.inputs.values())
    lines.append(f"data checks on {export} as of {as_of}: {evaluation.height:,} patients"
                 + (f"; {quarantined:,} rows quarantined" if quarantined else "")
                 + (f"; absent tables: {', '.join(registry.absent)}" if registry.absent else ""))
    return CheckResult(lines, warnings, status_counts(trial, evaluation))


def render(result: CheckResult) -> str:
    out = list(result.lines)
    out += [f"warning: {w}" for w in result.warnings]
    if result.counts:
        width = max(9, *(len(r[0]) for r in result.counts))
        out.append(f"{'criterion':<{width}}  {'pass':>8} {'fail':>8} {'unknown':>8} {'screening':>9}")
        out += [f"{cid:<{width}}  {p:>8,} {f:>8,} {u:>8,} {s:>9,}" for cid, p, f, u, s in result.counts]
    out.append(f"{len(result.warnings)} warning{'s' if len(result.warnings) != 1 else ''}")
    return "\n".join(out)
