"""The criteria language rendered as plain language: one function per node type.

`sentence(node)` is the report's "how it is judged" and `settle(node)` its "what would
settle the unknowns"; both are made from the resolved node, so a value changed with
`--set` changes the text.
"""

from __future__ import annotations

from typing import Callable

from pipeline.criteria import contract
from pipeline.criteria.nodes import NODE_TYPES, Node

SENTENCES: dict[str, Callable[[Node], str]] = {}
SETTLES: dict[str, Callable[[Node], str]] = {}


def renders(name: str, settles: Callable[[Node], str]):
    assert name in NODE_TYPES, name

    def register(fn):
        SENTENCES[name] = fn
        SETTLES[name] = settles
        return fn
    return register


def sentence(node: Node) -> str:
    return SENTENCES[node.type](node)


def settle(node: Node) -> str:
    return SETTLES[node.type](node)


def num(v) -> str:
    return "none" if v is None else f"{v:g}" if isinstance(v, float) else str(v)


def listed(values: list, word: str = "or") -> str:
    values = [str(v) for v in values]
    return values[0] if len(values) == 1 else f"{', '.join(values[:-1])} {word} {values[-1]}" if values else "none"


def where_text(where: dict) -> str:
    parts = []
    for column, preds in where.items():
        if column == "any":
            parts.append("(" + " or ".join(where_text(sub) for sub in preds) + ")")
            continue
        for key, v in preds.items():
            parts.append({
                "equals": lambda: f"{column} is {v}",
                "in": lambda: f"{column} is {listed(v)}",
                "not_in": lambda: f"{column} is not {listed(v)}",
                "prefix": lambda: f"{column} starts with {listed(v)}",
                "not_prefix": lambda: f"{column} does not start with {listed(v)}",
                "in_listed": lambda: f"{column} is {listed(v)}" if v else f"{column} is any",
                "prefix_listed": lambda: f"{column} starts with {listed(v)}" if v else f"{column} is any",
                "empty": lambda: f"{column} is {'empty' if v else 'recorded'}",
                "min": lambda: f"{column} >= {num(v)}",
                "max": lambda: f"{column} <= {num(v)}",
            }[key]())
    return " and ".join(parts)


def window_text(table: str, within_days: int | None) -> str:
    if table in contract.EPISODE_DATES:
        if within_days is None:
            return "begun on or before D (or with no known start), ended or not"
        if within_days == 0:
            return "active at D"
        return f"present within the {within_days} days before D (begun by D, not ended before D - {within_days} days)"
    if within_days is None:
        return "dated on or before D"
    return f"dated within the {within_days} days before D"


def _bounds(lo, hi, what: str) -> str:
    if lo is not None and hi is not None:
        return f"{what} between {num(lo)} and {num(hi)}"
    return f"{what} at least {num(lo)}" if lo is not None else f"{what} at most {num(hi)}"


def _children_settle(node: Node) -> str:
    seen: list[str] = []
    for child in node.children:
        s = settle(child)
        if s and s not in seen:
            seen.append(s)
    return "; ".join(seen)


@renders("screening", lambda n: "the screening visit")
def _screening(node: Node) -> str:
    return "Judged at the screening visit; not evaluated from registry data."


@renders("all", _children_settle)
def _all(node: Node) -> str:
    parts = " ".join(f"({i}) {sentence(c)}" for i, c in enumerate(node.children, start=1))
    return f"All of: {parts} Fails if any fails; else unknown if any is unknown; else passes."


@renders("any", _children_settle)
def _any(node: Node) -> str:
    clauses = [clause(c) for c in node.children]
    if all(clauses):
        return (f"Passes when {', or '.join(clauses)}; else unknown if any of these is unknown; "
                "otherwise fails.")
    parts = " ".join(f"({i}) {sentence(c)}" for i, c in enumerate(node.children, start=1))
    return f"Any of: {parts} Passes if any passes; else unknown if any is unknown; else fails."


@renders("not", lambda n: settle(n.children[0]))
def _not(node: Node) -> str:
    child = node.children[0]
    opposite = negated(child)
    if opposite is not None:
        return sentence(opposite)
    return (f"Passes where the following fails and fails where it passes (unknown stays unknown): "
            f"{sentence(child)}")


# ---------------------------------------------------------------- as a person says it

