"""Base models in the studio: one of the models the server lists, chosen by name. A name a user sends is
looked up in that list and is never opened as a path, so the studio neither reads a file a user names nor
tells whether one exists."""

from __future__ import annotations

import re

from lorastudio.config import Settings
from lorastudio.engine import list_base_models
from lorastudio.errors import Invalid

HUB_ID = re.compile(r"hf:[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}")
ADD_A_MODEL = (
    "to add one, put a diffusers folder or a single .safetensors checkpoint (SD1.5 or SDXL) in the models "
    "folder of the server and of each worker ($LORASTUDIO_HOME/models) and reload"
)


def studio_bases(settings: Settings) -> list[dict]:
    """The models a studio user may pick: name, family, label, built_in, ready, default (no paths)."""
    return [{k: v for k, v in row.items() if k != "path"} for row in list_base_models(settings)]


def check_base(settings: Settings, name: str | None) -> str:
    """The base model a request names (None: the studio's default), or Invalid listing the choices."""
    if name is None or not name.strip():
        return settings.default_base_model
    name = name.strip()
    if name.startswith("hf:"):
        if not settings.allow_downloads:
            raise Invalid(
                f"base model {name[:80]!r} would be downloaded from the Hugging Face hub, and this studio does not "
                "download models (LORASTUDIO_ALLOW_DOWNLOADS is off); pick one of its models, or " + ADD_A_MODEL
            )
        if not HUB_ID.fullmatch(name):
            raise Invalid(f"{name[:80]!r} is not a hub id; write it as hf:<org>/<repo>")
        return name
    rows = studio_bases(settings)
    if name == settings.default_base_model or any(row["name"] == name for row in rows):
        return name
    names = ", ".join(r["name"] for r in rows)
    raise Invalid(f"base model {name[:80]!r} is not one of this studio's models ({names}); {ADD_A_MODEL}")
