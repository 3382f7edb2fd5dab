"""The report's workbench at scale: report.html size, embedded data, build and page times.

For each size, the cached synthetic export of `bench/run_bench.py` (seed 1; generated once into
bench/cache/) is run with every bundled trial (`msfeas run --trial all`, polars), and for each
trial's report.html it records:

- the file size, and the workbench's embedded data (the JSON in `<script id="wb-data">`);
- the distinct combinations embedded, against the patients;
- the report stage of the run (all trials, workbench included);
- in headless Chromium (unless --no-browser): the time from navigation to a ready workbench
  (inflating and first count included), and the time to recount after moving a slider.

Usage:

    python bench/workbench_size.py [--sizes 100000 1000000] [--out bench/workbench.md]

The same figures by hand: `python -m pipeline.synth --patients 100000 --seed 1 --out DIR`, then
`msfeas run --input DIR --out RUN --trial all --as-of 2026-11-01` and `ls -l RUN/*/report.html`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from run_bench import AS_OF, export  # noqa: E402

LIMITS = {100_000: 2_000_000, 1_000_000: 10_000_000}
DATA = re.compile(r'<script type="application/json" id="wb-data">(.*?)</script>', re.S)


NOTES = """
## Notes

These notes were written with the figures above; `bench/workbench_size.py` appends them to every
new `workbench.md`, so reread them when the figures change.

- The size follows the distinct combinations of site and per-criterion codes, not the patients:
  NCT04203017, with 14 thresholds (age, EDSS, disease duration, LVEF, FEV1, DLCO, four lab
  ratios, CrCl, Karnofsky), has 90,650 combinations at 100,000 patients and 788,815 at 1,000,000
  (4.1 MB of report, of the 10 MB allowed). The data are deflated: undeflated, NCT04203017's
  columns at 100,000 patients are 2.5 MB, 7 times their deflated size.
- The report stage is the whole report of every trial, the workbench's data included. It varies
  with the load of the machine's two shared cores: two benches the same evening gave 1.0 and
  2.3 s at 100,000 patients and 7.7 and 14.4 s at 1,000,000. Before the workbench the stage took
  about 0.05 s at 100,000 patients and 0.1 s at 1,000,000 per trial (`bench/results.md`).
- Not tested in `make test` (a 100,000-patient run takes half a minute or more here): the sizes
  are measured here. The tests check the page's counts against both engines, not its size.
"""


def page_times(path: Path) -> dict:
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        t0 = time.perf_counter()
        page.goto(path.resolve().as_uri(), wait_until="load")
        page.wait_for_function("window.msfeasWorkbench || window.msfeasWorkbenchError", timeout=120_000)
        ready = time.perf_counter() - t0
        error = page.evaluate("window.msfeasWorkbenchError || null")
        # Each slider moved one step down then back, twice over: the time from the input event to
        # the page's counts redrawn (median), as a user dragging a slider sees it.
        moves = page.evaluate("""() => {
            const out = [];
            for (let pass = 0; pass < 2; pass++) for (const el of document.querySelectorAll('input[type=range]')) {
              for (const step of [-1, 1]) {
                const t = performance.now();
                el.value = String(Math.max(0, Number(el.value) + step));
                el.dispatchEvent(new Event('input', {bubbles: true}));
                out.push(performance.now() - t);
              } }
            return out; }""")
        browser.close()
    moves.sort()
    return {"ready_s": ready, "move_ms": moves[len(moves) // 2] if moves else None,
            "move_max_ms": moves[-1] if moves else None, "error": error}


def measure(n: int, browser: bool) -> list[dict]:
    folder = export(n)
    out = Path(tempfile.mkdtemp(prefix="tmp-wb-", dir=ROOT / "bench")) / "run"
    try:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "pipeline", "run", "--input", str(folder), "--out", str(out),
                        "--trial", "all", "--as-of", AS_OF], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - t0
        summary = json.loads((out / "summary.json").read_text())
        rows = []
        for trial in summary["trials"]:
            html_path = out / trial / "report.html"
            html = html_path.read_text("utf-8")
            data = DATA.search(html).group(1)
            payload = json.loads(data)
            row = {"patients": n, "trial": trial, "report_bytes": html_path.stat().st_size,
                   "data_bytes": len(data.encode()), "combinations": payload["rows"],
                   "sliders": len(payload["sliders"]), "run_s": wall,
                   "report_stage_s": summary["timings_seconds"]["report"]}
            if browser:
                row.update(page_times(html_path))
            rows.append(row)
            print(json.dumps(row), flush=True)
        return rows
    finally:
        shutil.rmtree(out.parent, ignore_errors=True)


def write(rows: list[dict], path: Path) -> None:
    lines = [
        "# The workbench at scale",
        "",
        f"- date: {dt.date.today().isoformat()}; synthetic exports (`python -m pipeline.synth --seed 1`), "
        f"`msfeas run --trial all --as-of {AS_OF}` (polars)",
        "- command: `python bench/workbench_size.py` (sizes as below)",
        "- limits (issue 16): report.html under 2 MB at 100,000 patients, under 10 MB at 1,000,000",
        "- page ready: from navigation to the workbench drawn (data inflated, every criterion counted); recount: "
        "from a slider's input event to the counts redrawn (each slider one step down and back, twice), "
        "headless Chromium on the same machine",
        "",
        "| patients | trial | report.html bytes | of which workbench data | combinations | sliders | "
        "report stage s (all trials) | page ready s | recount ms, median (max) | limit |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        limit = LIMITS.get(r["patients"])
        ok = "" if limit is None else ("met" if r["report_bytes"] < limit else "NOT met")
        ready = f"{r['ready_s']:.1f}" if "ready_s" in r else "-"
        move = f"{r['move_ms']:.0f} ({r['move_max_ms']:.0f})" if r.get("move_ms") is not None else "-"
        lines.append(f"| {r['patients']:,} | {r['trial']} | {r['report_bytes']:,} | {r['data_bytes']:,} | "
                     f"{r['combinations']:,} | {r['sliders']} | {r['report_stage_s']:.1f} | {ready} | {move} | {ok} |")
    path.write_text("\n".join(lines) + "\n" + NOTES, "utf-8")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "workbench.md")
    ap.add_argument("--no-browser", action="store_true")
    args = ap.parse_args()
    rows = [r for n in args.sizes for r in measure(n, not args.no_browser)]
    write(rows, args.out)
    print(args.out.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
