"""The vocabulary of the criteria language: every node type, its fields, and its design checks.

A criterion is a tree of nodes. Each node type is declared here once, as data: its
fields with their types and defaults. The compilers (`to_polars`, `to_sql`) and the
text renderer (`to_text`) each have one function per node type; `tests/test_golden.py`
fails when a node type lacks one of them or a golden case.

Every node evaluates, for every patient, to one status (`pass`, `fail`, `unknown`,
or `screening` at the top of a criterion only) plus optional evidence columns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from pipeline.criteria import contract

PASS, FAIL, UNKNOWN, SCREENING = "pass", "fail", "unknown", "screening"
STATUSES = (PASS, FAIL, UNKNOWN)
REQUIRED = object()

# Field types. A trailing `?` allows none (written "none" in a trial file).
#   int, number, str, bool, status (pass/fail/unknown), tie (highest/lowest),
#   str_list, int_list, table, column (of the node's table), where (a row filter),
#   node, node_list.
# `in_listed` and `prefix_listed` are `in` and `prefix`, except that an empty list puts no condition
# (a trial parameter such as "categories = []" meaning any category).
PREDICATES = ("equals", "in", "not_in", "prefix", "not_prefix", "in_listed", "prefix_listed", "empty", "min", "max")


class DesignError(Exception):
    """A trial file that cannot be compiled; `path` says where in the criterion."""

    def __init__(self, path: str, message: str):
        self.path, self.message = path, message
        super().__init__(f"{path}: {message}")


@dataclass(frozen=True)
class Field:
    type: str
    default: Any = REQUIRED
    doc: str = ""


@dataclass(frozen=True)
class NodeType:
    name: str
    doc: str
    fields: dict[str, Field]
    table: str | None = None  # the table a node of this type reads, when fixed
    check: Callable[["Node"], None] | None = None
    evidence: Callable[["Node"], list[str]] = lambda n: []
    custom: bool = False  # a named block: a whole computation, not a composition
    reads: Callable[["Node"], list[str]] | None = None  # the tables it reads, when not just `table()`


@dataclass
class Node:
    """A node with its fields resolved (parameters substituted, codes folded, defaults filled)."""

    type: str
    args: dict[str, Any]
    path: str  # where it sits in the trial file, for messages: "rule.of[1]"
    params: dict[str, str] = field(default_factory=dict)  # field -> parameter name it came from
    children: list["Node"] = field(default_factory=list)

    @property
    def spec(self) -> NodeType:
        return NODE_TYPES[self.type]

    def __getitem__(self, key: str) -> Any:
        return self.args[key]

    def table(self) -> str | None:
        return self.spec.table or self.args.get("table")

    def walk(self):
        yield self
        for child in self.children:
            yield from child.walk()

    def tables(self) -> list[str]:
        """The optional tables this node reads (an absent one makes the criterion unknown)."""
        out: list[str] = []
        for n in self.walk():
            read = n.spec.reads(n) if n.spec.reads else [n.table()] if n.table() else []
            for t in read:
                if t and t != "patients" and t not in out:
                    out.append(t)
        return out

    def evidence(self) -> list[str]:
        """The evidence columns, in order: this node's, then its children's."""
        return [name for n in self.walk() for name in n.spec.evidence(n)]


def _fail(node: Node, fld: str, message: str):
    raise DesignError(f"{node.path}.{fld}", message)


def _range(node: Node, lo: str, hi: str):
    a, b = node.args.get(lo), node.args.get(hi)
    if a is not None and b is not None and a > b:
        _fail(node, lo, f"{lo} {a} is greater than {hi} {b}")


def _non_negative(node: Node, *names: str):
    for name in names:
        v = node.args.get(name)
        if v is not None and v < 0:
            _fail(node, name, f"must not be negative, not {v}")


def _positive(node: Node, *names: str):
    for name in names:
        v = node.args.get(name)
        if v is not None and v <= 0:
            _fail(node, name, f"must be greater than 0, not {v}")


def _column_of_type(node: Node, fld: str, types: tuple[str, ...]):
    name = node.args.get(fld)
    if name is None:
        return
    col = contract.column(node.table(), name)
    if col.type not in types:
        _fail(node, fld, f"column {node.table()}.{name} is {col.type}; this needs {' or '.join(types)}")


def _check_patient_code(n: Node):
    col = contract.column("patients", n["column"])
    if not col.is_code:
        _fail(n, "column", f"patients.{n['column']} is not a code column")


def _check_years_since(n: Node):
    for f in ("column", "fallback"):
        _column_of_type(n, f, ("date",))
    _positive(n, "max_years")


def _check_date(n: Node):
    _column_of_type(n, "column", ("date",))


def _check_age(n: Node):
    _non_negative(n, "min", "max")
    _range(n, "min", "max")
    if n["min"] is None and n["max"] is None:
        _fail(n, "min", "give min, max or both")


def _check_count(n: Node):
    if n.table() == "patients":
        _fail(n, "table", "count reads a table of many rows per patient, not patients")
    _non_negative(n, "within_days", "at_least", "at_most")
    _range(n, "at_least", "at_most")
    if n["at_least"] is None and n["at_most"] is None:
        _fail(n, "at_least", "give at_least, at_most or both")


def _check_latest(n: Node):
    if n.table() not in contract.EVENT_DATE:
        _fail(n, "table", f"latest_value needs a table of dated events ({', '.join(contract.EVENT_DATE)})")
    _column_of_type(n, "column", ("float", "int"))
    _non_negative(n, "lookback_days")
    _range(n, "min", "max")


def _check_lab(n: Node):
    n.args["test"] = n["test"].strip().upper()  # labs.test is held upper-case
    _non_negative(n, "lookback_days")
    _positive(n, "max_uln", "default_uln", "umol_per_mg_dl")


def _check_crcl(n: Node):
    _non_negative(n, "lab_lookback_days", "weight_lookback_days")
    _positive(n, "female_factor", "creat_default_uln_umol", "creat_umol_per_mg_dl")


def _check_progression(n: Node):
    _non_negative(n, "lag_days", "baseline_lookback_days", "late_baseline_days", "relapse_exclusion_days")
    _positive(n, "confirmation_days", "increase_below", "increase_from")


def _check_episodes(n: Node):
    _non_negative(n, "window_days")
    # The next episode opens on a following date: a gap of 0 would count one date again.
    _positive(n, "gap_days", "min_episodes")
    if n["min_episodes"] is not None and n["min_episodes"] > 12:
        _fail(n, "min_episodes", "at most 12 (episodes are counted up to min_episodes, one step each)")


def _check_events_during(n: Node):
    if n.table() not in contract.EPISODE_DATES:
        _fail(n, "table", f"events_during needs a table of episodes ({', '.join(contract.EPISODE_DATES)})")
    _non_negative(n, "window_days", "start_offset_days")


def _check_years_by_value(n: Node):
    _check_years_since(n)
    _positive(n, "max_years_above", "max_years_at_or_below")
    if n["value_table"] not in contract.EVENT_DATE:
        _fail(n, "value_table", f"needs a table of dated events ({', '.join(contract.EVENT_DATE)})")
    col = contract.column(n["value_table"], n["value_column"])
    if col.type not in ("float", "int"):
        _fail(n, "value_column", f"column {col.table}.{col.name} is {col.type}; this needs float or int")
    _non_negative(n, "lookback_days")


def _check_recent_progression(n: Node):
    _non_negative(n, "window_days", "baseline_lookback_days", "relapse_exclusion_days")
    _positive(n, "confirmation_days", "increase_below", "increase_from")


def _sources_tables(n: Node) -> list[str]:
    return [s["table"] for s in n["events"]]


def _check_children(n: Node):
    if not n.children:
        _fail(n, "of", "needs at least one sub-criterion")


_WHERE = Field("where", {}, "row filter: {column = value | [values] | {predicate = ...}} with PREDICATES, "
                            "or any = [filters]")
_AS = "name of the evidence column"

NODE_TYPES: dict[str, NodeType] = {t.name: t for t in [
    NodeType("screening", "Judged at the screening visit, not from registry data.", {}),
    NodeType("all", "Every sub-criterion passes: fail if any fails, else unknown if any is unknown, else pass.",
             {"of": Field("node_list")}, check=_check_children),
    NodeType("any", "At least one sub-criterion passes: pass if any passes, else unknown if any is unknown, else fail.",
             {"of": Field("node_list")}, check=_check_children),
    NodeType("not", "The opposite of the sub-criterion: pass and fail swap, unknown stays unknown.",
             {"rule": Field("node")}),
    NodeType("patient_code", "A code of the patient (patients table) in lists of codes.",
             {"column": Field("column"), "pass": Field("str_list"), "unknown": Field("str_list", []),
              "fail": Field("str_list", []), "missing": Field("status", UNKNOWN), "otherwise": Field("status", FAIL)},
             table="patients", check=_check_patient_code),
    NodeType("date_on_or_before", "The patient's date is recorded and on or before D.",
             {"column": Field("column")}, table="patients", check=_check_date),
    NodeType("age", "Age in completed years at D within [min, max].",
             {"min": Field("int?", None), "max": Field("int?", None), "as": Field("str", "age", _AS)},
             table="patients", check=_check_age, evidence=lambda n: [n["as"]]),
    NodeType("years_since", "Years from a patient's date to D, (D - date) days / 365.25, below a limit.",
             {"column": Field("column"), "fallback": Field("column?", None), "max_years": Field("number"),
              "as": Field("str", "years", _AS)},
             table="patients", check=_check_years_since, evidence=lambda n: [n["as"]]),
    NodeType("count", "The number of a table's rows (or distinct dates) matching a filter, within a window before D.",
             {"table": Field("table"), "where": _WHERE, "within_days": Field("int?", None),
              "at_least": Field("int?", None), "at_most": Field("int?", None), "distinct_dates": Field("bool", False),
              "otherwise": Field("status", FAIL), "as": Field("str?", None, _AS)},
             check=_check_count, evidence=lambda n: [n["as"]] if n["as"] else []),
    NodeType("latest_value", "The latest value of a column within a look-back, the worst of a same-day tie, in a range.",
             {"table": Field("table"), "column": Field("column"), "where": _WHERE, "lookback_days": Field("int"),
              "tie": Field("tie"), "min": Field("number?", None), "max": Field("number?", None),
              "as": Field("str", doc=_AS), "label": Field("str?", None, "what the value is called in texts")},
             check=_check_latest, evidence=lambda n: [n["as"], f"{n['as']}_date"]),
    NodeType("lab_uln", "The latest result of a lab test as a multiple of its upper limit of normal (ULN).",
             {"test": Field("str"), "lookback_days": Field("int"), "max_uln": Field("number"),
              "default_uln": Field("number"), "umol_per_mg_dl": Field("number?", None), "as": Field("str", doc=_AS)},
             table="labs", check=_check_lab, evidence=lambda n: [n["as"]], custom=True),
    NodeType("creatinine_clearance", "Cockcroft-Gault creatinine clearance from the latest creatinine and weight.",
             {"lab_lookback_days": Field("int"), "weight_lookback_days": Field("int"), "min_crcl": Field("number"),
              "female_factor": Field("number"), "creat_default_uln_umol": Field("number"),
              "creat_umol_per_mg_dl": Field("number")},
             table="labs", check=_check_crcl, custom=True, reads=lambda n: ["labs", "visits"],
             evidence=lambda n: ["crcl", "creat_mg_dl", "weight", "weight_date"]),
    NodeType("episodes", "Episodes of activity: distinct event dates within a window, merged by a gap rule, "
             "counted up to min_episodes; known events decide, possible events can only make it unknown.",
             {"events": Field("sources"), "window_days": Field("int"), "gap_days": Field("int"),
              "min_episodes": Field("int"), "as": Field("str", "episodes", _AS)},
             check=_check_episodes, reads=_sources_tables,
             evidence=lambda n: [f"{n['as']}_known", f"{n['as']}_possible"]),
    NodeType("events_during", "An event dated within the on-treatment period of an episode of a table "
             "(from start + start_offset_days to its end or D).",
             {"events": Field("sources"), "window_days": Field("int"), "table": Field("table"), "where": _WHERE,
              "start_offset_days": Field("int", 0), "unknown_when": Field("where?", None)},
             check=_check_events_during, reads=lambda n: _sources_tables(n) + [n["table"]]),
    NodeType("years_since_by_value", "Years since a patient's date below a limit that depends on the latest value "
             "of a measurement (above a step or at or below it).",
             {"column": Field("column"), "fallback": Field("column?", None), "value_table": Field("table"),
              "value_column": Field("column"), "where": Field("where", {}), "lookback_days": Field("int"),
              "tie": Field("tie"), "step": Field("number"), "max_years_above": Field("number"),
              "max_years_at_or_below": Field("number"), "as": Field("str", "years", _AS),
              "value_as": Field("str", "value", "name of the evidence column of the value used")},
             table="patients", check=_check_years_by_value,
             reads=lambda n: [n["value_table"]], evidence=lambda n: [n["as"], n["value_as"]]),
    NodeType("recent_progression", "Confirmed EDSS worsening in the last window_days before D, from the EDSS of "
             "the year before that window.",
             {"window_days": Field("int"), "baseline_lookback_days": Field("int"), "increase_below": Field("number"),
              "increase_from": Field("number"), "increase_step_edss": Field("number"),
              "confirmation_days": Field("int"), "relapse_exclusion_days": Field("int")},
             table="visits", check=_check_recent_progression, custom=True,
             reads=lambda n: ["visits", "relapses"],
             evidence=lambda n: ["baseline_date", "baseline_edss", "worsening_date", "worsening_edss",
                                 "confirmed_date"]),
    NodeType("confirmed_progression", "Confirmed EDSS worsening within a treatment episode of the listed lines.",
             {"lines": Field("int_list"), "lag_days": Field("int"), "baseline_lookback_days": Field("int"),
              "late_baseline_days": Field("int"), "increase_below": Field("number"), "increase_from": Field("number"),
              "increase_step_edss": Field("number"), "confirmation_days": Field("int"),
              "relapse_exclusion_days": Field("int")},
             table="treatments", check=_check_progression, custom=True,
             reads=lambda n: ["visits", "treatments", "relapses"],
             evidence=lambda n: ["drug", "episode_start", "episode_end", "baseline_date", "baseline_edss",
                                 "worsening_date", "worsening_edss", "confirmed_date"]),
]}

def registrar(table: dict):
    """A decorator factory that files one function per node type in `table` (each compiler has one)."""
    def per_type(name: str):
        assert name in NODE_TYPES, name

        def register(fn):
            table[name] = fn
            return fn
        return register
    return per_type
