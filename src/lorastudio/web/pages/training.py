"""Train New LoRA pages: start a dataset (kind, name, trigger), upload many files (and zips) with each
file's verdict, edit captions (or have them written: Auto-caption, a job whose panel brings them back), pick
a preset (and the Advanced values), see the estimate and the balance, submit, then watch the job's panel
(progress, loss curve, previews, ETA, cancel, link to the LoRA)."""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Annotated, Any
from uuid import uuid4

import annotated_types as at
from fastapi import APIRouter, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError

from lorastudio.engine import (
    DEFAULT_KIND,
    KINDS,
    LEAVE_OUT_REASON,
    PRESETS,
    Preset,
    TrainConfig,
    base_family,
    default_captioner,
    full_size_families,
    get_family,
    get_preset,
)
from lorastudio.errors import Invalid, LoraStudioError, NotFound, TooLarge
from lorastudio.studio import captioning, characters, credits, datasets, jobs, styles, training
from lorastudio.studio.base_models import add_a_model, base_groups
from lorastudio.studio.datasets import DatasetIn, DatasetOut
from lorastudio.studio.training import TrainingIn, TrainingSettings
from lorastudio.web.api.files import read_upload
from lorastudio.web.pages.common import PageUser, error_text, parse_form, redirect, render, studio_of
from lorastudio.web.pages.jobs import panel_context
from lorastudio.web.state import Id

router = APIRouter(include_in_schema=False)
# The Advanced panel's labels; its fields, types and limits are TrainingSettings' (the API's), in this order.
LABELS = {
    "steps": "Steps",
    "learning_rate": "Learning rate",
    "network_dim": "Network dim (rank)",
    "network_alpha": "Network alpha",
    "resolution": "Resolution",
    "batch_size": "Batch size",
    "devices": "GPUs",
    "seed": "Seed (-1: random)",
    "checkpoint_every": "Checkpoint every N steps",
    "sample_every": "Sample preview every N steps (0: none)",
    "evaluate": "Score checkpoints, keep the best",
    "eval_share": "Most of the run scoring may take (0.1: 10%)",
    "eval_prompts": "Evaluation prompts per checkpoint",
    "eval_steps": "Sampling steps of the evaluation renders",
    "text_encoder_lr": "Text encoder learning rate",
    "train_text_encoder": "Train the text encoder",
    "gradient_accumulation": "Gradient accumulation steps",
    "target": "Layers with a LoRA",
    "optimizer": "Optimizer",
    "lr_scheduler": "Learning-rate schedule",
    "warmup_steps": "Warm-up steps",
    "min_snr_gamma": "Min-SNR gamma",
    "noise_offset": "Noise offset",
    "precision": "Mixed precision",
    "gradient_checkpointing": "Gradient checkpointing",
    "flip_augment": "Mirror images at random",
    "quantize_base": "8-bit base",
    "blocks_to_swap": "Blocks swapped to host memory",
    "lora_format": "File key layout",
}
# Settings for the transformer families only (FLUX.1, FLUX.2 [klein], Qwen-Image, Z-Image): on an SD base they do
# nothing or are refused (the engine quantizes transformer blocks only), so the page hides them there.
TRANSFORMER_ONLY = ("quantize_base", "blocks_to_swap", "lora_format")
_TRANSFORMERS = "/".join(f.label for f in full_size_families() if f.is_flow)
HINTS = {
    "seed": "The same seed repeats a run",
    "quantize_base": f"{_TRANSFORMERS} only: int8 holds the frozen base in 8 bits, about half its memory (the LoRA "
    "still trains in full precision)",
    "blocks_to_swap": f"{_TRANSFORMERS} only: this many blocks wait in host memory and move to the GPU as each runs, "
    "for a card too small (slower)",
    "lora_format": f"{_TRANSFORMERS} only: kohya keys load in ComfyUI, Forge and kohya; diffusers keys in diffusers",
    "devices": "Train on this many GPUs at once (a worker must have them); empty steps and learning rate follow: "
    "steps / GPUs, learning rate x sqrt(GPUs)",
}
MAIN = 10  # the first settings are shown open; the rest under "More settings"
RECENT_TRAININGS = 100  # how far back the dataset page looks for its own trainings


