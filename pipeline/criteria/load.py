"""Loading a trial file: parse, substitute parameters, check the design, apply `--set`.

A trial file (TOML) lists criteria; each has a `rule`, a tree of nodes of the
vocabulary (`nodes.NODE_TYPES`), and `parameters`: named values that the tree refers
to as `"$name"` and that an analyst may change with `--set criterion.name=value`.
Everything is checked before any data is read (design checks): unknown node types,
fields, tables, columns or codes; values of the wrong type or out of range; unused or
undefined parameters; duplicate ids and evidence names. Each error names the file,
the criterion and the field, and exits with code 2.
"""

from __future__ import annotations

import copy
import hashlib
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from pipeline.core.errors import UsageError, suggest
from pipeline.criteria import contract
from pipeline.criteria.nodes import NODE_TYPES, PREDICATES, REQUIRED, STATUSES, DesignError, Node

KINDS = {"inclusion", "exclusion", "registry status"}
CRITERION_KEYS = {"id", "kind", "text", "label", "parameters", "rule"}
LABEL_MAX = 40  # characters of a criterion's short label (charts and the overview; optional, else the id)
TRIAL_KEYS = {"id", "title", "registration", "planned_enrolment", "criteria"}
TIES = ("highest", "lowest")


@dataclass
class Criterion:
    id: str
    kind: str
    text: str
    rule: dict  # the node tree as written, with "$name" references
    parameters: dict[str, Any]
    param_types: dict[str, str]
    node: Node
    overridden: set[str] = field(default_factory=set)
    label: str | None = None  # the short name shown in charts and the overview (optional; the id when absent)

    @property
    def tables(self) -> list[str]:
        return self.node.tables()

    @property
    def evidence(self) -> list[str]:
        return self.node.evidence()

    @property
    def judged(self) -> str:
        from pipeline.criteria.to_text import sentence
        return sentence(self.node)

    @property
    def settle(self) -> str:
        from pipeline.criteria.to_text import settle
        return settle(self.node)


@dataclass
class Trial:
    id: str
    title: str
    registration: str
    criteria: list[Criterion]
    source: str
    sha256: str = ""
    planned_enrolment: int | None = None
    notes: list[str] = field(default_factory=list, compare=False)  # warnings of --set (scale steps), for the run

    @property
    def ids(self) -> list[str]:
        return [c.id for c in self.criteria]

    def parameters_record(self) -> dict[str, dict[str, dict[str, Any]]]:
        """Every parameter in force, for summary.json: {criterion: {param: {value, overridden}}}."""
        return {c.id: {k: {"value": v, "overridden": k in c.overridden} for k, v in c.parameters.items()}
                for c in self.criteria}


# ---------------------------------------------------------------- values and their types

def _base(typ: str) -> str:
    return typ.rstrip("?")


def coerce(value: Any, typ: str, where: str) -> Any:
    """Check a value against a type; a string (from --set) is converted first. Raises UsageError."""
    base, nullable = _base(typ), typ.endswith("?")
    if isinstance(value, str) and base not in ("str", "status", "tie"):
        text = value.strip()
        if nullable and text.lower() == "none":
            return None
        try:
            if base == "int":
                value = int(text)
            elif base == "float":
                value = float(text)
            elif base == "bool":
                value = {"true": True, "false": False}[text.lower()]
            elif base == "int_list":
                value = [int(x) for x in text.strip("[]").split(",") if x.strip()]
            elif base == "str_list":
                value = [x.strip().strip("'\"") for x in text.strip("[]").split(",") if x.strip()]
        except (ValueError, KeyError):
            raise UsageError(f"{where}: {value!r} is not a valid {base}") from None
    if value is None or (nullable and value == "none"):
        if nullable:
            return None
        raise UsageError(f"{where}: a value is required")
    ok = {
        "int": isinstance(value, int) and not isinstance(value, bool),
        "float": isinstance(value, (int, float)) and not isinstance(value, bool),
        "str": isinstance(value, str),
        "bool": isinstance(value, bool),
        "status": value in STATUSES,
        "tie": value in TIES,
        "str_list": isinstance(value, list) and all(isinstance(x, str) for x in value),
        "int_list": isinstance(value, list) and all(isinstance(x, int) and not isinstance(x, bool) for x in value),
    }[base]
    if not ok:
        expected = {"status": "one of pass, fail, unknown", "tie": "highest or lowest"}.get(base, f"a valid {base}")
        raise UsageError(f"{where}: {value!r} is not {expected}")
    return float(value) if base == "float" else value


