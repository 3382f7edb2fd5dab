"""No silent waits on a Spark cluster, and a stop that does not hang.

A thread per session (`start`, from `session.get_session`):

- on a cluster, copies the warnings that explain a stall (pipeline/engines/spark/log4j2.properties sends them to
  a file of this process: "Initial job has not accepted any resources", "Connection to master ...
  failed", "Lost executor ...") into the run's log (`attach`) and onto stderr, and Spark's
  errors into the run's log (they are on stderr already);
- on a cluster (not `local[...]`), stops the run when a job has waited with no executor at all for
  `msfeas.spark.wait` seconds (`--spark-conf msfeas.spark.wait=120`, default 300): the master
  granted none, or the master or every executor was lost. The reason (`ClusterError`, exit 69)
  names the master and what Spark reported.

`abort` stops a run from outside its main thread: the reason is remembered as the run's cause
(`pipeline.core.errors.SIGNALLED`), and a thread of its own cancels every job and stops the
session, so that the Spark call the main thread waits in returns with an error and the run
unwinds (its partial folder removed). The CLI's SIGTERM and Ctrl-C handlers use it through
`defer_signal` when the signal lands inside a Spark call: raising there would leave pyspark's
connection to the JVM mid-call, and pyspark's next request on it would wait for the job to end
(with the master gone, forever).
"""

from __future__ import annotations

import atexit
import os
import re
import sys
import tempfile
import threading
import time

from pipeline.core.errors import SIGNALLED, ClusterError, UsageError, cap, describe

WAIT_SETTING = "msfeas.spark.wait"
DEFAULT_WAIT = 300.0  # seconds a job may wait with no executor before the run stops
POLL = 1.0  # seconds between two looks at the cluster
GRACE = 20.0  # after a signal, seconds the run has to unwind before the process leaves regardless
RECENT = 4  # Spark's last messages kept for the reason of a stop

_log_path: str | None = None
_watch: _Watch | None = None
_abort_lock = threading.Lock()
_aborting = False


def log_file() -> str:
    """The file the driver JVM writes its stall warnings and errors to (one per process, removed at exit)."""
    global _log_path
    if _log_path is None:
        fd, _log_path = tempfile.mkstemp(prefix="msfeas-spark-", suffix=".log")
        os.close(fd)
        atexit.register(_remove, _log_path)
    return _log_path


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


_UNITS = {"": 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}


def parse_wait(conf: dict[str, str] | None) -> float:
    """`msfeas.spark.wait` in seconds: `90`, `90s`, `5min`, `1h` (default 300)."""
    text = (conf or {}).get(WAIT_SETTING)
    if text is None:
        return DEFAULT_WAIT
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*", text.lower())
    if not m or m.group(2) not in _UNITS or float(m.group(1)) <= 0:
        raise UsageError(f"--spark-conf {WAIT_SETTING}={text!r}: expected a positive number of seconds "
                         "(e.g. 300, 90s, 5min)")
    return float(m.group(1)) * _UNITS[m.group(2)]


