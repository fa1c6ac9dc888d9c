"""Small helpers shared by the architecture files: size checks with errors that name the model."""

from __future__ import annotations

from gradguard.specs import DatasetSpec

__all__ = ["SizeError", "require"]


class SizeError(ValueError):
    """The dataset's image size does not fit an architecture with a fixed layout."""


def require(ok: bool, model: str, spec: DatasetSpec, supported: str) -> None:
    """Raise a SizeError naming the model, the dataset's image shape and the sizes that work."""
    if not ok:
        raise SizeError(
            f"model {model!r} does not support {spec.name} images of {spec.size}x{spec.size}: "
            f"it needs {supported}"
        )