LABELS = {"ms_course": "MS course", "research_consent": "research consent", "death_date": "death date",
          "birth_date": "birth date", "diagnosis_date": "diagnosis date", "onset_date": "onset date"}
THINGS = {"relapses": "relapse", "conditions": "condition", "treatments": "treatment", "mri": "MRI scan",
          "visits": "visit", "labs": "lab result", "function_tests": "function test"}
_SWAP = {"pass": "fail", "fail": "pass", "unknown": "unknown"}


def label(column: str) -> str:
    return LABELS.get(column, column.replace("_", " "))


def negated(node: Node) -> Node | None:
    """The node that judges exactly the opposite (pass and fail swapped), when one exists."""
    if node.type == "not":
        return node.children[0]
    if node.type == "patient_code":
        args = {**node.args, "pass": node["fail"], "fail": node["pass"], "otherwise": _SWAP[node["otherwise"]],
                "missing": _SWAP[node["missing"]]}
        return Node("patient_code", args, node.path, dict(node.params))
    if node.type in ("date_on_or_before", "count"):
        if node.args.get("_negated"):
            return Node(node.type, {k: v for k, v in node.args.items() if k != "_negated"}, node.path, dict(node.params))
        return Node(node.type, {**node.args, "_negated": True}, node.path, dict(node.params))
    return None


def _count_clause(node: Node, negate: bool = False) -> str:
    lo, hi = node["at_least"], node["at_most"]
    base = THINGS.get(node["table"], node["table"])
    where = f" with {where_text(node['where'])}" if node["where"] else ""
    if node["table"] in contract.EPISODE_DATES:
        when = window_text(node["table"], node["within_days"])
    else:
        when = "on or before D" if node["within_days"] is None else f"in the {node['within_days']} days before D"
    article = "an" if base[0].lower() in "aeiou" or base.startswith("MRI") else "a"
    if (lo, hi) == (1, None) and not node["distinct_dates"]:
        return f"{'no' if negate else article} {base}{where} is recorded {when}"
    if (lo, hi) == (None, 0) and not node["distinct_dates"]:
        return f"{article if negate else 'no'} {base}{where} is recorded {when}"
    unit = " (on distinct dates)" if node["distinct_dates"] else ""
    need = _bounds(lo, hi, "").strip()
    return f"the number of {base}s{where} recorded {when}{unit} is {'not ' if negate else ''}{need}"


def clause(node: Node) -> str | None:
    """What passing means, as a clause ("the MS course is RRMS or SPMS"), for nodes that read as one."""
    if node.type == "patient_code":
        col = label(node["column"])
        if node["otherwise"] == "pass":
            text = f"the {col} is not {listed(node['fail'])}" if node["fail"] else f"the {col} is any"
        else:
            text = f"the {col} is {listed(node['pass'])}"
        unknown = list(node["unknown"]) + (["empty"] if node["missing"] == "unknown" else []) + (
            ["another code"] if node["otherwise"] == "unknown" else [])
        return text + (f" (unknown if {listed(unknown)})" if unknown else "")
    if node.type == "date_on_or_before":
        what = f"{label(node['column'])} is recorded on or before D"
        return f"no {what}" if node.args.get("_negated") else f"a {what}"
    if node.type == "age":
        return f"the age at D is {_bounds(node['min'], node['max'], '').strip()} (unknown without a birth date)"
    if node.type == "count" and node["otherwise"] == "fail":
        return _count_clause(node, negate=bool(node.args.get("_negated")))
    if node.type == "not":
        opposite = negated(node.children[0])
        return clause(opposite) if opposite is not None else None
    return None


@renders("patient_code", lambda n: f"the {n['column']}")
def _patient_code(node: Node) -> str:
    col = label(node["column"])
    parts = [f"{word} when it is {listed(node[k])}" for k, word in (("pass", "passes"), ("unknown", "unknown"),
                                                                       ("fail", "fails")) if node[k]]
    other = {"fail": "fails", "pass": "passes", "unknown": "is unknown"}[node["otherwise"]]
    empty = {"fail": "fails", "pass": "passes", "unknown": "is unknown"}[node["missing"]]
    return f"The {col}: {'; '.join(parts)}; any other {col} {other}; an empty {col} {empty}."


@renders("date_on_or_before", lambda n: f"the {n['column']}")
def _date_on_or_before(node: Node) -> str:
    if node.args.get("_negated"):
        return (f"Passes when no {label(node['column'])} is recorded on or before D; fails when one is.")
    return f"Passes when the patient's {node['column']} is recorded and on or before D; otherwise fails."


