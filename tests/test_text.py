"""Each node renders itself as a sentence; `--set` changes the sentence; settle texts come from the nodes."""

from __future__ import annotations

from pipeline.criteria.load import load_trial


def judged(trial, cid):
    return next(c for c in trial.criteria if c.id == cid).judged


def settle(trial, cid):
    return next(c for c in trial.criteria if c.id == cid).settle


def test_sentences_of_nct04203017():
    t = load_trial("nct04203017")
    assert judged(t, "edss_range") == ("The latest EDSS dated within the 365 days before D (the highest of a same-day "
                                       "tie): none is unknown; a value between 0 and 6.5 passes; otherwise fails.")
    assert judged(t, "adult") == ("Age in completed years at D: an age at least 18 passes, otherwise fails; unknown "
                                  "without a birth date.")
    assert judged(t, "ms_diagnosis") == ("The patient's ms_course: RRMS, SPMS or PPMS passes; UNK is unknown; any "
                                         "other code fails; empty is unknown.")
    assert judged(t, "no_second_tumor") == (
        "Counts conditions rows where category is malignancy and code does not start with C44, begun on or before D "
        "(or with no known start), ended or not: a number at most 0 passes; otherwise fails.")
    assert judged(t, "no_severe_illness").endswith("severity is severe, active at D: a number at most 0 passes; "
                                                   "otherwise fails.")
    assert "otherwise is unknown." in judged(t, "uncontrolled_infection")
    assert judged(t, "respiratory_distress") == "Judged at the screening visit; not evaluated from registry data."
    assert judged(t, "alive").startswith("The opposite of: Passes when the patient's death_date is recorded")
    assert "Fails if any fails; else unknown if any is unknown; else passes." in judged(t, "pulmonary_function")
    assert "+1 from a baseline below 6" in judged(t, "progression_on_therapy")


def test_set_changes_the_sentence():
    t = load_trial("nct04203017", ["edss_range.max_edss=7.0", "edss_range.lookback_days=180", "adult.max_age=55",
                                   "ms_diagnosis.unknown_courses=[UNK, cis]"])
    assert "within the 180 days before D" in judged(t, "edss_range")
    assert "between 0 and 7 passes" in judged(t, "edss_range")
    assert "an age between 18 and 55 passes" in judged(t, "adult")
    assert "UNK or CIS is unknown" in judged(t, "ms_diagnosis")
    assert settle(t, "edss_range") == "a recent EDSS (within 180 days)"


def test_settle_texts_come_from_the_nodes():
    t = load_trial("nct04203017")
    assert settle(t, "lvef") == "a recent LVEF (echocardiogram) (within 365 days)"
    assert settle(t, "pulmonary_function") == "a recent FEV1 (within 365 days); a recent DLCO (within 365 days)"
    assert settle(t, "organ_function").startswith("a recent AST (within 90 days); a recent ALT")
    assert settle(t, "creatinine_clearance") == "a recent creatinine (within 90 days) and weight (within 365 days)"
    assert settle(t, "informed_consent") == "the research_consent"


def test_tables_read_come_from_the_nodes():
    t = load_trial("nct04203017")
    tables = {c.id: c.tables for c in t.criteria}
    assert tables["alive"] == [] and tables["edss_range"] == ["visits"]
    assert tables["progression_on_therapy"] == ["visits", "treatments", "relapses"]
    assert tables["creatinine_clearance"] == ["labs", "visits"]
    assert tables["uncontrolled_infection"] == ["conditions"]
