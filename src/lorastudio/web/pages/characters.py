"""Character Manager pages: the cards (reference image, description, fighting style, trigger word, LoRA
versions and status), "Add New Character", a new reference image, and "Train LoRA" opening training prefilled."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from lorastudio.errors import LoraStudioError, NotFound
from lorastudio.studio import characters, datasets, styles, training
from lorastudio.studio.characters import CharacterIn
from lorastudio.web.api.files import read_upload
from lorastudio.web.pages.common import PageUser, error_text, parse_form, redirect, render, studio_of
from lorastudio.web.state import Id

router = APIRouter(include_in_schema=False)


def _page(request: Request, user: int, *, form: dict | None = None, errors: dict | None = None, status: int = 200):
    with studio_of(request).factory() as session:
        cards = characters.list_characters(session, owner_id=user)
        running = training.running_by_character(session, owner_id=user)
        style_list = styles.list_styles(session, owner_id=user)
    return render(
        request,
        "characters.html",
        status_code=status,
        cards=cards,
        training=running,
        styles=style_list,
        form=form or {},
        errors=errors or {},
    )


@router.get("/characters", response_class=HTMLResponse)
def character_manager(request: Request, user: PageUser) -> HTMLResponse:
    return _page(request, user)


@router.post("/characters", response_class=HTMLResponse)
async def add_character(
    request: Request,
    user: PageUser,
    name: Annotated[str, Form(max_length=500)] = "",
    description: Annotated[str, Form(max_length=2000)] = "",
    fighting_style: Annotated[str, Form(max_length=500)] = "",
    trigger: Annotated[str, Form(max_length=500)] = "",
    reference: UploadFile | None = None,
) -> Response:
    """'Add New Character': errors appear next to their fields with everything typed kept."""
    form = {"name": name, "description": description, "fighting_style": fighting_style, "trigger": trigger}
    data, errors = parse_form(CharacterIn, form)
    studio = studio_of(request)
    upload = None
    if reference is not None and reference.filename:
        try:
            upload = await read_upload(reference, studio.settings)
        except LoraStudioError as exc:
            errors["reference"] = error_text(exc)
    if data is None or errors:
        return _page(request, user, form=form, errors=errors, status=422)
    with studio.factory() as session:
        try:
            created = characters.create_character(
                session,
                owner_id=user,
                data=data,
                store=studio.store,
                reference=upload.data if upload else None,
                max_pixels=studio.settings.max_image_pixels,
            )
        except LoraStudioError as exc:  # nothing was created: the form comes back with what was typed
            text = str(exc)
            field = "trigger" if "trigger" in text else ("reference" if upload and "image" in text else "form")
            return _page(request, user, form=form, errors={field: error_text(exc)}, status=422)
    return RedirectResponse(f"/characters#character-{created.id}", status_code=303)


@router.post("/characters/{character_id}/reference", response_class=HTMLResponse)
async def new_reference(request: Request, user: PageUser, character_id: Id, reference: UploadFile) -> Response:
    studio = studio_of(request)
    try:
        upload = await read_upload(reference, studio.settings)
        with studio.factory() as session:
            characters.set_reference(
                session,
                studio.store,
                owner_id=user,
                character_id=character_id,
                data=upload.data,
                max_pixels=studio.settings.max_image_pixels,
            )
    except NotFound:
        raise  # another user's (or no) character: the not-found page, as everywhere
    except LoraStudioError as exc:
        return _page(request, user, errors={f"card-{character_id}": error_text(exc)}, status=422)
    return RedirectResponse(f"/characters#character-{character_id}", status_code=303)


@router.post("/characters/{character_id}/train")
def train_character(request: Request, user: PageUser, character_id: Id) -> Response:
    """'Train LoRA' on a card: the character's newest dataset (add images, train a new version) or a new one."""
    with studio_of(request).factory() as session:
        character = characters.get_row(session, owner_id=user, character_id=character_id)
        dataset = datasets.subject_dataset(session, owner_id=user, character=character)
    return redirect(request, f"/train/{dataset.id}")


@router.post("/characters/{character_id}/delete")
def delete_character(request: Request, user: PageUser, character_id: Id) -> Response:
    with studio_of(request).factory() as session:
        characters.delete_character(session, owner_id=user, character_id=character_id)
    return redirect(request, "/characters")
