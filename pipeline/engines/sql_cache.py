"""Compiled criterion queries kept on disk, so that a re-run does not import sqlglot or build SQL.

Building the 18 queries of a trial with sqlglot (and importing it) takes about 0.6 s, more than
running them on a 20,000-patient export: most of a DuckDB what-if re-run. A query's text depends
only on the criterion's resolved node tree (the data arrive as registered tables, the reference
date as the `$as_of` parameter) and on the code that compiles it, so the key is the SHA-256 of
both: the node tree as canonical JSON, and the bytes of the compiler's modules, the contract's
schemas, the SQL blocks and sqlglot's version. Any change to either is a miss, never a stale query.

`pipeline.run` points it at a folder inside the user's cache (`--cache`) and at nothing with
`--no-cache`. The bundled trials' queries, with their published parameters, also ship
compiled in `sql/compiled/` (written by `make sql` beside the review snapshots, under the same
keys; `tests/test_sql_snapshots.py` fails when they are stale), so that a first run of a
bundled trial does not build them either: a stale entry's key simply no longer matches.
This module imports neither sqlglot nor duckdb.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
from pathlib import Path
from typing import Callable

_folder: Path | None = None


def use(folder: Path | None) -> None:
    """Keep compiled queries in `folder` (created owner-only), or nowhere (None)."""
    global _folder
    _folder = folder


def _plain(value):
    """JSON for the values a node's arguments hold besides JSON's own (sets, dates, decimals), typed,
    so that two different arguments never give the same text."""
    if isinstance(value, (set, frozenset)):
        return {"set": sorted(json.dumps(v, sort_keys=True, default=_plain) for v in value)}
    return {type(value).__name__: repr(value)}


@functools.cache
def _code() -> str:
    from importlib import metadata

    here = Path(__file__).resolve().parent
    pipeline = here.parent
    import schemas  # the contract's tables and columns, which the compiler reads

    files = sorted([*(pipeline / "criteria").glob("*.py"), *Path(schemas.__file__).parent.glob("*.py"),
                    here / "duckdb_engine.py", Path(__file__).resolve()])
    from pipeline.criteria.paths import sql_dir

    files += sorted((sql_dir() / "blocks").glob("*.sql"))
    h = hashlib.sha256(metadata.version("sqlglot").encode())
    for f in files:
        h.update(b"\0" + f.name.encode() + b"\0" + f.read_bytes())
    return h.hexdigest()


def key(node, dialect: str) -> str:
    tree = json.dumps(dataclasses.asdict(node), sort_keys=True, default=_plain)
    return hashlib.sha256(f"{_code()}\0{dialect}\0{tree}".encode()).hexdigest()


def shipped_dir() -> Path:
    """The compiled queries of the bundled trials that ship with msfeas (`make sql`)."""
    from pipeline.criteria.paths import sql_dir

    return sql_dir() / "compiled"


def _read(path: Path) -> tuple[str, bool] | None:
    try:
        got = json.loads(path.read_text("utf-8"))
        return got["sql"], bool(got["dated"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def entry(sql: str, dated: bool) -> str:
    """An entry's text (the cache's and the shipped ones')."""
    return json.dumps({"sql": sql, "dated": dated})


def compiled(node, dialect: str, build: Callable[[], tuple[str, bool]]) -> tuple[str, bool]:
    """`build()`'s (query text, whether it reads the reference date), from the folder when kept
    there, else from the shipped queries of the bundled trials, else built (and kept)."""
    name = f"{key(node, dialect)}.json"
    found = (_read(_folder / name) if _folder is not None else None) or _read(shipped_dir() / name)
    if found is not None:
        return found
    if _folder is None:
        return build()
    path = _folder / name
    sql, dated = build()
    try:
        _folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(entry(sql, dated), "utf-8")
        tmp.replace(path)  # atomic: a concurrent run reads the old state or the whole query
    except OSError:
        pass  # a cache that cannot be written costs time, never the run
    return sql, dated
