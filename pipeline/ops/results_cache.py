"""Each criterion's results kept beside the validated export, for what-if re-runs.

A what-if re-run ("what if the EDSS limit were 7.0?") changes one criterion, or a few; every
other criterion's statuses and evidence are exactly those the previous run computed from the
same validated tables. Judging them again is most of a re-run's time (9 of 15 s for a million
patients, with progression on therapy alone 7 s), so the first run keeps each criterion's
columns, and a re-run judges only the criteria whose definition changed.

A criterion's results depend on the validated export, its own resolved rule (node type, fields
and children, parameters substituted), the reference date, the engine, and the code that
judges it. They are kept inside the export's cache entry (`pipeline.ops.export_cache`), whose key covers
every byte of the export with the dialect, the drug vocabulary and the validation code, and
go with it when the entry is evicted or the cache deleted. Within the entry, a file's name is
the SHA-256 of the rest: the rule (not the criterion's id, its place in the trial file or its
parameters' names, so the same rule under another name or in another trial is found too), the
date, the engine, and the bytes of the criteria compilers, the engines, the SQL blocks and the
contract's schemas with polars' and duckdb's versions. Any change to any of them is a miss,
never a stale result.

Rows are in the evaluation's order (sorted patient ids); `patients.ipc` holds those ids, and
`engines.evaluate` uses stored results only when they match its own patients row for row.
Files are written beside and renamed into place, so a concurrent or killed run leaves either
the whole file or none; a damaged file is a miss. Only the `KEEP` most recently used results
beyond the current run's are kept. A cache that cannot be written costs time, never the run.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import hashlib
import json
import os
from pathlib import Path

import polars as pl

from pipeline.engines import PID, Known
from pipeline.engines.sql_cache import _plain

KEEP = 64  # results of other rules kept per export, beyond those of the current run
PATIENTS = "patients.ipc"


@functools.cache
def _code() -> str:
    """The bytes of everything that judges a criterion, and the versions of the engines' libraries."""
    from importlib import metadata

    import schemas
    from pipeline.criteria.paths import sql_dir

    pipeline = Path(__file__).resolve().parent.parent
    files = sorted([*(pipeline / "criteria").glob("*.py"), *(pipeline / "engines").glob("*.py"),
                    *Path(schemas.__file__).parent.glob("*.py")])
    files += sorted((sql_dir() / "blocks").glob("*.sql"))
    h = hashlib.sha256(f"{metadata.version('polars')}\0{metadata.version('duckdb')}".encode())
    for f in files:
        h.update(b"\0" + f.name.encode() + b"\0" + f.read_bytes())
    return h.hexdigest()


def _rule(node) -> dict:
    """What a node means: its type, fields and children (not its place in the file, not its parameters' names)."""
    return {"type": node.type, "args": node.args, "children": [_rule(ch) for ch in node.children]}


def key(node, engine: str, as_of: dt.date) -> str:
    rule = json.dumps(_rule(node), sort_keys=True, default=_plain)
    return hashlib.sha256(f"{_code()}\0{engine}\0{as_of.isoformat()}\0{rule}".encode()).hexdigest()


@dataclasses.dataclass
class Results:
    """The stored results of one export (`folder`, inside its cache entry) for one engine and date."""

    folder: Path
    engine: str
    as_of: dt.date

    def _path(self, criterion) -> Path:
        return self.folder / f"{key(criterion.node, self.engine, self.as_of)}.ipc"

    def load(self, criteria) -> Known | None:
        """The stored results of those of `criteria` that have them; None when none has."""
        found = {}
        for c in criteria:
            path = self._path(c)
            try:
                found[c.id] = pl.read_ipc(path)
                os.utime(path)  # most recently used
            except (OSError, pl.exceptions.PolarsError):
                continue  # a miss (or a damaged file): judged again, and stored again
        if not found:
            return None
        try:
            patients = pl.read_ipc(self.folder / PATIENTS)[PID]
        except (OSError, pl.exceptions.PolarsError, pl.exceptions.ColumnNotFoundError):
            return None
        return Known(patients, {cid: f for cid, f in found.items() if f.height == patients.len()})

    def store(self, evaluation: pl.DataFrame, criteria, known: Known | None, absent: list[str] = ()) -> None:
        """Keep the results of `criteria` that were judged in this run, and make room: the least recently
        used results and workbench parts of other rules go. `known`: the results this run took from
        here, as `engines.evaluate` used them (None when it used none: their patients were not the
        evaluation's); `absent`: the export's absent tables, which name this run's parts."""
        if not self.folder.parent.is_dir():  # the export itself is not in the cache
            return
        taken = known.results if known is not None else {}
        try:
            self.folder.mkdir(mode=0o700, exist_ok=True)
            if not taken:  # (again, should the stored ids not have been this evaluation's)
                _write(evaluation.select(PID), self.folder / PATIENTS)
            for c in criteria:
                if c.id in taken:
                    continue
                frame = evaluation.select(pl.col(c.id).alias("status"),
                                          *[pl.col(f"{c.id}__{n}").alias(n) for n in c.evidence])
                _write(frame, self._path(c))
            parts = self.parts(list(absent), evaluation.height)
            self._evict(keep={self._path(c).name for c in criteria} | {parts._stem(c) for c in criteria})
        except (OSError, pl.exceptions.PolarsError):
            pass

    def _evict(self, keep: set[str]) -> None:
        others = sorted((p for p in self.folder.glob("*.ipc") if p.name != PATIENTS and p.name not in keep
                         and not p.name.startswith("part-")), key=lambda p: p.stat().st_mtime, reverse=True)
        parts = sorted((p for p in self.folder.glob("part-*.json") if p.stem not in keep),
                       key=lambda p: p.stat().st_mtime, reverse=True)
        for old in others[KEEP:]:
            old.unlink(missing_ok=True)
        for old in parts[KEEP:]:
            old.with_suffix(".ipc").unlink(missing_ok=True)
            old.unlink(missing_ok=True)

    def parts(self, absent: list[str], population: int) -> "Parts":
        """Where the report's workbench keeps each criterion's part of the page (`workbench.Part`)."""
        return Parts(self, frozenset(absent), population)


