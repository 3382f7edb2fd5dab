"""Putting a finished run folder in place so that no reader ever sees half of one.

A run is built in a hidden temporary folder beside its final place (same file system,
so a rename is atomic): `.<name>.partial-<pid>-XXXX`. Publishing is then one rename;
replacing an existing folder (a re-run of the same day, `--force`) is one atomic
*exchange* of the two folders (Linux renameat2 RENAME_EXCHANGE). Where the exchange
is not available the old folder is first renamed aside: a crash in the microseconds
between the two renames leaves the old run under its hidden name, never a
half-written one under the real name.

What was replaced is then
- unlinked if it was a symbolic link (an `--out` that was a link: the link is
  replaced, whatever it pointed to is left alone);
- kept complete as a hidden `.<name>.replaced-<time>-<pid>` folder when asked (the
  nightly: a reader who entered the old folder, `cd RUNS/latest`, keeps reading a
  complete run until the next night's sweep removes it);
- otherwise removed.

Leftovers of a killed run are hidden names only; `sweep_dead_partials` removes those
of `--out` whose process is gone, and the nightly sweeps everything hidden it owns.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import datetime as dt
import glob
import os
import re
import shutil
import tempfile
from pathlib import Path

from pipeline.core.errors import PATH_ERRNOS, OutputError

PARTIAL = ".partial-"
REPLACED = ".replaced-"
DELETING = ".deleting-"
LINK_TMP = ".tmp-"
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def path_error(exc: OSError, what: str) -> Exception:
    """A permission or path problem as OutputError (exit 73) saying `what` failed; other errors
    (a full disk: exit 74) are returned as they are, to be raised by the caller."""
    if exc.errno in PATH_ERRNOS:
        return OutputError(f"{what}: {exc.strerror}")
    return exc


def partial_dir(out: Path) -> Path:
    """A new hidden, owner-only folder beside `out`: `.<name>.partial-<pid>-XXXX`."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise path_error(exc, f"cannot create the folder {out.parent}") from None
    try:
        return Path(tempfile.mkdtemp(prefix=f".{out.name}{PARTIAL}{os.getpid()}-", dir=out.parent))
    except OSError as exc:
        raise path_error(exc, f"cannot create a folder in {out.parent}") from None


def own_partials(out: Path) -> list[Path]:
    """This process's partial folders for `out`: what to remove when a signal came while one was
    being made, before its name reached the caller (`mkdtemp` had created it, the assignment not yet)."""
    try:
        return sorted(out.parent.glob(f".{glob.escape(out.name)}{PARTIAL}{os.getpid()}-*"))
    except OSError:
        return []


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove(path: Path) -> None:
    """Remove a file, a link (never what it points to) or a folder tree; what is gone is fine."""
    try:
        if path.is_symlink() or not path.is_dir():
            path.unlink(missing_ok=True)
        else:
            shutil.rmtree(path)
    except FileNotFoundError:
        pass


def sweep_dead_partials(out: Path) -> list[str]:
    """Remove `.<name>.partial-<pid>-*` beside `out` whose process is gone (a killed `msfeas run`)."""
    pattern = re.compile(re.escape(f".{out.name}{PARTIAL}") + r"(\d+)-")
    removed = []
    try:
        entries = list(out.parent.iterdir())
    except OSError:
        return removed
    for p in entries:
        m = pattern.match(p.name)
        if m and int(m.group(1)) != os.getpid() and not _alive(int(m.group(1))):
            try:
                remove(p)
                removed.append(p.name)
            except OSError:
                pass
    return removed


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


def _dispose(old: Path, out: Path, keep_replaced: bool) -> None:
    """What was at `out` before, now at the hidden name `old`."""
    if old.is_symlink() or not old.is_dir():
        old.unlink(missing_ok=True)
    elif keep_replaced:
        stamp = dt.datetime.now().strftime("%Y%m%dT%H%M%S")
        os.rename(old, out.parent / f".{out.name}{REPLACED}{stamp}-{os.getpid()}")
    else:
        shutil.rmtree(old, ignore_errors=True)


def publish(tmp: Path, out: Path, keep_replaced: bool = False) -> None:
    """Move the finished folder `tmp` to `out`, replacing `out` atomically if it exists."""
    if not out.exists() and not out.is_symlink():
        os.rename(tmp, out)
        return
    if _exchange(tmp, out):
        _dispose(tmp, out, keep_replaced)  # tmp now holds the old run (or the old link)
        return
    aside = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
    os.rename(out, aside / "run")
    os.rename(tmp, out)
    _dispose(aside / "run", out, keep_replaced)
    shutil.rmtree(aside, ignore_errors=True)


def point(link: Path, target: str) -> None:
    """Make the symlink `link` point to `target` (relative), replacing it atomically.

    Refuses to replace anything but a symbolic link: a real folder or file named like
    the link is someone's data.
    """
    if (link.exists() or link.is_symlink()) and not link.is_symlink():
        raise OutputError(f"{link} is a real {'folder' if link.is_dir() else 'file'}, not the link msfeas keeps; "
                          "move it away")
    tmp = link.with_name(f".{link.name}{LINK_TMP}{os.getpid()}")
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(target, tmp)
    os.replace(tmp, link)
