"""The floor of the benchmark: read every CSV of an export with polars, dates parsed, and nothing else."""

import sys
from pathlib import Path

import polars as pl

for path in sorted(Path(sys.argv[1]).glob("*.csv")):
    pl.read_csv(path, try_parse_dates=True)