@dataclass(frozen=True)
class Setting:
    """One Advanced field as TrainingSettings defines it: its kind and limits, and the words for them."""

    name: str
    label: str
    hint: str
    kind: str  # "int", "float", "choice" or "bool"
    choices: tuple[str, ...] = ()
    low: float | None = None
    high: float | None = None
    low_open: bool = False  # low itself not allowed (a float "greater than")
    high_open: bool = False
    transformer_only: bool = False  # shown only when the base is of a transformer (flow-matching) family

    @property
    def words(self) -> str:
        """What the field takes, e.g. "use a whole number from 1 to 100000"."""
        if self.kind == "bool":
            return "choose yes or no"
        if self.kind == "choice":
            return "choose one of: " + ", ".join(self.choices)
        if self.kind == "int":
            low = 0 if self.name == "seed" else int(self.low or 0)  # -1 is the "random" word, said apart
            text = f"use a whole number from {low} to {int(self.high or 0)}"
            return text + (", or -1 for a random seed" if self.name == "seed" else "")
        if self.low_open or self.high_open:
            low = f"greater than {self.low:g}" if self.low_open else f"of at least {self.low:g}"
            return f"use a number {low} and {'below' if self.high_open else 'at most'} {self.high:g}"
        return f"use a number from {self.low:g} to {self.high:g}"

    def error(self) -> str:
        """The error beside the field: its name and what it takes."""
        return f"{self.name.replace('_', ' ')}: {self.words}"


def _setting(name: str) -> Setting:
    field = TrainingSettings.model_fields[name]
    kind = next(a for a in typing.get_args(field.annotation) if a is not type(None))
    hint = HINTS.get(name) or (field.description or "").split(";")[0]
    only = name in TRANSFORMER_ONLY
    if typing.get_origin(kind) is typing.Literal:
        choices = tuple(typing.get_args(kind))
        return Setting(name, LABELS.get(name, hint), hint, "choice", choices=choices, transformer_only=only)
    if kind is bool:
        return Setting(name, LABELS.get(name, hint), hint, "bool", transformer_only=only)
    limits: dict[str, Any] = {}
    for rule in field.metadata:
        if isinstance(rule, at.Gt):
            limits |= {"low": rule.gt + (1 if kind is int else 0), "low_open": kind is not int}
        elif isinstance(rule, at.Ge):
            limits["low"] = rule.ge
        elif isinstance(rule, at.Lt):
            limits |= {"high": rule.lt - (1 if kind is int else 0), "high_open": kind is not int}
        elif isinstance(rule, at.Le):
            limits["high"] = rule.le
    return Setting(
        name, LABELS.get(name, hint), hint, "int" if kind is int else "float", transformer_only=only, **limits
    )


# Every setting the API takes, the labelled ones first in LABELS' order (a new one shows up by itself).
SETTINGS = [
    _setting(name)
    for name in dict.fromkeys([*LABELS, *TrainingSettings.model_fields])
    if name in TrainingSettings.model_fields
]
ERROR_FIELDS = [s.name for s in SETTINGS] + ["description"]  # errors shown beside these fields


