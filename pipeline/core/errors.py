"""The errors a user can meet, each mapped to one exit code and one clear line.

A user must never see a bare traceback for bad input or a faulty environment: every
problem the export contract calls fatal is raised as `FatalInputError`, naming the
file and, where it applies, the line and column and the rule that was broken; a path
that cannot be written, a full disk, a signal each have their own code (`EXIT_*`
below, listed in the README and `msfeas --help`). `describe` turns any exception
into (exit code, message); 70 is left for what is really a bug.

Messages land in terminals, cron mail and logs, so they are bounded: `clip` quotes
a value at most ~60 characters long, `some` lists a few items and counts the rest,
and `describe` caps the whole message.
"""

from __future__ import annotations

import difflib
import errno
import re

EXIT_OK = 0
EXIT_INPUT = 1  # the export cannot be used
EXIT_USAGE = 2  # wrong usage
EXIT_LOCKED = 3  # nightly: another nightly holds the runs folder
EXIT_VOLUME = 4  # nightly: the export shrank by more than --max-drop
EXIT_UNAVAILABLE = 69  # the Spark cluster ran no executor for the run's job (none granted, master or executors lost)
EXIT_SOFTWARE = 70  # internal error: a bug
EXIT_CANTCREAT = 73  # the output cannot be written where asked (permissions, a file or folder in the way)
EXIT_IOERR = 74  # writing failed: disk full, file size limit, I/O error
EXIT_INTERRUPTED = 130  # SIGINT (Ctrl-C)
EXIT_TERMINATED = 143  # SIGTERM (systemctl stop, a timeout)

EXIT_CODES = {
    EXIT_OK: "done",
    EXIT_INPUT: "the export cannot be used (the message names the file, and line, column and rule where they apply)",
    EXIT_USAGE: "wrong usage (options, trial file, --out not empty or not a run folder)",
    EXIT_LOCKED: "nightly: another nightly is running on this runs folder",
    EXIT_VOLUME: "nightly: a table or the patient count fell by more than --max-drop",
    EXIT_CANTCREAT: "the output cannot be written where asked (permission denied, a file or folder in the way)",
    EXIT_IOERR: "writing failed: disk full, file size limit or I/O error",
    EXIT_UNAVAILABLE: "the Spark cluster ran no executor for the run (none granted, or the master or every "
                      "executor lost) within msfeas.spark.wait; the message names the master and what Spark said",
    EXIT_SOFTWARE: "internal error (a bug: please report it)",
    EXIT_INTERRUPTED: "interrupted (SIGINT, Ctrl-C)",
    EXIT_TERMINATED: "terminated (SIGTERM)",
}

MAX_MESSAGE = 600  # characters of any one message
QUOTE = 60  # characters of a quoted value

SPACE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO}
PATH_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EISDIR, errno.EEXIST,
               errno.ENOTEMPTY, errno.ELOOP, errno.ENAMETOOLONG, errno.EXDEV}


def clip(value: object, limit: int = QUOTE) -> str:
    """`value` quoted (repr) and cut to about `limit` characters, saying how long it was."""
    text = str(value)
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}… ({len(text):,} characters)"


def some(items, limit: int = 5, sep: str = ", ") -> str:
    """The first `limit` items, then "and N more"."""
    items = [str(i) for i in items]
    if len(items) <= limit:
        return sep.join(items)
    return f"{sep.join(items[:limit])} and {len(items) - limit:,} more"


# A quoted value: an opening quote not inside a word, a closing one not followed by a word character
# (so the apostrophes of "the table's" never pair with a quote).
_LONG_QUOTE = re.compile(r"(?<!\w)'([^'\n]{%d,}?)'(?!\w)" % (QUOTE + 1))
_LONG_WORD = re.compile(r"\S{301,}")  # longer than any path: a value given on the command line


def cap(message: str, limit: int = MAX_MESSAGE) -> str:
    """One line of at most about `limit` characters. A long quoted value in it is clipped first,
    and so is any unquoted word longer than a path can be (messages of argparse and of the trial
    file repeat what was given, however long)."""
    message = _LONG_QUOTE.sub(lambda m: clip(m.group(1)), str(message))
    message = _LONG_WORD.sub(lambda m: f"{m.group(0)[:QUOTE]}… ({len(m.group(0)):,} characters)", message)
    message = " ".join(message.split())
    if len(message) <= limit:
        return message
    return f"{message[:limit]}… ({len(message) - limit:,} more characters)"


