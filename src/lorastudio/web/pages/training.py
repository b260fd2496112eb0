"""Train New LoRA pages: start a dataset (kind, name, trigger), upload many files (and zips) with each
file's verdict, edit captions, pick a preset (and the Advanced values), see the estimate and the balance,
submit, then watch the job's panel (progress, loss curve, previews, ETA, cancel, link to the LoRA)."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import uuid4

from fastapi import APIRouter, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from lorastudio.engine.models.basemodel import base_family, list_base_models
from lorastudio.engine.training.presets import PRESETS, get_preset
from lorastudio.errors import Invalid, LoraStudioError, TooLarge
from lorastudio.studio import credits, datasets, trainings
from lorastudio.studio.queue import wake
from lorastudio.studio.schemas import DatasetIn, TrainingIn
from lorastudio.web.api.files import read_upload
from lorastudio.web.pages.common import PageUser, error_text, parse_form, redirect, render, studio_of
from lorastudio.web.pages.jobs import panel_context
from lorastudio.web.state import Id

router = APIRouter(include_in_schema=False)
KINDS = [("character", "Character"), ("fighting_style", "Fighting style"), ("pose", "Action pose"),
         ("visual_style", "Visual style")]  # fmt: skip


class Advanced(BaseModel):
    """The Advanced panel's fields: each left empty keeps the preset's value."""

    model_config = ConfigDict(extra="ignore")
    steps: int | None = Field(default=None, ge=1, le=100_000)
    learning_rate: float | None = Field(default=None, gt=0, le=1, allow_inf_nan=False)
    network_dim: int | None = Field(default=None, ge=1, le=1024)
    network_alpha: float | None = Field(default=None, gt=0, le=1024, allow_inf_nan=False)
    resolution: int | None = Field(default=None, ge=32, le=2048)
    batch_size: int | None = Field(default=None, ge=1, le=64)
    seed: int | None = Field(default=None, ge=0, lt=2**32)
    checkpoint_every: int | None = Field(default=None, ge=1, le=100_000)


FIELDS = [("steps", "Steps"), ("learning_rate", "Learning rate"), ("network_dim", "Network dim (rank)"),
          ("network_alpha", "Network alpha"), ("resolution", "Resolution"), ("batch_size", "Batch size"),
          ("seed", "Seed"), ("checkpoint_every", "Checkpoint every N steps")]  # fmt: skip


def training_request(dataset_id: int, form: dict[str, Any]) -> tuple[TrainingIn | None, dict[str, str]]:
    """The TrainingIn the form asks for (empty Advanced fields keep the preset), or the field errors."""
    advanced, errors = parse_form(Advanced, {k: form.get(k, "") for k, _ in FIELDS})
    if advanced is None:
        return None, errors
    overrides = advanced.model_dump(exclude_none=True)
    return parse_form(TrainingIn, {"dataset_id": dataset_id, "preset": form.get("preset", ""),
                                   "base": form.get("base", ""), "description": form.get("description", ""),
                                   "overrides": overrides})  # fmt: skip


async def _form(request: Request) -> dict[str, str]:
    return {k: v for k, v in (await request.form()).items() if isinstance(v, str) and len(v) <= 1000}


@router.get("/train", response_class=HTMLResponse)
def train_new(request: Request, user: PageUser, kind: str = "character") -> HTMLResponse:
    with studio_of(request).factory() as session:
        existing = datasets.list_datasets(session, owner_id=user)
    form = {"kind": kind if kind in dict(KINDS) else "character"}
    return render(request, "train_new.html", kinds=KINDS, form=form, errors={}, datasets=existing)


@router.post("/train", response_class=HTMLResponse)
def start_dataset(
    request: Request,
    user: PageUser,
    kind: Annotated[str, Form(max_length=40)] = "character",
    name: Annotated[str, Form(max_length=500)] = "",
    trigger: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    """Step one: the kind, a name and the trigger word; then the dataset's page takes the uploads."""
    form = {"kind": kind, "name": name, "trigger": trigger}
    data, errors = parse_form(DatasetIn, form)
    with studio_of(request).factory() as session:
        if data is not None:
            try:
                return redirect(request, f"/train/{datasets.create_dataset(session, owner_id=user, data=data).id}")
            except LoraStudioError as exc:
                errors = {"trigger" if "trigger" in str(exc) else "name": error_text(exc)}
        existing = datasets.list_datasets(session, owner_id=user)
    return render(request, "train_new.html", status_code=422, kinds=KINDS, form=form, errors=errors, datasets=existing)


def _presets(kind: str, family: str | None) -> list:
    return [get_preset(name, kind, family) for name, p in PRESETS.items() if p.kind == kind]


