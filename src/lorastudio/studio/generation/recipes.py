"""Recipes ("Save LoRA settings: document successful combinations"): named LoRA sets with strengths
and regions, a prompt template, sampler and seed, applied to a new scene in one call."""

from __future__ import annotations

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from lorastudio.config import Settings
from lorastudio.errors import Conflict, Invalid, format_validation_error
from lorastudio.studio import library
from lorastudio.studio.base_models import check_base
from lorastudio.studio.db import Recipe, get_owned, writes
from lorastudio.studio.generation.schemas import ApplyRecipeIn, GenerationIn, RecipeIn, RecipeOut


def get_row(session: Session, *, owner_id: int, recipe_id: int) -> Recipe:
    """The row, or NotFound (another user's recipe is not found either)."""
    return get_owned(session, Recipe, recipe_id, owner_id, "recipe")


@writes
def save_recipe(session: Session, settings: Settings, *, owner_id: int, data: RecipeIn) -> RecipeOut:
    """Save a recipe; every LoRA in it must be in the user's library, its base one of the studio's models."""
    for sel in data.loras:
        library.get_lora_row(session, owner_id=owner_id, lora_id=sel.lora_id)
    if data.base is not None:
        data = data.model_copy(update={"base": check_base(settings, data.base)})  # one of the studio's models
    recipe = Recipe(owner_id=owner_id, name=data.name.strip(), settings=data.model_dump(exclude={"name"}))
    session.add(recipe)
    try:
        session.flush()
    except IntegrityError:  # the write rolls back
        raise Conflict(f"you already have a recipe called {data.name.strip()[:80]!r}; pick another name") from None
    return RecipeOut.model_validate(recipe)


def list_recipes(session: Session, *, owner_id: int) -> list[RecipeOut]:
    """The user's recipes."""
    rows = session.scalars(select(Recipe).where(Recipe.owner_id == owner_id).order_by(Recipe.id))
    return [RecipeOut.model_validate(r) for r in rows]


@writes
def delete_recipe(session: Session, *, owner_id: int, recipe_id: int) -> None:
    """Delete a recipe."""
    session.delete(get_row(session, owner_id=owner_id, recipe_id=recipe_id))


def request_from_recipe(session: Session, *, owner_id: int, recipe_id: int, data: ApplyRecipeIn) -> GenerationIn:
    """The scene a recipe makes: its settings, {action} in the template replaced, seed overridable."""
    settings = dict(get_row(session, owner_id=owner_id, recipe_id=recipe_id).settings)
    template = settings.pop("prompt_template", "") or "{action}"
    prompt = template.replace("{action}", data.action).strip(" ,") or data.action or template
    seed = data.seed if data.seed is not None else settings.pop("seed", None)
    settings.pop("seed", None)
    try:
        return GenerationIn.model_validate(settings | {"prompt": prompt, "seed": seed, "n": data.n})
    except ValidationError as exc:
        raise Invalid(format_validation_error(exc, "scene from this recipe")) from exc
