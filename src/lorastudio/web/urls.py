"""Every API and file URL the web face hands out, in one place (page links stay beside their routes). The
studio returns ids and never writes a URL: the JSON routes fill the URL fields of what they return with
`fill`, and templates and scripts get links from these functions (the `urls` global of every template)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlencode

from pydantic import BaseModel

from lorastudio.studio.characters import CharacterOut
from lorastudio.studio.generation import ImageOut
from lorastudio.studio.storyboards import SceneOut

API = "/api/v1"
LOGIN = f"{API}/auth/login"

T = TypeVar("T")


def image_file(image_id: int) -> str:
    """A generated image's PNG."""
    return f"{API}/images/{image_id}/file"


def character_reference(character_id: int) -> str:
    """A character's reference image."""
    return f"{API}/characters/{character_id}/reference"


def dataset_image(dataset_id: int, image_id: int) -> str:
    """An uploaded training image."""
    return f"{API}/datasets/{dataset_id}/images/{image_id}/file"


def lora_file(lora_id: int, version: int | None = None) -> str:
    """A LoRA's .safetensors file: the newest version, or the one given."""
    return f"{API}/loras/{lora_id}/file" + (f"?{urlencode({'version': version})}" if version is not None else "")


def job_events(job_id: int) -> str:
    """A job's progress as Server-Sent Events."""
    return f"{API}/jobs/{job_id}/events"


def job_preview(job_id: int, index: int) -> str:
    """A training's sample preview (0: the oldest kept)."""
    return f"{API}/jobs/{job_id}/previews/{index}"


def job_previews(job_id: int) -> str:
    """Where a training's previews are, by index appended (for the page's script)."""
    return f"{API}/jobs/{job_id}/previews/"


def job_render(job_id: int, step: int, index: int) -> str:
    """A training's evaluation render: checkpoint `step` (0: without the LoRA), prompt `index`."""
    return f"{API}/jobs/{job_id}/renders/{step}/{index}"


def job_renders(job_id: int) -> str:
    """Where a training's evaluation renders are, by "step/index" appended (for the page's script)."""
    return f"{API}/jobs/{job_id}/renders/"


def job_panel(job_id: int) -> str:
    """A job's live panel (HTML fragment)."""
    return f"/jobs/{job_id}/panel"


def job_images(job_id: int) -> str:
    """The images a generation job made."""
    return f"{API}/jobs/{job_id}/images"


def export_file(storyboard_id: int, job_id: int) -> str:
    """A finished storyboard export."""
    return f"{API}/storyboards/{storyboard_id}/exports/{job_id}"


def _image(image: ImageOut) -> None:
    image.url = image_file(image.id)


def _scene(scene: SceneOut) -> None:
    scene.image_url = image_file(scene.image_id) if scene.image_id else None


def _character(character: CharacterOut) -> None:
    character.reference_image = character_reference(character.id) if character.has_reference else None


FILLERS: dict[type, Callable[[Any], None]] = {ImageOut: _image, SceneOut: _scene, CharacterOut: _character}


def fill(value: T) -> T:
    """The studio's answer with its URL fields written (in place, and returned): images, storyboard scenes
    and characters, also inside lists, tuples and other response models."""
    if isinstance(value, list | tuple):
        for item in value:
            fill(item)
    elif isinstance(value, BaseModel):
        for kind, filler in FILLERS.items():
            if isinstance(value, kind):
                filler(value)
        for name in type(value).model_fields:
            item = getattr(value, name)
            if isinstance(item, BaseModel | list | tuple):
                fill(item)
    return value
