"""The package's layers (docs/architecture.md) hold, and the contract that says so can fail.

`make test` runs `lint-imports` before pytest; these tests run the same contract (the
`[tool.importlinter]` section of pyproject.toml) on the tree as it is, and on copies of it
with one wrong arrow added, so that a contract which stopped checking anything would be seen.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

LINT = Path(sys.executable).with_name("lint-imports")


def lint(tree: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run([str(LINT), "--no-cache"], cwd=tree, env=env, capture_output=True, text=True,
                          timeout=300)


def copy_tree(tmp_path: Path) -> Path:
    for name in ("pipeline", "schemas"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__", "_sql"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def add_import(module: Path, line: str) -> None:
    module.write_text(module.read_text() + f"\n{line}  # noqa\n")


def test_the_layers_and_the_acyclic_packages_hold():
    got = lint(ROOT)
    assert got.returncode == 0, got.stdout + got.stderr
    assert "2 kept, 0 broken" in got.stdout


@pytest.mark.parametrize("module, line, broken, says", [
    # the lowest layer reaching for the run: an upward import across the whole stack
    ("pipeline/core/errors.py", "from pipeline import run", "The stages of a run are layers",
     "pipeline.core is not allowed to import pipeline.run"),
    # an engine reaching for the quality stage above it
    ("pipeline/engines/dated.py", "from pipeline.quality import frames", "The stages of a run are layers",
     "pipeline.engines is not allowed to import pipeline.quality"),
    # the schemas reaching for the readers that use them
    ("schemas/rules.py", "from pipeline.inputs import readcsv", "The stages of a run are layers",
     "schemas is not allowed to import pipeline.inputs"),
    # the report and the overview importing each other (the cycle of the flat layout)
    ("pipeline/outputs/report.py", "from pipeline.outputs import overview", "No import cycle",
     "No cycles are allowed in pipeline.outputs"),
    # the quality stage and its Spark frames importing each other (the other cycle of the flat layout)
    ("pipeline/quality/frames.py", "from pipeline.quality import spark", "No import cycle",
     "No cycles are allowed in pipeline.quality"),
])
def test_a_wrong_arrow_breaks_the_contract(tmp_path, module, line, broken, says):
    tree = copy_tree(tmp_path)
    add_import(tree / module, line)
    got = lint(tree)
    assert got.returncode != 0
    assert says in " ".join(got.stdout.split()), got.stdout
    assert broken in got.stdout.split("Broken contracts")[1]


def test_the_docs_name_files_that_exist():
    """Every path of the package that README.md and docs/architecture.md name is there (a move
    that forgets the docs fails here)."""
    import re

    named = set()
    for doc in ("README.md", "docs/architecture.md"):
        for path in re.findall(r"(?<![\w/.])((?:pipeline|schemas)/[\w./-]*\w/?)", (ROOT / doc).read_text()):
            named.add(path)
    assert len(named) > 20
    # pipeline/_sql: sql/ as it ships inside the wheel (pyproject.toml)
    assert sorted(p for p in named if not (ROOT / p).exists() and not p.startswith("pipeline/_sql")) == []


def test_the_architecture_page_names_every_package():
    text = (ROOT / "docs" / "architecture.md").read_text()
    packages = sorted(p.parent.relative_to(ROOT).as_posix() for p in (ROOT / "pipeline").glob("*/__init__.py"))
    assert [p for p in packages if f"`{p}/" not in text and f"`{p}`" not in text] == []
