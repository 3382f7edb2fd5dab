"""`msfeas nightly`: the scheduled run, safe to automate because nobody watches it.

    RUNS/
      .lock                 held (flock) while a nightly runs; holds its pid, host and start
      2026-11-23/           one complete run folder per reference date
      2026-11-24/           ... with manifest.json, changes.csv and run.log besides the run's files
      latest -> 2026-11-24  the last successful run
      failed-2026-11-25.log the JSON-line log of a night that stopped (exit 1 or 4)

- Atomic: the run is built in a hidden `.<date>.partial-*` folder and put in place by
  one rename (or an atomic exchange when the day is re-run); `latest` is switched
  after that, also atomically. A kill at any moment leaves `latest` on a complete run.
  A replaced same-day run stays complete under a hidden `.<date>.replaced-*` name (a
  reader inside it keeps reading it) until the next night's sweep.
- Out of sight first: retention renames an old run to a hidden `.deleting-*` name and
  then removes it, so a kill leaves nothing half-deleted under a run's name; the
  next night sweeps every hidden leftover (partial, replaced, deleting, a `latest`
  link not yet renamed).
- SIGTERM is handled like Ctrl-C (the CLI raises `Terminated`): the partial folder is
  removed and the log goes to `failed-<date>.log`, with the exit status (143, 130).
- One at a time: an exclusive `flock` on `.lock`. The kernel drops it when its holder
  dies, however it dies, so a lock left by a killed run is simply taken over (and
  logged); a live one makes the second run exit 3 at once.
- Volume guard: if a table's row count or the patient count fell by more than
  `--max-drop` since the previous run, stop with exit 4 naming the table, before
  anything is evaluated (`--accept-volume-drop` to go on). The check is a
  great-expectations suite (`expectations/volume.json`), computed natively like the
  quality findings (`pipeline.quality.checks`).
- The previous run is the newest complete run dated before this one, so re-running a
  day compares with the same night as the first attempt did, and gives the same files.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import json
import os
import platform
import re
import shutil
import socket
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import polars as pl

from pipeline import __version__
from pipeline.core import files
from pipeline.core.errors import EXIT_LOCKED, EXIT_VOLUME, OutputError, cause, clip, describe
from pipeline.criteria import Trial
from pipeline.inputs.registry import Registry
from pipeline.ops.atomic import DELETING, path_error, point, remove
from pipeline.ops.runlog import RunLog
from pipeline.outputs import tables
from pipeline.quality import stage as quality
from pipeline.run import Hooks, RunOptions, RunResult, run

DATE_DIR = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# The hidden names the nightly itself makes (and only those are ever swept): a run's partial or
# set-aside folder, a replaced run, a run being deleted, the `latest` link before its rename.
LEFTOVER = re.compile(r"^\.(?:\d{4}-\d{2}-\d{2}\.(?P<kind>partial|old|replaced)-.+|deleting-\d{4}-\d{2}-\d{2}-\d+"
                      r"|latest\.tmp-\d+|status\.json\.tmp-\d+)$")
CANDIDATE = ("eligible", "possible")
DEPENDENCIES = ("polars", "duckdb", "pandera", "great-expectations", "pyarrow", "numpy", "pandas", "jinja2")


class LockedError(Exception):
    """Another nightly holds the runs folder (exit 3)."""

    exit_code = EXIT_LOCKED


class VolumeDropError(Exception):
    """The export shrank suspiciously since the previous run (exit 4)."""

    exit_code = EXIT_VOLUME


def holder_text(raw: str) -> str:
    """The lock file's JSON said in words: "pid 123 on host db1, started 2026-11-24T02:00:00+00:00"."""
    if not raw:
        return "holder unknown"
    try:
        h = json.loads(raw)
        return f"pid {int(h['pid'])} on host {h.get('host') or '?'}, started {h.get('started') or '?'}"
    except (ValueError, KeyError, TypeError):
        return f"lock file reads {clip(raw, 80)}"


