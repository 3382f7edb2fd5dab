"""The tables of the registry export contract (docs/registry-export.md): columns and types.

`optional` is the contract's `?`: the column may be left out of the file, and is
then empty on every row; a column without it must be present in the header.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ColumnSpec:
    name: str
    type: str  # "str", "date", "float" or "int"
    optional: bool = False


def _cols(spec: str) -> tuple[ColumnSpec, ...]:
    out = []
    for item in spec.split():
        name, typ = item.split(":")
        out.append(ColumnSpec(name, typ.rstrip("?"), typ.endswith("?")))
    return tuple(out)


TABLES: dict[str, tuple[ColumnSpec, ...]] = {
    "patients": _cols("patient_id:str site_id:str sex:str? birth_date:date? onset_date:date? "
                      "diagnosis_date:date? ms_course:str? research_consent:str? death_date:date?"),
    "visits": _cols("patient_id:str visit_date:date edss:float? karnofsky:int? weight_kg:float?"),
    "relapses": _cols("patient_id:str onset_date:date"),
    "treatments": _cols("patient_id:str drug:str start_date:date end_date:date? stop_reason:str?"),
    "labs": _cols("patient_id:str sample_date:date test:str value:float unit:str ref_high:float?"),
    "function_tests": _cols("patient_id:str test_date:date test:str value:float"),
    "conditions": _cols("patient_id:str code:str? category:str onset_date:date? end_date:date? "
                        "severity:str? infection_type:str? controlled:str? impairs_consent:str?"),
    "mri": _cols("patient_id:str scan_date:date gd_lesions:int? new_t2_lesions:int?"),
}

REQUIRED_TABLE = "patients"
