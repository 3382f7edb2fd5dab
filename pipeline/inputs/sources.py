"""Which reader an `--input` needs: the CSV contract's export folder, an OMOP CDM, or an MSDA CDS folder.

Table-driven: FORMATS maps a format to (detector, reader). A detector says whether a path or URL
looks like its format; `detect` asks them in order (auto) or takes the forced one, and the CSV
contract takes what no other recognises (its own reader says what is missing). Every reader
gives the same validated `Registry`, so nothing after the ingest knows where the data came from.
Readers are imported on first use: the validation stack loads only when validating.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from pipeline.core.errors import UsageError


def _is_omop(location: str) -> bool:
    from pipeline.inputs.omop.sources import is_omop_folder, is_postgres_url

    if is_postgres_url(location):
        return True
    path = Path(location)
    return path.suffix.lower() == ".duckdb" or (path.is_dir() and is_omop_folder(path))


def is_msda_folder(folder: Path) -> bool:
    """An MSDA CDS folder: `patient.csv` and `disease_history.csv` (any case), and no `patients.csv`.
    (Here, not in pipeline/inputs/msda.py: detecting must not load the validation stack, which a run
    whose export is cached never needs.)"""
    try:
        names = {p.name.lower() for p in folder.iterdir()}
    except OSError:
        return False
    return {"patient.csv", "disease_history.csv"} <= names and "patients.csv" not in names


def _is_msda(location: str) -> bool:
    path = Path(location)
    return path.is_dir() and is_msda_folder(path)


def _is_csv(location: str) -> bool:
    return True


def _read_csv(location: str, dialect, vocab, *, options: dict, as_of, **kw):
    """The CSV contract's ingest (its patients.csv carries the site; nothing of `options` applies)."""
    from pipeline.inputs.ingest import ingest

    return ingest(Path(location), dialect, vocab, **kw)


def _read_msda(location: str, dialect, vocab, *, options: dict, as_of, **kw):
    from pipeline.inputs.msda import read

    return read(Path(location), dialect, vocab, site=options.get("site"), **kw)


def _read_omop(location: str, dialect, vocab, *, options: dict, **kw):
    from pipeline.inputs.omop import read
    from pipeline.inputs.omop.profile import load

    profile = load(Path(options["profile"]) if options.get("profile") else None)
    return read(location, vocab, profile=profile, cdm_schema=options.get("cdm_schema"),
                vocab_schema=options.get("vocab_schema"), **kw)


# Detected in this order; the CSV contract last: it takes every folder the others do not.
FORMATS: dict[str, tuple[Callable[[str], bool], Callable]] = {
    "omop": (_is_omop, _read_omop),
    "msda": (_is_msda, _read_msda),
    "csv": (_is_csv, _read_csv),
}
AUTO = "auto"


def detect(path_or_url: str | Path, forced: str | None = None) -> str:
    """The input format of `path_or_url`: `forced` when given (and not "auto"), else the first detector
    that recognises it (the CSV contract when none does)."""
    if forced and forced != AUTO:
        if forced not in FORMATS:
            raise UsageError(f"--input-format {forced}: not a known format (known: {AUTO}, {', '.join(FORMATS)})")
        return forced
    for name, (recognise, _) in FORMATS.items():
        if recognise(str(path_or_url)):
            return name
    return "csv"


def read(fmt: str, location: str | Path, dialect, vocab, *, today, as_of, max_reject: float, spill, per_shard: int,
         options: dict | None = None):
    """The validated registry of `location` read as `fmt`."""
    return FORMATS[fmt][1](str(location), dialect, vocab, today=today, as_of=as_of, max_reject=max_reject,
                           spill=spill, per_shard=per_shard, options=options or {})
