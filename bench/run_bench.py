"""`make bench`: msfeas against the cost of only reading its input, at 100k and 1M patients.

For each size it generates (once, cached in bench/cache/) a synthetic export with the
project's generator, then measures, each as the median of `--repeat` runs in fresh
processes, one after the other so the figures are comparable:

- the floor: a process that only reads every CSV of the export with polars (dates
  parsed) and does nothing else (`bench/floor.py`);
- `msfeas run` with each engine: wall time, peak resident memory (the child's
  rusage), and the stage times from its summary.json;

and writes bench/results.md. Usage:

    python bench/run_bench.py [--sizes 20000 100000 1000000] [--repeat 3] [--out bench/results.md] [--history 24]

`--history MONTHS` also measures `msfeas run --history MONTHS` with each engine, against
single-date runs of the same engine measured alternately with it (issue 15's targets: within
6x the time, 2x the peak memory).
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "bench" / "cache"
SEED = 1
AS_OF = "2026-11-01"
ENGINES = ("polars", "duckdb")
STAGES = ("read", "validate", "evaluate", "quality", "write", "report")
# Issue 17's targets. Run time against the floor: 20k within 2x (goal 1.5x), both engines; 1M polars
# within 4x (goal 2x), duckdb within 6x. Peak memory at 1M: polars < 3 GiB, duckdb < 4 GiB. A what-if
# re-run within 1.5x the floor at 20k and at 1M. Cost linear from 100k to 10M.
RUN_TARGETS = {20_000: {"polars": (2.0, 1.5), "duckdb": (2.0, 1.5)},
               1_000_000: {"polars": (4.0, 2.0), "duckdb": (6.0, 6.0)}}
RSS_TARGETS = {1_000_000: {"polars": 3.0, "duckdb": 4.0}}
WHATIF_TARGET = {20_000: 1.5, 1_000_000: 1.5}
TARGET_SCALING = 12.0  # 1M against 100k: at most 12x (linear cost leaves room for fixed costs)
HISTORY_TIME_RATIO, HISTORY_RSS_RATIO = 6.0, 2.0


def measure(cmd: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS in GiB) of one fresh process."""
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.read().decode()[-2000:]}")
    return wall, usage.ru_maxrss / 2**20  # ru_maxrss is in KiB on Linux


def export(n: int) -> Path:
    """The cached synthetic export of n patients (regenerated when the generator's stamp differs)."""
    folder = CACHE / f"{n}"
    # The generator's source is in the stamp: an export cached before it changed (e.g. without mri.csv) is redone.
    stamp = {"patients": n, "seed": SEED, "msfeas": metadata.version("msfeas"),
             "synth": hashlib.sha256((ROOT / "pipeline" / "synth.py").read_bytes()).hexdigest()[:16]}
    stamp_file = folder / "stamp.json"
    if stamp_file.exists() and json.loads(stamp_file.read_text()) == stamp:
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    print(f"generating {n:,} patients into {folder} ...", flush=True)
    subprocess.run([sys.executable, "-m", "pipeline.synth", "--patients", str(n), "--seed", str(SEED),
                    "--out", str(folder)], cwd=ROOT, check=True)
    stamp_file.write_text(json.dumps(stamp))
    return folder


def run_once(folder: Path, engine: str, extra: list[str]) -> tuple[float, float, dict]:
    """(wall, peak RSS, stage timings) of one `msfeas run` in a fresh process."""
    with tempfile.TemporaryDirectory(dir=ROOT / "bench") as tmp:
        run_dir = Path(tmp) / "run"
        w, r = measure([sys.executable, "-m", "pipeline", "run", "--input", str(folder), "--out",
                        str(run_dir), "--as-of", AS_OF, "--engine", engine, *extra])
        return w, r, json.loads((run_dir / "summary.json").read_text())["timings_seconds"]


def load_average() -> float:
    """The 1-minute load average (the machine is shared: reported beside the figures)."""
    return os.getloadavg()[0]


def bench_history(folder: Path, months: int, repeat: int) -> dict:
    """`--history MONTHS` per engine against a single-date run of the same engine, measured alternately
    (single, history, single, history...) so that both see the same machine; both with --no-cache, so
    that neither reads the validated export from a cache. Median walls, largest peak RSS, median
    history stage, and the load average at the start of each run (lowest and highest)."""
    out = {}
    for engine in ENGINES:
        single, hist, loads = [], [], []
        for _ in range(repeat):
            loads.append(load_average())
            single.append(run_once(folder, engine, ["--no-cache"]))
            loads.append(load_average())
            hist.append(run_once(folder, engine, ["--no-cache", "--history", str(months)]))
        out[engine] = {"single_wall": statistics.median(w for w, _, _ in single),
                       "single_rss": max(r for _, r, _ in single),
                       "wall": statistics.median(w for w, _, _ in hist), "rss": max(r for _, r, _ in hist),
                       "history": statistics.median(t.get("history", 0.0) for _, _, t in hist),
                       "load": [min(loads), max(loads)]}
        print(f"  --history {months} {engine:<6} {out[engine]['wall']:.1f} s, {out[engine]['rss']:.2f} GiB "
              f"(single {out[engine]['single_wall']:.1f} s, {out[engine]['single_rss']:.2f} GiB)", flush=True)
    return out