@router.get("/train/{dataset_id}", response_class=HTMLResponse)
def dataset_page(request: Request, user: PageUser, dataset_id: Id) -> HTMLResponse:
    studio = studio_of(request)
    with studio.factory() as session:
        dataset = datasets.get_dataset(session, studio.settings, studio.store, owner_id=user, dataset_id=dataset_id)
        balance = credits.balance(session, user)
    family = base_family(studio.settings.default_base_model, studio.settings)
    return render(request, "train.html", dataset=dataset, presets=_presets(dataset.kind, family), fields=FIELDS,
                  bases=list_base_models(studio.settings), form={}, errors={}, balance_now=balance, idem=uuid4().hex,
                  kind_label=dict(KINDS).get(dataset.kind, dataset.kind))  # fmt: skip


@router.post("/train/{dataset_id}/images", response_class=HTMLResponse)
async def upload(request: Request, user: PageUser, dataset_id: Id, files: list[UploadFile]) -> HTMLResponse:
    """Files as the browser sends them (an image with its .txt caption together, a zip alone): the whole
    list comes back with every verdict."""
    studio = studio_of(request)
    if len(files) > studio.settings.max_upload_files:
        raise TooLarge(f"{len(files)} files in one upload; the limit is {studio.settings.max_upload_files}")
    uploads = [await read_upload(f, studio.settings) for f in files]
    with studio.factory() as session:
        dataset = datasets.add_files(session, studio.settings, studio.store, owner_id=user, dataset_id=dataset_id,
                                     files=uploads)  # fmt: skip
    return render(request, "_dataset_images.html", dataset=dataset)


@router.post("/train/{dataset_id}/images/{image_id}/caption", response_class=HTMLResponse)
def caption(
    request: Request, user: PageUser, dataset_id: Id, image_id: Id, caption: Annotated[str, Form(max_length=5000)] = ""
) -> HTMLResponse:
    with studio_of(request).factory() as session:
        dataset = datasets.set_caption(session, owner_id=user, dataset_id=dataset_id, image_id=image_id,
                                       caption=_caption(caption))  # fmt: skip
    image = next(i for i in dataset.images if i.id == image_id)
    return render(request, "_dataset_image.html", dataset=dataset, image=image, saved=True)


def _caption(text: str) -> str:
    text = text.strip()
    if not text or len(text) > 1000:
        raise Invalid("a caption is 1-1000 characters; to train without this image, remove it")
    return text


@router.post("/train/{dataset_id}/images/{image_id}/delete", response_class=HTMLResponse)
def remove_image(request: Request, user: PageUser, dataset_id: Id, image_id: Id) -> HTMLResponse:
    with studio_of(request).factory() as session:
        dataset = datasets.delete_image(session, owner_id=user, dataset_id=dataset_id, image_id=image_id)
    return render(request, "_dataset_images.html", dataset=dataset)


@router.post("/train/{dataset_id}/estimate", response_class=HTMLResponse)
async def estimate(request: Request, user: PageUser, dataset_id: Id) -> HTMLResponse:
    """The estimate for the form as it stands, beside the balance (refreshed as the form changes)."""
    studio = studio_of(request)
    data, errors = training_request(dataset_id, await _form(request))
    est, problem = None, None
    with studio.factory() as session:
        balance = credits.balance(session, user)
        if data is not None:
            try:
                est = trainings.estimate_training(session, studio.settings, owner_id=user, data=data)
            except LoraStudioError as exc:
                problem = error_text(exc)
    return render(request, "_estimate.html", estimate=est, errors=errors, problem=problem, balance_now=balance)


@router.post("/train/{dataset_id}/submit", response_class=HTMLResponse)
async def submit(request: Request, user: PageUser, dataset_id: Id) -> HTMLResponse:
    """Submit: the job's live panel, or what stops it (beside the button, the form untouched)."""
    studio = studio_of(request)
    form = await _form(request)
    data, errors = training_request(dataset_id, form)
    if data is None:
        return render(request, "_submit_error.html", status_code=422, errors=errors, problem=None)
    with studio.factory() as session:
        try:
            job = trainings.submit_training(session, studio.settings, owner_id=user, data=data,
                                            idempotency_key=form.get("idempotency_key") or None)  # fmt: skip
        except LoraStudioError as exc:
            return render(request, "_submit_error.html", status_code=422, errors={}, problem=error_text(exc))
        wake(studio.queue)
        ctx = panel_context(session, owner_id=user, job_id=job.id)
    # A fresh key for the next submit (the old one would return this job again: that is its purpose).
    response = render(request, "_train_submitted.html", idem=uuid4().hex, **ctx)
    response.headers["HX-Retarget"] = "#job-area"
    response.headers["HX-Reswap"] = "innerHTML"
    response.headers["HX-Trigger"] = "balance-changed"
    return response