_WRITTEN = {"int": "a whole number", "float": "a number", "number": "a number", "bool": "true or false",
            "int_list": "a list of whole numbers", "str_list": "a list of texts"}


def check_value(value: Any, typ: str, where: str) -> Any:
    """A value written in a trial file, checked against its type as the docs define it (section 5).

    Stricter than `coerce` (which converts the text of `--set`): a number, a bool or a list must
    be written as one, not as a text (`at_most = "0"`, `max_uln = "1.5"`, `lines = "1,2"`), and
    no value is written `"none"` but exactly that, in a field that allows it. Raises UsageError.
    """
    base, nullable = _base(typ), typ.endswith("?")
    if isinstance(value, str) and base not in ("str", "status", "tie"):
        if value == "none" and nullable:
            return None
        if value.strip().lower() == "none":
            hint = 'write "none" in lower case' if nullable else "this field cannot be none"
        elif base in ("int_list", "str_list"):
            items = [x.strip().strip("'\"") for x in value.strip("[]").split(",") if x.strip()]
            shown = ", ".join(repr(int(x)) if base == "int_list" and x.lstrip("-").isdigit() else f'"{x}"'
                              for x in items)
            hint = f"write a list, [{shown}]"
        elif base in ("int", "float", "number"):
            hint = f"write {value.strip() or 'a number'} without quotes"
        else:
            hint = f"write {value.strip().lower()} without quotes"
        raise UsageError(f"{where}: {value!r} is not a valid {base}: {_WRITTEN.get(base, base)} is expected; {hint}")
    return coerce(value, typ, where)


def _number_type(field_type: str, default: Any) -> str:
    """A `number` field keeps the kind of number the trial file wrote (30 stays 30, 6.5 stays 6.5)."""
    nullable = "?" if field_type.endswith("?") else ""
    if isinstance(default, int) and not isinstance(default, bool):
        return "int" + nullable
    return "float" + nullable


# ---------------------------------------------------------------- building the node tree

