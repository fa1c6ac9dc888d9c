"""The recipe registry owns the check of `[train.recipe_args]`; the config schema only looks it up."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from gradguard.config import ConfigError, parse_config
from gradguard.training.recipes import build_recipe, recipe_settings
from gradguard.training.recipes.standard import StandardRecipe


def test_settings_are_validated_by_the_recipes_own_config():
    assert recipe_settings("pgd_at", {"steps": 3}).steps == 3  # type: ignore[union-attr]
    with pytest.raises(ValidationError, match="stpes"):
        recipe_settings("pgd_at", {"stpes": 3})
    with pytest.raises(ValueError, match="unknown recipe 'nope'"):
        recipe_settings("nope")


def test_a_recipe_without_settings_refuses_them_and_still_builds(monkeypatch):
    monkeypatch.setattr(StandardRecipe, "Config", None)
    with pytest.raises(ValueError, match=r"recipe 'standard' takes no settings \(got \['lr'\]\)"):
        recipe_settings("standard", {"lr": 1})
    assert isinstance(build_recipe("standard"), StandardRecipe)
    with pytest.raises(ConfigError, match=r"train.recipe_args: recipe 'standard' takes no settings"):
        parse_config({"train": {"recipe": "standard", "recipe_args": {"lr": 1}}})
