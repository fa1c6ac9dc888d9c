"""Recipes: one small module per defence, looked up by name.

Each module defines one `Recipe` subclass with a nested pydantic `Config` (extra keys forbidden) whose defaults are
the published ones. Modules are imported lazily so that a recipe's dependencies load only when it is used.

The registry owns the check of a recipe's settings (`recipe_settings`): the config schema looks it up when it
validates ``[train.recipe_args]`` and imports no recipe itself, so dependencies point one way (training -> config).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

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


def recipe_settings(name: str, args: Mapping[str, Any] | None = None) -> BaseModel | None:
    """Recipe `name`'s settings `args` validated by its own `Config` (None for a recipe that takes none).

    Raises ValueError for an unknown recipe or for settings given to a recipe without any, and pydantic's
    ValidationError (also a ValueError) naming each bad key.
    """
    cls = recipe_class(name)
    args = dict(args or {})
    if cls.Config is None:
        if args:
            raise ValueError(f"recipe {name!r} takes no settings (got {sorted(args)})")
        return None
    return cls.Config(**args)


def build_recipe(name: str, **settings: Any) -> Recipe:
    """Build recipe `name`; `settings` are validated by its `Config` (an unknown key is an error naming it)."""
    return recipe_class(name)(recipe_settings(name, settings))
