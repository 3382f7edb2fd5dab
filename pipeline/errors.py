"""The two kinds of error a user can meet, each mapped to an exit code by the CLI.

A user must never see a bare traceback for bad input: every problem the export
contract calls fatal is raised as `FatalInputError`, naming the file and, where it
applies, the line and column and the rule that was broken.
"""

from __future__ import annotations


class UsageError(Exception):
    """Wrong usage of the command line (exit code 2)."""

    exit_code = 2


class FatalInputError(Exception):
    """The export cannot be used at all (exit code 1): nothing is written."""

    exit_code = 1

    def __init__(self, file: str, rule: str, *, line: int | None = None, column: str | None = None):
        self.file, self.rule, self.line, self.column = file, rule, line, column
        where = file
        if line is not None:
            where += f", line {line}"
        if column is not None:
            where += f", column '{column}'"
        super().__init__(f"{where}: {rule}")