def bench_size(n: int, repeat: int, history: int = 0) -> dict:
    folder = export(n)
    rows = sum(max(0, sum(1 for _ in open(p, "rb")) - 1) for p in folder.glob("*.csv"))
    size_mb = sum(p.stat().st_size for p in folder.glob("*.csv")) / 1e6
    floor = [measure([sys.executable, str(ROOT / "bench" / "floor.py"), str(folder)]) for _ in range(repeat)]
    out = {"patients": n, "rows": rows, "mb": size_mb,
           "floor": statistics.median(w for w, _ in floor), "floor_rss": max(r for _, r in floor), "engines": {}}
    for engine in ENGINES:
        walls, rss, stages = [], [], {s: [] for s in STAGES}
        for _ in range(repeat):
            with tempfile.TemporaryDirectory(dir=ROOT / "bench") as tmp:
                run_dir = Path(tmp) / "run"
                w, r = measure([sys.executable, "-m", "pipeline", "run", "--input", str(folder), "--out",
                                str(run_dir), "--as-of", AS_OF, "--engine", engine, "--no-cache"])
                timings = json.loads((run_dir / "summary.json").read_text())["timings_seconds"]
            walls.append(w)
            rss.append(r)
            for s in STAGES:
                stages[s].append(timings.get(s, 0.0))
        out["engines"][engine] = {"wall": statistics.median(walls), "rss": max(rss),
                                  "stages": {s: statistics.median(v) for s, v in stages.items()},
                                  "whatif": whatif(folder, engine, repeat)}
        print(f"{n:>9,} {engine:<6} {out['engines'][engine]['wall']:.1f} s (floor {out['floor']:.1f} s), "
              f"{max(rss):.2f} GiB", flush=True)
    if history:
        out["history"] = {"months": history, **bench_history(folder, history, repeat)}
    return out


def whatif(folder: Path, engine: str, repeat: int) -> float:
    """A what-if re-run: the same export with another --set, its validated tables and quality findings
    from the cache that a first run filled (median wall time of the re-runs)."""
    walls = []
    with tempfile.TemporaryDirectory(dir=ROOT / "bench") as tmp:
        for i in range(repeat + 1):
            cmd = [sys.executable, "-m", "pipeline", "run", "--input", str(folder), "--out", str(Path(tmp) / f"r{i}"),
                   "--as-of", AS_OF, "--engine", engine, "--cache", str(Path(tmp) / "cache"),
                   "--set", f"edss_range.max_edss={6.0 + 0.5 * i}"]
            w, _ = measure(cmd)
            if i:  # the first run fills the cache
                walls.append(w)
    return statistics.median(walls)


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    mem = next((int(line.split()[1]) / 2**20 for line in Path("/proc/meminfo").read_text().splitlines()
                if line.startswith("MemTotal")), 0) if Path("/proc/meminfo").exists() else 0
    return f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB RAM, {platform.system()} {platform.release()}"


