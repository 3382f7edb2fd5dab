"""The trial definition (kept as an import path): see `pipeline.criteria`."""

from pipeline.criteria.load import Criterion, Trial, apply_overrides, bundled_trials, coerce, load_trial

__all__ = ["Criterion", "Trial", "apply_overrides", "bundled_trials", "coerce", "load_trial"]
