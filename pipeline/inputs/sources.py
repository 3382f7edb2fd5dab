"""Which reader an input folder needs: a table of formats, each a (detector, reader) pair.

`detect(path, forced)` gives the format's name: `forced` when it is not "auto", else the first
format whose detector recognises the folder (the CSV contract when none does). Each reader is
`read(folder, dialect, vocabulary, *, today, max_reject, spill, per_shard, **options) -> Registry`;
readers are imported on first use (the validation stack is loaded only when validating).
"""

from __future__ import annotations

from importlib import import_module
from pathlib import Path
from typing import Callable

from pipeline.core.errors import UsageError


def _is_msda(path: Path) -> bool:
    from pipeline.inputs.msda import detect

    return detect(path)


def _is_csv(path: Path) -> bool:
    return True  # the contract is the default: its own reader says what is missing


def _reader(module: str, name: str) -> Callable:
    def read(*args, **kwargs):
        return getattr(import_module(module), name)(*args, **kwargs)
    return read


def _csv_read(folder, dialect, vocabulary, *, site=None, **kwargs):
    """The CSV contract's ingest (its patients.csv carries the site: `site` is not used)."""
    from pipeline.inputs.ingest import ingest

    return ingest(folder, dialect, vocabulary, **kwargs)


# Detected in this order (the CSV contract last: it takes every folder the others do not).
FORMATS: dict[str, tuple[Callable[[Path], bool], Callable]] = {
    "msda": (_is_msda, _reader("pipeline.inputs.msda", "read")),
    "csv": (_is_csv, _csv_read),
}
AUTO = "auto"


def detect(path: Path, forced: str | None = AUTO) -> str:
    """The input format of `path`: `forced` unless it is "auto" (or None), else detected."""
    if forced and forced != AUTO:
        if forced not in FORMATS:
            raise UsageError(f"--input-format must be one of {AUTO}, {', '.join(sorted(FORMATS))}, not {forced!r}")
        return forced
    for name, (detector, _) in FORMATS.items():
        if name != "csv" and detector(path):
            return name
    return "csv"


def read(fmt: str, folder: Path, dialect, vocabulary, **kwargs):
    """The validated registry of `folder`, read by the reader of `fmt`."""
    return FORMATS[fmt][1](folder, dialect, vocabulary, **kwargs)