class _Builder:
    """Resolves one criterion's tree against its parameters; records each parameter's type."""

    def __init__(self, params: dict[str, Any], types: dict[str, str] | None = None,
                 loose: set[str] | None = None):
        self.params = params
        self.types: dict[str, str] = dict(types or {})
        self.used: set[str] = set()
        self.loose = set(loose or ())  # parameters given by --set: text converted (`coerce`), not strict

    def value(self, raw: Any, typ: str, path: str, refs: dict[str, str], key: str) -> Any:
        check = check_value
        if isinstance(raw, str) and raw.startswith("$"):
            name = raw[1:]
            if name not in self.params:
                near = suggest(name, self.params, label="parameters")
                raise DesignError(path, f"refers to parameter ${name}, which `parameters` does not define "
                                        f"({near})")
            if typ.startswith("number"):
                typ = _number_type(typ, self.params[name])
            if self.types.get(name, typ) != typ:
                raise DesignError(path, f"parameter ${name} is used as {typ} here and as {self.types[name]} elsewhere")
            self.types[name] = typ
            self.used.add(name)
            refs[key] = name
            raw = self.params[name]
            if name in self.loose:
                check = coerce
            else:
                try:
                    check_value(raw, _number_type(typ, raw) if typ.startswith("number") else typ, path)
                except UsageError as exc:
                    raise DesignError(path, f"{str(exc).split(': ', 1)[-1]} (in parameters.{name})") from None
        elif typ.startswith("number") and not isinstance(raw, str):
            typ = _number_type(typ, raw)
        try:
            return check(raw, typ, path)
        except UsageError as exc:
            raise DesignError(path, str(exc).split(": ", 1)[-1]) from None

    def node(self, raw: Any, path: str, top: bool = False) -> Node:
        if not isinstance(raw, dict):
            raise DesignError(path, "a node must be a table with a `type`")
        typ = raw.get("type")
        if typ not in NODE_TYPES:
            raise DesignError(f"{path}.type", f"unknown node type {typ!r}; {suggest(typ, NODE_TYPES)}")
        spec = NODE_TYPES[typ]
        extra = sorted(set(raw) - set(spec.fields) - {"type"})
        if extra:
            raise DesignError(f"{path}.{extra[0]}", f"{typ} has no field {extra[0]!r}; "
                                                   f"{suggest(extra[0], spec.fields, label='fields')}")
        node = Node(typ, {}, path)
        table = spec.table
        for name, fld in spec.fields.items():
            where = f"{path}.{name}"
            if name not in raw:
                if fld.default is REQUIRED:
                    raise DesignError(where, f"{typ} needs `{name}`")
                node.args[name] = copy.deepcopy(fld.default)
                continue
            value = raw[name]
            if fld.type == "node":
                node.children = [self.node(value, where)]
            elif fld.type == "node_list":
                if not isinstance(value, list):
                    raise DesignError(where, "must be a list of nodes")
                node.children = [self.node(v, f"{where}[{i}]") for i, v in enumerate(value)]
            elif fld.type == "table":
                table = self.value(value, "str", where, node.params, name)
                if table not in contract.tables():
                    raise DesignError(where, f"no table {table!r} in the export contract; "
                                             f"{suggest(table, contract.tables(), label='tables')}")
                node.args[name] = table
            elif fld.type.startswith("column"):
                col = self.value(value, "str" + ("?" if fld.type.endswith("?") else ""), where, node.params, name)
                if col is not None and contract.column(table, col) is None:
                    raise DesignError(where, f"no column {col!r} in {table}; "
                                             f"{suggest(col, contract.columns(table), label='columns')}")
                node.args[name] = col
            elif fld.type == "where?" and value in (None, "none"):
                node.args[name] = None
            elif fld.type.startswith("where"):
                node.args[name] = self.where(value, table, where, node.params)
            elif fld.type == "sources":
                node.args[name] = self.sources(value, where, node.params)
            else:
                node.args[name] = self.value(value, fld.type, where, node.params, name)
        if typ == "screening" and not top:
            raise DesignError(path, "screening can only be a criterion's whole rule")
        if typ == "patient_code":
            col = contract.column("patients", node["column"])
            for key in ("pass", "unknown", "fail"):
                node.args[key] = self.codes(col, node[key], f"{path}.{key}")
        if spec.check:
            spec.check(node)
        return node

    def codes(self, col: contract.Column, values: list, path: str) -> list:
        if not col.is_code:
            return values
        if (col.table, col.name) == ("treatments", "drug"):
            return [self.drug(v, path) for v in values]
        folded = [col.fold(v) for v in values]
        if col.codes is not None:
            bad = [v for v in folded if v not in col.codes]
            if bad:
                raise DesignError(path, f"unknown code {bad[0]!r} for {col.table}.{col.name}; "
                                        f"{suggest(bad[0], col.codes, label='codes')}")
        return folded

    def sources(self, raw: Any, path: str, refs: dict[str, str]) -> list[dict[str, Any]]:
        """Event sources: [{table, where (the rows that are events), possible (rows that may be)}]."""
        if not isinstance(raw, list) or not raw:
            raise DesignError(path, "must be a non-empty list of { table, where, possible }")
        out = []
        for i, src in enumerate(raw):
            at = f"{path}[{i}]"
            if not isinstance(src, dict) or "table" not in src:
                raise DesignError(at, "an event source is a table { table = ..., where = ..., possible = ... }")
            extra = sorted(set(src) - {"table", "where", "possible"})
            if extra:
                raise DesignError(f"{at}.{extra[0]}", "an event source has table, where and possible")
            tbl = self.value(src["table"], "str", f"{at}.table", refs, f"events[{i}].table")
            if tbl not in contract.EVENT_DATE:
                raise DesignError(f"{at}.table", f"events come from a table of dated events "
                                                 f"({', '.join(contract.EVENT_DATE)}), not {tbl!r}")
            out.append({"table": tbl, "where": self.where(src.get("where", {}), tbl, f"{at}.where", refs),
                        "possible": self.where(src["possible"], tbl, f"{at}.possible", refs)
                        if "possible" in src else None})
        return out

    @staticmethod
    def drug(name: str, path: str) -> str:
        """A drug as treatments holds it: the generic name of the bundled vocabulary (brands map to it)."""
        from pipeline.core.vocabulary import _fold, load_vocabulary

        vocab = load_vocabulary()
        if _fold(name) not in vocab.generic_of:
            names = sorted(set(vocab.generic_of.values())) + sorted(set(vocab.generic_of) - set(vocab.generic_of.values()))
            raise DesignError(path, f"unknown drug {name!r}: not in the drug vocabulary ({vocab.source}); "
                                    f"{suggest(_fold(name), names, limit=0, label='names')}")
        return vocab.generic_of[_fold(name)]

    def where(self, raw: Any, table: str, path: str, refs: dict[str, str]) -> dict[str, dict[str, Any]]:
        if not isinstance(raw, dict):
            raise DesignError(path, "must be a table of column = condition")
        out: dict[str, Any] = {}
        for colname, pred in raw.items():
            where = f"{path}.{colname}"
            if colname == "any":  # one of several filters: { any = [{ a = ... }, { b = ... }] }
                if not isinstance(pred, list) or not pred:
                    raise DesignError(where, "must be a non-empty list of filters")
                out["any"] = [self.where(w, table, f"{where}[{i}]", refs) for i, w in enumerate(pred)]
                continue
            col = contract.column(table, colname)
            if col is None:
                raise DesignError(where, f"no column {colname!r} in {table}; "
                                         f"{suggest(colname, contract.columns(table), label='columns')}")
            if not isinstance(pred, dict):
                pred = {"in": pred} if isinstance(pred, list) or (
                    isinstance(pred, str) and pred.startswith("$")) else {"equals": pred}
            unknown = sorted(set(pred) - set(PREDICATES))
            if unknown:
                near = suggest(unknown[0], PREDICATES, label="use one of")
                raise DesignError(f"{where}.{unknown[0]}", f"unknown condition; {near}")
            numeric = col.type in ("int", "float")
            got: dict[str, Any] = {}
            for key, value in pred.items():
                at = f"{where}.{key}"
                if key == "empty":
                    got[key] = self.value(value, "bool", at, refs, f"where.{colname}.{key}")
                    continue
                if key in ("min", "max"):
                    if not numeric:
                        raise DesignError(at, f"{table}.{colname} is {col.type}: min/max need a number column")
                    got[key] = self.value(value, "number", at, refs, f"where.{colname}.{key}")
                    continue
                if key in ("prefix", "not_prefix", "prefix_listed") and col.type != "str":
                    raise DesignError(at, f"{table}.{colname} is {col.type}: prefixes need a text column")
                if key in ("in", "not_in", "in_listed") and col.type == "float":
                    raise DesignError(at, f"{table}.{colname} is a decimal number: use min/max, not a list")
                if col.type == "date":
                    raise DesignError(at, f"{table}.{colname} is a date: filter dates with the node's window")
                if key == "equals":
                    typ = "int" if col.type == "int" else "float" if col.type == "float" else "str"
                    v = self.value(value, typ, at, refs, f"where.{colname}.{key}")
                    got[key] = self.codes(col, [v], at)[0] if typ == "str" else v
                else:
                    typ = "int_list" if col.type == "int" else "str_list"
                    v = self.value(value, typ, at, refs, f"where.{colname}.{key}")
                    if key in ("in", "not_in", "in_listed"):
                        v = self.codes(col, v, at) if typ == "str_list" else v
                    else:  # prefixes: in the column's case, compared without dots ("A81.2" matches "a812")
                        v = [col.fold(x) if col.is_code else x.strip() for x in v]
                    got[key] = v
            if "min" in got and "max" in got and got["min"] > got["max"]:
                raise DesignError(f"{where}.min", f"min {got['min']} is greater than max {got['max']}")
            out[colname] = got
        return out


