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
    # patient_code, not and any read as a person says them (issue 31), not "The opposite of: ...".
    assert judged(t, "ms_diagnosis") == ("The MS course: passes when it is RRMS, SPMS or PPMS; unknown when it is UNK; "
                                         "any other MS course fails; an empty MS course is unknown.")
    assert judged(t, "no_second_tumor") == (
        "Counts conditions rows where category is malignancy and code does not start with C44, begun on or before D "
        "(or with no known start), ended or not: a number at most 0 passes; otherwise fails.")
    assert judged(t, "no_severe_illness").endswith("severity is severe, active at D: a number at most 0 passes; "
                                                   "otherwise fails.")
    assert "otherwise is unknown." in judged(t, "uncontrolled_infection")
    assert judged(t, "respiratory_distress") == "Judged at the screening visit; not evaluated from registry data."
    assert judged(t, "alive") == "Passes when no death date is recorded on or before D; fails when one is."
    assert "Fails if any fails; else unknown if any is unknown; else passes." in judged(t, "pulmonary_function")
    assert "+1 from a baseline below 6" in judged(t, "progression_on_therapy")


def test_set_changes_the_sentence():
    t = load_trial("nct04203017", ["edss_range.max_edss=7.0", "edss_range.lookback_days=180", "adult.max_age=55",
                                   "ms_diagnosis.unknown_courses=[UNK, cis]"])
    assert "within the 180 days before D" in judged(t, "edss_range")
    assert "between 0 and 7 passes" in judged(t, "edss_range")
    assert "an age between 18 and 55 passes" in judged(t, "adult")
    assert "unknown when it is UNK or CIS" in judged(t, "ms_diagnosis")
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


HEAD = 'id = "t"\ntitle = "T"\n'


def rule_text(rule: str, params: str = "", overrides=None) -> str:
    from pipeline.criteria.load import apply_overrides, parse_trial

    p = f"parameters = {{ {params} }}\n" if params else ""
    trial = parse_trial(HEAD + f'[[criteria]]\nid = "c"\nkind = "inclusion"\ntext = "x"\n{p}rule = {rule}\n', "t")
    return apply_overrides(trial, overrides or []).criteria[0].judged


def test_not_and_any_read_as_a_person_says_them():
    rule = ('{ type = "any", of = [{ type = "not", rule = { type = "patient_code", column = "ms_course", '
            'pass = ["SPMS"] } }, { type = "count", table = "relapses", within_days = "$days", at_least = 1 }] }')
    assert rule_text(rule, "days = 730") == (
        "Passes when the MS course is not SPMS (unknown if empty), or a relapse is recorded in the 730 days before "
        "D; else unknown if any of these is unknown; otherwise fails.")
    assert "in the 365 days before D" in rule_text(rule, "days = 730", ["c.days=365"])  # after --set too
    washout = ('{ type = "not", rule = { type = "count", table = "treatments", where = { drug = ["natalizumab"] }, '
               'within_days = 183, at_least = 1 } }')
    assert rule_text(washout) == ("Counts treatments rows where drug is natalizumab, present within the 183 days "
                                  "before D (begun by D, not ended before D - 183 days): a number at least 1 fails; "
                                  "otherwise passes.")
    activity = ('{ type = "any", of = [{ type = "count", table = "relapses", within_days = 730, at_least = 2 }, '
                '{ type = "count", table = "mri", where = { gd_lesions = { min = 1 } }, within_days = 365, '
                'at_least = 1 }] }')
    assert rule_text(activity) == (
        "Passes when the number of relapses recorded in the 730 days before D is at least 2, or an MRI scan with "
        "gd_lesions >= 1 is recorded in the 365 days before D; else unknown if any of these is unknown; "
        "otherwise fails.")


def test_a_not_without_a_plain_opposite_still_says_what_it_does():
    text = rule_text('{ type = "not", rule = { type = "latest_value", table = "visits", column = "edss", '
                     'lookback_days = 365, tie = "highest", max = 3.0, as = "edss" } }')
    assert text.startswith("Passes where the following fails and fails where it passes (unknown stays unknown): "
                           "The latest visits.edss")
    assert "The opposite of" not in text
