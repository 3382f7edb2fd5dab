"""One run: ingest, validate, evaluate, check quality, write, into a folder that appears only when complete.

The folder is built beside its final place under a hidden temporary name from the
start (so a kill leaves only a `.<name>.partial-*` folder, which nothing takes for a
result) and put in place by `atomic.publish` at the end. `msfeas nightly` adds its
steps through `Hooks` (the volume guard after ingest, changes and manifest before
publishing) rather than a second copy of this sequence.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from pipeline import __version__
from pipeline.authoring.check import zero_matches
from pipeline.core import files
from pipeline.core.dialect import load_dialect
from pipeline.core.errors import SIGNALLED, FatalInputError, OutputError, UsageError, cap
from pipeline.core.vocabulary import load_vocabulary
from pipeline.criteria import Trial
from pipeline.engines import evaluate, sql_cache
from pipeline.engines.settings import JudgeSettings
from pipeline.inputs import sources
from pipeline.inputs.registry import Registry
from pipeline.inputs.settings import InputSettings
from pipeline.inputs.shards import PATIENTS_PER_SHARD
from pipeline.ops import export_cache as cache
from pipeline.ops import results_cache
from pipeline.ops.atomic import own_partials, partial_dir, publish, sweep_dead_partials
from pipeline.ops.runlog import RunLog
from pipeline.outputs import disclosure, expected, overview, report, tables, workbench
from pipeline.outputs.settings import OutputSettings, Rerun
from pipeline.quality import stage as quality
from pipeline.recruitment import stage as recruitment


@dataclass
class RunOptions:
    input: Path
    out: Path
    as_of: dt.date
    trial: Trial | None = None  # the trial of a one-trial run (the first of `trials`)
    engine: str = "polars"
    dialect_overrides: dict = field(default_factory=dict)
    drug_lines: str | None = None
    max_reject: float = 0.05
    min_cell: int = 5
    force: bool = False
    shareable: bool = False  # report.html for outside the registry: counts only in the workbench, suppressed
    today: dt.date = field(default_factory=dt.date.today)
    keep_replaced: bool = False  # the nightly: a replaced run stays readable (hidden) until the next sweep
    trials: list[Trial] = field(default_factory=list)  # several: one sub-folder each, plus an overview
    cache_dir: Path | None = None  # validated exports and quality findings for re-runs (pipeline.ops.export_cache)
    history: recruitment.HistoryOptions | None = None  # --history: past dates, projection (pipeline/recruitment/stage.py)
    spark_master: str = "local[*]"  # --engine spark: where Spark runs (--spark-master)
    spark_conf: dict[str, str] = field(default_factory=dict)  # --spark-conf key=value settings
    quality: str = "native"  # --quality: the suites as native aggregates, or run by great-expectations
    # --shard-patients: above this, judged in patient shards on disk (pipeline/inputs/shards.py). None: the
    # default, except that --history, which needs the whole export in memory, then judges it whole.
    shard_patients: int | None = None
    # --input as given (a URL is not a Path), --input-format, --site, --cdm-schema, --vocab-schema,
    # --omop-profile (pipeline/inputs/sources.py)
    source_options: dict = field(default_factory=dict)

    def __post_init__(self):
        if not self.trials:
            self.trials = [self.trial]
        self.trial = self.trials[0]

    @property
    def per_shard(self) -> int | None:
        """Accepted patients above which the export is sharded; None: never."""
        if self.shard_patients is None and self.history is not None:
            return None
        return self.shard_patients or PATIENTS_PER_SHARD

    @property
    def several(self) -> bool:
        return len(self.trials) > 1

    # Each stage gets the settings it needs, not this bag: built once here, passed down.
    @property
    def inputs(self) -> InputSettings:
        return InputSettings(source=self.input, today=self.today, dialect_overrides=self.dialect_overrides,
                             drug_lines=self.drug_lines, max_reject=self.max_reject, per_shard=self.per_shard,
                             source_options=self.source_options)

    @property
    def judge(self) -> JudgeSettings:
        return JudgeSettings(as_of=self.as_of, engine=self.engine, spark_master=self.spark_master,
                             spark_conf=self.spark_conf)

    @property
    def output(self) -> OutputSettings:
        return OutputSettings(out=self.out, min_cell=self.min_cell, shareable=self.shareable, force=self.force,
                              keep_replaced=self.keep_replaced)

    @property
    def rerun(self) -> Rerun:
        return Rerun(input=self.source_options.get("location") or self.input, as_of=self.as_of, engine=self.engine,
                     dialect_overrides=self.dialect_overrides, drug_lines=self.drug_lines, max_reject=self.max_reject,
                     min_cell=self.min_cell, shareable=self.shareable, spark_master=self.spark_master,
                     source_options=self.source_options)


@dataclass
class RunResult:
    out: Path
    summary: dict  # the run's summary.json (with several trials: the overview's)
    attrition: pl.DataFrame  # of the first trial
    timings: dict[str, float]
    trials: dict[str, tuple[dict, pl.DataFrame]] = field(default_factory=dict)  # id -> (summary, attrition)


class Hooks:
    """Extension points of a run (used by `msfeas nightly`); the default does nothing."""

    def after_ingest(self, registry: Registry, log: RunLog) -> None:
        """May raise to stop the run before anything is evaluated (the volume guard)."""

    def add_results(self, folder: Path, summary: dict, evaluation: pl.DataFrame, log: RunLog,
                    trial: Trial | None = None) -> None:
        """Add result files and summary entries before the report is drawn (changes.csv)."""

    def before_publish(self, folder: Path, summary: dict, timings: dict, log: RunLog) -> None:
        """Add the last files to the finished folder (manifest.json) before it is put in place."""


# What every run folder holds (a run folder appears only when complete): `--force` replaces
# only a folder that has them, never a folder of other files.
RUN_FOLDER_FILES = ("summary.json", "evaluation.parquet")
SHARDS = ".shards"  # inside the unfinished run folder: a large export's tables (pipeline/inputs/shards.py)


def looks_like_run(folder: Path) -> bool:
    """A one-trial run folder (summary.json, evaluation.parquet) or a several-trial one (summary.json,
    overview.csv): before issue 32, `make run` (--trial all --force) refused its own folder the second time."""
    return all((folder / name).is_file() for name in RUN_FOLDER_FILES) or all(
        (folder / name).is_file() for name in ("summary.json", "overview.csv"))


def _check_out(out: Path, force: bool) -> None:
    """Refuse an --out that is in the way: not a folder (73), not empty without --force, or not a
    run folder even with --force (2). An empty folder is simply used."""
    if not out.exists() and not out.is_symlink():
        return
    if not out.is_dir():
        kind = "a broken symbolic link" if out.is_symlink() and not out.exists() else "not a folder"
        raise OutputError(f"{out} exists and is {kind}")
    try:
        empty = not any(out.iterdir())
    except OSError as exc:
        raise OutputError(f"{out} cannot be read: {exc.strerror}") from None
    if empty:
        return
    if not force:
        raise UsageError(f"--out {out} exists and is not empty; pass --force to replace it")
    if not looks_like_run(out):
        raise UsageError(f"{out} is not a run folder (it lacks {' or '.join(RUN_FOLDER_FILES)}): msfeas "
                         "replaces only a run folder, even with --force; choose another --out, or empty it yourself")


def _warnings(opts: RunOptions) -> list[str]:
    """What a reader of this run must know about how it was asked for."""
    out = list(dict.fromkeys(n for t in opts.trials for n in t.notes))  # --set values between a scale's steps
    if opts.as_of > opts.today:
        out.append(f"--as-of {opts.as_of} is after today ({opts.today}): no data after today exist, so the "
                   "criteria are judged on today's data as if nothing happened until then")
    return out


class _Stage:
    """Times a stage into `timings` and logs its end."""

    def __init__(self, name: str, timings: dict, log: RunLog):
        self.name, self.timings, self.log = name, timings, log

    def __enter__(self):
        self.t = time.perf_counter()
        self.log.event(self.name, "started")
        return self

    def __exit__(self, *exc):
        # Added up: with several trials a stage runs once per trial.
        self.timings[self.name] = self.timings.get(self.name, 0.0) + time.perf_counter() - self.t
        if exc[0] is None:
            self.log.event(self.name, "done", seconds=round(self.timings[self.name], 3))


def run(opts: RunOptions, hooks: Hooks | None = None, log: RunLog | None = None) -> RunResult:
    hooks = hooks or Hooks()
    inp, judge, output = opts.inputs, opts.judge, opts.output
    own_log = log is None
    log = log or RunLog()
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    _check_out(output.out, output.force)
    for name in sweep_dead_partials(output.out):
        log.event("sweep", f"removed {name}, left by an interrupted run", level="warning")
    tmp: Path | None = None
    registry = None
    try:
        tmp = partial_dir(output.out)  # inside the try: an interrupt right after it still removes it
        log.attach(tmp / "run.log")
        # Compiled report templates and criterion queries kept beside the validated exports (dot
        # folders: the eviction of old exports passes over them); --no-cache keeps nothing.
        report.cache_templates(opts.cache_dir / ".templates" if opts.cache_dir is not None else None)
        sql_cache.use(opts.cache_dir / ".sql" if opts.cache_dir is not None else None)
        warnings = _warnings(opts)
        for w in warnings:
            log.event("start", w, level="warning")
        with _Stage("ingest_validate", timings, log):
            # --input as given (a URL is not a path) and the reader it needs (pipeline/inputs/sources.py)
            location = inp.source_options.get("location") or inp.source
            fmt = sources.detect(location, inp.source_options.get("format"))
            if fmt != "csv" and judge.engine == "spark":
                raise UsageError(f"--engine spark reads the CSV contract's export folder only, and {location} is "
                                 f"read as {fmt}: use --engine polars or duckdb")
            dialect = load_dialect(inp.source, inp.dialect_overrides) if inp.source.is_dir() else None
            vocab = load_vocabulary(inp.drug_lines)
            # An OMOP source may be a database: its bytes are not a folder's, so it is read afresh each run.
            key = (cache.export_key(inp.source, dialect, vocab, inp.today, inp.max_reject)
                   if opts.cache_dir is not None and dialect is not None and judge.engine != "spark"
                   and fmt != "omop" else None)
            if key and fmt != "csv":  # the same bytes read as another format, or for another site: another export
                key = hashlib.sha256(f"{key}\0{fmt}\0{inp.source_options.get('site')}".encode()).hexdigest()
            registry = cache.load(opts.cache_dir, key, sharded=inp.per_shard is not None) if key else None
            if judge.engine == "spark":
                registry = _spark_ingest(inp, judge, dialect, vocab, log)
            elif registry is not None:
                log.event("ingest_validate", f"the validated export read from the cache {opts.cache_dir}")
            else:
                # A large export is kept in shards inside the unfinished run folder (removed before it is
                # published, or moved into the cache). The reader (and the validation stack) is loaded only now.
                registry = sources.read(fmt, location, dialect, vocab, today=inp.today, as_of=judge.as_of,
                                        max_reject=inp.max_reject, spill=tmp / SHARDS if inp.per_shard else None,
                                        per_shard=inp.per_shard or 0, options=inp.source_options)
                if key:
                    cache.store(opts.cache_dir, key, registry)
            if registry.shards is not None:
                log.event("ingest_validate", f"{registry.inputs['patients'].rows_accepted:,} patients: judged in "
                          f"{registry.n_shards} shards of about {registry.shard_sizes[0]:,} patients")
                if opts.history is not None:
                    raise UsageError(f"--history needs the whole export in memory, and --shard-patients "
                                     f"{opts.shard_patients:,} cuts this one into {registry.n_shards} shards: leave "
                                     f"--shard-patients out, or raise it above its "
                                     f"{registry.inputs['patients'].rows_accepted:,} patients")

        # Quarantined rows and quality findings are facts of every export, not alarms: info, so
        # that a normal night stays quiet under cron.
        log.event("ingest_validate", "inputs", tables={t: i.as_dict() for t, i in registry.inputs.items()})
        if registry.source:  # another input format: what it read, its own accounting and warnings
            for w in registry.source.get("warnings", []):
                log.event("ingest_validate", w, level="warning")
            log.event("ingest_validate", f"read as {fmt}", source=registry.source)
        timings["read"] = registry.read_seconds
        timings["validate"] = timings["ingest_validate"] - registry.read_seconds
        early = registry.as_of_warning(judge.as_of) if hasattr(registry, "as_of_warning") else None
        if early:  # issue 32: a date before the data counted everyone, silently
            warnings.append(early)
            log.event("ingest_validate", early, level="warning")
        hooks.after_ingest(registry, log)

        per_trial: dict[str, tuple[dict, pl.DataFrame, pl.DataFrame]] = {}
        for trial in opts.trials:
            folder = tmp / trial.id if opts.several else tmp
            folder.mkdir(exist_ok=True)
            per_trial[trial.id] = _judge(opts, trial, registry, vocab, folder, warnings, hooks, log, timings, key)
        if opts.several:
            with _Stage("overview", timings, log):
                summary = overview.write(tmp, opts.trials, judge, output, registry, {t: v[0] for t, v in per_trial.items()},
                                         {t: v[1] for t, v in per_trial.items()},
                                         {t: v[2] for t, v in per_trial.items()}, warnings)
        else:
            summary = per_trial[opts.trial.id][0]
        timings["total"] = time.perf_counter() - t0
        summary["timings_seconds"] = {k: round(v, 3) for k, v in timings.items()}
        for trial_id, (trial_summary, _, _) in per_trial.items():
            if opts.several:
                trial_summary["timings_seconds"] = summary["timings_seconds"]
                files.write_json(trial_summary, tmp / trial_id / "summary.json")
        files.write_json(summary, tmp / "summary.json")
        shutil.rmtree(tmp / SHARDS, ignore_errors=True)  # the shards of an uncached large export
        hooks.before_publish(tmp, summary, timings, log)
        if SIGNALLED:  # stopped from another thread (a signal during a Spark call, a stalled cluster)
            raise SIGNALLED[0]
        publish(tmp, output.out, keep_replaced=output.keep_replaced)
        # The log file stays open across the rename: later events (retention) still reach it.
        log.event("publish", f"run folder {output.out}", seconds=round(timings["total"], 3))
        if own_log:
            log.detach()
    except BaseException:
        log.detach()
        # A signal may land after mkdtemp made the folder but before `tmp` held its name: ours by pid.
        for folder in [tmp] if tmp is not None else own_partials(output.out):
            shutil.rmtree(folder, ignore_errors=True)
        raise
    finally:
        if registry is not None and judge.engine == "spark":  # the tables Spark cached for this run
            from pipeline.engines.spark.ingest import release

            release(registry)
    first = per_trial[opts.trial.id]
    return RunResult(output.out, summary, first[1], timings, {t: (v[0], v[1]) for t, v in per_trial.items()})


def _export_bytes(folder: Path) -> int:
    """The size of the export's table files, as the Spark ingest finds them (0 when it cannot: the
    ingest then stops with its own clear message)."""
    from pipeline.engines.spark.ingest import INPUT_SUFFIXES
    from pipeline.inputs.ingest import find_files

    try:
        return sum(f.stat().st_size for f in find_files(folder, INPUT_SUFFIXES).values())
    except (FatalInputError, OSError):
        return 0


def _spark_ingest(inp: InputSettings, judge: JudgeSettings, dialect, vocab, log: RunLog):
    """The export read and validated inside Spark (pipeline/engines/spark/ingest.py); its tables stay there.

    The validated-export cache holds Polars tables, so a Spark run neither reads nor fills it.
    Quarantined rows are an output (at most --max-reject of each table): they come to the
    driver here, in line order, for the writers and the report.
    """
    from pipeline.engines.spark import watch
    from pipeline.engines.spark.frames import to_polars
    from pipeline.engines.spark.ingest import ingest as spark_ingest
    from pipeline.engines.spark.session import get_session, size_partitions

    spark = get_session(judge.spark_master, judge.spark_conf)
    watch.attach(log)  # Spark's warnings that explain a stall, into run.log
    parts = size_partitions(spark, _export_bytes(Path(inp.source)), judge.spark_conf)
    log.event("ingest_validate", f"Spark {spark.version} at {judge.spark_master}"
              + (f", {parts} shuffle partitions for the export's size" if parts else ""))
    registry = spark_ingest(spark, inp.source, dialect, vocab, today=inp.today, max_reject=inp.max_reject)
    registry.quarantine = {t: to_polars(q.orderBy("_line")) for t, q in registry.quarantine.items()}
    return registry


def _sharded_checks(opts: RunOptions, trial: Trial, registry: Registry, key: str | None):
    """For a sharded export whose quality findings are not cached: the native checks, to be gathered
    on each shard while the criteria are judged on it (quality.ShardedChecks), else None."""
    if registry.shards is None or opts.quality != "native":
        return None
    try:
        if key and cache.has_quality(opts.cache_dir, key, quality.settings(trial, opts.as_of, opts.quality)):
            return None
    except Exception:  # noqa: BLE001 - the quality stage reports its own failures
        return None
    return quality.ShardedChecks(registry, trial, opts.as_of)


def _judge(opts: RunOptions, trial: Trial, registry: Registry, vocab, folder: Path, warnings: list[str],
           hooks: Hooks, log: RunLog, timings: dict, key: str | None) -> tuple[dict, pl.DataFrame, pl.DataFrame]:
    """One trial on the validated export: evaluate, check quality, write its files into `folder`.

    Returns its summary (timings filled in by the caller), attrition and evaluation. With several
    trials each gets its own folder with exactly the files a one-trial run writes.
    """
    checks = _sharded_checks(opts, trial, registry, key)
    results = results_cache.for_run(opts.cache_dir, key, opts.engine, opts.as_of)
    with _Stage("evaluate", timings, log):
        known = results.load(trial.criteria) if results is not None else None
        evaluation = evaluate(registry, trial, opts.as_of, opts.engine, each_shard=checks and checks.add, known=known)
        known = known if known is not None and known.patients.equals(evaluation["patient_id"]) else None
        if known is not None:
            log.event("evaluate", f"{len(known.results)} of {len(trial.criteria)} criteria as an earlier run on this "
                      f"export judged them (from the cache {opts.cache_dir})")
        attr = tables.attrition(evaluation, trial)
        cands = tables.candidates(evaluation, trial)
    summary = {
        "trial": trial.id, "as_of": opts.as_of.isoformat(), "engine": opts.engine, "version": __version__,
        "planned_enrolment": trial.planned_enrolment,
        **tables.counts(evaluation), "by_site": tables.by_site(evaluation),
        "parameters": trial.parameters_record(),
        "inputs": {t: i.as_dict() for t, i in registry.inputs.items()},
        **({"source": registry.source} if registry.source else {}),
        "absent_tables": registry.absent,
        "dialect": vars(registry.dialect) if registry.dialect else None,
        "drug_lines": vocab.source,
        "quality": None,
        "warnings": warnings,
        "timings_seconds": None,  # filled in at the end; the only engine- and machine-dependent field
    }
    summary["expected_eligible"] = expected.estimate(evaluation, trial.ids)  # issue 29: possible patients' chances
    log.event("evaluate", "counts", trial=trial.id, **{k: summary[k] for k in ("population", *tables.STATUSES)})
    summary["data_warnings"] = zero_matches(trial, registry)  # values a filter names that match no row
    for w in summary["data_warnings"]:
        log.event("evaluate", w, level="warning", trial=trial.id)

    with _Stage("quality", timings, log):
        try:
            settings = quality.settings(trial, opts.as_of, opts.quality)
            found = cache.load_quality(opts.cache_dir, key, settings, folder / "quality") if key else None
            if found is None:
                found = quality.run_quality(registry, trial, opts.as_of, folder / "quality", opts.quality, checks)
                seconds = found.pop("seconds")  # timings live in timings_seconds only
                timings["quality_frames"] = seconds["frames"]
                if key:
                    cache.store_quality(opts.cache_dir, key, settings, found, folder / "quality")
            summary["quality"] = found
            log.event("quality", f"{summary['quality']['n_findings']} findings")
        except OSError:  # writing its results failed (a full disk): an error of the run
            raise
        except Exception as exc:  # noqa: BLE001 - quality findings never stop a run, nor does their failure
            summary["quality"] = {"error": cap(f"the quality stage failed: {type(exc).__name__}: {exc}", 300),
                                  "n_findings": 0, "findings": []}
            log.event("quality", summary["quality"]["error"], level="warning")
    if checks is not None:  # the checks' share of the shards' pass is the quality stage's time
        timings["evaluate"] -= checks.seconds
        timings["quality"] += checks.seconds

    with _Stage("write", timings, log):
        files.write_csv(cands, folder / "candidates.csv")
        files.write_csv(attr, folder / "attrition.csv")
        qdir = folder / "quarantine"
        qdir.mkdir()
        for table, frame in registry.quarantine.items():
            files.write_csv(frame, qdir / f"{table}.csv")
        disclosure.write(summary, folder, opts.min_cell)
        hooks.add_results(folder, summary, evaluation, log, trial)
    # The evaluation's two copies (its Parquet file, the criteria's results for a re-run) are written
    # by a thread while the report is built: polars writes without holding the interpreter, and the
    # report is mostly Python (half a second at a million patients). Waited for before returning.
    behind = _Behind()
    behind.start(lambda: (results is not None and results.store(evaluation, trial.criteria, known, registry.absent),
                          files.write_parquet(evaluation, folder / "evaluation.parquet")))
    try:
        _history_and_report(opts, trial, registry, folder, log, timings, summary, evaluation, attr, cands,
                            results.parts(registry.absent, evaluation.height) if results is not None else None)
    except BaseException:
        behind.thread.join()  # the run's own error is the one reported
        raise
    t_wait = time.perf_counter()
    behind.wait()
    timings["write"] += time.perf_counter() - t_wait
    return summary, attr, evaluation


class _Behind:
    """One piece of work done by a thread; `wait` gives back its exception, if any."""

    def start(self, work) -> None:
        import threading

        self.error: BaseException | None = None

        def run():
            try:
                work()
            except BaseException as exc:  # noqa: BLE001 - handed to `wait`
                self.error = exc
        self.thread = threading.Thread(target=run, name="msfeas-write", daemon=True)
        self.thread.start()

    def wait(self) -> None:
        self.thread.join()
        if self.error is not None:
            raise self.error


def _history_and_report(opts: RunOptions, trial: Trial, registry: Registry, folder: Path, log: RunLog,
                        timings: dict, summary: dict, evaluation: pl.DataFrame, attr: pl.DataFrame,
                        cands: pl.DataFrame, kept: results_cache.Parts | None) -> None:
    section = None
    if opts.history is not None:  # --history: the trial at past dates, the projection and its back-test
        with _Stage("history", timings, log):
            section = recruitment.run(registry, trial, opts.as_of, opts.engine, evaluation, opts.history, folder,
                                      summary)
            log.event("history", "recruitment", trial=trial.id, new_candidates=summary["history"]["new_candidates"],
                      backtest_coverage_80=summary["projection"]["backtest"]["coverage_80"])

    with _Stage("report", timings, log):
        bench = workbench.build(evaluation, trial, registry.tables, registry.absent, opts.as_of, opts.rerun,
                                opts.shareable, opts.min_cell,
                                parts=registry.parts if registry.shards is not None else None, kept=kept)
        for note in bench["notes"]:
            log.event("report", f"workbench: {note}", level="warning")
        report.write(folder / "report.html", summary, evaluation, attr, trial, registry.quarantine, cands,
                     history=section, workbench=bench)

