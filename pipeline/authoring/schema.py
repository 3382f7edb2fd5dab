"""The JSON Schema of trial files, generated from the vocabulary (node types, their fields, the contract).

`msfeas trial schema` prints it; `pipeline/authoring/trial.schema.json` is the committed copy
(a test keeps it current). TOML editors (Taplo, "Even Better TOML") read a first line
`#:schema <path or URL>` and then complete and explain fields from it: each bundled trial file
starts with `#:schema ../authoring/trial.schema.json`.

The schema is the shape of a trial file (keys, node types, each node's fields and the kinds of
their values, a `"$name"` parameter reference wherever a value may be one); the loader's design
checks (`pipeline.criteria.load`) remain the judge of everything else (codes, ranges, columns of
the node's table, parameters' types).
"""

from __future__ import annotations

import json
from importlib import resources

from pipeline.criteria import contract
from pipeline.criteria.load import CRITERION_KEYS, KINDS, TIES, TRIAL_KEYS
from pipeline.criteria.nodes import NODE_TYPES, PREDICATES, REQUIRED, STATUSES

SCHEMA_FILE = "trial.schema.json"
BUNDLED_REF = f"../authoring/{SCHEMA_FILE}"  # from pipeline/trials/*.toml
REF = {"type": "string", "pattern": r"^\$[A-Za-z_][A-Za-z0-9_]*$", "description": "a parameter: \"$name\""}
NONE = {"const": "none", "description": "no value"}


def _any_of(*options: dict) -> dict:
    return {"anyOf": list(options)}


def _value(typ: str, table: str | None) -> dict:
    base, nullable = typ.rstrip("?"), typ.endswith("?")
    plain = {
        "int": {"type": "integer"},
        "number": {"type": "number"},
        "float": {"type": "number"},
        "str": {"type": "string"},
        "bool": {"type": "boolean"},
        "status": {"enum": list(STATUSES)},
        "tie": {"enum": list(TIES)},
        "str_list": {"type": "array", "items": {"type": "string"}},
        "int_list": {"type": "array", "items": {"type": "integer"}},
        "table": {"enum": contract.tables()},
        "column": {"enum": contract.columns(table)} if table else {"type": "string"},
        "where": {"$ref": "#/$defs/where"},
        "sources": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/source"}},
        "node": {"$ref": "#/$defs/node"},
        "node_list": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/node"}},
    }[base]
    if base in ("node", "node_list", "where"):
        return _any_of(plain, NONE) if nullable else plain
    options = [plain, REF] + ([NONE] if nullable else [])
    return _any_of(*options)


def _node(name: str) -> dict:
    spec = NODE_TYPES[name]
    props: dict = {"type": {"const": name, "description": spec.doc}}
    required = ["type"]
    for fname, fld in spec.fields.items():
        prop = _value(fld.type, spec.table if fname in ("column", "fallback") else None)
        text = fld.doc or f"{fld.type}"
        if fld.default is not REQUIRED:
            text += f" (default: {json.dumps(fld.default) if fld.default is not None else 'none'})"
        else:
            required.append(fname)
        props[fname] = {**prop, "description": f"{name}.{fname}: {fld.type}. {text}"}
    return {"type": "object", "description": spec.doc, "properties": props, "required": required,
            "additionalProperties": False}


def _where() -> dict:
    value = {"anyOf": [{"type": ["string", "number", "boolean"]},
                       {"type": "array", "items": {"type": ["string", "number"]}}]}
    predicates = {"type": "object", "properties": {p: {} for p in PREDICATES}, "additionalProperties": False,
                  "description": f"predicates: {', '.join(PREDICATES)}"}
    return {"type": "object", "description": "a row filter: column = value | [values] | { predicate = ... }, "
                                             "or any = [filters]",
            "properties": {"any": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/where"}}},
            "additionalProperties": _any_of(value, predicates)}


def build() -> dict:
    nodes = {f"node_{n}": _node(n) for n in NODE_TYPES}
    node = {"type": "object", "required": ["type"],
            "properties": {"type": {"enum": list(NODE_TYPES), "description": "the node type (docs/trial-language.md "
                                                                             "section 9)"}},
            "allOf": [{"if": {"properties": {"type": {"const": n}}, "required": ["type"]},
                       "then": {"$ref": f"#/$defs/node_{n}"}} for n in NODE_TYPES]}
    criterion = {
        "type": "object", "additionalProperties": False, "required": ["id", "kind", "text", "rule"],
        "properties": {
            "id": {"type": "string", "pattern": r"^[a-z_][a-z0-9_]*$", "description": "a lower-case identifier"},
            "kind": {"enum": sorted(KINDS)},
            "text": {"type": "string", "description": "the criterion as the protocol words it"},
            "label": {"type": "string", "minLength": 1, "maxLength": 40,
                      "description": "optional short name for charts and the overview (default: the id)"},
            "parameters": {"type": "object", "description": "name = value, referred to as \"$name\" in the rule, "
                                                            "changed with --set criterion.name=value",
                           "additionalProperties": {"type": ["string", "number", "boolean", "array"]}},
            "rule": {"$ref": "#/$defs/node"},
        }}
    assert set(criterion["properties"]) == CRITERION_KEYS
    top = {
        "id": {"type": "string"}, "title": {"type": "string"},
        "registration": {"type": "string", "description": "the registry number, e.g. NCT04203017"},
        "planned_enrolment": {"type": "integer", "minimum": 1, "description": "patients to enrol"},
        "criteria": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/criterion"}},
    }
    assert set(top) == TRIAL_KEYS
    source = {"type": "object", "required": ["table"], "additionalProperties": False,
              "properties": {"table": _any_of({"enum": list(contract.EVENT_DATE)}, REF),
                             "where": {"$ref": "#/$defs/where"}, "possible": {"$ref": "#/$defs/where"}}}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://msfeas.invalid/trial.schema.json",
        "title": "msfeas trial file",
        "description": "A trial in the criteria language of msfeas (docs/trial-language.md). Generated by "
                       "`msfeas trial schema` from the node types; the design checks of `msfeas trial check` "
                       "judge what a schema cannot (codes, ranges, columns, parameters).",
        "type": "object", "additionalProperties": False, "required": ["id", "title", "criteria"],
        "properties": top,
        "$defs": {"criterion": criterion, "node": node, "where": _where(), "source": source, **nodes},
    }


def schema_text() -> str:
    return json.dumps(build(), indent=1, ensure_ascii=False) + "\n"


def committed_text() -> str:
    return resources.files("pipeline.authoring").joinpath(SCHEMA_FILE).read_text("utf-8")


def schema_uri() -> str:
    """The committed schema as a file URI (for trial files written elsewhere, e.g. by `trial import`)."""
    path = resources.files("pipeline.authoring").joinpath(SCHEMA_FILE)
    try:
        return path.resolve().as_uri()  # type: ignore[union-attr]
    except (AttributeError, ValueError):
        return "https://msfeas.invalid/trial.schema.json"
