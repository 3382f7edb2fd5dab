"""The command line: a thin layer over `pipeline.run` that maps errors to exit codes.

Exit codes: 0 done; 1 the input could not be used (named file, line, column, rule);
2 wrong usage. No traceback reaches the user for bad input.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from pathlib import Path

from pipeline import __version__
from pipeline.errors import FatalInputError, UsageError

EXAMPLES = """examples:
  msfeas run --input data_samples/default --out runs/today
  msfeas run --input data_samples/regional --out runs/what-if --as-of 2026-01-31 \\
             --engine duckdb --set edss_range.max_edss=7.0
  msfeas run --input export/ --out runs/x --delimiter ';' --decimal , --date-format %d.%m.%Y --encoding cp1251
"""


class Parser(argparse.ArgumentParser):
    def error(self, message):  # usage errors exit 2 with one clear line
        self.print_usage(sys.stderr)
        print(f"msfeas: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date YYYY-MM-DD") from None


def _share(text: str) -> float:
    """--max-reject as a percentage: `5`, `5%` or `0.5%`."""
    try:
        value = float(text.rstrip("%")) / 100
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a percentage") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be between 0 and 100 %")
    return value


def _min_cell(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1 (1: no suppression)")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="msfeas", description="Recruitment feasibility of an MS trial on a registry export.",
                    epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"msfeas {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    run = sub.add_parser("run", help="evaluate a trial's criteria on an export folder",
                         epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("--input", required=True, type=Path, help="the export folder (patients.csv and others)")
    run.add_argument("--out", required=True, type=Path, help="the run folder to create")
    run.add_argument("--as-of", type=_date, default=None, help="reference date D, YYYY-MM-DD (default: today)")
    run.add_argument("--trial", default="nct04203017", help="bundled trial id or trial file (default: nct04203017)")
    run.add_argument("--engine", choices=["polars", "duckdb"], default="polars")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="CRITERION.PARAM=VALUE",
                     help="override a criterion parameter for this run (repeatable)")
    run.add_argument("--delimiter", help="field delimiter: ',' ';' or '\\t' (overrides export.toml)")
    run.add_argument("--decimal", help="decimal mark: '.' or ','")
    run.add_argument("--date-format", help="strftime pattern of dates, e.g. %%d.%%m.%%Y")
    run.add_argument("--encoding", help="file encoding, e.g. utf-8, cp1251")
    run.add_argument("--drug-lines", help="replacement drug vocabulary / line-of-therapy file (TOML)")
    run.add_argument("--max-reject", type=_share, default=0.05, metavar="PERCENT",
                     help="largest share of a table's rows that may be quarantined (default 5%%)")
    run.add_argument("--min-cell", type=_min_cell, default=5, metavar="N",
                     help="shareable counts (site_counts.csv, summary_public.json): show counts 1 .. N-1 "
                          "as <N (default 5)")
    run.add_argument("--force", action="store_true", help="replace a non-empty --out folder")
    return parser


def print_summary(result) -> None:
    s, attr = result.summary, result.attrition
    print(f"run folder: {result.out}")
    print(f"trial {s['trial']}  as of {s['as_of']}  engine {s['engine']}")
    print(f"  population  {s['population']:>9,}")
    print(f"  eligible    {s['eligible']:>9,}")
    print(f"  possible    {s['possible']:>9,}   (feasibility: {s['eligible']:,} .. {s['eligible'] + s['possible']:,})")
    print(f"  ineligible  {s['ineligible']:>9,}")
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
    if s["absent_tables"]:
        print(f"absent tables (their criteria are unknown): {', '.join(s['absent_tables'])}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        from pipeline.run import RunOptions, run
        from pipeline.trial import load_trial

        today = dt.date.fromisoformat(os.environ["MSFEAS_TODAY"]) if os.environ.get("MSFEAS_TODAY") else dt.date.today()
        trial = load_trial(args.trial, args.overrides)
        opts = RunOptions(
            input=args.input, out=args.out, as_of=args.as_of or today, trial=trial, engine=args.engine,
            dialect_overrides={"delimiter": args.delimiter, "decimal": args.decimal,
                               "date_format": args.date_format, "encoding": args.encoding},
            drug_lines=args.drug_lines, max_reject=args.max_reject, min_cell=args.min_cell, force=args.force,
            today=today)
        result = run(opts)
    except UsageError as exc:
        print(f"msfeas: error: {exc}", file=sys.stderr)
        return 2
    except FatalInputError as exc:
        print(f"msfeas: input error: {exc}", file=sys.stderr)
        print("msfeas: nothing was written.", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("msfeas: interrupted; nothing was written.", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - last resort: a clear line, the traceback on request
        if os.environ.get("MSFEAS_DEBUG"):
            raise
        print(f"msfeas: internal error ({type(exc).__name__}: {exc}); nothing was written. "
              "Set MSFEAS_DEBUG=1 for details and report it.", file=sys.stderr)
        return 70
    print_summary(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