def build_criterion(raw: dict, where: str, overrides: dict[str, Any] | None = None,
                    overridden: set[str] | None = None) -> Criterion:
    """One criterion from its table in the trial file; raises UsageError naming `where` and the field."""
    extra = sorted(set(raw) - CRITERION_KEYS)
    if extra:
        raise UsageError(f"{where}: unknown key `{extra[0]}`; "
                         f"{suggest(extra[0], sorted(CRITERION_KEYS), label='a criterion has')}")
    for key in ("id", "kind", "text", "rule"):
        if key not in raw:
            raise UsageError(f"{where}: missing `{key}`")
    cid = raw["id"]
    if not isinstance(cid, str) or not cid.isidentifier() or cid != cid.lower():
        raise UsageError(f"{where}: id must be a lower-case identifier")
    if raw["kind"] not in KINDS:
        near = suggest(raw["kind"], sorted(KINDS), label="").split("? ")[0] + "?" \
            if suggest(raw["kind"], sorted(KINDS), label="").startswith("did") else ""
        raise UsageError(f"{where}: kind must be one of {', '.join(sorted(KINDS))}" + (f"; {near}" if near else ""))
    if not isinstance(raw["text"], str):
        raise UsageError(f"{where}: text must be a text")
    label = raw.get("label")
    if label is not None and (not isinstance(label, str) or not label.strip() or len(label) > LABEL_MAX):
        raise UsageError(f"{where}: label must be a short text (1 to {LABEL_MAX} characters), e.g. \"EDSS 3.0-6.5\"")
    params = raw.get("parameters", {})
    if not isinstance(params, dict):
        raise UsageError(f"{where}: parameters must be a table of name = value")
    params = {**params, **(overrides or {})}
    builder = _Builder(params, loose=set(overrides or {}))
    try:
        node = builder.node(raw["rule"], "rule", top=True)
        unused = [p for p in params if p not in builder.used]
        if unused:
            raise DesignError(f"parameters.{unused[0]}", "is defined but no node refers to it as "
                                                         f"\"${unused[0]}\"")
        names = node.evidence()
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise DesignError("rule", f"two nodes name their evidence {dup[0]!r}; give one of them another `as`")
    except DesignError as exc:
        raise UsageError(f"{where}: {exc}") from None
    # Values as the nodes read them (an int given for a float parameter becomes a float).
    typed = {k: coerce(v, builder.types[k], f"{where}: parameters.{k}") for k, v in params.items()}
    return Criterion(cid, raw["kind"], raw["text"], raw["rule"], typed, builder.types, node, set(overridden or ()),
                     label.strip() if label else None)


