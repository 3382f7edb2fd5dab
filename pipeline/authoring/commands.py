"""The `msfeas trial ...` commands: each prints its result and returns an exit code."""

from __future__ import annotations

import datetime as dt
import sys
from importlib import resources

from pipeline.core.errors import EXIT_OK, UsageError, suggest


def show(trial_id: str) -> int:
    """Print a bundled trial file as it is, to start a trial of one's own from it."""
    from pipeline.criteria import bundled_trials

    name = trial_id.lower()
    if name not in bundled_trials():
        raise UsageError(f"trial show {trial_id!r}: no bundled trial of that id; "
                         f"{suggest(name, bundled_trials(), label='bundled')}")
    sys.stdout.write(resources.files("pipeline.trials").joinpath(f"{name}.toml").read_text("utf-8"))
    return EXIT_OK


def check(file: str, export, as_of: dt.date | None, today: dt.date) -> int:
    from pipeline.authoring.check import check as run_check
    from pipeline.authoring.check import render

    print(render(run_check(file, export, as_of, today)))
    return EXIT_OK


def _write(text: str, out, what: str) -> None:
    if out is None:
        sys.stdout.write(text)
        return
    from pipeline.core.errors import OutputError

    try:
        out.write_text(text, "utf-8")
    except OSError as exc:
        raise OutputError(f"cannot write the {what} {out}: {exc.strerror}") from None
    print(f"wrote {out}", file=sys.stderr)


def import_record(record, out) -> int:
    """A ClinicalTrials.gov record to a trial file; the warnings on stderr."""
    from pipeline.authoring.ctgov import import_record as run_import
    from pipeline.core.errors import cap

    if out is not None and out.exists():
        raise UsageError(f"trial import --out {out}: the file exists; remove it or choose another name")
    result = run_import(record)
    for w in result.warnings:
        print(f"msfeas: warning: {cap(w)}", file=sys.stderr)
    _write(result.text, out, "trial file")
    return EXIT_OK


def schema(out) -> int:
    from pipeline.authoring.schema import schema_text

    _write(schema_text(), out, "schema")
    return EXIT_OK
