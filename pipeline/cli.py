"""The command line: a thin layer over `pipeline.run` that maps errors to exit codes.

Exit codes (`pipeline.core.errors.EXIT_CODES`, also in `msfeas --help` and the README): 0
done; 1 the input could not be used (named file, line, column, rule); 2 wrong usage;
3 (nightly) another nightly holds the runs folder; 4 (nightly) the export shrank
suspiciously since the previous run; 73 the output cannot be written where asked; 74
writing failed (disk full, file size limit); 69 the Spark cluster ran no executor for the
run within its bounded wait; 130 SIGINT; 143 SIGTERM; 70 an internal
error, kept for bugs. No traceback reaches the user for bad input or a faulty
environment, and every message is one bounded line (`errors.describe`).
"""

from __future__ import annotations

import argparse
import atexit
import csv
import datetime as dt
import os
import signal
import sys
from pathlib import Path

from pipeline import __version__
from pipeline.core.errors import (
    EXIT_CODES,
    EXIT_INPUT,
    EXIT_INTERRUPTED,
    EXIT_LOCKED,
    EXIT_OK,
    EXIT_SOFTWARE,
    EXIT_TERMINATED,
    EXIT_USAGE,
    EXIT_VOLUME,
    SIGNALLED,
    Terminated,
    UsageError,
    cap,
    cause,
    clip,
    describe,
)

EXAMPLES = """examples:
  msfeas run --input data_samples/default --out runs/today
  msfeas run --input data_samples/regional --out runs/what-if --as-of 2026-01-31 \\
             --engine duckdb --set edss_range.max_edss=7.0
  msfeas run --input export/ --out runs/x --delimiter ';' --decimal , --date-format %d.%m.%Y --encoding cp1251
  msfeas nightly --input /srv/registry/export --runs-dir /srv/msfeas/runs --keep 30
  msfeas trial import NCT04410978.json --out mytrial.toml   (then: msfeas trial check mytrial.toml --input export/)
"""

EXIT_HELP = "exit codes:\n" + "".join(f"  {code:>3}  {text}\n" for code, text in EXIT_CODES.items())


class Parser(argparse.ArgumentParser):
    def error(self, message):  # usage errors exit 2 with one clear line
        # The usage's first line only: the full list of options (eight lines and growing) is --help's.
        lines = self.format_usage().strip().splitlines()
        more = f" ... ({self.prog} --help lists every option)" if len(lines) > 1 else ""
        print(lines[0] + more, file=sys.stderr)
        print(f"msfeas: error: {cap(message)}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{clip(text)} is not a date YYYY-MM-DD") from None


def _percent(text: str) -> float:
    """--max-reject and --max-drop as a percentage: `5`, `5%` or `0.5%`. (Not `_share` below, a probability
    0.3 or 30 %: its name once shadowed this one, and `--max-drop 50` was refused as "above 1".)"""
    try:
        value = float(text.rstrip("%")) / 100
    except ValueError:
        raise argparse.ArgumentTypeError(f"{clip(text)} is not a percentage") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{clip(text)} must be between 0 and 100 %")
    return value