@renders("age", lambda n: "a birth date")
def _age(node: Node) -> str:
    return (f"Age in completed years at D: {_bounds(node['min'], node['max'], 'an age')} passes, otherwise fails; "
            "unknown without a birth date.")


@renders("years_since", lambda n: f"the {n['column']}")
def _years_since(node: Node) -> str:
    text = (f"Years from {node['column']} to D ((D - date) in days / 365.25): below {num(node['max_years'])} passes, "
            "otherwise fails")
    if node["fallback"]:
        text += (f"; without {node['column']}, years from {node['fallback']} of at least {num(node['max_years'])} fail "
                 f"({node['column']} can only be earlier), otherwise unknown")
    return text + "; a date after D counts as empty."


def _count_settle(node: Node) -> str:
    what = f"{node['table']}" + (f" where {where_text(node['where'])}" if node["where"] else "")
    return f"a review of {what}"


@renders("count", _count_settle)
def _count(node: Node) -> str:
    unit = "distinct dates" if node["distinct_dates"] else "rows"
    what = f"{node['table']} {unit}" + (f" where {where_text(node['where'])}" if node["where"] else "")
    need = _bounds(node["at_least"], node["at_most"], "a number")
    otherwise = {"pass": "passes", "fail": "fails", "unknown": "is unknown"}[node["otherwise"]]
    if node.args.get("_negated"):
        return (f"Counts {what}, {window_text(node['table'], node['within_days'])}: {need} fails; otherwise "
                f"{ {'passes': 'fails', 'fails': 'passes'}.get(otherwise, otherwise)}.")
    return f"Counts {what}, {window_text(node['table'], node['within_days'])}: {need} passes; otherwise {otherwise}."


def _value_name(node: Node) -> str:
    return node["label"] or f"{node['table']}.{node['column']}" + (
        f" ({where_text(node['where'])})" if node["where"] else "")


@renders("latest_value", lambda n: f"a recent {_value_name(n)} (within {n['lookback_days']} days)")
def _latest_value(node: Node) -> str:
    tie = "highest" if node["tie"] == "highest" else "lowest"
    return (f"The latest {_value_name(node)} dated within the {node['lookback_days']} days before D (the {tie} of a "
            f"same-day tie): none is unknown; {_bounds(node['min'], node['max'], 'a value')} passes; otherwise fails.")


@renders("lab_uln", lambda n: f"a recent {n['test']} (within {n['lookback_days']} days)")
def _lab_uln(node: Node) -> str:
    default = f"the default {num(node['default_uln'])}"
    if node["umol_per_mg_dl"] is not None:
        default += f" umol/L (converted to mg/dL at {num(node['umol_per_mg_dl'])} umol/L per mg/dL)"
    return (f"The latest {node['test']} within the {node['lookback_days']} days before D as a multiple of the upper "
            f"limit of normal (the laboratory's ref_high, else {default}; the highest of a same-day tie): none is "
            f"unknown; above {num(node['max_uln'])} fails; otherwise passes.")


@renders("creatinine_clearance", lambda n: (f"a recent creatinine (within {n['lab_lookback_days']} days) and weight "
                                            f"(within {n['weight_lookback_days']} days)"))
def _creatinine_clearance(node: Node) -> str:
    return ("Cockcroft-Gault creatinine clearance, (140 - age) x weight / (72 x creatinine in mg/dL), "
            f"x {num(node['female_factor'])} for women, from the latest creatinine within the "
            f"{node['lab_lookback_days']} days before D (the highest ratio to the ULN of a same-day tie; default ULN "
            f"{num(node['creat_default_uln_umol'])} umol/L, {num(node['creat_umol_per_mg_dl'])} umol/L per mg/dL), the "
            f"latest weight within {node['weight_lookback_days']} days (lowest of a same-day tie) and the age at D: "
            f"below {num(node['min_crcl'])} mL/min fails, otherwise passes; any input missing is unknown; for unknown "
            "sex, passes only if even the female value passes and fails only if even the male value fails.")


@renders("confirmed_progression", lambda n: (f"EDSS follow-up during line {listed(n['lines'])} therapy "
                                             "(a confirmation visit)"))
