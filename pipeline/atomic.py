"""Putting a finished run folder in place so that no reader ever sees half of one.

A run is built in a hidden temporary folder beside its final place (same file system,
so a rename is atomic). Publishing is then one rename; replacing an existing folder
(a re-run of the same day, `--force`) is one atomic *exchange* of the two folders
(Linux renameat2 RENAME_EXCHANGE), after which the old content, now under the
temporary name, is removed. Where the exchange is not available the old folder is
first renamed aside: a crash in the microseconds between the two renames leaves the
old run under its hidden name, never a half-written one under the real name.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import shutil
import tempfile
from pathlib import Path

PARTIAL = ".partial-"
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def partial_dir(out: Path) -> Path:
    """A new hidden, owner-only folder beside `out`: `.<name>.partial-XXXX`."""
    out.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{out.name}{PARTIAL}", dir=out.parent))


def _exchange(a: Path, b: Path) -> bool:
    libc_name = ctypes.util.find_library("c")
    if not libc_name:
        return False
    libc = ctypes.CDLL(libc_name, use_errno=True)
    fn = getattr(libc, "renameat2", None)
    if fn is None:
        return False
    rc = fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    return rc == 0


def publish(tmp: Path, out: Path) -> None:
    """Move the finished folder `tmp` to `out`, replacing `out` atomically if it exists."""
    if not out.exists() and not out.is_symlink():
        os.rename(tmp, out)
        return
    if _exchange(tmp, out):
        shutil.rmtree(tmp, ignore_errors=True)  # tmp now holds the old run
        return
    aside = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
    os.rename(out, aside / "run")
    os.rename(tmp, out)
    shutil.rmtree(aside, ignore_errors=True)


def point(link: Path, target: str) -> None:
    """Make the symlink `link` point to `target` (relative), replacing it atomically."""
    tmp = link.with_name(f".{link.name}.tmp-{os.getpid()}")
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(target, tmp)
    os.replace(tmp, link)
