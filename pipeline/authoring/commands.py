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
