"""OMOP CDM 5.4 as an input: a folder of CSV or Parquet tables, a DuckDB file or a PostgreSQL database,
read into the same validated registry the CSV contract gives (docs/omop.md)."""

from pipeline.inputs.omop.reader import read

__all__ = ["read"]
