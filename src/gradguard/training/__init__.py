"""Training: one loop (`train`), one small recipe per defence (`gradguard.training.recipes`).

    from gradguard.config import load_config
    from gradguard.training import train
    summary = train(load_config("configs/mnist-pgd-at.toml"), "runs/pgd-at")
"""

from gradguard.training.recipe import Recipe, StepContext, StepOutput
from gradguard.training.recipes import build_recipe, recipe_class, recipe_names
from gradguard.training.trainer import NonFiniteLossError, train

__all__ = ["train", "NonFiniteLossError", "Recipe", "StepContext", "StepOutput", "build_recipe", "recipe_class",
           "recipe_names"]
