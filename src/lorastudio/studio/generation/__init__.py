from lorastudio.studio.generation.checks import check_generation
from lorastudio.studio.generation.recipes import delete_recipe, get_row, list_recipes, request_from_recipe, save_recipe
from lorastudio.studio.generation.schemas import (
    ApplyRecipeIn,
    GenerationIn,
    IdentityBy,
    IdentityScore,
    ImageOut,
    ImageVerdictIn,
    RecipeIn,
    RecipeOut,
)
from lorastudio.studio.generation.service import (
    add_generation,
    get_image_row,
    image_out,
    list_images,
    run_generation,
    set_verdict,
    submit_generation,
)

__all__ = [
    "IdentityBy",
    "IdentityScore",
    "add_generation",
    "ApplyRecipeIn",
    "GenerationIn",
    "ImageOut",
    "ImageVerdictIn",
    "RecipeIn",
    "RecipeOut",
    "check_generation",
    "delete_recipe",
    "get_image_row",
    "get_row",
    "image_out",
    "list_images",
    "list_recipes",
    "run_generation",
    "save_recipe",
    "request_from_recipe",
    "set_verdict",
    "submit_generation",
]
