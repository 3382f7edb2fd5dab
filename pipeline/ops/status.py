"""RUNS/status.json: what a monitor reads after every nightly, whatever its outcome.

    {"date": "2026-11-24", "exit_code": 0, "message": "done", "started": "...", "finished": "...",
     "seconds": 41.2, "counts": {"NCT04203017": {"population": 2000, "eligible": 87, ...}},
     "last_success": {"date": "2026-11-24", "finished": "..."}, "consecutive_failures": 0,
     "failed_log": null}

Written atomically (a temporary file in the same folder, fsync, one rename) on success, on
every failure, and on an interrupt during start-up, so a reader never sees half a file.
`last_success` and `consecutive_failures` carry over from the previous status. Nothing here
imports more than the standard library: it must work when start-up itself was interrupted.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

NAME = "status.json"


def _read(path: Path) -> dict:
    try:
        data = json.loads(path.read_text("utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def counts(summary: dict) -> dict[str, dict[str, int]]:
    """Per trial: population, eligible, possible, ineligible (one trial or several)."""
    keys = ("population", "eligible", "possible", "ineligible")
    if "overview" in summary:
        return {r["trial"]: {k: int(r[k]) for k in keys} for r in summary["overview"]}
    return {summary["trial"]: {k: int(summary[k]) for k in keys}}


def write(runs_dir: Path, *, date: str, exit_code: int, message: str, started: dt.datetime,
          counts: dict | None = None, failed_log: str | None = None) -> Path:
    """Record this night's outcome in RUNS/status.json; returns its path. Raises OSError."""
    path = runs_dir / NAME
    before = _read(path)
    finished = dt.datetime.now(dt.timezone.utc)
    ok = exit_code == 0
    status = {
        "date": date, "exit_code": exit_code, "ok": ok, "message": message,
        "started": started.isoformat(timespec="seconds"), "finished": finished.isoformat(timespec="seconds"),
        "seconds": round((finished - started).total_seconds(), 1),
        "counts": counts or {},
        "last_success": ({"date": date, "finished": finished.isoformat(timespec="seconds")} if ok
                         else before.get("last_success")),
        "consecutive_failures": 0 if ok else int(before.get("consecutive_failures") or 0) + 1,
        "failed_log": failed_log,
    }
    tmp = runs_dir / f".{NAME}.tmp-{os.getpid()}"
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(json.dumps(status, indent=1) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path