def _confirmed_progression(node: Node) -> str:
    return (f"Confirmed EDSS worsening within a treatment episode of line {listed(node['lines'])} started by D: "
            f"+{num(node['increase_below'])} from a baseline below {num(node['increase_step_edss'])}, "
            f"+{num(node['increase_from'])} from {num(node['increase_step_edss'])}, in the window from "
            f"{node['lag_days']} days after the start to the episode's end (or D), confirmed by a visit at least "
            f"{node['confirmation_days']} days later with no lower visit between. Baseline: the latest visit in the "
            f"{node['baseline_lookback_days']} days up to the start, else the earliest in the "
            f"{node['late_baseline_days']} days after it. Visits within {node['relapse_exclusion_days']} days after "
            "a relapse onset do not count. Passes on a confirmed worsening; unknown if an episode cannot be "
            "judged or a worsening awaits confirmation; otherwise fails.")


def _sources_text(node: Node) -> str:
    parts = []
    for src in node["events"]:
        what = src["table"] + (f" rows where {where_text(src['where'])}" if src["where"] else " rows")
        if src["possible"] is not None:
            what += f" (possibly, also rows where {where_text(src['possible'])})"
        parts.append(what)
    return "; ".join(parts)


def _sources_settle(node: Node) -> str:
    tables = [s["table"] for s in node["events"] if s["possible"] is not None]
    return f"the undetermined {listed(tables, 'and')} records" if tables else f"{listed(_tables(node), 'and')} records"


def _tables(node: Node) -> list[str]:
    return [s["table"] for s in node["events"]]


@renders("episodes", _sources_settle)
def _episodes(node: Node) -> str:
    return (f"Episodes of events ({_sources_text(node)}) dated within the {node['window_days']} days before D: the "
            f"distinct dates in order, the earliest opening an episode and a date {node['gap_days']} or more days "
            f"after the opening date opening the next. At least {node['min_episodes']} episodes of known events "
            "pass; else at least that many counting the possible events is unknown; otherwise fails.")


@renders("events_during", lambda n: f"{_sources_settle(n)} during {n['table']}" + (
    f", or why {n['table']} ended" if n["unknown_when"] is not None else ""))
def _events_during(node: Node) -> str:
    what = node["table"] + (f" where {where_text(node['where'])}" if node["where"] else "")
    text = (f"An event ({_sources_text(node)}) dated within the {node['window_days']} days before D and within "
            f"the period of a {what} episode started by D, from {node['start_offset_days']} days after its start to "
            "its end (or D), passes; a possible event there is unknown")
    if node["unknown_when"] is not None:
        text += (f"; so is such an episode ended where {where_text(node['unknown_when'])}, within the window and "
                 f"at least {node['start_offset_days']} days after its start")
    return text + "; otherwise fails."


@renders("years_since_by_value", lambda n: f"the {n['column']} and a recent {n['value_table']}.{n['value_column']}")
def _years_since_by_value(node: Node) -> str:
    v = f"the latest {node['value_table']}.{node['value_column']}" + (
        f" ({where_text(node['where'])})" if node["where"] else "") + f" within {node['lookback_days']} days"
    text = (f"Years from {node['column']} to D ((D - date) in days / 365.25) below a limit: "
            f"{num(node['max_years_above'])} when {v} is above {num(node['step'])}, "
            f"{num(node['max_years_at_or_below'])} when it is at or below; without that value, below both limits "
            "passes, at or above both fails, otherwise unknown")
    if node["fallback"]:
        text += f"; without {node['column']}, years from {node['fallback']} at or above the limit fail, else unknown"
    return text + "; a date after D counts as empty."


@renders("recent_progression", lambda n: f"EDSS follow-up in the last {n['window_days']} days (a confirmation visit)")
def _recent_progression(node: Node) -> str:
    return (f"Confirmed EDSS worsening in the {node['window_days']} days before D: +{num(node['increase_below'])} "
            f"from a baseline below {num(node['increase_step_edss'])}, +{num(node['increase_from'])} from "
            f"{num(node['increase_step_edss'])}, confirmed by a visit at least {node['confirmation_days']} days later "
            f"with no lower visit between. Baseline: the latest visit in the {node['baseline_lookback_days']} days "
            "before the window, else the earliest visit in it. Visits within "
            f"{node['relapse_exclusion_days']} days after a relapse onset do not count. Passes on a confirmed "
            "worsening; unknown without a baseline, without a later visit in the window, or when a worsening "
            "awaits confirmation; otherwise fails.")
