"""Which reader an `--input` needs: the CSV contract's export folder, or another format.

Table-driven: FORMATS maps a format to (detector, reader). A detector says whether a path or URL
looks like its format; `detect` asks them in order (auto) or takes the forced one. Every reader
gives the same validated `Registry`, so nothing after the ingest knows where the data came from.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from pipeline.core.errors import UsageError


def _is_csv(location: str) -> bool:
    path = Path(location)
    try:
        return path.is_dir() and any(p.name.lower() == "patients.csv" for p in path.iterdir())
    except OSError:
        return False


def _is_omop(location: str) -> bool:
    from pipeline.inputs.omop.sources import is_omop_folder, is_postgres_url

    if is_postgres_url(location):
        return True
    path = Path(location)
    return path.suffix.lower() == ".duckdb" or (path.is_dir() and is_omop_folder(path))


def _read_csv(location: str, dialect, vocab, **kw):
    from pipeline.inputs.ingest import ingest

    kw.pop("as_of", None), kw.pop("options", None)
    return ingest(Path(location), dialect, vocab, **kw)


def _read_omop(location: str, dialect, vocab, *, options: dict | None = None, **kw):
    from pipeline.inputs.omop import read
    from pipeline.inputs.omop.profile import load

    options = options or {}
    profile = load(Path(options["profile"]) if options.get("profile") else None)
    return read(location, vocab, profile=profile, cdm_schema=options.get("cdm_schema"),
                vocab_schema=options.get("vocab_schema"), **kw)


FORMATS: dict[str, tuple[Callable[[str], bool], Callable]] = {
    "csv": (_is_csv, _read_csv),
    "omop": (_is_omop, _read_omop),
}
DEFAULT = "csv"  # nothing recognised: the CSV ingest says what is missing


def detect(path_or_url: str | Path, forced: str | None = None) -> str:
    """The input format of `path_or_url`: `forced` when given (and not "auto"), else the first detector
    that recognises it, else the CSV contract."""
    if forced and forced != "auto":
        if forced not in FORMATS:
            raise UsageError(f"--input-format {forced}: not a known format (known: auto, {', '.join(FORMATS)})")
        return forced
    for name, (recognise, _) in FORMATS.items():
        if recognise(str(path_or_url)):
            return name
    return DEFAULT


def read(fmt: str, location: str | Path, dialect, vocab, **kw):
    """The validated registry of `location` read as `fmt`."""
    return FORMATS[fmt][1](str(location), dialect, vocab, **kw)
