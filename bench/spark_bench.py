"""`make bench-spark`: the Spark engine (local mode) beside Polars and DuckDB, with the driver's memory.

Not a test: figures for bench/spark_results.md. For each size it uses the export that
`make bench` generates (bench/cache/<n>, made here if missing) and runs, one after the
other in fresh processes, `msfeas run --no-cache` with polars, duckdb and spark
(`--spark-master local[*]`). For each: wall time, the stage times from summary.json, and
peak resident memory polled every 0.2 s per process: the Python driver (msfeas itself)
and the JVM it starts (Spark's driver, which in local mode also runs the executors'
tasks; the Python workers are reported apart). The point at 2 cores is the overhead and
that it completes; what must not grow with the population is the driver JVM's memory.

    python bench/spark_bench.py [--sizes 100000 1000000] [--out bench/spark_results.md]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run_bench import AS_OF, ROOT, export, load_average  # noqa: E402

ENGINES = ("polars", "duckdb", "spark")
PAGE = os.sysconf("SC_PAGE_SIZE")


def _tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except OSError:
            pass
    return out


def _rss_and_kind(pid: int) -> tuple[int, str]:
    try:
        with open(f"/proc/{pid}/statm") as f:
            rss = int(f.read().split()[1]) * PAGE
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return 0, ""
    if "java" in cmd.split(" ")[0]:
        return rss, "jvm"
    if "pyspark.daemon" in cmd or "pyspark/daemon" in cmd or "pyspark.worker" in cmd:
        return rss, "workers"
    return rss, "other"


def measure(cmd: list[str]) -> tuple[float, dict[str, float]]:
    """Wall seconds and peak RSS (GiB) of the driver, the JVM and the Python workers (summed)."""
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = {"driver": 0, "jvm": 0, "workers": 0}
    done = threading.Event()

    def poll():
        while not done.is_set():
            now = {"driver": 0, "jvm": 0, "workers": 0}
            for p in _tree(proc.pid):
                rss, kind = _rss_and_kind(p)
                if p == proc.pid:
                    now["driver"] += rss
                elif kind in ("jvm", "workers"):
                    now[kind] += rss
            for k, v in now.items():
                peak[k] = max(peak[k], v)
            done.wait(0.2)

    th = threading.Thread(target=poll, daemon=True)
    th.start()
    _, err = proc.communicate()
    done.set()
    th.join()
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): {err.decode()[-800:]}")
    return wall, {k: v / 2**30 for k, v in peak.items()}


def run(folder: Path, engine: str) -> dict:
    with tempfile.TemporaryDirectory(dir=ROOT / "bench") as tmp:
        out = Path(tmp) / "run"
        cmd = [sys.executable, "-m", "pipeline", "run", "--input", str(folder), "--out", str(out), "--as-of", AS_OF,
               "--engine", engine, "--no-cache"]
        load = load_average()
        wall, rss = measure(cmd)
        timings = json.loads((out / "summary.json").read_text())["timings_seconds"]
    print(f"  {engine:<6} {wall:7.1f} s  driver {rss['driver']:.2f} GiB  jvm {rss['jvm']:.2f} GiB  "
          f"workers {rss['workers']:.2f} GiB  load {load}", flush=True)
    return {"wall": wall, "rss": rss, "timings": timings, "load": load}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--engines", nargs="+", default=list(ENGINES), choices=ENGINES)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "spark_results.md")
    args = ap.parse_args()
    lines = ["# msfeas: the Spark engine beside Polars and DuckDB", "",
             f"- date: {dt.date.today()}; machine: {os.cpu_count()} cores, {platform.platform()}",
             "- command: `make bench-spark` (`python bench/spark_bench.py`); one run per engine and size, in "
             "fresh processes, `--no-cache`, Spark `local[*]` with msfeas's session defaults (in local mode a "
             "driver heap of a quarter of the machine's memory, shuffle partitions from the export's size: "
             "`pipeline/engines/spark/session.py`)",
             "- peak RSS polled every 0.2 s: the Python driver (msfeas), the JVM (Spark's driver and, in local "
             "mode, its executors' tasks) and Spark's Python workers (the row rules), summed over workers",
             "", "| patients | engine | run s | ingest s | evaluate s | quality s | report s | driver GiB | JVM GiB | "
             "workers GiB | load at start |", "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for n in args.sizes:
        folder = export(n)
        print(f"{n:,} patients ({folder})", flush=True)
        for engine in args.engines:
            r = run(folder, engine)
            t = r["timings"]
            lines.append(f"| {n:,} | {engine} | {r['wall']:.1f} | {t.get('ingest_validate', 0):.1f} | "
                         f"{t.get('evaluate', 0):.1f} | {t.get('quality', 0):.1f} | {t.get('report', 0):.1f} | "
                         f"{r['rss']['driver']:.2f} | {r['rss']['jvm']:.2f} | {r['rss']['workers']:.2f} | "
                         f"{r['load']:.1f} |")
            args.out.write_text("\n".join(lines) + "\n")  # after every run: a long bench leaves what it measured
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