def _load_text(name_or_path: str) -> tuple[str, str]:
    bundled = resources.files("pipeline.trials").joinpath(f"{name_or_path.lower()}.toml")
    if bundled.is_file():
        return bundled.read_text("utf-8"), f"bundled trial {name_or_path.lower()}"
    path = Path(name_or_path)
    if path.is_file():
        try:
            return path.read_text("utf-8"), str(path)
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"--trial {name_or_path}: cannot read the trial file: {exc}") from None
    near = suggest(name_or_path.lower(), bundled_trials(), limit=0)
    raise UsageError(f"--trial {name_or_path}: neither a bundled trial id ({', '.join(bundled_trials())}) "
                     f"nor a trial file" + (f"; {near}" if near.startswith("did") else ""))


def bundled_trials() -> list[str]:
    folder = resources.files("pipeline.trials")
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


def parse_trial(text: str, source: str) -> Trial:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{source}: not valid TOML: {exc}") from None
    for key in ("id", "title", "criteria"):
        if key not in data:
            raise UsageError(f"{source}: missing `{key}`")
    extra = sorted(set(data) - TRIAL_KEYS)
    if extra:
        raise UsageError(f"{source}: unknown key `{extra[0]}`; {suggest(extra[0], sorted(TRIAL_KEYS), label='a trial file has')}")
    if not isinstance(data["criteria"], list) or not data["criteria"]:
        raise UsageError(f"{source}: `criteria` must be a non-empty list ([[criteria]] tables)")
    criteria: list[Criterion] = []
    seen: set[str] = set()
    for n, raw in enumerate(data["criteria"], start=1):
        where = f"{source}: criterion {n} ({raw.get('id', '?') if isinstance(raw, dict) else '?'})"
        if not isinstance(raw, dict):
            raise UsageError(f"{where}: must be a table")
        crit = build_criterion(raw, where)
        if crit.id in seen:
            raise UsageError(f"{where}: duplicate id {crit.id!r}")
        seen.add(crit.id)
        criteria.append(crit)
    planned = data.get("planned_enrolment")
    if planned is not None and (not isinstance(planned, int) or planned <= 0):
        raise UsageError(f"{source}: planned_enrolment must be a positive whole number")
    return Trial(data["id"], data["title"], data.get("registration", data["id"]), criteria, source,
                 hashlib.sha256(text.encode()).hexdigest(), planned)


