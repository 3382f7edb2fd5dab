"""Importing pandera with its polars API only.

Importing `pandera` (the parent of `pandera.polars`) also imports its pandas API, and so
pandas and numpy (about a quarter of a second), and, with pyspark installed (the Spark
engine), `pyspark.pandas` (pandera's `external_config` probes for it: a tenth of a second
more, and a warning on stderr that pandas 3 is not fully supported, in every validating
run of every engine). msfeas validates Polars frames only, with `pandera.polars`, which
needs none of them: pandera supports installations without pandas and skips its pandas
API when pandas cannot be imported. So while pandera is imported, and only then, those
modules are hidden as if not installed; a module already imported stays as it is, and
anything imported afterwards (GE with `--quality ge`, the Spark engine) loads normally.

pandera also looks for its pandas backends once, lazily, at the first check it runs
(`pandera.backends.register_checks`, cached); that lookup is made inside the block too, so
that validating a Polars frame never loads pandas (0.23 s of a 20,000-patient run).
"""

from __future__ import annotations

import contextlib
import importlib.abc
import sys

HIDDEN = ("pandas", "numpy", "pyspark.pandas")


class _NotInstalled(importlib.abc.MetaPathFinder):
    """Answers an import of a hidden module as pandera expects of a missing package."""

    def __init__(self, names: tuple[str, ...]):
        self.names = names

    def find_spec(self, name, path=None, target=None):
        if any(name == n or name.startswith(n + ".") for n in self.names):
            raise ModuleNotFoundError(f"No module named '{name}'", name=name)
        return None


@contextlib.contextmanager
def pandera_polars_only():
    """Hide pandas, numpy and pyspark.pandas from imports made inside the block, unless already loaded."""
    names = tuple(n for n in HIDDEN if n not in sys.modules)
    finder = _NotInstalled(names)
    sys.meta_path.insert(0, finder)
    try:
        yield
        _settle_pandera_backend_lookup()
    finally:
        sys.meta_path.remove(finder)


def _settle_pandera_backend_lookup() -> None:
    """Make pandera's cached, lazy lookup of its pandas backend types now (see the module's doc)."""
    try:
        from pandera.backends.register_checks import _load_get_backend_types_from_mro
    except ImportError:  # another pandera version: it may import pandas later, which only costs time
        return
    _load_get_backend_types_from_mro()
