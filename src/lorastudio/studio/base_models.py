"""Base models in the studio: one of the models the server lists, chosen by name. A name a user sends is
looked up in that list and is never opened as a path, so the studio neither reads a file a user names nor
tells whether one exists."""

from __future__ import annotations

import re

from lorastudio.config import Settings
from lorastudio.engine import FAMILIES, family_label, full_size_families, get_family, list_base_models
from lorastudio.errors import Invalid

HUB_ID = re.compile(r"hf:[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}")


def add_a_model() -> str:
    """How a user adds a base model: which files, of which families, go where."""
    families = ", ".join(f.label for f in full_size_families())
    return (
        f"to add one, put a diffusers folder or a single .safetensors checkpoint ({families}) in the models "
        "folder of the server and of each worker ($LORASTUDIO_HOME/models) and reload"
    )


def studio_bases(settings: Settings) -> list[dict]:
    """The models a studio user may pick: name, family, label, built_in, ready, default (no paths)."""
    return [{k: v for k, v in row.items() if k != "path"} for row in list_base_models(settings)]


def base_groups(settings: Settings) -> list[dict]:
    """The ready base models grouped by family, in the family table's order (a test model under the family it
    is shaped like): the pages' "Base model" selects. Each model says what the pages follow on choosing it:
    its family, whether it samples by flow matching, its guidance and size when none is asked for."""
    groups: dict[str, dict] = {}
    for row in studio_bases(settings):
        if not row["ready"]:
            continue
        fam = get_family(row["family"])
        key = (fam.tiny_of if fam else None) or row["family"]
        facts = {"flow": fam.is_flow, "cfg": fam.default_cfg, "size": fam.default_size} if fam else {}
        group = groups.setdefault(key, {"family": key, "label": family_label(key), "models": []})
        group["models"].append(row | {"flow": False, "cfg": 7.0, "size": None} | facts)
    order = list(FAMILIES)
    return sorted(groups.values(), key=lambda g: order.index(g["family"]) if g["family"] in order else len(order))


def check_base(settings: Settings, name: str | None) -> str:
    """The base model a request names (None: the studio's default), or Invalid listing the choices."""
    if name is None or not name.strip():
        return settings.default_base_model
    name = name.strip()
    if name.startswith("hf:"):
        if not settings.allow_downloads:
            raise Invalid(
                f"base model {name[:80]!r} would be downloaded from the Hugging Face hub, and this studio does not "
                "download models (LORASTUDIO_ALLOW_DOWNLOADS is off); pick one of its models, or " + add_a_model()
            )
        if not HUB_ID.fullmatch(name):
            raise Invalid(f"{name[:80]!r} is not a hub id; write it as hf:<org>/<repo>")
        return name
    rows = studio_bases(settings)
    if name == settings.default_base_model or any(row["name"] == name for row in rows):
        return name
    names = ", ".join(r["name"] for r in rows)
    raise Invalid(f"base model {name[:80]!r} is not one of this studio's models ({names}); {add_a_model()}")
