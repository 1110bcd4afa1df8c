"""Recipes: YAML pipelines of stages (train, distill, prune, finetune, quantize, export,
evaluate), validated on load, run with a checkpoint per stage and resumed after a crash."""

from prunekit.recipes.runner import finished_stages, run_recipe
from prunekit.recipes.schema import Recipe, StageSpec, load_recipe, recipe_from_dict
from prunekit.recipes.stages import STAGE_TYPES, PruneMethod, default_prune_methods

__all__ = [
    "Recipe",
    "StageSpec",
    "load_recipe",
    "recipe_from_dict",
    "run_recipe",
    "finished_stages",
    "STAGE_TYPES",
    "PruneMethod",
    "default_prune_methods",
]