def report(results: list[dict], repeat: int) -> str:
    vers = {d: metadata.version(d) for d in ("msfeas", "polars", "duckdb", "pandera", "great-expectations")}
    lines = [
        "# msfeas benchmark",
        "",
        "The Spark engine's figures (`make bench-spark`) are in [spark_results.md](spark_results.md); "
        "earlier rounds in [history.md](history.md).",
        "",
        f"- date: {dt.date.today().isoformat()}",
        f"- machine: {machine()}",
        f"- Python {platform.python_version()}; " + ", ".join(f"{k} {v}" for k, v in vers.items()),
        f"- each figure: median of {repeat} runs in fresh processes (peak memory: the largest); "
        f"synthetic exports from `python -m pipeline.synth --seed {SEED}`; reference date {AS_OF}",
        "- floor: `bench/floor.py`, a fresh process that reads every CSV with polars (dates parsed) and nothing else",
        "- command: `make bench` (`python bench/run_bench.py`)",
        "",
        "- what-if: a re-run on the same export with another `--set`, reading the validated tables and the "
        "quality findings from the cache a first run filled (`--cache`)",
        "",
        "| patients | rows | MB | engine | floor s | run s | run/floor | what-if s | what-if/floor | peak RSS GiB | "
        + " | ".join(f"{s} s" for s in STAGES) + " |",
        "|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|" + "---:|" * len(STAGES),
    ]
    for r in results:
        for engine, e in r["engines"].items():
            lines.append(f"| {r['patients']:,} | {r['rows']:,} | {r['mb']:.0f} | {engine} | {r['floor']:.2f} | "
                         f"{e['wall']:.2f} | {e['wall'] / r['floor']:.1f}x | {e['whatif']:.2f} | "
                         f"{e['whatif'] / r['floor']:.1f}x | {e['rss']:.2f} | "
                         + " | ".join(f"{e['stages'][s]:.2f}" for s in STAGES) + " |")
    lines += ["", "## Targets (issue 17)", ""]
    lines += targets(results)
    with_history = [r for r in results if "history" in r]
    if with_history:
        months = with_history[0]["history"]["months"]
        lines += ["", f"## `--history {months}` against a single-date run (same engine)", "",
                  f"Targets: within {HISTORY_TIME_RATIO:.0f}x the time and {HISTORY_RSS_RATIO:.0f}x the peak memory. "
                  "Single-date and history runs measured alternately, both with `--no-cache`.", "",
                  "| patients | engine | run s | history run s | time ratio | peak RSS GiB | history peak RSS GiB "
                  "| memory ratio | history stage s | load average |",
                  "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in with_history:
            for engine in ENGINES:
                h = r["history"][engine]
                tr, mr = h["wall"] / h["single_wall"], h["rss"] / h["single_rss"]
                lines.append(f"| {r['patients']:,} | {engine} | {h['single_wall']:.2f} | {h['wall']:.2f} | {tr:.1f}x "
                             f"({'met' if tr <= HISTORY_TIME_RATIO else 'NOT met'}) | {h['single_rss']:.2f} | "
                             f"{h['rss']:.2f} | {mr:.1f}x ({'met' if mr <= HISTORY_RSS_RATIO else 'NOT met'}) | "
                             f"{h['history']:.2f} | {h['load'][0]:.1f}-{h['load'][1]:.1f} |")
    return "\n".join(lines) + "\n"


def _verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def targets(results: list[dict]) -> list[str]:
    """One line per target that the sizes of this bench measure, met or not."""
    by_n = {r["patients"]: r for r in results}
    out = []
    for n, r in sorted(by_n.items()):
        for engine, e in r["engines"].items():
            parts = []
            if n in RUN_TARGETS:
                target, goal = RUN_TARGETS[n][engine]
                ratio = e["wall"] / r["floor"]
                parts.append(f"run/floor {ratio:.1f}x (target {target}x: {_verdict(ratio <= target)}; goal {goal}x)")
            if n in RSS_TARGETS:
                limit = RSS_TARGETS[n][engine]
                parts.append(f"peak {e['rss']:.2f} GiB (target < {limit:.0f}: {_verdict(e['rss'] < limit)})")
            if n in WHATIF_TARGET and e.get("whatif"):
                ratio = e["whatif"] / r["floor"]
                parts.append(f"what-if/floor {ratio:.1f}x (target {WHATIF_TARGET[n]}x: "
                             f"{_verdict(ratio <= WHATIF_TARGET[n])})")
            for m in sorted((m for m in by_n if 100_000 <= m < n), reverse=True):  # each smaller size from 100k
                scale = e["wall"] / by_n[m]["engines"][engine]["wall"]
                limit = TARGET_SCALING * (n / m) / 10  # 12x for ten times the patients
                parts.append(f"{n // m}x the patients of {m:,}: {scale:.1f}x the time (linear: at most "
                             f"{limit:.0f}x: {_verdict(scale <= limit)})")
            if parts:
                out.append(f"- {n:,} {engine}: " + "; ".join(parts))
    return out or ["No size with a target was measured in this run."]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[20_000, 100_000, 1_000_000])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results.md")
    ap.add_argument("--notes", type=Path, default=ROOT / "bench" / "notes.md",
                    help="text appended to the results (what is not met and why)")
    ap.add_argument("--history", type=int, default=0, metavar="MONTHS",
                    help="also measure `msfeas run --history MONTHS` per engine (0: not measured)")
    ap.add_argument("--from-json", action="store_true",
                    help="measure nothing: write --out again from its .json and the current notes")
    args = ap.parse_args()
    if args.from_json:
        results = json.loads(args.out.with_suffix(".json").read_text())
        args.repeat = int(re.search(r"median of (\d+)", args.out.read_text()).group(1)) if args.out.exists() else 1
    else:
        results = [bench_size(n, args.repeat, args.history) for n in args.sizes]
    text = report(results, args.repeat)
    if args.notes.exists():
        text += "\n" + args.notes.read_text()
    args.out.write_text(text)
    (args.out.with_suffix(".json")).write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
