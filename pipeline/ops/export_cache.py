"""A cache of validated exports (and of their quality findings), for what-if re-runs.

An analyst who tries "what if the EDSS limit were 7.0?" re-runs on the same export with
another `--set` or `--trial`. Reading and validating the export, and the
quality suites, give the same answer every time for the same bytes, so the
first run stores the accepted tables, the quarantine and the row accounting (Parquet
and JSON) and the quality findings; a later run with the same inputs reads them back.

Never stale: the key is a SHA-256 of every byte of every file of the export folder,
with the dialect, the drug vocabulary, the reject limit, the calendar date (validation
refuses dates after today) and the msfeas version. Any byte changed is a miss. The
cache holds patient-level data: it is created readable by its owner only (the CLI's
umask), lives in one folder the user may delete at any time (`--cache DIR`, default
`$MSFEAS_CACHE` or `~/.cache/msfeas`), keeps the `KEEP` most recently used exports, and
is off with `--no-cache` (and off by default for `msfeas nightly`, whose export changes
every night).
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import shutil
import time
from pathlib import Path

import polars as pl

from pipeline import __version__
from pipeline.core.dialect import Dialect
from pipeline.inputs import shards
from pipeline.inputs.registry import Registry, TableInput

FORMAT = 2  # bump when what is stored changes (2: a large export's shards)
KEEP = 4  # exports kept; the least recently used beyond that are removed


def default_dir() -> Path:
    env = os.environ.get("MSFEAS_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "msfeas"


def _code_hash() -> str:
    """The code that reads, validates and checks the quality of an export: a change to any of it
    (a new rule, a new expectation) is a miss, even within one version."""
    import schemas

    h = hashlib.sha256()
    # Every module of the package (the readers and rules, the quality suites, and the report's
    # workbench, whose parts are kept in the entry too), the expectation suites and the drug lines.
    roots = [Path(schemas.__file__).parent, Path(__file__).resolve().parent.parent]
    names = ["**/*.py", "**/expectations/*.json", "config/*.toml"]
    for root in roots:
        for path in sorted({p for n in names for p in root.glob(n) if "__pycache__" not in p.parts}):
            h.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


BLOCK = 1 << 26  # the export's bytes are hashed in blocks of 64 MiB, two (or more) at a time


def _block_digest(path: Path, offset: int) -> bytes:
    # Mapped, not read: no copy of the bytes and no fresh buffer per block (0.44 s against 0.6 s for
    # 1.4 GB read into buffers, on two cores); hashlib lets the other threads run meanwhile.
    with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
        view = memoryview(mapped)
        try:
            return hashlib.sha256(view[offset:offset + BLOCK]).digest()
        finally:
            view.release()


def _file_digests(files: list[Path]) -> list[bytes]:
    """Each file's SHA-256 over the SHA-256 of its blocks, the blocks hashed on every core: a
    million-patient export (1.4 GB) in 0.44 s against 1.0 s for one stream of reads here."""
    from concurrent.futures import ThreadPoolExecutor

    sizes = [p.stat().st_size for p in files]
    jobs = [(p, off) for p, size in zip(files, sizes) for off in range(0, size, BLOCK)]
    with ThreadPoolExecutor(max_workers=max(1, min(len(jobs), os.cpu_count() or 1))) as pool:
        blocks = iter(pool.map(lambda job: _block_digest(*job), jobs))
    out = []
    for p, size in zip(files, sizes):
        h = hashlib.sha256(f"{size}\0".encode())
        for _ in range(0, size, BLOCK):
            h.update(next(blocks))
        out.append(h.digest())
    return out


def export_key(folder: Path, dialect: Dialect | None, vocabulary, today, max_reject: float) -> str | None:
    """The SHA-256 of everything the validated export depends on; None when a file cannot be read
    (then the run reads the export itself, and reports the problem as it always does)."""
    h = hashlib.sha256()
    h.update(json.dumps({"format": FORMAT, "msfeas": __version__, "code": _code_hash(), "dialect": vars(dialect) if dialect else None,
                         "drugs": [sorted(vocabulary.generic_of.items()), sorted(vocabulary.line_of.items(),
                                                                                key=lambda kv: kv[0])],
                         "today": today.isoformat(), "max_reject": max_reject}, default=str).encode())
    try:
        entries = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
        files = [p for p in entries if p.is_file()]
        digests = dict(zip(files, _file_digests(files)))
    except OSError:
        return None
    for path in entries:
        h.update(f"\0{path.name}\0".encode())
        if path in digests:
            h.update(digests[path])
    return h.hexdigest()


def entry_dir(root: Path, key: str) -> Path:
    return root / key


def load(root: Path, key: str, sharded: bool = True) -> Registry | None:
    """The validated export stored under `key`, or None. `sharded=False`: a run that needs the export
    in memory (`--history`) takes an entry kept in shards as a miss, and reads the export afresh."""
    entry = entry_dir(root, key)
    meta_path = entry / "registry.json"
    if not meta_path.is_file():
        return None
    t0 = time.perf_counter()
    try:
        meta = json.loads(meta_path.read_text("utf-8"))
        layout = meta.get("shards")
        if layout and not sharded:
            return None
        tables = {} if layout else {t: pl.read_parquet(entry / "tables" / f"{t}.parquet") for t in meta["tables"]}
        quarantine = {t: pl.read_parquet(entry / "quarantine" / f"{t}.parquet") for t in meta["quarantine"]}
        registry = Registry(tables, {t: TableInput(**i) for t, i in meta["inputs"].items()}, quarantine,
                            Dialect(**meta["dialect"]))
        if layout:  # read where they lie, shard by shard (pipeline/inputs/shards.py)
            shards.open_in(registry, shards.Shards.open(entry / "shards", layout["k"], meta["tables"]))
    except (OSError, ValueError, KeyError, pl.exceptions.PolarsError):
        return None  # a damaged entry is a miss; it is replaced by the next store
    os.utime(entry)  # most recently used
    registry.read_seconds = time.perf_counter() - t0
    return registry


def store(root: Path, key: str, registry: Registry) -> None:
    """Store a validated export (written beside, then renamed into place: never half an entry)."""
    entry = entry_dir(root, key)
    if entry.exists():
        return
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".{key}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        (tmp / "tables").mkdir(parents=True)
        (tmp / "quarantine").mkdir()
        if registry.shards is None:
            for t, frame in registry.tables.items():
                frame.write_parquet(tmp / "tables" / f"{t}.parquet", statistics=False)
        for t, frame in registry.quarantine.items():
            frame.write_parquet(tmp / "quarantine" / f"{t}.parquet", statistics=False)
        meta = {"tables": list(registry.tables), "quarantine": list(registry.quarantine),
                "inputs": {t: vars(i) for t, i in registry.inputs.items()}, "dialect": vars(registry.dialect),
                "shards": registry.shards.as_dict() if registry.shards is not None else None}
        (tmp / "registry.json").write_text(json.dumps(meta), "utf-8")
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)  # the disk is full: no cache
        return
    # A large export's shards are moved (not copied: gigabytes) into the entry; where they cannot be
    # (the cache on another file system) they stay in the run's folder and the export is not cached.
    moved = registry.shards is not None
    try:
        if moved:
            os.rename(registry.shards.folder, tmp / "shards")
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        return
    try:
        tmp.rename(entry)
    except OSError:  # another run stored it first
        if moved:
            os.rename(tmp / "shards", registry.shards.folder)
        shutil.rmtree(tmp, ignore_errors=True)
        return
    if moved:
        shards.open_in(registry, registry.shards.moved(entry / "shards"), registry.tables["patients"])
    _evict(root)


def _evict(root: Path) -> None:
    entries = sorted((p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")),
                     key=lambda p: p.stat().st_mtime, reverse=True)
    for old in entries[KEEP:]:
        shutil.rmtree(old, ignore_errors=True)


def quality_key(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:32]


def has_quality(root: Path, key: str, settings: dict) -> bool:
    """Whether the quality findings of this export for these settings are stored."""
    return (entry_dir(root, key) / "quality" / quality_key(settings) / "quality.json").is_file()


def load_quality(root: Path, key: str, settings: dict, results_dir: Path) -> dict | None:
    """The quality findings of this export for these settings (as_of, look-backs, engine), with the raw
    results copied into `results_dir`; None on a miss."""
    stored = entry_dir(root, key) / "quality" / quality_key(settings)
    if not (stored / "quality.json").is_file():
        return None
    try:
        found = json.loads((stored / "quality.json").read_text("utf-8"))
        results_dir.mkdir(exist_ok=True)
        for f in sorted((stored / "results").iterdir()):
            shutil.copyfile(f, results_dir / f.name)
    except (OSError, ValueError):
        return None
    return found


def store_quality(root: Path, key: str, settings: dict, found: dict, results_dir: Path) -> None:
    entry = entry_dir(root, key)
    if not entry.is_dir():
        return
    target = entry / "quality" / quality_key(settings)
    tmp = entry / "quality" / f".{target.name}.{os.getpid()}.tmp"
    try:
        (tmp / "results").mkdir(parents=True, exist_ok=True)
        for f in sorted(results_dir.glob("*.json")):
            shutil.copyfile(f, tmp / "results" / f.name)
        (tmp / "quality.json").write_text(json.dumps(found), "utf-8")
        tmp.rename(target)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