class RunLock:
    """An exclusive, non-blocking flock on RUNS/.lock, released by the kernel if we die."""

    def __init__(self, runs_dir: Path):
        self.path = runs_dir / ".lock"
        self.fd: int | None = None
        self.stale: str = ""

    def acquire(self) -> None:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise path_error(exc, f"cannot open the lock file {self.path}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip()
            os.close(fd)
            raise LockedError(f"another msfeas nightly is running on {self.path.parent} "
                              f"({holder_text(holder)}); this run stops without touching it") from None
        stale = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip()
        self.stale = holder_text(stale) if stale else ""
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                  "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}).encode(), 0)
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            os.ftruncate(self.fd, 0)  # an empty lock file: nothing stale for the next run
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


def completed_runs(runs_dir: Path) -> list[Path]:
    """Run folders (named by date, with a summary.json), oldest first."""
    if not runs_dir.is_dir():
        return []
    return sorted(p for p in runs_dir.iterdir()
                  if DATE_DIR.match(p.name) and p.is_dir() and not p.is_symlink() and (p / "summary.json").is_file())


def previous_run(runs_dir: Path, as_of: dt.date) -> Path | None:
    earlier = [p for p in completed_runs(runs_dir) if p.name < as_of.isoformat()]
    return earlier[-1] if earlier else None


def volumes(inputs: dict[str, dict]) -> dict[str, int]:
    """What the volume guard compares: rows read per table (0 when absent) and accepted patients."""
    rows = {f"{t}.csv": int(i.get("rows_read", 0)) if i.get("present") else 0 for t, i in inputs.items()}
    return {"patients (accepted)": int(inputs["patients"]["rows_accepted"]), **rows}


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def changes(previous: pl.DataFrame | None, current: pl.DataFrame, criteria: list[str],
            quarantined: pl.Series | None = None) -> pl.DataFrame:
    """Patients whose candidacy changed since the previous run, one row each, by patient_id.

    `change` is `became_candidate`, `no_longer_candidate` (then `failing_criteria` lists
    what fails now; a patient no longer in the export has status empty),
    `eligible_to_possible` or `possible_to_eligible`. Patients `quarantined` at ingest
    tonight are left out: the contract keeps them in no output but the quarantine files
    (summary.json counts them).
    """
    schema = {"patient_id": pl.Utf8, "site_id": pl.Utf8, "change": pl.Utf8, "previous_status": pl.Utf8,
              "status": pl.Utf8, "failing_criteria": pl.Utf8, "unknown_criteria": pl.Utf8}
    if previous is None:
        return pl.DataFrame(schema=schema)
    now = current.select("patient_id", "site_id", "status",
                         tables.criteria_with(criteria, "fail").alias("failing_criteria"),
                         tables.criteria_with(criteria, "unknown").alias("unknown_criteria"))
    before = previous.select("patient_id", pl.col("site_id").alias("previous_site"),
                             pl.col("status").alias("previous_status"))
    if quarantined is not None:
        before = before.filter(~pl.col("patient_id").is_in(quarantined.implode()))
    both = now.join(before, on="patient_id", how="full", coalesce=True)
    was, is_ = pl.col("previous_status").is_in(CANDIDATE).fill_null(False), pl.col("status").is_in(CANDIDATE).fill_null(False)
    change = (pl.when(is_ & ~was).then(pl.lit("became_candidate"))
              .when(was & ~is_).then(pl.lit("no_longer_candidate"))
              .when((pl.col("previous_status") == "eligible") & (pl.col("status") == "possible")).then(pl.lit("eligible_to_possible"))
              .when((pl.col("previous_status") == "possible") & (pl.col("status") == "eligible")).then(pl.lit("possible_to_eligible")))
    return (both.with_columns(change.alias("change"), pl.coalesce("site_id", "previous_site").alias("site_id"))
            .filter(pl.col("change").is_not_null())
            .with_columns(pl.when(pl.col("change") == "no_longer_candidate").then(pl.col("failing_criteria"))
                          .alias("failing_criteria"))
            .select(list(schema)).sort("patient_id"))


@dataclass
class NightlyOptions:
    run: RunOptions
    runs_dir: Path
    keep: int = 30
    max_drop: float = 0.20
    accept_volume_drop: bool = False


class NightlyHooks(Hooks):
    def __init__(self, opts: NightlyOptions, previous: Path | None, started: dt.datetime):
        self.opts, self.previous, self.started = opts, previous, started
        self.prev_summary = json.loads((previous / "summary.json").read_text("utf-8")) if previous else None
        self.registry: Registry | None = None

    def after_ingest(self, registry: Registry, log: RunLog) -> None:
        self.registry = registry
        if self.prev_summary is None:
            log.event("volume", "no previous run to compare with")
            return
        now = volumes({t: i.as_dict() for t, i in registry.inputs.items()})
        before = volumes(self.prev_summary["inputs"])
        drops = quality.check_volume(now, before, self.opts.max_drop)
        if not drops:
            log.event("volume", "volumes within bounds", rows=now)
            return
        what = "; ".join(f"{d['table']}: {d['rows']:,} rows, down {d['drop']:.0%} from {d['previous_rows']:,}"
                         for d in drops)
        msg = (f"volume guard: the export shrank by more than {self.opts.max_drop:.0%} since the run of "
               f"{self.previous.name} ({what})")
        if self.opts.accept_volume_drop:
            log.event("volume", msg + "; accepted (--accept-volume-drop)", level="warning", drops=drops)
            return
        raise VolumeDropError(msg + "; if this is expected, re-run with --accept-volume-drop")

    def add_results(self, folder: Path, summary: dict, evaluation: pl.DataFrame, log: RunLog,
                    trial: Trial | None = None) -> None:
        trial = trial or self.opts.run.trial
        prev = self._previous_evaluation(trial.id)
        quarantined = self.registry.quarantine["patients"]["patient_id"].drop_nulls()
        ch = changes(prev, evaluation, trial.ids, quarantined)
        files.write_csv(ch, folder / "changes.csv")
        counts = dict(ch.group_by("change").len().iter_rows())
        was_candidate = 0 if prev is None else prev.filter(
            pl.col("status").is_in(CANDIDATE) & pl.col("patient_id").is_in(quarantined.implode())).height
        summary["changes"] = {"previous_run": self.previous.name if self.previous else None,
                              **{k: int(counts.get(k, 0)) for k in
                                 ("became_candidate", "no_longer_candidate", "eligible_to_possible",
                                  "possible_to_eligible")},
                              "candidates_quarantined": was_candidate,
                              "previous_counts": self._previous_counts(trial.id)}
        log.event("changes", "since the previous run", **summary["changes"])

    def _previous_counts(self, trial_id: str) -> dict | None:
        """The previous night's population, eligible, possible and ineligible for this trial (the
        report's headline shows the change), or None."""
        if self.previous is None:
            return None
        sub = self.previous / trial_id / "summary.json"
        prev = (json.loads(sub.read_text("utf-8")) if sub.is_file()
                else self.prev_summary if self.prev_summary.get("trial") == trial_id else None)
        if prev is None:
            return None
        return {k: int(prev[k]) for k in ("population", "eligible", "possible", "ineligible") if k in prev}

    def _previous_evaluation(self, trial_id: str) -> pl.DataFrame | None:
        """The previous run's evaluation of this trial: in its sub-folder when that run judged several
        trials, else at its top when it judged this one."""
        if self.previous is None:
            return None
        if (self.previous / trial_id / "evaluation.parquet").is_file():
            return pl.read_parquet(self.previous / trial_id / "evaluation.parquet")
        if self.prev_summary.get("trial") == trial_id and (self.previous / "evaluation.parquet").is_file():
            return pl.read_parquet(self.previous / "evaluation.parquet")
        return None

    def before_publish(self, folder: Path, summary: dict, timings: dict, log: RunLog) -> None:
        o = self.opts.run
        inputs = {}
        for table, inp in (self.registry.inputs.items() if self.registry else []):
            if inp.present and self.registry.source is not None:  # another input format: mapped rows, no file
                inputs[table] = {"source": inp.file, "rows": inp.rows_read}
            elif inp.present:
                path = o.input / inp.file
                inputs[table] = {"file": inp.file, "sha256": sha256(path), "bytes": path.stat().st_size,
                                 "rows": inp.rows_read}
        versions = {"python": platform.python_version(), "msfeas": __version__}
        for dep in DEPENDENCIES:
            try:
                versions[dep] = metadata.version(dep)
            except metadata.PackageNotFoundError:
                versions[dep] = None
        manifest = {
            "msfeas": __version__, "as_of": o.as_of.isoformat(), "engine": o.engine,
            "trial": {"id": o.trial.id, "source": o.trial.source, "sha256": o.trial.sha256},
            "parameters": o.trial.parameters_record(),
            **({"trials": [{"id": t.id, "source": t.source, "sha256": t.sha256, "parameters": t.parameters_record()}
                           for t in o.trials]} if o.several else {}),
            "inputs": inputs,
            "previous_run": self.previous.name if self.previous else None,
            "versions": versions,
            "host": socket.gethostname(),
            "started": self.started.isoformat(timespec="seconds"),
            "ended": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "stages_seconds": {k: round(v, 3) for k, v in timings.items()},
            "exit_status": 0,
        }
        files.write_json(manifest, folder / "manifest.json")


def _sweep(runs_dir: Path, log: RunLog) -> None:
    """Remove the hidden leftovers of earlier runs. Called under the lock, so none is in use by a run.

    Killed runs leave partial folders (or, for a replaced link, a partial *link*), set-aside
    `.old-` folders, half-deleted `.deleting-` folders and `.latest.tmp-<pid>` links; a
    same-day re-run leaves the replaced run as `.replaced-`, kept for its readers until now.
    """
    for p in sorted(runs_dir.iterdir()):
        name = p.name
        m = LEFTOVER.match(name)
        if not m:
            continue
        interrupted = m.group("kind") != "replaced"
        try:
            remove(p)
        except OSError as exc:
            log.event("sweep", f"cannot remove {name}: {exc.strerror}", level="warning")
            continue
        if interrupted:
            log.event("sweep", f"removed {name}, left by an interrupted run", level="warning")
        else:
            log.event("sweep", f"removed {name}, a run replaced by a re-run of its day")


def retain(runs_dir: Path, keep: int, log: RunLog) -> list[str]:
    """Keep the newest `keep` run folders (and always the one `latest` points to).

    Each old run is first renamed out of sight (`.deleting-<name>-<pid>`, atomic), then
    removed: a kill during the removal leaves only a hidden folder, which the next
    night sweeps. A run that cannot be removed is a warning, not a failed night: the
    new run is already published.
    """
    runs = completed_runs(runs_dir)
    latest = (runs_dir / "latest").resolve() if (runs_dir / "latest").is_symlink() else None
    removed = []
    for p in runs[:-keep] if keep > 0 else runs:
        if latest is not None and p.resolve() == latest:
            continue
        hidden = runs_dir / f"{DELETING}{p.name}-{os.getpid()}"
        try:
            os.rename(p, hidden)
        except OSError as exc:
            log.event("retention", f"cannot remove the old run {p.name}: {exc.strerror}", level="warning")
            continue
        removed.append(p.name)
        shutil.rmtree(hidden, ignore_errors=True)
        if hidden.exists():
            log.event("retention", f"{hidden.name} could not be removed completely; the next night tries again",
                      level="warning")
    if removed:
        log.event("retention", f"removed {len(removed)} old runs (keeping {keep})", removed=removed)
    return removed


def _runs_folder(runs_dir: Path) -> None:
    """The runs folder exists (created if need be) and is a folder; else exit 73, before anything."""
    if (runs_dir.exists() or runs_dir.is_symlink()) and not runs_dir.is_dir():
        raise OutputError(f"--runs-dir {runs_dir} is not a folder")
    try:
        runs_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise path_error(exc, f"cannot create --runs-dir {runs_dir}") from None


def _check_latest(runs_dir: Path) -> None:
    """`latest` must be our link (or absent): a real folder or file there is someone's, and a run
    that cannot switch `latest` must not start (it would publish a run nobody is pointed to)."""
    link = runs_dir / "latest"
    if (link.exists() or link.is_symlink()) and not link.is_symlink():
        raise OutputError(f"{link} is a real {'folder' if link.is_dir() else 'file'}, not the link msfeas keeps; "
                          "move it away, then run again")


def nightly(opts: NightlyOptions, log: RunLog) -> RunResult:
    os.umask(0o077)  # patient-level files: owner only (files 0600, folders 0700)
    runs_dir = opts.runs_dir
    _runs_folder(runs_dir)
    lock = RunLock(runs_dir)
    lock.acquire()  # LockedError: exit 3, nothing touched
    started = dt.datetime.now(dt.timezone.utc)
    day = opts.run.as_of.isoformat()
    try:
        log.event("start", f"nightly run for {day}", runs_dir=str(runs_dir), pid=os.getpid(),
                  argv=sys.argv[1:], version=__version__)
        if lock.stale:
            log.event("lock", f"took over a stale lock ({lock.stale})", level="warning")
        _check_latest(runs_dir)
        _sweep(runs_dir, log)
        previous = previous_run(runs_dir, opts.run.as_of)
        opts.run.out = runs_dir / day
        opts.run.force = True  # a re-run of the same day replaces it, atomically
        opts.run.keep_replaced = True  # ... and the replaced run stays readable until the next sweep
        result = run(opts.run, NightlyHooks(opts, previous, started), log)
        point(runs_dir / "latest", day)
        log.event("latest", f"latest -> {day}")
        retain(runs_dir, opts.keep, log)
        log.event("end", "done", exit_status=0)
        return result
    except BaseException as exc:
        code, message = describe(cause(exc))  # the same code and words as the CLI's exit
        failed = runs_dir / f"failed-{day}.log"
        try:
            log.event("end", message, level="error", exit_status=code)
        except OSError:  # run.log on a full disk: the event is kept for the failed log below
            pass
        try:
            log.write_to(failed)
            exc.failed_log = str(failed)
        except OSError:  # an unwritable or full runs folder: the message on stderr is all there is
            pass
        raise
    finally:
        log.detach()
        lock.release()