class _Watch(threading.Thread):
    def __init__(self, spark, master: str, wait: float):
        super().__init__(name="msfeas-spark-watch", daemon=True)
        self.spark, self.sc, self.master, self.wait = spark, spark.sparkContext, master, wait
        self.local = master.startswith("local")
        self.done = threading.Event()
        self.log = None  # the run's RunLog (`attach`)
        self.recent: list[str] = []
        self.had_executors = False
        path = log_file()
        self.offset = os.path.getsize(path) if os.path.exists(path) else 0
        self.carry = b""

    def run(self) -> None:
        since = None
        while not self.done.wait(POLL):
            if self.local:  # every task runs in this process: nothing to wait for, nothing to report
                continue
            self.tail()
            try:
                executors = len(self.sc._jsc.sc().statusTracker().getExecutorInfos()) - 1  # less the driver
                waiting = bool(self.sc.statusTracker().getActiveJobsIds())
            except Exception:  # noqa: BLE001 - the session was stopped under us: nothing left to watch
                return
            if executors > 0:
                self.had_executors = True
            if executors > 0 or not waiting:
                since = None
                continue
            since = since or time.monotonic()
            if time.monotonic() - since >= self.wait and not self.done.is_set():
                self.tail()
                what = "lost every executor" if self.had_executors else "granted no executor"
                reported = some_recent(self.recent)
                abort(ClusterError(f"the Spark cluster {self.master} {what} for {self.wait:g} s while a job "
                                   f"waited (--spark-conf {WAIT_SETTING}); Spark reported: {reported}"))
                return

    def tail(self) -> None:
        """Spark's new warnings and errors: into the run's log; the warnings onto stderr too."""
        try:
            with open(log_file(), "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except OSError:
            return
        self.offset += len(data)
        lines = (self.carry + data).split(b"\n")
        self.carry = lines.pop()
        for raw in lines:
            line = raw.decode("utf-8", "replace").strip()
            if not line:
                continue
            level, _, message = line.partition(" ")
            self.recent = (self.recent + [message])[-RECENT:]
            log = self.log
            if log is not None:
                try:
                    log.event("spark", cap(message), level="warning" if level == "WARN" else "error")
                except Exception:  # noqa: BLE001 - a run log that cannot be written fails the run itself
                    pass
            if level == "WARN" and (log is None or not log.echo):  # errors: on stderr already
                try:
                    print(f"msfeas: spark: {cap(message)}", file=sys.stderr, flush=True)
                except (OSError, ValueError):
                    pass


def some_recent(messages: list[str]) -> str:
    """Spark's last distinct messages, the newest last (or a word that it said nothing)."""
    distinct = list(dict.fromkeys(messages))[-2:]
    return " / ".join(distinct) if distinct else "nothing (no warning or error in its log)"


def start(spark, master: str, conf: dict[str, str] | None, stop_session) -> None:
    """Watch this session (the one `session.get_session` just started); `stop_session` stops it."""
    global _watch, _aborting
    wait = parse_wait(conf)
    stop()
    _aborting = False
    _watch = _Watch(spark, master, wait)
    _watch.stop_session = stop_session
    _watch.start()


def attach(log) -> None:
    """Spark's warnings and errors go to this run's log from now on."""
    if _watch is not None:
        _watch.log = log


def stop() -> None:
    global _watch
    if _watch is not None:
        _watch.done.set()
        if _watch is not threading.current_thread() and not _watch.local:
            _watch.tail()
        _watch = None


def abort(reason: BaseException, grace: float | None = None) -> None:
    """Stop the run for `reason` from another thread: cancel every job, stop the session.

    With `grace` (a signal), the process leaves with the reason's exit code if the run has not
    unwound within that many seconds (a driver JVM that does not answer any more).
    """
    global _aborting
    if not any(r is reason for r in SIGNALLED):
        SIGNALLED.append(reason)
    with _abort_lock:
        if _aborting:
            return
        _aborting = True
    watched = _watch
    if watched is not None:
        watched.done.set()
    threading.Thread(target=_cancel, args=(watched, grace), name="msfeas-spark-stop", daemon=True).start()


def _cancel(watched: _Watch | None, grace: float | None) -> None:
    t0 = time.monotonic()
    try:
        if watched is not None:
            watched.sc.cancelAllJobs()
            watched.stop_session()
    except Exception:  # noqa: BLE001 - a session half gone: the main thread's call fails either way
        pass
    if grace is None:
        return
    time.sleep(max(0.0, grace - (time.monotonic() - t0)))
    code, message = describe(SIGNALLED[0])
    try:
        print(f"msfeas: {message}; Spark did not stop within {grace:g} s: leaving now.", file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass
    os._exit(code)


def defer_signal(frame) -> bool:
    """For the CLI's SIGTERM/SIGINT handlers (after they recorded the signal): True when the main
    thread is inside a Spark call (`frame`'s stack runs pyspark or py4j code) of a watched session.
    The jobs are then cancelled and the session stopped from another thread (`abort`), and the
    handler returns: the Spark call ends with an error and the run unwinds as after any signal.
    False: the handler raises as it does for the other engines."""
    if _watch is None or not SIGNALLED:
        return False
    f = frame
    while f is not None:
        if str(f.f_globals.get("__name__", "")).startswith(("pyspark", "py4j")):
            abort(SIGNALLED[0], grace=GRACE)
            return True
        f = f.f_back
    return False