def suggest(value: object, known, limit: int = 20, label: str = "known") -> str:
    """The nearest valid names to a misspelt `value` (difflib), and all of them when the list is short.

    >>> suggest("natalizumabb", ["natalizumab", "fingolimod"])
    "did you mean 'natalizumab'? known: natalizumab, fingolimod"
    """
    names = list(dict.fromkeys(str(k) for k in known))
    text = str(value)
    folded = {n.lower(): n for n in names}
    near = [folded[m] for m in difflib.get_close_matches(text.lower(), list(folded), n=3, cutoff=0.6)]
    parts = [f"did you mean {' or '.join(repr(n) for n in near)}?"] if near else []
    if len(names) <= limit:
        parts.append(f"{label}: {', '.join(names) or 'none'}")
    elif not near:
        parts.append(f"{len(names):,} {label}, e.g. {', '.join(names[:5])}")
    return " ".join(parts)


def not_an_export_folder(folder) -> "FatalInputError":
    """`--input` names no folder: a file of the export (say to give its folder), or nothing at all."""
    from pathlib import Path

    path = Path(folder)
    if path.is_file():
        parent = str(path.parent) if str(path.parent) not in ("", ".") else "."
        return FatalInputError(str(path), f"is a file, not an export folder: give the folder that holds the "
                                          f"export's tables, --input {parent}")
    return FatalInputError(str(path), "is not an export folder (no such directory)")


class UsageError(Exception):
    """Wrong usage of the command line (exit code 2)."""

    exit_code = EXIT_USAGE


class FatalInputError(Exception):
    """The export cannot be used at all (exit code 1): nothing is written."""

    exit_code = EXIT_INPUT

    def __init__(self, file: str, rule: str, *, line: int | None = None, column: str | None = None):
        self.file, self.rule, self.line, self.column = file, rule, line, column
        where = file
        if line is not None:
            where += f", line {line}"
        if column is not None:
            where += f", column '{column}'"
        super().__init__(f"{where}: {rule}")


class OutputError(Exception):
    """The output cannot be written where asked (exit code 73): a path problem found before or while writing."""

    exit_code = EXIT_CANTCREAT


class ClusterError(Exception):
    """The Spark cluster ran no executor for the run's job within the bounded wait (exit code 69)."""

    exit_code = EXIT_UNAVAILABLE


class Terminated(BaseException):
    """SIGTERM: raised in the main thread by the handler the CLI installs, so that cleanup runs (exit 143).

    A BaseException like KeyboardInterrupt, so that no `except Exception` swallows it.
    """

    exit_code = EXIT_TERMINATED


_OS_ERROR_IN_TEXT = re.compile(r"os error (\d+)")


def os_errno(exc: BaseException) -> int | None:
    """The errno of an OSError, or of a Polars error that wraps one ("... (os error 28)")."""
    if isinstance(exc, OSError) and exc.errno is not None:
        return exc.errno
    m = _OS_ERROR_IN_TEXT.search(str(exc)) if isinstance(exc, Exception) else None
    return int(m.group(1)) if m else None


def io_message(exc: BaseException, path: object = None) -> str:
    """A write failure in words: what happened and, when known, to which file."""
    code = os_errno(exc)
    where = path if path is not None else getattr(exc, "filename", None)
    what = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded",
            errno.EFBIG: "file size limit reached (ulimit -f)", errno.EIO: "input/output error"}.get(code)
    if what is None:
        what = (exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc).splitlines()[0]) or \
            type(exc).__name__
    return f"{what}: {where}" if where else what


def describe(exc: BaseException) -> tuple[int, str]:
    """The exit code and the one-line message for an exception that ends a run."""
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED, "interrupted"
    if isinstance(exc, Terminated):
        return EXIT_TERMINATED, cap(str(exc) or "terminated")
    code = getattr(exc, "exit_code", None)
    if isinstance(code, int) and code != EXIT_SOFTWARE:
        return code, cap(str(exc))
    number = os_errno(exc)
    if number in SPACE_ERRNOS:
        return EXIT_IOERR, cap(f"cannot write: {io_message(exc)}")
    if number in PATH_ERRNOS:
        return EXIT_CANTCREAT, cap(f"cannot write: {io_message(exc)}")
    return EXIT_SOFTWARE, cap(f"{type(exc).__name__}: {exc}")


# The interrupt (SIGINT or SIGTERM) this process received, if any, or the reason the Spark watch
# stopped the run from another thread (pipeline/engines/spark/watch.py). Python only prints an
# exception raised where it cannot propagate (a callback, a destructor), and the run then
# fails on what that left half done, with another error: a run that was interrupted is
# reported as interrupted all the same (see `cause`).
SIGNALLED: list[BaseException] = []


def cause(exc: BaseException) -> BaseException:
    """The reason to report for a run that stopped with `exc`: the interrupt it received, if any."""
    if SIGNALLED and SIGNALLED[0] is not exc:
        sig = SIGNALLED[0]
        if getattr(exc, "failed_log", None):
            sig.failed_log = exc.failed_log
        return sig
    return exc
