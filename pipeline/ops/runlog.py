"""The run's log: JSON lines (stage, message, counts, durations, warnings) for machines, progress for people.

Every event goes as one JSON object per line to `run.log` in the run folder (the file
is opened in the partial folder and stays open when that folder is renamed into
place). On stderr, what is written depends on who is watching:

- a terminal gets short progress lines (`stage: message`);
- otherwise (cron, systemd) only warnings and errors, as JSON lines; with `quiet` (the
  nightly) nothing at all: a good night sends no mail, and a bad one sends the one error
  line the CLI prints (the JSON stays in `run.log` / `failed-<date>.log`);
- `verbose` sends every event: JSON lines, or `level stage: message` lines with
  `log_format="text"`.

A closed stderr (a reader that went away) stops the echo, never the run; a failed
write to `run.log` (a full disk) is an error of the run, with the file named.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path
from typing import IO


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


def _line(record: dict) -> str:
    return json.dumps(record, ensure_ascii=False, default=str) + "\n"


class RunLog:
    def __init__(self, stream: IO[str] | None = None, *, verbose: bool = False, tty: bool | None = None,
                 echo: bool = False, quiet: bool = False, log_format: str = "json"):
        """`echo=False` (the plain `msfeas run`) keeps stderr for the CLI's own messages."""
        self.quiet, self.log_format = quiet, log_format
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.verbose, self.echo = verbose, echo
        self.file: IO[str] | None = None
        self.path: Path | None = None
        self.events: list[dict] = []

    def attach(self, path: Path) -> None:
        """Start writing to `path`, with what was logged before."""
        self.file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - stays open across the folder's rename
        self.path = path
        self._write("".join(_line(e) for e in self.events))

    def _write(self, text: str) -> None:
        try:
            self.file.write(text)
            self.file.flush()
        except OSError as exc:
            raise OSError(exc.errno, exc.strerror or str(exc), str(self.path)) from None

    def detach(self) -> None:
        if self.file is not None:
            file, self.file = self.file, None
            try:
                file.close()
            except OSError:  # a full disk at the last flush: the run has failed already or will say so
                pass

    def event(self, stage: str, message: str, level: str = "info", **fields) -> None:
        record = {"time": _now(), "level": level, "stage": stage, "message": message, **fields}
        self.events.append(record)
        line = _line(record)
        if self.file is not None:  # before `attach`, the event waits in `events`
            self._write(line)
        if not self.echo:
            return
        try:
            if self.verbose and self.log_format == "text":
                self.stream.write(f"{level} {stage}: {message}\n")
            elif self.verbose or (not self.tty and not self.quiet and level in ("warning", "error")):
                self.stream.write(line)
            elif self.tty:
                extra = f" ({fields['seconds']} s)" if "seconds" in fields else ""
                self.stream.write(f"{stage}: {message}{extra}\n")
            self.stream.flush()
        except (OSError, ValueError):  # stderr closed (a broken pipe): stop echoing, go on
            self.echo = False

    def write_to(self, path: Path) -> None:
        """Write every event so far to `path` (the log of a run that produced no folder)."""
        path.write_text("".join(_line(e) for e in self.events), "utf-8")
