"""`msfeas trial import RECORD.json`: a ClinicalTrials.gov API v2 study record to a trial file to finish.

Offline: the record is a file saved from the registry (`https://clinicaltrials.gov/api/v2/studies/NCT...`).
What the record states as structured fields becomes exact criteria: `minimumAge` / `maximumAge`
an `age` criterion (in whole years; an age in months, weeks or days that is not a whole number
of years cannot be judged exactly in completed years, so it stays a screening criterion), `sex`
FEMALE or MALE a `patient_code` criterion on `patients.sex`. `designModule.enrollmentInfo.count`
is the planned enrolment.

The free text of `eligibilityCriteria` (Markdown) is never turned into a computed rule: each
bullet becomes a `screening` criterion with its text verbatim (Markdown escapes removed) and its
kind (inclusion or exclusion, from the headings), followed by a comment suggesting the node type
when a known pattern appears (an EDSS range, relapses in a period, a drug of the vocabulary, an
ICD-10 code, a lab value times the ULN). The analyst replaces `screening` with a rule.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.core.errors import UsageError

# "Inclusion Criteria:", "Key Inclusion Criteria", "INCLUSION CRITERIA (all cohorts):", "**Exclusion criteria**",
# "## Inclusion Criteria - Cohort A:", "Inclusion criterion:".
_HEADING = re.compile(r"^\s*(?:#+\s*)?(?:\*\*|__)?\s*(?:key\s+|main\s+|general\s+)?(inclusion|exclusion)\s+"
                      r"criteri(?:a|on)\b(.*)$", re.I)
_COHORT = re.compile(r"^\s*(?:#+\s*)?(?:\*\*|__)?\s*((?:cohort|part|arm|group|population|stage|phase)\b[^:]*)"
                     r":?\s*(?:\*\*|__)?\s*:?\s*$", re.I)
_BULLET = re.compile(r"^(\s*)(?:[*+\-•·]|\d{1,3}[.)]|\(\d{1,3}\)|[a-zA-Z][.)]|\([a-zA-Z]\)|[ivxIVX]{1,4}[.)])\s+(.*)$")
_ESCAPE = re.compile(r"\\([\\`*_{}\[\]()#+\-.!<>=|~^&$%\"'])")
_DISCLAIMER = re.compile(r"^the above information is not intended to contain all considerations", re.I)
_UNITS = {"year": 365.25, "month": 30.4375, "week": 7.0, "day": 1.0}


@dataclass
class Item:
    kind: str  # inclusion / exclusion
    text: str
    cohort: str | None = None
    assumed: bool = False  # no heading before it: inclusion assumed
    subs: list[str] = field(default_factory=list)
    note: str | None = None  # the introducing line above it ("... if any of the following apply:")

    @property
    def full(self) -> str:
        letters = "abcdefghijklmnopqrstuvwxyz"
        return self.text if not self.subs else f"{self.text} " + " ".join(
            f"({letters[i % 26]}) {s}" for i, s in enumerate(self.subs))


def unescape(text: str) -> str:
    """Markdown escapes as ClinicalTrials.gov writes them (`\\>=`, `\\<`, `\\*`, `\\[`) to the characters."""
    return _ESCAPE.sub(r"\1", text)


def _clean(text: str) -> str:
    text = unescape(text.strip())
    text = re.sub(r"^(?:\*\*|__)(.*)(?:\*\*|__)$", r"\1", text)
    return " ".join(text.split())


def parse_criteria(markdown: str) -> list[Item]:
    """The bullets of `eligibilityCriteria`, each with its kind and cohort; nested bullets belong to
    the top-level bullet above them (its text, then theirs); a line that is no bullet continues
    the bullet above it, or starts an item of its own after a heading."""
    items: list[Item] = []
    kind, cohort, assumed = "inclusion", None, True
    top_indent: int | None = None
    current: Item | None = None
    last_was_sub = False
    in_bullet = False  # the current item is a bullet (a plain line continues it)
    blank = False  # a blank line before this one
    intro: str | None = None  # "Participants are excluded if any of the following apply:", kept for the next item
    for raw in markdown.replace("\r\n", "\n").split("\n"):
        if not raw.strip():
            blank = True
            continue
        was_blank, blank = blank, False
        line = raw.replace("\t", "    ")
        head = _HEADING.match(line)
        if head:
            kind, assumed = head.group(1).lower(), False
            rest = _clean(head.group(2)).strip(" :-–—*_")
            if rest.startswith("(") and rest.endswith(")"):
                rest = rest[1:-1]
            rest = re.sub(r"^(?:for|in)\s+", "", rest, flags=re.I).strip(" :-–—")
            if re.fullmatch(r"(?:for\s+)?all(?:\s+\w+)?", rest, re.I):
                cohort = None  # common to every cohort
            elif rest and re.search(r"cohort|part|arm|group|population|stage|phase", rest, re.I):
                cohort = rest
            current, top_indent, in_bullet = None, None, False
            continue
        coh = _COHORT.match(line)
        if coh and not _BULLET.match(line):
            cohort = _clean(coh.group(1)).strip(" :-–—")
            current, top_indent, in_bullet = None, None, False
            continue
        bullet = _BULLET.match(line)
        if bullet:
            indent, text = len(bullet.group(1)), _clean(bullet.group(2))
            if current is not None and top_indent is not None and indent > top_indent:
                current.subs.append(text)
                last_was_sub = True
                continue
            current = Item(kind, text, cohort, assumed, note=intro)
            items.append(current)
            top_indent, last_was_sub, in_bullet, intro = indent, False, True, None
            continue
        text = _clean(line)
        indent = len(line) - len(line.lstrip())
        wrapped = current is not None and (
            (not was_blank and (in_bullet or not current.text.endswith((".", ":", ";"))))
            or (in_bullet and top_indent is not None and indent > top_indent))
        if not wrapped and _DISCLAIMER.match(text):
            continue
        if not wrapped and text.endswith(":"):
            intro, current, top_indent, in_bullet = text, None, None, False
            continue
        if wrapped:
            # a wrapped line of the bullet (or unfinished sentence) above
            if last_was_sub:
                current.subs[-1] += " " + text
            else:
                current.text += " " + text
        else:
            current = Item(kind, text, cohort, assumed, note=intro)
            items.append(current)
            top_indent, last_was_sub, in_bullet, intro = indent, False, False, None
    return items


def age_years(value: str | None, where: str) -> tuple[int | None, str | None]:
    """("18 Years") -> (18, None); ("30 Months") -> (None, why it is not exact); absent -> (None, None)."""
    if value is None or not str(value).strip() or str(value).strip().upper() in ("N/A", "NA", "NONE"):
        return None, None
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(year|month|week|day|hour|minute)s?\s*", str(value), re.I)
    if not m:
        raise UsageError(f"{where}: {value!r} is not an age such as \"18 Years\" or \"30 Months\"")
    number, unit = float(m.group(1)), m.group(2).lower()
    months = {"year": 12.0, "month": 1.0}.get(unit)
    if months is not None and (number * months) % 12 == 0:
        return int(number * months // 12), None
    return None, (f"{value} is not a whole number of years: the age node counts completed years, "
                  f"so this cannot be judged exactly from the birth date")


def _slug(text: str, taken: set[str], prefix: str) -> str:
    words = [w for w in re.findall(r"[a-z0-9]+", text.lower())
             if w not in {"the", "a", "an", "of", "and", "or", "to", "in", "with", "for", "must", "be", "is",
                          "are", "has", "have", "participant", "participants", "patient", "patients", "subject",
                          "subjects", "who", "at", "on", "by", "as", "any", "all", "than", "that", "this"}]
    base = f"{prefix}_{'_'.join(words[:4])}".strip("_") if words else prefix
    base = re.sub(r"_+", "_", base)[:48].rstrip("_")
    name, n = base, 2
    while name in taken:
        name, n = f"{base}_{n}", n + 1
    taken.add(name)
    return name


def _unique(name: str, taken: set[str]) -> str:
    return _slug("", taken, name)


def _days(number: float, unit: str) -> int:
    return round(number * _UNITS[unit.rstrip("s").lower()])


def suggestions(text: str) -> list[str]:
    """Comments suggesting the node type for the patterns a bullet shows (never a rule)."""
    from pipeline.core.vocabulary import _fold, load_vocabulary

    out: list[str] = []
    low = text.lower()
    periods = [(float(n), u) for n, u in re.findall(r"(\d+(?:\.\d+)?)\s*(years?|months?|weeks?|days?)", low)]
    if re.search(r"\bprevious\s+year\b|\blast\s+year\b|\bpast\s+year\b|\bprior\s+year\b", low):
        periods.append((1.0, "year"))
    window = ""
    if periods:
        converted = [f"{n:g} {u} = {_days(n, u)} days" for n, u in dict.fromkeys(periods) if not u.startswith("day")]
        window = "; " + ", ".join(converted) if converted else ""
    if re.search(r"\b\d+\s*(?:to|-|–)\s*\d+\s*years?\s+(?:of\s+age|old)|\baged?\s+\d+", low):
        out.append('age: the record\'s minimumAge / maximumAge give the `age` criterion above; compare, then '
                   'drop this bullet or make it { type = "age", min = ..., max = ... }')
    if re.search(r"\bedss\b|expanded disability status scale", low):
        nums = re.findall(r"(\d+(?:\.\d)?)", re.sub(r"\b\d+\s*(?:years?|months?|weeks?|days?)\b", "", low))
        scores = [n for n in nums if 0 <= float(n) <= 10]
        out.append('latest_value on visits.edss: { type = "latest_value", table = "visits", column = "edss", '
                   'lookback_days = 365, tie = "highest", min = ..., max = ..., as = "edss", label = "EDSS" }'
                   + (f" (values in the text: {', '.join(scores)})" if scores else ""))
    if "relapse" in low:
        out.append('count on relapses: { type = "count", table = "relapses", within_days = ..., at_least = ... }'
                   + window + ('; with "OR" an MRI alternative: episodes or any of counts' if " or" in low else ""))
    if re.search(r"gd\+|gadolinium|enhancing|t2 lesion", low):
        out.append('count on mri: { type = "count", table = "mri", where = { gd_lesions = { min = 1 } }, '
                   'within_days = ..., at_least = 1 }' + window)
    vocab = load_vocabulary()
    words = re.findall(r"[a-z][a-z0-9\-]+(?:\s+beta[\s-]1[ab])?", low)
    drugs = list(dict.fromkeys(vocab.generic_of[_fold(w)] for w in words
                               if _fold(w) in vocab.generic_of and vocab.generic_of[_fold(w)] != "other"))
    if drugs:
        out.append(f'count on treatments: {{ type = "count", table = "treatments", where = {{ drug = '
                   f'{json.dumps(drugs)} }}, within_days = ..., at_most = 0 }}' + window)
    codes = list(dict.fromkeys(re.findall(r"\b([A-TV-Z]\d{2}(?:\.\d{1,2})?)\b", text)))
    if codes:
        out.append(f'count on conditions: {{ type = "count", table = "conditions", where = {{ code = {{ prefix = '
                   f'{json.dumps(codes)} }} }}, at_most = 0 }} (ICD-10 codes of the text; a range needs each prefix)')
    uln = re.search(r"(\d+(?:\.\d+)?)\s*(?:x|×|times)\s*(?:the\s+)?(?:uln\b|upper limit)", low)
    if uln:
        test = next((t for t, pat in (("ALT", r"\balt\b|alanine"), ("AST", r"\bast\b|aspartate"),
                                      ("BILI", r"bilirubin"), ("CREAT", r"creatinine"), ("GGT", r"\bggt\b"))
                     if re.search(pat, low)), "...")
        out.append(f'lab_uln: {{ type = "lab_uln", test = "{test}", lookback_days = ..., max_uln = '
                   f'{float(uln.group(1))}, default_uln = ..., as = "{test.lower()}_uln" }}')
    if re.search(r"mcdonald|\brrms\b|\bspms\b|\bppms\b|relapsing[- ]remitting|secondary progressive|"
                 r"primary progressive|relapsing (?:forms of )?m", low):
        named = [c for c, pat in (("RRMS", r"\brrms\b|relapsing[- ]remitting"), ("SPMS", r"\bspms\b|secondary progressive"),
                                  ("PPMS", r"\bppms\b|primary progressive"), ("CIS", r"\bcis\b|clinically isolated"))
                 if re.search(pat, low)]
        out.append('patient_code on patients.ms_course: { type = "patient_code", column = "ms_course", '
                   f'pass = {json.dumps(named or ["RRMS", "SPMS"])} }}' + ("" if named else " (relapsing forms: "
                                                                           "RRMS, and SPMS with relapses)"))
    if not out and re.search(r"pregnan|breast|contracept|consent|willing|able to|agree", low):
        out.append("judged at screening (no registry data): keep screening")
    return out


def _toml(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


@dataclass
class Imported:
    text: str  # the trial file
    warnings: list[str]
    items: list[Item]


def import_record(path: Path) -> Imported:
    """A trial file (text) from a saved ClinicalTrials.gov API v2 study record."""
    try:
        data = json.loads(Path(path).read_text("utf-8"))
    except OSError as exc:
        raise UsageError(f"trial import {path}: cannot read the record: {exc.strerror}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"trial import {path}: not a JSON file: {exc}") from None
    if isinstance(data, dict) and "studies" in data and isinstance(data["studies"], list) and len(data["studies"]) == 1:
        data = data["studies"][0]  # a search result of one study
    proto = data.get("protocolSection") if isinstance(data, dict) else None
    if not isinstance(proto, dict) or not isinstance(proto.get("identificationModule"), dict):
        raise UsageError(f"trial import {path}: not a ClinicalTrials.gov API v2 study record "
                         f"(no protocolSection.identificationModule)")
    ident = proto["identificationModule"]
    elig = proto.get("eligibilityModule") or {}
    design = proto.get("designModule") or {}
    nct = str(ident.get("nctId") or "").strip()
    if not re.fullmatch(r"NCT\d{8}", nct):
        raise UsageError(f"trial import {path}: identificationModule.nctId {nct!r} is not an NCT number")
    title = ident.get("briefTitle") or ident.get("officialTitle") or nct
    warnings: list[str] = []
    from pipeline.authoring.schema import schema_uri

    lines = [f"#:schema {schema_uri()}",
             f"# Imported by `msfeas trial import` from the ClinicalTrials.gov record {nct}.",
             "# Every `screening` criterion below is a bullet of the record's eligibility text: replace its rule",
             "# with one judged on registry data where the data allow (docs/writing-a-trial.md), then run",
             f"# `msfeas trial check {nct.lower()}.toml --input EXPORT`.",
             f"id = {_toml(nct.lower())}", f"title = {_toml(title)}", f"registration = {_toml(nct)}"]
    if ident.get("officialTitle") and ident.get("officialTitle") != title:
        lines.insert(5, f"# official title: {' '.join(str(ident['officialTitle']).split())}")
    if ident.get("acronym"):
        lines.insert(5, f"# acronym: {ident['acronym']}")
    enrol = design.get("enrollmentInfo") or {}
    count = enrol.get("count")
    if isinstance(count, int) and not isinstance(count, bool) and count > 0:
        lines.append(f"planned_enrolment = {count}  # enrollmentInfo: {enrol.get('type', 'count').lower()}")
    else:
        lines.append("# planned_enrolment: the record gives no enrolment count")
    if elig.get("healthyVolunteers") is True:
        warnings.append(f"{nct} accepts healthy volunteers (healthyVolunteers: true): a count of registry "
                        f"patients is the wrong tool for its feasibility")
        lines.append("# WARNING: this trial accepts healthy volunteers: a registry count is the wrong tool for it.")
    body: list[str] = []
    taken: set[str] = set()
    lo, lo_why = age_years(elig.get("minimumAge"), f"trial import {path}: eligibilityModule.minimumAge")
    hi, hi_why = age_years(elig.get("maximumAge"), f"trial import {path}: eligibilityModule.maximumAge")
    ages = " to ".join(str(elig.get(k)) for k in ("minimumAge", "maximumAge") if elig.get(k))
    if lo is not None or hi is not None:
        bounds = ", ".join(f"{k} = {v}" for k, v in (("min", lo), ("max", hi)) if v is not None)
        text = (f"Age {lo} to {hi} years" if lo is not None and hi is not None else
                f"Age at least {lo} years" if lo is not None else f"Age at most {hi} years")
        body += ["", "[[criteria]]", f'id = "{_unique("age", taken)}"', 'kind = "inclusion"',
                 f"text = {_toml(text + ' (minimumAge / maximumAge of the record)')}",
                 f'rule = {{ type = "age", {bounds} }}']
    for why, key in ((lo_why, "minimumAge"), (hi_why, "maximumAge")):
        if why:
            warnings.append(f"{key} {why}")
            body += ["", "[[criteria]]", f'id = "{_unique("age_" + key[:3].lower(), taken)}"', 'kind = "inclusion"',
                     f"text = {_toml(f'{key}: {elig.get(key)} (structured field of the record)')}",
                     'rule = { type = "screening" }',
                     f"# {why}. Nearest rule: {{ type = \"age\", {'min' if key == 'minimumAge' else 'max'} = ... }}"]
    if lo is None and hi is None and not (lo_why or hi_why):
        body += ["", "# no age criterion: the record gives neither minimumAge nor maximumAge"]
    sex = str(elig.get("sex") or "ALL").upper()
    if sex in ("FEMALE", "MALE"):
        code = sex[0]
        body += ["", "[[criteria]]", f'id = "{_unique(sex.lower(), taken)}"', 'kind = "inclusion"',
                 f"text = {_toml(f'Sex: {sex.lower()} (sex of the record)')}",
                 f'rule = {{ type = "patient_code", column = "sex", pass = ["{code}"], missing = "unknown" }}']
    else:
        body += ["", f"# no sex criterion: the record's sex is {sex}" + (f" (ages {ages})" if ages else "")]
    items = parse_criteria(str(elig.get("eligibilityCriteria") or ""))
    if not items:
        warnings.append(f"{nct}: the record has no eligibility text (eligibilityCriteria)")
    cohorts = list(dict.fromkeys(i.cohort for i in items if i.cohort))
    if len(cohorts) > 1:
        warnings.append(f"{nct}: the eligibility text has {len(cohorts)} cohorts ({', '.join(cohorts)}): their "
                        f"criteria are all in this file, marked by comments; keep one cohort's per trial file")
    counters = {"inclusion": 0, "exclusion": 0}
    for item in items:
        counters[item.kind] += 1
        prefix = f"{'in' if item.kind == 'inclusion' else 'ex'}{counters[item.kind]:02d}"
        if len(cohorts) > 1 and item.cohort:
            prefix = f"c{cohorts.index(item.cohort) + 1}_{prefix}"
        body += ["", "[[criteria]]"]
        if item.cohort:
            body.append(f"# cohort: {item.cohort}")
        if item.assumed:
            body.append("# no Inclusion/Exclusion heading before this bullet: inclusion assumed")
        if item.note:
            body.append(f"# under: {item.note}")
        body += [f'id = "{_slug(item.text, taken, prefix)}"', f'kind = "{item.kind}"', f"text = {_toml(item.full)}",
                 'rule = { type = "screening" }']
        body += [f"# suggestion: {s}" for s in suggestions(item.full)]
    return Imported("\n".join(lines + body) + "\n", warnings, items)