def _min_cell(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{clip(text)} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{clip(text)} must be at least 1 (1: no suppression)")
    return value


NIGHTLY_HELP = """files: RUNS/<as-of>/ (run folder + manifest.json, changes.csv, run.log), RUNS/latest,
  RUNS/failed-<as-of>.log when a night stops, RUNS/status.json after every night (exit code,
  counts per trial, last success, consecutive failures: for a monitor). Quiet on success. Read a run through RUNS/latest resolved once
  (cd "$(readlink -f RUNS/latest)"; see the README).

""" + EXIT_HELP


def _common(p: argparse.ArgumentParser) -> None:
    """The options `run` and `nightly` share."""
    p.add_argument("--as-of", type=_date, default=None, help="reference date D, YYYY-MM-DD (default: today)")
    p.add_argument("--trial", dest="trials", action="append", default=None, metavar="ID_OR_FILE",
                   help="bundled trial id or trial file (default: nct04203017); give it several times, or "
                        "`all` for every bundled trial, to judge several trials on one reading of the export")
    p.add_argument("--engine", choices=["polars", "duckdb", "spark"], default="polars",
                   help="polars or duckdb on this machine; spark: read, validate and judge inside Apache Spark")
    p.add_argument("--spark-master", default="local[*]", metavar="URL",
                   help="with --engine spark: the Spark master (default local[*]; e.g. spark://host:7077, yarn)")
    p.add_argument("--spark-conf", dest="spark_conf", action="append", default=[], metavar="KEY=VALUE",
                   help="with --engine spark: a Spark setting, e.g. spark.executor.memory=8g (repeatable)")
    p.add_argument("--quality", choices=["native", "ge"], default="native",
                   help="how the data-quality suites run: native (aggregate queries of the engine, the default) "
                        "or ge (great-expectations itself, the reference; slower by its import and pandas frames)")
    p.add_argument("--shard-patients", type=_whole(1, 10**9), default=None, metavar="N",
                   help="above N accepted patients, keep the export on disk in patient shards and judge one "
                        "shard at a time, so that memory stays that of about N patients (default 250,000: "
                        "pipeline/inputs/shards.py; polars and duckdb engines)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="CRITERION.PARAM=VALUE",
                   help="override a criterion parameter for this run (repeatable)")
    p.add_argument("--input-format", choices=["auto", "csv", "omop", "msda"], default="auto",
                   help="what --input is: csv (the registry export contract), omop (an OMOP CDM 5.4: a folder of "
                        "tables, a .duckdb file or a postgresql:// URL; docs/omop.md), msda (the MS Data Alliance "
                        "Core Dataset: docs/msda.md) or auto (default: detected from the file names)")
    p.add_argument("--site", default=None, metavar="NAME",
                   help="with an MSDA Core Dataset: the site of every patient (default: the folder's name)")
    p.add_argument("--delimiter", help="field delimiter: ',' ';' or '\\t' (overrides export.toml)")
    p.add_argument("--decimal", help="decimal mark: '.' or ','")
    p.add_argument("--date-format", help="strftime pattern of dates, e.g. %%d.%%m.%%Y")
    p.add_argument("--encoding", help="file encoding, e.g. utf-8, cp1251")
    p.add_argument("--drug-lines", help="replacement drug vocabulary / line-of-therapy file (TOML)")
    p.add_argument("--cdm-schema", metavar="NAME", help="OMOP: the schema of the CDM tables (default: main in DuckDB, "
                   "cdm in PostgreSQL)")
    p.add_argument("--vocab-schema", metavar="NAME", help="OMOP: the schema of concept and concept_ancestor "
                   "(default: the CDM schema)")
    p.add_argument("--omop-profile", metavar="FILE", help="OMOP: a profile of concepts overriding the bundled msda "
                   "profile key by key (TOML; docs/omop.md)")
    p.add_argument("--max-reject", type=_percent, default=0.05, metavar="PERCENT",
                   help="largest share of a table's rows that may be quarantined (default 5%%)")
    p.add_argument("--min-cell", type=_min_cell, default=5, metavar="N",
                   help="shareable counts (site_counts.csv, summary_public.json): show counts 1 .. N-1 "
                        "as <N (default 5)")
    p.add_argument("--shareable", action="store_true",
                   help="write report.html for outside the registry: patient counts only in its workbench, "
                        "with the small-cell suppression of site_counts.csv (--min-cell)")


# ---- --history (recruitment over time, projection, time to target: pipeline/recruitment/stage.py) ----

def _whole(low: int, high: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{clip(text)} is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{clip(text)} must be from {low} to {high:,}")
        return value
    return parse


def _probability(text: str) -> float:
    try:
        value = float(text.strip().rstrip("%")) / (100 if text.strip().endswith("%") else 1)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{clip(text)} is not a share (0.3 or 30%)") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"{clip(text)} must be above 0 and at most 1 (100%)")
    return value


def _conversion(text: str) -> float | tuple[float, float]:
    """A share (0.3 or 30%) or a range LOW..HIGH (0.2..0.4) taken as uncertainty."""
    if ".." in text:
        low, _, high = text.partition("..")
        lo, hi = _probability(low), _probability(high)
        if lo > hi:
            raise argparse.ArgumentTypeError(f"{clip(text)}: the range's low end is above its high end")
        return lo if lo == hi else (lo, hi)
    return _probability(text)


def _capacity(text: str) -> int | dict[str, int]:
    """Patients a site can screen a month: one number for every site, or a CSV `site_id,capacity` (a site not
    listed: unlimited)."""
    if text.isdigit():
        return _whole(1, 10**6)(text)
    try:
        rows = [r for r in csv.DictReader(open(text, newline="", encoding="utf-8"))]
        out = {r["site_id"]: int(r["capacity"]) for r in rows}
    except (OSError, KeyError, ValueError, TypeError):
        raise argparse.ArgumentTypeError(f"{clip(text)} is neither a whole number nor a readable CSV with columns "
                                         "site_id,capacity (whole numbers)") from None
    if not out or min(out.values()) < 1:
        raise argparse.ArgumentTypeError(f"{clip(text)}: every capacity must be 1 or more")
    return out


def _history_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--history", type=_whole(1, 240), default=None, metavar="MONTHS",
                   help="also judge the trial at the last day of each of the MONTHS months before D: history.csv, "
                        "history_by_site.csv, new and lost candidates, projection.csv and time to target")
    p.add_argument("--projection-months", type=_whole(1, 120), default=None, metavar="N",
                   help="months to project after D (default 12; needs --history)")
    p.add_argument("--target", type=_whole(1, 10**7), default=None, metavar="N",
                   help="this registry's share of the trial's enrolment (no default: without it, no time to "
                        "target; needs --history)")
    p.add_argument("--conversion", type=_conversion, default=None, metavar="P",
                   help="chance that a screened candidate consents and enrols, 0 < P <= 1, or a range 0.2..0.4 "
                        "(no default: without it the forecast is in candidates; needs --history)")
    p.add_argument("--screening-capacity", type=_capacity, default=None, metavar="N|CSV",
                   help="patients a site can screen per month, or a CSV site_id,capacity (default unlimited; "
                        "needs --history)")
    p.add_argument("--screen-pass", type=_probability, default=None, metavar="P",
                   help="chance a screened eligible patient passes the screening-only criteria (default not "
                        "applied; needs --history)")


def history_options(args: argparse.Namespace):
    from pipeline.recruitment.stage import HistoryOptions

    given = [f"--{n.replace('_', '-')}" for n in ("projection_months", "target", "conversion",
                                                  "screening_capacity", "screen_pass")
             if getattr(args, n, None) is not None]
    if getattr(args, "history", None) is None:
        if given:
            raise UsageError(f"{', '.join(given)} needs --history MONTHS")
        return None
    return HistoryOptions(months=args.history, projection_months=args.projection_months or 12,
                          target=args.target, conversion=args.conversion,
                          screening_capacity=args.screening_capacity, screen_pass=args.screen_pass)


def projection_lines(s: dict) -> list[str]:
    """The history, pool forecast and time to target of one trial's summary, for the terminal."""
    from pipeline.recruitment.stage import terminal_lines

    return terminal_lines(s)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="msfeas", description="Recruitment feasibility of an MS trial on a registry export.",
                    epilog=EXAMPLES + "\n" + EXIT_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"msfeas {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    run = sub.add_parser("run", help="evaluate a trial's criteria on an export folder",
                         epilog=EXAMPLES + "\n" + EXIT_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("--input", required=True, help="the export folder (patients.csv and others), or an OMOP CDM: "
                     "a folder of OMOP tables, a .duckdb file or a postgresql://user@host/db URL (docs/omop.md)")
    run.add_argument("--out", required=True, type=Path, help="the run folder to create")
    _common(run)
    run.add_argument("--cache", type=Path, default=None, metavar="DIR",
                     help="where validated exports are kept for re-runs on the same bytes (default: $MSFEAS_CACHE "
                          "or ~/.cache/msfeas; holds patient data, owner-only; delete it at any time)")
    run.add_argument("--no-cache", action="store_true", help="read and validate the export afresh, store nothing")
    run.add_argument("--force", action="store_true",
                     help="replace an existing run folder at --out (refused for a folder that is not a run folder)")
    _history_args(run)
    sub.add_parser("trials", help="list the bundled trials: id, title and the optional tables each reads")
    _trial_args(sub)
    night = sub.add_parser(
        "nightly", help="the scheduled run: RUNS/<as-of>/ atomically, lock, manifest, changes, volume guard",
        epilog=NIGHTLY_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    night.add_argument("--input", required=True, help="the export folder, or an OMOP CDM (as for run)")
    night.add_argument("--runs-dir", required=True, type=Path, help="the folder of dated run folders")
    _common(night)
    night.add_argument("--keep", type=int, default=30, metavar="N", help="run folders to keep (default 30)")
    night.add_argument("--cache", type=Path, default=None, metavar="DIR",
                       help="keep validated exports in DIR (off by default: the export changes every night)")
    night.add_argument("--max-drop", type=_percent, default=0.20, metavar="PERCENT",
                       help="largest fall of a table's rows (or the patients) since the previous run (default 20%%)")
    night.add_argument("--accept-volume-drop", action="store_true", help="go on despite a larger fall (logged)")
    night.add_argument("--verbose", action="store_true",
                       help="every log event on stderr (default: nothing on success, one line on failure)")
    night.add_argument("--log-format", choices=["text", "json"], default="text",
                       help="stderr's lines: text (default) or JSON lines like run.log's (the failure line too)")
    _history_args(night)
    return parser


def _trial_args(sub) -> None:
    """`msfeas trial check|show|import|schema`: writing a trial file (pipeline/authoring/)."""
    trial = sub.add_parser("trial", help="write a trial file: check it, show a bundled one, import a "
                                         "ClinicalTrials.gov record, print the JSON Schema",
                           epilog=EXIT_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    tsub = trial.add_subparsers(dest="trial_command", required=True, parser_class=Parser)
    check = tsub.add_parser("check", help="design checks, then with --input the data checks and each criterion's "
                                          "counts (exit 0 with warnings, 2 with errors)")
    check.add_argument("file", metavar="FILE", help="a trial file (or a bundled trial id)")
    check.add_argument("--input", type=Path, default=None, help="an export folder to check the trial against")
    check.add_argument("--as-of", type=_date, default=None, help="reference date D, YYYY-MM-DD (default: today)")
    show = tsub.add_parser("show", help="print a bundled trial file, to start from")
    show.add_argument("id", metavar="ID")
    imp = tsub.add_parser("import", help="a ClinicalTrials.gov API v2 study record (JSON file) to a trial file "
                                         "to finish: one screening criterion per bullet")
    imp.add_argument("record", metavar="RECORD.json", type=Path)
    imp.add_argument("--out", type=Path, default=None, help="write the trial file here (default: stdout)")
    sch = tsub.add_parser("schema", help="print the JSON Schema of trial files")
    sch.add_argument("--out", type=Path, default=None, help="write it here (default: stdout)")


def _trial_command(args, today: dt.date) -> int:
    from pipeline.authoring import commands

    if args.trial_command == "show":
        return commands.show(args.id)
    if args.trial_command == "check":
        return commands.check(args.file, args.input, args.as_of, today)
    if args.trial_command == "import":
        return commands.import_record(args.record, args.out)
    return commands.schema(args.out)


def _cache_dir(args) -> Path | None:
    """`msfeas run` keeps validated exports unless --no-cache; `msfeas nightly` only with --cache."""
    from pipeline.ops.export_cache import default_dir

    if args.command == "nightly":
        return args.cache
    return None if args.no_cache else (args.cache or default_dir())


def _spark_conf(args) -> dict[str, str]:
    """--spark-conf KEY=VALUE settings; Spark-only flags with another engine are a usage error."""
    if args.engine != "spark" and (args.spark_conf or args.spark_master != "local[*]"):
        raise UsageError("--spark-master and --spark-conf go with --engine spark")
    conf = {}
    for item in args.spark_conf:
        key, sep, value = item.partition("=")
        if not sep or not key.strip().startswith(("spark.", "msfeas.spark.")):  # msfeas.spark.wait: msfeas's own
            raise UsageError(f"--spark-conf {item!r}: expected spark.<setting>=<value>")
        conf[key.strip()] = value.strip()
    return conf


def load_trials(names: list[str] | None, overrides: list[str]):
    """The trials of `--trial` (default nct04203017; `all`: every bundled trial). With several trials,
    `--set criterion.parameter=value` applies to every trial that has that criterion and parameter."""
    from pipeline.criteria import apply_overrides, bundled_trials, load_trial

    names = names or ["nct04203017"]
    if "all" in names:
        names = [n for n in names if n != "all"] + [t for t in bundled_trials() if t not in names]
    if len(names) == 1:
        return [load_trial(names[0], overrides)]
    trials = [load_trial(n) for n in names]
    ids = [t.id for t in trials]
    if len(set(ids)) < len(ids):
        raise UsageError(f"--trial: a trial is given twice ({', '.join(ids)})")
    mine: list[list[str]] = [[] for _ in trials]  # each trial's --set values, applied together (order never matters)
    for item in overrides:
        target = item.partition("=")[0].strip()
        cid, dot, param = target.partition(".")
        if not dot:  # a parameter's name alone: name the criteria that have it
            owners = sorted({f"{c.id}.{cid}" for t in trials for c in t.criteria if cid in c.parameters})
            raise UsageError(f"--set {item!r}: give the criterion too, as criterion.parameter=value"
                             + (f": {' or '.join(o + '=' + item.partition('=')[2] for o in owners)} "
                                f"(applied to every trial that has it)" if owners else
                                f"; {suggest_parameter(cid, trials)}"))
        fits = [i for i, t in enumerate(trials) if any(c.id == cid and param in c.parameters for c in t.criteria)]
        if not fits:
            from pipeline.core.errors import suggest
            known = [f"{c.id}.{p}" for t in trials for c in t.criteria for p in c.parameters]
            raise UsageError(f"--set {item!r}: none of the trials ({', '.join(ids)}) has criterion {cid!r} "
                             f"with a parameter {param!r}; {suggest(target, known, limit=0, label='parameters')}")
        for i in fits:
            mine[i].append(item)
    return [apply_overrides(t, items) if items else t for t, items in zip(trials, mine)]


def suggest_parameter(name: str, trials) -> str:
    from pipeline.core.errors import suggest
    return suggest(name, [p for t in trials for c in t.criteria for p in c.parameters], limit=0, label="parameters")


def print_trials() -> None:
    from pipeline.criteria import bundled_trials, load_trial

    for trial_id in bundled_trials():
        t = load_trial(trial_id)
        tables = sorted({tbl for c in t.criteria for tbl in c.tables})
        print(f"{t.id}  {t.title}")
        print(f"    {len(t.criteria)} criteria; optional tables read: {', '.join(tables) or 'none'}")


def print_overview(result) -> None:
    s = result.summary
    print(f"run folder: {result.out}")
    print(f"{len(s['trials'])} trials  as of {s['as_of']}  engine {s['engine']}")
    print(f"  {'trial':<14} {'population':>10} {'eligible':>9} {'possible':>9} {'ineligible':>10}  excluding most")
    for r in s["overview"]:
        top = ", ".join(r[f"excluding_{i}"] for i in (1, 2, 3) if r[f"excluding_{i}"])
        print(f"  {r['trial']:<14} {r['population']:>10,} {r['eligible']:>9,} {r['possible']:>9,} "
              f"{r['ineligible']:>10,}  {top}")
    print(f"candidates for at least one trial: {s['candidate_patients']['any_trial']:,} (candidates_by_trial.csv)")
    for trial_id, (trial_summary, _) in result.trials.items():
        for i, line in enumerate(projection_lines(trial_summary)):
            print(f"  {trial_id + ':' if i == 0 else '':<14} {line}")
    if s["absent_tables"]:
        print(f"absent tables (criteria reading them are unknown): {', '.join(s['absent_tables'])}")


def print_summary(result) -> None:
    if "trials" in result.summary:
        print_overview(result)
        return
    s, attr = result.summary, result.attrition
    print(f"run folder: {result.out}")
    print(f"trial {s['trial']}  as of {s['as_of']}  engine {s['engine']}")
    print(f"  population  {s['population']:>9,}")
    print(f"  eligible    {s['eligible']:>9,}")
    print(f"  possible    {s['possible']:>9,}   (feasibility: {s['eligible']:,} .. {s['eligible'] + s['possible']:,})")
    print(f"  ineligible  {s['ineligible']:>9,}")
    if s.get("expected_eligible"):  # pipeline/outputs/expected.py
        e = s["expected_eligible"]
        print(f"  expected eligible {e['expected']:,.1f} (80 %: {e['low_80']:,} .. {e['high_80']:,}; possible patients "
              "weighted by their chance of passing their unknown criteria)")
    top = attr.sort(["n_fail", "step"], descending=[True, False]).head(3)
    print("criteria that exclude the most (patients failing each):")
    for row in top.iter_rows(named=True):
        print(f"  {row['criterion']:<24} {row['n_fail']:>9,}   gain if dropped {row['gain']:,}")
    present = {t: i for t, i in s["inputs"].items() if i["present"]}
    quarantined = sum(i["rows_quarantined"] for i in present.values())
    print(f"inputs: {len(present)} tables, {sum(i['rows_read'] for i in present.values()):,} rows read, "
          f"{quarantined:,} quarantined (see quarantine/)")
    if s.get("quality"):
        q = s["quality"]
        print(f"data quality: {q['n_findings']} of {len(q['findings'])} checks raise a finding (see report.html)")
    for line in projection_lines(s):
        print(line)
    if s["absent_tables"]:
        print(f"absent tables (their criteria are unknown): {', '.join(s['absent_tables'])}")


def _say(text: str) -> None:
    """A line on stderr; a closed stderr (a reader that went away) is not an error of the run."""
    try:
        print(text, file=sys.stderr, flush=True)
    except (BrokenPipeError, OSError):
        pass


def _on_interrupt(signum, frame):  # noqa: ARG001 - signal handler signature
    """Ctrl-C: as Python's own handler, but remembered (see pipeline.core.errors.SIGNALLED)."""
    SIGNALLED.append(KeyboardInterrupt())
    if not _spark_stops(frame):
        raise SIGNALLED[-1]


def _on_terminate(signum, frame):  # noqa: ARG001 - signal handler signature
    """SIGTERM (systemctl stop, a timeout): unwind like Ctrl-C, so that partial folders go and the
    nightly writes its failed log. A second SIGTERM during that cleanup is ignored."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    SIGNALLED.append(Terminated("terminated by SIGTERM"))
    if not _spark_stops(frame):
        raise SIGNALLED[-1]


def _spark_stops(frame) -> bool:
    """Inside a Spark call, the signal cancels the jobs and stops the session from another thread
    instead of raising there (pipeline/engines/spark/watch.py: raising would hang pyspark)."""
    watch = sys.modules.get("pipeline.engines.spark.watch")
    return bool(watch and watch.defer_signal(frame))


def _install_signals() -> dict:
    """SIGTERM unwinds (exit 143); SIGXFSZ is ignored so that a file size limit makes a write fail
    with an error we can report (EFBIG, exit 74) instead of killing the process silently."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return {}
    old = {signal.SIGTERM: signal.getsignal(signal.SIGTERM), signal.SIGXFSZ: signal.getsignal(signal.SIGXFSZ)}
    signal.signal(signal.SIGTERM, _on_terminate)
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        old[signal.SIGINT] = signal.default_int_handler
        signal.signal(signal.SIGINT, _on_interrupt)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    return old


def _silence_stdout() -> None:
    """After a broken pipe on stdout, point it at /dev/null so that the flush at exit stays quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


def entry() -> None:
    """The `msfeas` command and `python -m pipeline`: `main`, then exit with its status.

    After a handled Ctrl-C or SIGTERM the process leaves at once (`os._exit`), its streams
    flushed: by then the partial folder is gone and the log written. An interrupt that
    lands while an extension module runs Python code of its own (as during pandera's imports)
    leaves CPython's "unhandled Ctrl-C" mark set although msfeas handled it, and a normal
    exit would then end the process by SIGINT instead of exiting with status 130.
    """
    code = main()
    if SIGNALLED or "pyspark" not in sys.modules:
        # Otherwise too, once the streams are flushed and the exit handlers run, the process leaves
        # without tearing down the interpreter: freeing every module and object of polars, numpy
        # and the rest one by one takes 60 ms, a tenth of a what-if re-run on 20,000 patients, and
        # nothing of the run is left to write by then. (Not with Spark: its gateway has its own
        # shutdown, and a Spark run lasts seconds.)
        if not SIGNALLED:
            atexit._run_exitfuncs()
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(code)
    sys.exit(code)


def main(argv: list[str] | None = None) -> int:
    SIGNALLED.clear()
    old = _install_signals()
    try:
        return _main(argv)
    except BrokenPipeError:
        # `msfeas run ... | head`: the reader stopped reading the summary. The run itself is
        # complete (the summary is printed after publishing), so this is not a failure.
        _silence_stdout()
        return EXIT_OK
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def _main(argv: list[str] | None) -> int:
    global _STARTED
    _STARTED = dt.datetime.now(dt.timezone.utc)
    args = build_parser().parse_args(argv)
    os.umask(0o077)  # patient-level files are created readable by the owner only
    try:
        today = dt.date.fromisoformat(os.environ["MSFEAS_TODAY"]) if os.environ.get("MSFEAS_TODAY") else dt.date.today()
        if args.command == "trial":
            return _trial_command(args, today)
        from pipeline.run import RunOptions, run
        if args.command == "trials":
            print_trials()
            return EXIT_OK
        trials = load_trials(args.trials, args.overrides)
        opts = RunOptions(
            input=Path(args.input), out=getattr(args, "out", None), as_of=args.as_of or today, trials=trials,
            engine=args.engine,
            dialect_overrides={"delimiter": args.delimiter, "decimal": args.decimal,
                               "date_format": args.date_format, "encoding": args.encoding},
            drug_lines=args.drug_lines, max_reject=args.max_reject, min_cell=args.min_cell,
            force=getattr(args, "force", False), shareable=args.shareable, today=today, cache_dir=_cache_dir(args),
            history=history_options(args), spark_master=args.spark_master, spark_conf=_spark_conf(args),
            quality=args.quality, shard_patients=args.shard_patients,
            source_options={"location": args.input, "format": args.input_format, "site": args.site,
                            "cdm_schema": args.cdm_schema, "vocab_schema": args.vocab_schema,
                            "profile": args.omop_profile})
        if args.command == "nightly":
            from pipeline.nightly import NightlyOptions, nightly
            from pipeline.ops.runlog import RunLog

            if args.keep < 1:
                raise UsageError("--keep must be at least 1")
            result = nightly(NightlyOptions(run=opts, runs_dir=args.runs_dir, keep=args.keep,
                                            max_drop=args.max_drop, accept_volume_drop=args.accept_volume_drop),
                             RunLog(verbose=args.verbose, echo=True, quiet=True, log_format=args.log_format))
            _night_status(args, today, EXIT_OK, "done", result=result)
        else:
            result = run(opts)
    except (Exception, KeyboardInterrupt, Terminated) as exc:  # noqa: BLE001 - every failure: one clear line
        if isinstance(exc, BrokenPipeError):  # `msfeas trials | head`: main() treats it as done
            raise
        exc = cause(exc)  # an interrupt swallowed where it was raised is still the reason
        code, message = describe(exc)
        if args.command == "nightly":
            _night_failed(args, today if "today" in locals() else dt.date.today(), exc, code, message)
        if code == EXIT_SOFTWARE and os.environ.get("MSFEAS_DEBUG"):
            raise
        _failure(args, exc, code, message)
        return code
    if args.command == "run":
        data = result.summary.get("data_warnings", [])
        if len(data) > 5:  # the rest are in summary.json and the report
            data = data[:5] + [f"and {len(data) - 5} more values matching no row (summary.json data_warnings)"]
        for warning in result.summary.get("warnings", []) + data:
            # (the nightly's log already said them on stderr)
            _say(f"msfeas: warning: {cap(warning)}")
    if args.command == "run" or sys.stdout.isatty():
        print_summary(result)
        sys.stdout.flush()  # here, so that a closed pipe is met in main() and not at interpreter exit
    return EXIT_OK


_STARTED = dt.datetime.now(dt.timezone.utc)  # (re)set by _main: the nightly's status counts from here


def _night_status(args, today: dt.date, code: int, message: str, result=None, failed_log: str | None = None) -> None:
    """RUNS/status.json, on every outcome. A runs folder that cannot take it is said on stderr, once."""
    from pipeline.ops import status

    day = (args.as_of or today).isoformat()
    try:
        status.write(args.runs_dir, date=day, exit_code=code, message=message, started=_STARTED,
                     counts=status.counts(result.summary) if result is not None else None, failed_log=failed_log)
    except (OSError, KeyError, TypeError) as exc:
        _say(f"msfeas: warning: cannot write {args.runs_dir / status.NAME}: {getattr(exc, 'strerror', None) or exc}")


def _night_failed(args, today: dt.date, exc: BaseException, code: int, message: str) -> None:
    """Every failed night leaves RUNS/failed-<date>.log and status.json, also when it stopped before
    the nightly had a log (an interrupt during start-up, a usage error, a runs folder it refused). Exit 3
    (another nightly holds the lock) is not a failed night: the holder writes both when it ends."""
    import json

    if code == EXIT_LOCKED:  # not a failed night: the nightly holding the lock runs it, and reports it
        return
    day = (args.as_of or today).isoformat()
    try:
        args.runs_dir.mkdir(parents=True, exist_ok=True)  # the first night may stop before nightly() made it
    except OSError:
        pass
    if getattr(exc, "failed_log", None) is None and args.runs_dir.is_dir():
        failed = args.runs_dir / f"failed-{day}.log"
        event = {"time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds"), "level": "error",
                 "stage": "start", "message": message, "exit_status": code, "argv": sys.argv[1:]}
        try:
            with open(failed, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(event, ensure_ascii=False) + "\n")
            exc.failed_log = str(failed)
        except (OSError, AttributeError):
            pass
    if args.runs_dir.is_dir():
        _night_status(args, today, code, message, failed_log=getattr(exc, "failed_log", None))


def _failure(args, exc: BaseException, code: int, message: str) -> None:
    """The message of a run that stopped, and what was (not) written."""
    nightly = args.command == "nightly"
    log = getattr(exc, "failed_log", None)
    if nightly and getattr(args, "log_format", "text") == "json":  # one JSON line, as run.log's
        import json

        _say(json.dumps({"time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds"),
                         "level": "error", "stage": "end", "message": message, "exit_status": code,
                         "failed_log": log}, ensure_ascii=False))
        return
    if nightly:
        after = "latest is unchanged" + (f"; the log is in {log}" if log else "")
    else:
        after = "nothing was written"
    if code == EXIT_INPUT:
        _say(f"msfeas: input error: {message}")
        _say(f"msfeas: {'no run folder was written; ' + after if nightly else after}.")
    elif code == EXIT_USAGE:
        _say(f"msfeas: error: {message}")
    elif code in (EXIT_LOCKED, EXIT_VOLUME):
        _say(f"msfeas: {message}")
    elif code in (EXIT_INTERRUPTED, EXIT_TERMINATED):
        _say(f"msfeas: {message}; {after}.")
    elif code == EXIT_SOFTWARE:
        _say(f"msfeas: internal error ({message}); {after}. Set MSFEAS_DEBUG=1 for details and report it.")
    else:  # 73, 74: where the output could not be written
        _say(f"msfeas: {message}; {after}.")


if __name__ == "__main__":
    sys.exit(main())