@dataclasses.dataclass
class Parts:
    """The workbench's part of the page for each criterion (`workbench.build(kept=...)`).

    A part is what the page shows of a criterion: its sliders, their positions, and per patient
    the codes of the values they compare. It follows from the criterion's results (its rule, the
    date, the engine, as above) and from how the criterion is written (its id, text, parameters
    and their names, which parameters this run set), and from the tables absent from the export;
    all of that is the key. The page's code is part of the export's key (pipeline/ops/export_cache.py).
    """

    results: Results
    absent: frozenset[str]
    population: int

    def _stem(self, c) -> str:
        about = json.dumps({"id": c.id, "kind": c.kind, "text": c.text, "parameters": c.parameters,
                            "types": c.param_types, "overridden": sorted(c.overridden),
                            "node": dataclasses.asdict(c.node), "absent": sorted(self.absent & set(c.tables))},
                           sort_keys=True, default=_plain)
        r = key(c.node, self.results.engine, self.results.as_of)
        return "part-" + hashlib.sha256(f"{r}\0{about}".encode()).hexdigest()

    def load(self, c):
        from pipeline.outputs.workbench.encoding import _Column
        from pipeline.outputs.workbench.model import Part

        stem = self.results.folder / self._stem(c)
        try:
            meta = json.loads(stem.with_suffix(".json").read_text("utf-8"))
            keys = pl.read_ipc(stem.with_suffix(".ipc"))
            if keys.height != self.population or keys.width != len(meta["columns"]):
                return None
            columns = [_Column(m["name"], keys[f"k{i}"].cast(pl.Int64).to_numpy(),
                               [tuple(e) if isinstance(e, list) else e for e in m["entries"]])
                       for i, m in enumerate(meta["columns"])]
            os.utime(stem.with_suffix(".json"))
            return Part(meta["entry"], columns, meta["sliders"], meta["notes"])
        except (OSError, ValueError, KeyError, TypeError, pl.exceptions.PolarsError):
            return None

    def store(self, c, part) -> None:
        if not self.results.folder.parent.is_dir():  # the export itself is not in the cache
            return
        stem = self.results.folder / self._stem(c)
        meta = {"entry": part.entry, "sliders": part.sliders, "notes": part.notes,
                "columns": [{"name": col.name, "entries": col.entries} for col in part.columns]}
        keys = pl.DataFrame({f"k{i}": pl.Series(col.keys).shrink_dtype() for i, col in enumerate(part.columns)},
                            height=self.population)
        try:
            self.results.folder.mkdir(mode=0o700, exist_ok=True)
            _write(keys, stem.with_suffix(".ipc"))
            tmp = stem.with_name(f".{stem.name}.json.{os.getpid()}")
            tmp.write_text(json.dumps(meta), "utf-8")
            tmp.replace(stem.with_suffix(".json"))
        except (OSError, TypeError, ValueError, pl.exceptions.PolarsError):
            pass


def _write(frame: pl.DataFrame, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    frame.write_ipc(tmp, compression="lz4")
    tmp.replace(path)  # atomic: a concurrent run reads the old state or the whole file


def for_run(cache_dir: Path | None, export_key: str | None, engine: str, as_of: dt.date) -> Results | None:
    """The results of this export in the cache, for a run of `engine` at `as_of`; None without a cache."""
    if cache_dir is None or export_key is None or engine not in ("polars", "duckdb"):
        return None
    from pipeline.ops import export_cache as cache

    return Results(cache.entry_dir(cache_dir, export_key) / "criteria", engine, as_of)
