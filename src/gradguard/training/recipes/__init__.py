"""Recipes: one small module per defence, looked up by name.

Each module defines one `Recipe` subclass with a nested pydantic `Config` (extra keys forbidden) whose defaults are
the published ones. Modules are imported lazily so that a recipe's dependencies load only when it is used.
"""

from __future__ import annotations

import importlib
from typing import Any

from gradguard.training.recipe import Recipe

# name -> "module:Class" under gradguard.training.recipes
_REGISTRY = {
    "standard": "standard:StandardRecipe",
    "pgd_at": "pgd_at:PGDATRecipe",
    "trades": "trades:TRADESRecipe",
    "fast_at": "fast_at:FastATRecipe",
    "n_fgsm": "n_fgsm:NFGSMRecipe",
    "free_at": "free_at:FreeATRecipe",
    "sgn": "sgn:SGNRecipe",
    "graddiv": "graddiv:GradDivRecipe",
    "adv_bnn": "adv_bnn:AdvBNNRecipe",
}


def recipe_names() -> list[str]:
    return sorted(_REGISTRY)


def recipe_class(name: str) -> type[Recipe]:
    if name not in _REGISTRY:
        raise ValueError(f"unknown recipe {name!r}: expected one of {recipe_names()}")
    module_name, cls_name = _REGISTRY[name].split(":")
    module = importlib.import_module(f"gradguard.training.recipes.{module_name}")
    return getattr(module, cls_name)


def build_recipe(name: str, **settings: Any) -> Recipe:
    """Build recipe `name`; `settings` are validated by its `Config` (an unknown key is an error naming it)."""
    cls = recipe_class(name)
    config = cls.Config(**settings)  # type: ignore[attr-defined]
    return cls(config)  # type: ignore[call-arg]
