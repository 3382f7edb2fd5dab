"""The trial definition: criteria as data (id, rule, kind, texts, tables, parameters, settle).

A trial file names, for each criterion in order, the `rule` that computes it (each
rule exists once per engine) and all of that rule's parameters. Loading checks the
file against the rule catalogue below, so a typo is a clear error before any data
is read; `--set criterion.parameter=value` overrides then go through the same checks.
"""

from __future__ import annotations

import copy
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from pipeline.errors import UsageError

KINDS = {"inclusion", "exclusion", "registry status"}
OPTIONAL_TABLES = {"visits", "relapses", "treatments", "labs", "function_tests", "conditions"}

# rule -> parameter -> type. "int?" and "float?" also take the string "none" (no limit).
RULES: dict[str, dict[str, str]] = {
    "alive": {},
    "age": {"min_age": "int", "max_age": "int?"},
    "ms_course": {"courses": "str_list", "unknown_courses": "str_list"},
    "research_consent": {},
    "edss_range": {"lookback_days": "int", "min_edss": "float", "max_edss": "float"},
    "disease_duration": {"max_years": "float"},
    "progression_on_therapy": {
        "lines": "int_list", "lag_days": "int", "baseline_lookback_days": "int", "late_baseline_days": "int",
        "increase_below": "float", "increase_from": "float", "increase_step_edss": "float",
        "confirmation_days": "int", "relapse_exclusion_days": "int"},
    "no_malignancy": {"excluded_code_prefixes": "str_list"},
    "no_severe_condition": {"severities": "str_list"},
    "lvef": {"lookback_days": "int", "min_lvef": "float"},
    "pulmonary_function": {"lookback_days": "int", "min_fev1": "float", "min_dlco": "float"},
    "screening": {},
    "organ_function": {
        "lookback_days": "int", "ast_max_uln": "float", "alt_max_uln": "float", "tbil_max_uln": "float",
        "creat_max_uln": "float", "ast_default_uln": "float", "alt_default_uln": "float",
        "tbil_default_uln_umol": "float", "creat_default_uln_umol": "float",
        "tbil_umol_per_mg_dl": "float", "creat_umol_per_mg_dl": "float"},
    "creatinine_clearance": {"lab_lookback_days": "int", "weight_lookback_days": "int", "min_crcl": "float",
                             "female_factor": "float", "creat_default_uln_umol": "float",
                             "creat_umol_per_mg_dl": "float"},
    "uncontrolled_infection": {"infection_types": "str_list"},
    "karnofsky": {"lookback_days": "int", "min_karnofsky": "int"},
    "consent_capacity": {},
}

# Tables a rule cannot be judged without (its criterion must list them).
RULE_TABLES = {
    "edss_range": {"visits"}, "progression_on_therapy": {"visits", "treatments", "relapses"},
    "no_malignancy": {"conditions"}, "no_severe_condition": {"conditions"}, "lvef": {"function_tests"},
    "pulmonary_function": {"function_tests"}, "organ_function": {"labs"},
    "creatinine_clearance": {"labs", "visits"}, "uncontrolled_infection": {"conditions"},
    "karnofsky": {"visits"}, "consent_capacity": {"conditions"},
}


@dataclass
class Criterion:
    id: str
    rule: str
    kind: str
    text: str
    judged: str
    tables: list[str]
    parameters: dict[str, Any]
    overridden: set[str] = field(default_factory=set)
    settle: str = ""  # the data that would turn `unknown` into pass or fail, for the report


@dataclass
class Trial:
    id: str
    title: str
    registration: str
    criteria: list[Criterion]
    source: str
    sha256: str = ""

    @property
    def ids(self) -> list[str]:
        return [c.id for c in self.criteria]

    def parameters_record(self) -> dict[str, dict[str, dict[str, Any]]]:
        """Every parameter in force, for summary.json: {criterion: {param: {value, overridden}}}."""
        return {c.id: {k: {"value": v, "overridden": k in c.overridden} for k, v in c.parameters.items()}
                for c in self.criteria}


def coerce(value: Any, typ: str, where: str) -> Any:
    """Check (and for strings from --set, convert) a parameter value to its declared type."""
    if isinstance(value, str) and typ != "str_list":
        text = value.strip()
        if typ.endswith("?") and text.lower() == "none":
            return None
        try:
            if typ.startswith("int") and typ != "int_list":
                value = int(text)
            elif typ.startswith("float"):
                value = float(text)
            elif typ == "int_list":
                value = [int(x) for x in text.strip("[]").split(",") if x.strip()]
        except ValueError:
            raise UsageError(f"{where}: {value!r} is not a valid {typ.rstrip('?')}") from None
    elif isinstance(value, str) and typ == "str_list":
        value = [x.strip().strip("'\"") for x in value.strip("[]").split(",") if x.strip()]
    base = typ.rstrip("?")
    ok = {
        "int": isinstance(value, int) and not isinstance(value, bool),
        "float": isinstance(value, (int, float)) and not isinstance(value, bool),
        "str_list": isinstance(value, list) and all(isinstance(x, str) for x in value),
        "int_list": isinstance(value, list) and all(isinstance(x, int) and not isinstance(x, bool) for x in value),
    }[base]
    if not ok:
        raise UsageError(f"{where}: {value!r} is not a valid {base}")
    return float(value) if base == "float" else value