def load_trial(name_or_path: str = "nct04203017", overrides: list[str] | None = None) -> Trial:
    """Load and check a trial definition, then apply `criterion.parameter=value` overrides."""
    text, source = _load_text(name_or_path)
    return apply_overrides(parse_trial(text, source), overrides or [])


# Known clinical scales (issue 32). A `--set` value off the scale or between two of its steps is a warning,
# not an error: the run goes on and says it. Off the scale, no patient can have the value, so the bound means
# "no limit" or "nobody" (a real what-if, and the workbench's sliders run past the scale's ends to offer it:
# every command the page gives must run and count as the page does); between steps, the value compares
# exactly as the step below or above would.
# (scale, low, high, step or None, unit)
EDSS = ("EDSS", 0.0, 10.0, 0.5, "points")
KARNOFSKY = ("Karnofsky index", 0.0, 100.0, 10.0, "%")
AGE = ("age", 0.0, 120.0, None, "years")
LVEF = ("LVEF", 0.0, 100.0, None, "%")
PREDICTED = ("% of predicted", 0.0, 250.0, None, "%")
_EDSS_KEYS = {"increase_below", "increase_from", "increase_step_edss"}


def _scales(rule: Any, out: dict[str, tuple] | None = None) -> dict[str, tuple]:
    """Parameter name -> the scale its value is on, from where the rule uses it ("$name")."""
    out = {} if out is None else out
    if isinstance(rule, list):
        for r in rule:
            _scales(r, out)
        return out
    if not isinstance(rule, dict):
        return out
    column = rule.get("value_column") or rule.get("column")
    test = str((rule.get("where") or {}).get("test", "")).upper() if isinstance(rule.get("where"), dict) else ""
    for key, value in rule.items():
        if isinstance(value, (dict, list)):
            _scales(value, out)
            continue
        if not (isinstance(value, str) and value.startswith("$")):
            continue
        bound = key in ("min", "max", "step")
        scale = (EDSS if key in _EDSS_KEYS or (bound and column == "edss") else
                 KARNOFSKY if bound and column == "karnofsky" else
                 AGE if key in ("min", "max") and rule.get("type") == "age" else
                 LVEF if bound and rule.get("table") == "function_tests" and test == "LVEF" else
                 PREDICTED if bound and rule.get("table") == "function_tests" and test in ("FEV1", "DLCO") else None)
        if scale:
            out[value[1:]] = scale
    return out


