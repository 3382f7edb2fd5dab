"""The profile of an OMOP source: which concepts mean what for msfeas, as TOML data.

The bundled `msda.toml` is the default; `--omop-profile FILE` overrides it key by key (a key the
file leaves out keeps the bundled value). Checked on load like a trial file: an unknown section or
key (with the nearest valid names), a wrong type, a concept in two sets that must not overlap.
"""

from __future__ import annotations

import difflib
import tomllib
from dataclasses import dataclass
from pathlib import Path

from pipeline.core.errors import UsageError, some

BUNDLED = Path(__file__).with_name("msda.toml")
MRI_KEYS = ("gd_lesions", "new_t2_lesions")
# Sets that must not share a concept: each group's sets among themselves.
EXCLUSIVE = (
    ("course",),
    ("course", "relapses"),
    ("visits", "labs", "function_tests"),
    ("drugs",),
    ("weight_units",),
    ("lab_units",),
    ("stop_reasons",),
    ("person",),
)


class ProfileError(UsageError):
    """A profile that cannot be used (exit 2, like a trial file)."""


@dataclass
class Profile:
    """Section -> key -> list of concept_ids (the `mri` section: key -> source value prefix)."""

    sections: dict[str, dict[str, list[int] | str]]
    file: str  # where it came from (the override file, or the bundled profile)

    def __getitem__(self, section: str) -> dict:
        return self.sections[section]

    def ids(self, section: str, key: str | None = None) -> list[int]:
        """The concept_ids of one set, or of every set of a section."""
        sec = self.sections[section]
        if key is not None:
            return list(sec[key])
        return sorted({i for v in sec.values() if isinstance(v, list) for i in v})

    def all_ids(self) -> list[int]:
        return sorted({i for s in self.sections for i in self.ids(s)} - {0})


def _nearest(name: str, valid) -> str:
    near = difflib.get_close_matches(name, list(valid), n=3, cutoff=0.5)
    return f" (did you mean {' or '.join(repr(n) for n in near)}?)" if near else \
        f" (valid: {some(sorted(valid), 8)})"


def _read(path: Path) -> dict:
    try:
        return tomllib.loads(path.read_text("utf-8"))
    except OSError as exc:
        raise ProfileError(f"{path}: the OMOP profile cannot be read: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ProfileError(f"{path}: the OMOP profile is not valid TOML: {exc}") from None


def load(path: Path | None = None) -> Profile:
    """The bundled profile, overridden key by key by `path` (when given), checked."""
    base = _read(BUNDLED)
    if path is None:
        return check(Profile(base, "msda"))
    file = str(path)
    over = _read(Path(path))
    merged = {s: dict(v) for s, v in base.items()}
    for section, values in over.items():
        if section not in base:
            raise ProfileError(f"{file}: unknown section [{section}]{_nearest(section, base)}")
        if not isinstance(values, dict):
            raise ProfileError(f"{file}: '{section}' must be a section ([{section}]), not a value")
        for key, value in values.items():
            if key not in base[section]:
                raise ProfileError(f"{file}: unknown key '{section}.{key}'{_nearest(key, base[section])}")
            merged[section][key] = value
    return check(Profile(merged, file))


def check(profile: Profile) -> Profile:
    """Types and the exclusive sets; raises ProfileError naming the file and the key."""
    file = profile.file
    for section, values in profile.sections.items():
        for key, value in values.items():
            where = f"{file}: key '{section}.{key}'"
            if section == "mri":
                if not isinstance(value, str) or not value:
                    raise ProfileError(f"{where} must be a non-empty text (an observation_source_value prefix)")
                continue
            if not isinstance(value, list) or not all(isinstance(i, int) and not isinstance(i, bool)
                                                      for i in value):
                raise ProfileError(f"{where} must be a list of concept_ids (whole numbers), e.g. [4169156]; "
                                   f"got {value!r}"[:300])
            if any(i < 0 for i in value):
                raise ProfileError(f"{where}: a concept_id is never negative")
    for group in EXCLUSIVE:
        seen: dict[int, str] = {}
        for section in group:
            for key, value in profile.sections[section].items():
                for i in set(value):
                    name = f"{section}.{key}"
                    if i in seen and seen[i] != name:
                        raise ProfileError(f"{file}: concept {i} is in both '{seen[i]}' and '{name}', "
                                           f"which must not overlap")
                    seen[i] = name
    return profile
