"""Helpers of the OMOP tests: an export projected to what OMOP carries, statuses keyed by patient number."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import polars as pl

from pipeline import synth
from pipeline.core.dialect import Dialect
from pipeline.core.vocabulary import load_vocabulary
from pipeline.criteria import load_trial
from pipeline.criteria.load import bundled_trials
from pipeline.engines import evaluate
from pipeline.inputs import omop
from pipeline.inputs.ingest import ingest
from pipeline.inputs.omop import writer
from pipeline.inputs.omop.profile import load

AS_OF = dt.date(2026, 11, 1)
TODAY = dt.date(2026, 11, 24)
LABS = ["AST", "ALT", "TBIL", "CREAT"]


def projected(tables: dict[str, pl.DataFrame], site: bool = False) -> dict[str, pl.DataFrame]:
    """The export as OMOP can carry it under the msda profile (docs/omop.md, "What OMOP cannot carry"):
    no consent, Karnofsky, function tests (the table absent), condition severity, infection type, control or
    consent capacity; interferon beta-1b and peginterferon as interferon beta (one MSDA concept), other
    drugs and divozilimab not DMTs; lab tests other than the four; an MRI scan only with a count, one per date."""
    vocab = load_vocabulary()
    t = {k: v.clone() for k, v in tables.items() if k != "function_tests" or site}
    if not site:  # SITE_PROFILE carries these
        t["patients"] = t["patients"].with_columns(pl.lit(None, pl.Utf8).alias("research_consent"))
        t["visits"] = t["visits"].with_columns(pl.lit(None, pl.Int64).alias("karnofsky"))
    g = vocab.generic(pl.col("drug"))
    t["treatments"] = t["treatments"].with_columns(
        g.replace({"interferon_beta_1b": "interferon_beta_1a", "peginterferon_beta_1a": "interferon_beta_1a"})
        .alias("drug")).filter(pl.col("drug").is_not_null() & ~pl.col("drug").is_in(["other", "divozilimab"]))
    t["labs"] = t["labs"].filter(pl.col("test").str.to_uppercase().is_in(LABS))
    t["conditions"] = t["conditions"].with_columns(
        *[pl.lit(None, pl.Utf8).alias(c) for c in ("severity", "infection_type", "controlled", "impairs_consent")])
    t["mri"] = (t["mri"].filter(pl.col("gd_lesions").is_not_null() | pl.col("new_t2_lesions").is_not_null())
                .group_by(["patient_id", "scan_date"], maintain_order=True)
                .agg(pl.col("gd_lesions").max(), pl.col("new_t2_lesions").max()))
    return t


# A site's profile (local concepts, as OMOP reserves ids above 2,000,000,000 for them): Karnofsky, consent
# and the function tests, which the msda profile leaves empty.
SITE_PROFILE = """
[visits]
karnofsky = [2000000001]
[patients]
consent = [2000000002]
[function_tests]
LVEF = [2000000003]
FEV1 = [2000000004]
DLCO = [2000000005]
"""


def accepted(folder: Path) -> dict[str, pl.DataFrame]:
    """The rows of an export folder that the CSV ingest accepts, typed, with the contract's columns; only
    patients numbered `P<digits>` (their number is their OMOP person_id)."""
    import schemas

    reg = csv_registry(folder)
    ok = pl.col("patient_id").str.contains(r"^P[0-9]+$")
    return {t: f.filter(ok).select([c.name for c in schemas.TABLES[t]]) for t, f in reg.tables.items()}


def write_csv(tables: dict[str, pl.DataFrame], folder: Path) -> Path:
    synth.write_export(tables, folder)
    return folder


def statuses(registry, engine: str, as_of: dt.date = AS_OF) -> dict[str, pl.DataFrame]:
    """Per bundled trial: patient number, overall status and every criterion's status."""
    out = {}
    for name in bundled_trials():
        trial = load_trial(name)
        ev = evaluate(registry, trial, as_of, engine)
        cols = ["status", *[c.id for c in trial.criteria]]
        out[name] = ev.select(pl.col("patient_id").str.extract(r"([0-9]+)", 1).cast(pl.Int64).alias("n"),
                              *cols).sort("n")
    return out


def csv_registry(folder: Path):
    return ingest(folder, Dialect(), load_vocabulary(), today=TODAY, max_reject=1.0)


def omop_registry(location, **kw):
    return omop.read(location, load_vocabulary(), as_of=kw.pop("as_of", AS_OF), today=TODAY,
                     max_reject=kw.pop("max_reject", 1.0), **kw)


def differences(a: dict[str, pl.DataFrame], b: dict[str, pl.DataFrame]) -> list[str]:
    """Each (trial, criterion) whose statuses differ, with one example patient."""
    out = []
    for trial, fa in a.items():
        fb = b[trial]
        assert fa["n"].to_list() == fb["n"].to_list(), f"{trial}: not the same patients"
        for col in fa.columns[1:]:
            diff = fa.filter(fa[col].ne_missing(fb[col]))
            if diff.height:
                i = fa[col].ne_missing(fb[col]).arg_true()[0]
                out.append(f"{trial}.{col}: {diff.height} patients, e.g. {fa['n'][i]}: {fa[col][i]} vs {fb[col][i]}")
    return out


def omop_forms(tables: dict[str, pl.DataFrame], folder: Path, profile=None) -> dict[str, Path]:
    om = writer.to_omop(tables, profile or load())
    return {fmt: writer.write(om, folder / f"omop_{fmt}", fmt) for fmt in writer.FORMATS}


def checksum(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