def parse_settings(form: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """The Advanced fields the user filled, checked one by one against TrainingSettings, or their errors."""
    values: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for setting in SETTINGS:
        raw = str(form.get(setting.name, "")).strip()
        if not raw:
            continue
        if setting.kind == "bool":
            raw = {"yes": "true", "no": "false"}.get(raw, raw)
        try:
            checked = TrainingSettings.model_validate({setting.name: raw})
        except ValidationError:
            errors[setting.name] = setting.error()
            continue
        values[setting.name] = getattr(checked, setting.name)
    return values, errors


def training_request(dataset_id: int, form: dict[str, Any]) -> tuple[TrainingIn | None, dict[str, str]]:
    """The TrainingIn the form asks for (empty Advanced fields keep the preset), or the field errors."""
    overrides, errors = parse_settings(form)
    if errors:
        return None, errors
    data, errors = parse_form(
        TrainingIn,
        {
            "dataset_id": dataset_id,
            "preset": form.get("preset", ""),
            "base": form.get("base", ""),
            "description": form.get("description", ""),
            "overrides": overrides,
        },
    )
    if "description" in errors:
        errors["description"] = "description: at most 300 characters, the look of the subject"
    return data, errors


def preset_label(preset: Preset) -> str:
    """A preset as the Preset select says it, with the values it has on the chosen base's family."""
    return (
        f"{preset.name}: {preset.steps} steps, lr {preset.learning_rate:g}, dim {preset.network_dim}/"
        f"{int(preset.network_alpha)}, {preset.resolution} px, batch {preset.batch_size}"
    )


def family_presets(kind: str, families: set[str | None]) -> dict[str, dict[str, dict]]:
    """Per family, per preset: its label and what each empty Advanced field means (the train page's JS
    swaps them in when the base changes, so a FLUX.1 base never shows, nor runs, the toy world's 32 px)."""
    return {
        family or "": {p.name: {"label": preset_label(p), "values": preset_values(p)} for p in _presets(kind, family)}
        for family in families
    }


def preset_values(preset: Preset) -> dict[str, str]:
    """What each Advanced field is when left empty with this preset (the fields' placeholders)."""
    shown: dict[str, Any] = {
        "steps": preset.steps,
        "learning_rate": preset.learning_rate,
        "network_dim": preset.network_dim,
        "network_alpha": preset.network_alpha,
        "resolution": preset.resolution,
        "batch_size": preset.batch_size,
        "target": preset.target,
        "warmup_steps": "auto",  # the engine's, from the steps
        "sample_every": f"auto (up to {training.PREVIEWS} a run)",  # the service fits them to the run's length
        "evaluate": training.EVALUATE,  # the studio scores checkpoints unless told not to
    }
    for setting in SETTINGS:
        if setting.name not in shown:
            default = TrainConfig.model_fields[setting.name].default
            shown[setting.name] = "off" if default is None else default
    return {
        k: ("yes" if v is True else "no" if v is False else f"{v:g}" if isinstance(v, float) else str(v))
        for k, v in shown.items()
    }


async def _form(request: Request) -> dict[str, str]:
    return {k: v for k, v in (await request.form()).items() if isinstance(v, str) and len(v) <= 1000}


@router.get("/train", response_class=HTMLResponse)
def train_new(request: Request, user: PageUser, kind: str = DEFAULT_KIND) -> HTMLResponse:
    with studio_of(request).factory() as session:
        existing = datasets.list_datasets(session, owner_id=user)
    form = {"kind": kind if kind in KINDS else DEFAULT_KIND}
    return render(request, "train_new.html", form=form, errors={}, datasets=existing)


@router.post("/train", response_class=HTMLResponse)
def start_dataset(
    request: Request,
    user: PageUser,
    kind: Annotated[str, Form(max_length=40)] = DEFAULT_KIND,
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
    return render(request, "train_new.html", status_code=422, form=form, errors=errors, datasets=existing)


def _presets(kind: str, family: str | None) -> list:
    return [get_preset(name, kind, family) for name, p in PRESETS.items() if p.kind == kind]


def _subject_description(session, user: int, dataset: DatasetOut) -> str:
    """The description of the character (or style) the dataset is for: the form's first value."""
    try:
        if dataset.character_id is not None:
            return characters.get_character(session, owner_id=user, character_id=dataset.character_id).description
        if dataset.style_id is not None:
            return styles.get_style(session, owner_id=user, style_id=dataset.style_id).description
    except LoraStudioError:  # the subject was deleted since: the dataset stays trainable
        pass
    return ""


def _dataset_jobs(session, user: int, dataset_id: int) -> list[dict]:
    """The panels to show on a dataset's page: its trainings still pending or running, then its newest finished."""
    trainings_of = [
        job
        for job in jobs.list_jobs(session, owner_id=user, type="training", limit=RECENT_TRAININGS)
        if job.request.dataset_id == dataset_id
    ]
    active = [job for job in trainings_of if job.status not in jobs.FINAL]
    finished = [job for job in trainings_of if job.status in jobs.FINAL][:1]
    return [panel_context(session, owner_id=user, job_id=job.id) for job in active + finished]


@router.get("/train/{dataset_id}", response_class=HTMLResponse)
def dataset_page(request: Request, user: PageUser, dataset_id: Id) -> HTMLResponse:
    """A dataset's page: uploads, captions, settings, estimate, and its running and newest finished training."""
    studio = studio_of(request)
    with studio.factory() as session:
        dataset = datasets.get_dataset(session, studio.settings, studio.store, owner_id=user, dataset_id=dataset_id)
        balance = credits.balance(session, user)
        description = _subject_description(session, user, dataset)
        panels = _dataset_jobs(session, user, dataset_id)
        caption_job = captioning.active_captioning(session, owner_id=user, dataset_id=dataset_id)
    family = base_family(studio.settings.default_base_model, studio.settings)
    groups = base_groups(studio.settings)
    by_family = family_presets(dataset.kind, {family} | {m["family"] for g in groups for m in g["models"]})
    fam = get_family(family)
    return render(
        request,
        "train.html",
        dataset=dataset,
        presets=_presets(dataset.kind, family),
        settings=SETTINGS,
        main=MAIN,
        family=family or "",
        flow=bool(fam and fam.is_flow),
        by_family=by_family,
        base_groups=groups,
        add_a_model=add_a_model(),
        form={"description": description[:300]},
        errors={},
        balance_now=balance,
        idem=uuid4().hex,
        panels=panels,
        captioners=captioning.captioner_choices(studio.settings),
        caption_job=caption_job,
        caption_idem=uuid4().hex,
        leave_out_reason=LEAVE_OUT_REASON,
    )


@router.post("/train/{dataset_id}/images", response_class=HTMLResponse)
async def upload(request: Request, user: PageUser, dataset_id: Id, files: list[UploadFile]) -> HTMLResponse:
    """Files as the browser sends them (an image with its .txt caption together, a zip alone): the whole
    list comes back with every verdict."""
    studio = studio_of(request)
    if len(files) > studio.settings.max_upload_files:
        raise TooLarge(f"{len(files)} files in one upload; the limit is {studio.settings.max_upload_files}")
    uploads = [await read_upload(f, studio.settings) for f in files]
    with studio.factory() as session:
        dataset = datasets.add_files(
            session, studio.settings, studio.store, owner_id=user, dataset_id=dataset_id, files=uploads
        )
    return render(request, "_dataset_images.html", dataset=dataset)


@router.post("/train/{dataset_id}/images/{image_id}/caption", response_class=HTMLResponse)
def caption(
    request: Request, user: PageUser, dataset_id: Id, image_id: Id, caption: Annotated[str, Form(max_length=5000)] = ""
) -> HTMLResponse:
    with studio_of(request).factory() as session:
        dataset = datasets.set_caption(
            session, owner_id=user, dataset_id=dataset_id, image_id=image_id, caption=_caption(caption)
        )
    image = next(i for i in dataset.images if i.id == image_id)
    return render(request, "_dataset_image.html", dataset=dataset, image=image, saved=True)


def _caption(text: str) -> str:
    text = text.strip()
    if not text or len(text) > 1000:
        raise Invalid("a caption is 1-1000 characters; to train without this image, remove it")
    return text


@router.post("/train/{dataset_id}/captions", response_class=HTMLResponse)
async def auto_caption(request: Request, user: PageUser, dataset_id: Id) -> HTMLResponse:
    """Auto-caption: the caption job's live panel, or what stops it (in words, where the panel would go)."""
    studio = studio_of(request)
    form = await _form(request)
    with studio.factory() as session:
        try:
            job = captioning.submit_captioning(
                session,
                studio.settings,
                owner_id=user,
                dataset_id=dataset_id,
                captioner=form.get("captioner", "") or default_captioner(studio.settings),
                overwrite=form.get("overwrite") == "yes",
                leave_out_identity=form.get("leave_out_identity") == "yes",
                idempotency_key=form.get("idempotency_key") or None,
            )
        except LoraStudioError as exc:
            return render(request, "_caption_refused.html", status_code=422, problem=error_text(exc))
    # A fresh key for the next Auto-caption click: the one just used answers this job only.
    return render(request, "_caption_job.html", job=job, dataset=None, caption_idem=uuid4().hex)


@router.get("/train/{dataset_id}/captions/{job_id}", response_class=HTMLResponse)
def caption_panel(request: Request, user: PageUser, dataset_id: Id, job_id: Id) -> HTMLResponse:
    """A caption job's panel; once it has ended, the dataset's images come with it (the captions it wrote)."""
    studio = studio_of(request)
    with studio.factory() as session:
        job = jobs.get_job(session, owner_id=user, job_id=job_id, stale_seconds=studio.settings.lease_seconds)
        if job.type != "caption" or job.request.dataset_id != dataset_id:
            raise NotFound(f"caption job {job_id} of dataset {dataset_id} not found")
        dataset = None
        if job.status in jobs.FINAL:
            dataset = datasets.get_dataset(session, studio.settings, studio.store, owner_id=user, dataset_id=dataset_id)
    return render(request, "_caption_job.html", job=job, dataset=dataset)


@router.post("/train/{dataset_id}/images/{image_id}/delete", response_class=HTMLResponse)
def remove_image(request: Request, user: PageUser, dataset_id: Id, image_id: Id) -> HTMLResponse:
    with studio_of(request).factory() as session:
        dataset = datasets.delete_image(session, owner_id=user, dataset_id=dataset_id, image_id=image_id)
    return render(request, "_dataset_images.html", dataset=dataset)


def _split(errors: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """Errors that go beside their field, and the rest (said where the form's answer goes)."""
    beside = {k: v for k, v in errors.items() if k in ERROR_FIELDS}
    return beside, {k: v for k, v in errors.items() if k not in beside}


@router.post("/train/{dataset_id}/estimate", response_class=HTMLResponse)
async def estimate(request: Request, user: PageUser, dataset_id: Id) -> HTMLResponse:
    """The estimate for the form as it stands, beside the balance (refreshed as the form changes); a field's
    error goes beside that field."""
    studio = studio_of(request)
    data, errors = training_request(dataset_id, await _form(request))
    beside, errors = _split(errors)
    est, problem = None, None
    with studio.factory() as session:
        balance = credits.balance(session, user)
        if data is not None:
            try:
                est = training.estimate_training(session, studio.settings, owner_id=user, data=data)
            except LoraStudioError as exc:
                problem = error_text(exc)
    return render(
        request,
        "_estimate.html",
        estimate=est,
        errors=errors,
        problem=problem,
        balance_now=balance,
        beside=beside,
        settings=SETTINGS,
    )


@router.post("/train/{dataset_id}/submit", response_class=HTMLResponse)
async def submit(request: Request, user: PageUser, dataset_id: Id) -> HTMLResponse:
    """Submit: the job's live panel, or what stops it (beside its field or the button, the form untouched)."""
    studio = studio_of(request)
    form = await _form(request)
    data, errors = training_request(dataset_id, form)
    beside, errors = _split(errors)
    if data is None:
        return render(
            request,
            "_train_refused.html",
            status_code=422,
            errors=errors,
            problem=None,
            beside=beside,
            settings=SETTINGS,
        )
    with studio.factory() as session:
        try:
            job = training.submit_training(
                session, studio.settings, owner_id=user, data=data, idempotency_key=form.get("idempotency_key") or None
            )
        except LoraStudioError as exc:
            return render(
                request,
                "_train_refused.html",
                status_code=422,
                errors={},
                problem=error_text(exc),
                beside={},
                settings=SETTINGS,
            )
        ctx = panel_context(session, owner_id=user, job_id=job.id)
    # A fresh key for the next submit (the old one would return this job again: that is its purpose).
    response = render(request, "_train_submitted.html", idem=uuid4().hex, beside={}, settings=SETTINGS, **ctx)
    response.headers["HX-Retarget"] = "#job-area"
    response.headers["HX-Reswap"] = "innerHTML"
    response.headers["HX-Trigger"] = "balance-changed"
    return response
