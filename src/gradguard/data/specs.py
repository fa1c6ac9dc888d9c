"""The dataset specs, re-exported: their home is the leaf `gradguard.specs`, which the model zoo imports directly."""

from gradguard.specs import SPECS, DatasetSpec, get_spec

__all__ = ["DatasetSpec", "SPECS", "get_spec"]