def check_scale(where: str, value: Any, scale: tuple) -> str | None:
    """The warning for a value off the scale or between its steps, else None."""
    name, low, high, step, unit = scale
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    shown = f"{low:g} .. {high:g}" + (f" in steps of {step:g}" if step else "") + (f" {unit}" if unit else "")
    if not low <= value <= high:
        param = where.rsplit(".", 1)[-1]
        bound = ("lets everyone through" if (value > high) == param.startswith("max") else "lets nobody through") \
            if param.startswith(("min", "max")) else "compares as if at the scale's end"
        return (f"{where}: {value:g} is off the {name} scale ({shown}): no patient can have it, so this bound "
                f"{bound}; the run goes on (a typo? check the value)")
    if step and abs(value / step - round(value / step)) > 1e-9:
        below, above = step * (value // step), step * (value // step + 1)
        return (f"{where}: {value:g} is not a step of the {name} scale ({shown}): it compares as if it were "
                f"{below:g} or {above:g}, whichever the criterion's bound lands on; the run goes on")
    return None


def apply_overrides(trial: Trial, overrides: list[str]) -> Trial:
    """Apply `--set criterion.parameter=value` together, then check (exit 2 on error).

    Every value is parsed first; each criterion is then rebuilt and checked once with all of its
    new values, so the order of the --set options never matters (`min_age=70` then `max_age=80`
    is the same run as the other way round). A parameter set twice keeps its last value. A value
    off a known scale (EDSS, Karnofsky, age, percentages) or off its step is a warning (`Trial.notes`).
    """
    trial = copy.deepcopy(trial)
    by_id = {c.id: i for i, c in enumerate(trial.criteria)}
    changes: dict[str, dict[str, Any]] = {}
    given: dict[str, list[str]] = {}  # as typed, for the messages
    for item in overrides:
        name, sep, value = item.partition("=")
        cid, dot, param = name.strip().partition(".")
        if sep and not dot:  # a parameter's name alone: name its criterion
            owners = [c.id for c in trial.criteria if cid in c.parameters]
            if owners:
                raise UsageError(f"--set {item!r}: give the criterion too, as criterion.parameter=value: "
                                 + " or ".join(f"{o}.{cid}={value}" for o in owners))
        if not sep or not dot:
            raise UsageError(f"--set {item!r}: expected criterion.parameter=value (e.g. edss_range.max_edss=7.0)")
        if cid not in by_id:
            raise UsageError(f"--set {item!r}: no criterion {cid!r}; {suggest(cid, by_id, label='criteria')}")
        crit = trial.criteria[by_id[cid]]
        if param not in crit.parameters:
            known = suggest(param, crit.parameters, label="parameters")
            raise UsageError(f"--set {item!r}: criterion {cid} has no parameter {param!r} ({known})")
        try:
            new_value = coerce(value, crit.param_types[param], f"--set {item}")
        except UsageError:
            typ = crit.param_types[param]
            now = crit.parameters[param]
            written = _WRITTEN.get(_base(typ), _base(typ)) + (" or none" if typ.endswith("?") else "")
            raise UsageError(f"--set {item!r}: {value.strip()!r} is not {written}; {cid}.{param} is "
                             f"{now if now is not None else 'none'} in this trial (e.g. --set {cid}.{param}="
                             f"{now if now is not None else 'none'})") from None
        scale = _scales(crit.rule).get(param)
        note = check_scale(f"--set {cid}.{param}", new_value, scale) if scale else None
        if note:
            trial.notes.append(note)
        changes.setdefault(cid, {})[param] = new_value
        given.setdefault(cid, []).append(item)
    for cid, new in changes.items():
        crit = trial.criteria[by_id[cid]]
        where = "--set " + " --set ".join(given[cid])
        raw = {"id": crit.id, "kind": crit.kind, "text": crit.text, "rule": crit.rule, "parameters": crit.parameters,
               **({"label": crit.label} if crit.label else {})}
        trial.criteria[by_id[cid]] = build_criterion(raw, where, new, crit.overridden | set(new))
    return trial