def _load_text(name_or_path: str) -> tuple[str, str]:
    bundled = resources.files("pipeline.trials").joinpath(f"{name_or_path.lower()}.toml")
    if bundled.is_file():
        return bundled.read_text("utf-8"), f"bundled trial {name_or_path.lower()}"
    path = Path(name_or_path)
    if path.is_file():
        return path.read_text("utf-8"), str(path)
    raise UsageError(f"--trial {name_or_path}: neither a bundled trial id nor a trial file")


def load_trial(name_or_path: str = "nct04203017", overrides: list[str] | None = None) -> Trial:
    """Load and check a trial definition, then apply `criterion.parameter=value` overrides."""
    import hashlib

    text, source = _load_text(name_or_path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{source}: not valid TOML: {exc}") from None
    for key in ("id", "title", "criteria"):
        if key not in data:
            raise UsageError(f"{source}: missing `{key}`")
    criteria: list[Criterion] = []
    seen: set[str] = set()
    for n, raw in enumerate(data["criteria"], start=1):
        where = f"{source}: criterion {n} ({raw.get('id', '?')})"
        for key in ("id", "rule", "kind", "text", "judged", "tables", "parameters"):
            if key not in raw:
                raise UsageError(f"{where}: missing `{key}`")
        cid, rule = raw["id"], raw["rule"]
        if not isinstance(cid, str) or not cid.isidentifier() or cid != cid.lower():
            raise UsageError(f"{where}: id must be a lower-case identifier")
        if cid in seen:
            raise UsageError(f"{where}: duplicate id")
        seen.add(cid)
        if rule not in RULES:
            raise UsageError(f"{where}: unknown rule {rule!r}; known: {', '.join(sorted(RULES))}")
        if raw["kind"] not in KINDS:
            raise UsageError(f"{where}: kind must be one of {', '.join(sorted(KINDS))}")
        tables = list(raw["tables"])
        if not set(tables) <= OPTIONAL_TABLES or not RULE_TABLES.get(rule, set()) <= set(tables):
            raise UsageError(f"{where}: tables must include {sorted(RULE_TABLES.get(rule, set()))} "
                             f"and only optional tables")
        declared, given = RULES[rule], dict(raw["parameters"])
        if set(given) != set(declared):
            missing, extra = sorted(set(declared) - set(given)), sorted(set(given) - set(declared))
            raise UsageError(f"{where}: parameters do not match rule {rule!r}"
                             + (f"; missing {missing}" if missing else "") + (f"; unknown {extra}" if extra else ""))
        params = {k: coerce(given[k], t, f"{where}: {k}") for k, t in declared.items()}
        settle = raw.get("settle", "")
        if not isinstance(settle, str):
            raise UsageError(f"{where}: `settle` must be a text")
        criteria.append(Criterion(cid, rule, raw["kind"], raw["text"], raw["judged"], tables, params,
                                  settle=settle))
    trial = Trial(data["id"], data["title"], data.get("registration", data["id"]), criteria, source,
                  hashlib.sha256(text.encode()).hexdigest())
    return apply_overrides(trial, overrides or [])


def apply_overrides(trial: Trial, overrides: list[str]) -> Trial:
    """Apply `--set criterion.parameter=value`; unknown names are a usage error (exit 2)."""
    trial = copy.deepcopy(trial)
    by_id = {c.id: c for c in trial.criteria}
    for item in overrides:
        name, sep, value = item.partition("=")
        cid, dot, param = name.strip().partition(".")
        if not sep or not dot:
            raise UsageError(f"--set {item!r}: expected criterion.parameter=value")
        if cid not in by_id:
            raise UsageError(f"--set {item!r}: no criterion {cid!r}; criteria: {', '.join(by_id)}")
        crit = by_id[cid]
        if param not in crit.parameters:
            known = ", ".join(crit.parameters) or "none"
            raise UsageError(f"--set {item!r}: criterion {cid} has no parameter {param!r} (parameters: {known})")
        crit.parameters[param] = coerce(value, RULES[crit.rule][param], f"--set {item}")
        crit.overridden.add(param)
    return trial
