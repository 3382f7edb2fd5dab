"""The JSON Schema of trial files: generated from the vocabulary, committed, current, referenced by
each bundled trial file's first line, valid for every bundled trial and golden case, and strict
enough to catch a misspelt field."""

from __future__ import annotations

import copy
import json
import tomllib

import jsonschema
import pytest

from pipeline.authoring.ctgov import import_record
from pipeline.authoring.schema import BUNDLED_REF, build, committed_text, schema_text
from pipeline.cli import main
from tests.conftest import ROOT

TRIALS = sorted((ROOT / "pipeline" / "trials").glob("*.toml"))
GOLDEN = sorted((ROOT / "tests" / "golden").glob("*/*/criterion.toml"))
VALIDATOR = jsonschema.Draft202012Validator(json.loads(committed_text()))


def errors(data) -> list[str]:
    return [e.message for e in VALIDATOR.iter_errors(data)]


def test_the_committed_schema_is_current():
    assert committed_text() == schema_text(), "run: msfeas trial schema --out pipeline/authoring/trial.schema.json"
    jsonschema.Draft202012Validator.check_schema(build())


def test_cli_prints_it(capsys):
    assert main(["trial", "schema"]) == 0
    assert capsys.readouterr().out == committed_text()


@pytest.mark.parametrize("path", TRIALS + GOLDEN + [ROOT / "tests" / "fixtures" / "ctgov" / "nct04410978.toml"],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_every_trial_file_is_valid(path):
    assert errors(tomllib.loads(path.read_text())) == []


@pytest.mark.parametrize("name", ["basic", "numbered", "cohorts", "bare", "nct04410978"])
def test_imported_files_are_valid(name):
    assert errors(tomllib.loads(import_record(ROOT / "tests" / "fixtures" / "ctgov" / f"{name}.json").text)) == []


def test_the_finished_fixture_names_the_schema_too():
    path = ROOT / "tests" / "fixtures" / "ctgov" / "nct04410978.toml"
    ref = path.read_text().splitlines()[0].removeprefix("#:schema ")
    assert (path.parent / ref).resolve().read_text() == committed_text()


def test_bundled_files_name_the_schema_on_their_first_line():
    for path in TRIALS:
        first = path.read_text().splitlines()[0]
        assert first == f"#:schema {BUNDLED_REF}"
        assert (path.parent / BUNDLED_REF).resolve().read_text() == committed_text()


BASE = tomllib.loads(TRIALS[0].read_text())


@pytest.mark.parametrize("where, change", [
    ("top-level key", lambda d: d.update(planned_enrollment=5)),
    ("criterion key", lambda d: d["criteria"][0].update(parameter={})),
    ("node field", lambda d: d["criteria"][1]["rule"].update(maximum=60)),
    ("node type", lambda d: d["criteria"][1]["rule"].update(type="ages")),
    ("nested node field", lambda d: d["criteria"][0]["rule"].update(colum="x")),
    ("a text for a number", lambda d: d["criteria"][1]["rule"].update(min="18")),
    ("kind", lambda d: d["criteria"][0].update(kind="include")),
])
def test_a_misspelt_field_fails(where, change):
    data = copy.deepcopy(BASE)
    change(data)
    assert errors(data), where
