"""The code lists of the export contract, as plain data (no pandera: the criteria language and a
cached run read them without loading the validation stack)."""

SEXES = ["F", "M", "U"]
COURSES = ["RRMS", "SPMS", "PPMS", "CIS", "RIS", "UNK"]
YES_NO = ["Y", "N"]
CATEGORIES = ["malignancy", "infection", "psychiatric", "cardiac", "pulmonary", "hepatic", "renal", "other"]
SEVERITIES = ["mild", "moderate", "severe"]
INFECTION_TYPES = ["bacterial", "fungal", "viral"]
FUNCTION_TESTS = ["LVEF", "FEV1", "DLCO"]
STOP_REASONS = ["inefficacy", "adverse_event", "patient_choice", "planned", "pregnancy", "other"]
# Accepted units of the four tests the criteria read, folded to lower case -> canonical.
LAB_UNITS = {
    "AST": {"u/l": "U/L", "iu/l": "U/L"},
    "ALT": {"u/l": "U/L", "iu/l": "U/L"},
    "TBIL": {"umol/l": "umol/L", "µmol/l": "umol/L", "μmol/l": "umol/L", "mg/dl": "mg/dL"},
    "CREAT": {"umol/l": "umol/L", "µmol/l": "umol/L", "μmol/l": "umol/L", "mg/dl": "mg/dL"},
}
