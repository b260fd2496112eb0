"""Fighting Styles pages: the four pre-built styles and the user's own; "Create Custom Fighting Style" and
training one from 20-40 images."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response

from lorastudio.engine import FIGHTING_STYLE, base_family, recommended_strength
from lorastudio.errors import Conflict, LoraStudioError
from lorastudio.studio import datasets, library, styles
from lorastudio.studio.styles import StyleIn
from lorastudio.web.pages.common import PageUser, error_text, parse_form, redirect, render, studio_of
from lorastudio.web.state import Id

router = APIRouter(include_in_schema=False)
GUIDE_STRENGTH = f"{FIGHTING_STYLE.recommended_strength:g}"  # the kinds table's, what a new style's form starts at


def _page(request: Request, user: int, *, form: dict | None = None, errors: dict | None = None, status: int = 200):
    studio = studio_of(request)
    family = base_family(studio.settings.default_base_model, studio.settings)
    with studio.factory() as session:
        style_list = styles.list_styles(session, owner_id=user)
        loras = library.list_loras(session, owner_id=user, kind=FIGHTING_STYLE.name, family=family, per_page=100).items
    # A style with a LoRA for this base model is used at that LoRA's strength (the Studio's slider opens there).
    trained = recommended_strength(FIGHTING_STYLE.name, family)  # what a style's LoRA without a record opens at
    here: dict[int, float] = {}
    for lora in reversed(loras):  # newest last: the newest LoRA of a style wins
        if lora.style_id is not None:
            here[lora.style_id] = lora.recommended_strength if lora.recommended_strength is not None else trained
    return render(
        request,
        "styles.html",
        status_code=status,
        styles=style_list,
        lora_strength=here,
        trained_strength=trained,
        guide_strength=GUIDE_STRENGTH,
        form=form or {"recommended_strength": GUIDE_STRENGTH},
        errors=errors or {},
    )


@router.get("/styles", response_class=HTMLResponse)
def fighting_styles(request: Request, user: PageUser) -> HTMLResponse:
    return _page(request, user)


@router.post("/styles", response_class=HTMLResponse)
def create_style(
    request: Request,
    user: PageUser,
    name: Annotated[str, Form(max_length=500)] = "",
    description: Annotated[str, Form(max_length=2000)] = "",
    trigger: Annotated[str, Form(max_length=500)] = "",
    recommended_strength: Annotated[str, Form(max_length=40)] = GUIDE_STRENGTH,
    phrases: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    """'Create Custom Fighting Style', then straight to training it."""
    form = {
        "name": name,
        "description": description,
        "trigger": trigger,
        "recommended_strength": recommended_strength,
        "phrases": phrases,
    }
    words = [p.strip() for p in phrases.split(",") if p.strip()]
    data, errors = parse_form(StyleIn, form | {"phrases": words})
    if data is None:
        return _page(request, user, form=form, errors=errors, status=422)
    with studio_of(request).factory() as session:
        try:
            style = styles.create_style(session, owner_id=user, data=data)
        except LoraStudioError as exc:
            field = "trigger" if "trigger" in str(exc) else "form"
            return _page(request, user, form=form, errors={field: error_text(exc)}, status=422)
        row = styles.get_style_row(session, owner_id=user, style_id=style.id)
        dataset = datasets.subject_dataset(session, owner_id=user, style=row, reuse=False)
    return redirect(request, f"/train/{dataset.id}")


@router.post("/styles/{style_id}/train")
def train_style(request: Request, user: PageUser, style_id: Id) -> Response:
    """Train (or retrain) a style: its newest dataset of the user's, or a new one."""
    with studio_of(request).factory() as session:
        style = styles.get_style_row(session, owner_id=user, style_id=style_id)
        dataset = datasets.subject_dataset(session, owner_id=user, style=style)
    return redirect(request, f"/train/{dataset.id}")


@router.post("/styles/{style_id}/delete", response_class=HTMLResponse)
def delete_style(request: Request, user: PageUser, style_id: Id) -> Response:
    with studio_of(request).factory() as session:
        try:
            styles.delete_style(session, owner_id=user, style_id=style_id)
        except Conflict as exc:  # a pre-built style: said on its card (not found stays a not-found page)
            return _page(request, user, errors={f"style-{style_id}": error_text(exc)}, status=409)
    return redirect(request, "/styles")
