"""Plain data in and out of the services (pydantic), every field described: the HTTP API's schema too."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator

from lorastudio.engine.selection import LoraSelection
from lorastudio.engine.training.config import TrainConfig

Kind = Literal["character", "fighting_style", "pose", "visual_style"]


class Out(BaseModel):
    """Base of every response: built from ORM rows."""

    model_config = ConfigDict(from_attributes=True)


class CharacterIn(BaseModel):
    """A new character for the Character Manager."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    name: str = Field(min_length=1, max_length=120, description="Character name", examples=["Action Hero John"])
    description: str = Field(
        default="",
        max_length=300,
        description="Appearance and style, in plain words",
        examples=["red gi, yellow hair, white headband"],
    )
    fighting_style: str = Field(
        default="", max_length=120, description="Fighting style (a style's trigger or words)", examples=["kungfustyle"]
    )
    trigger: str | None = Field(
        default=None,
        max_length=64,
        description="Trigger word; suggested from the name when left out",
        examples=["johnhero"],
    )


class CharacterUpdate(BaseModel):
    """Fields of a character that can be changed (all optional)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    name: str | None = Field(default=None, min_length=1, max_length=120, description="Character name")
    description: str | None = Field(default=None, max_length=300, description="Appearance and style")
    fighting_style: str | None = Field(default=None, max_length=120, description="Fighting style")


class LoraVersionOut(Out):
    """One trained (or imported) file of a LoRA."""

    id: int = Field(description="Version id")
    version: int = Field(description="1 for the first file, then 2, 3, ...")
    size: int = Field(description="File size in bytes")
    rank: int | None = Field(description="Network dim (rank)")
    training_seconds: float | None = Field(description="How long training took")
    job_id: int | None = Field(description="The training job that made it")
    created_at: datetime = Field(description="When it was registered (UTC)")


class CharacterOut(Out):
    """A character with its LoRA (if trained) and versions."""

    id: int = Field(description="Character id")
    name: str = Field(description="Character name")
    description: str = Field(description="Appearance and style")
    fighting_style: str = Field(description="Fighting style")
    trigger: str = Field(description="Trigger word to put in prompts")
    reference_image: str | None = Field(default=None, description="URL of the reference image, if uploaded")
    lora_id: int | None = Field(default=None, description="Library id of the character's LoRA, once trained")
    versions: list[LoraVersionOut] = Field(default_factory=list, description="The LoRA's versions, newest last")
    created_at: datetime = Field(description="When it was created (UTC)")


class StyleIn(BaseModel):
    """A custom fighting style ("Create Custom Fighting Style")."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    name: str = Field(min_length=1, max_length=120, description="Style name", examples=["Capoeira"])
    description: str = Field(default="", max_length=300, description="What the technique looks like")
    trigger: str | None = Field(default=None, max_length=64, description="Trigger word; suggested when left out")
    recommended_strength: float = Field(
        default=0.6, ge=0.05, le=2, allow_inf_nan=False, description="Strength the guide suggests (style 0.6)"
    )
    phrases: list[str] = Field(
        default_factory=list, max_length=12, description="Words the trigger stands for when the style has no LoRA file"
    )


class StyleOut(Out):
    """A fighting style: one of the four pre-built ones or a custom one."""

    id: int = Field(description="Style id")
    name: str = Field(description="Style name", examples=["Kung Fu Martial Arts"])
    description: str = Field(description="What the technique looks like")
    trigger: str = Field(description="Trigger word", examples=["kungfustyle"])
    recommended_strength: float = Field(description="Suggested LoRA strength")
    phrases: list[str] = Field(description="Words the trigger expands to when no LoRA file is attached")
    builtin: bool = Field(description="One of the guide's pre-built styles")
    lora_id: int | None = Field(default=None, description="Library id of its LoRA, if it has one for some base")


class LoraOut(Out):
    """A library entry with the guide's metrics."""

    id: int = Field(description="Library id")
    name: str = Field(description="Name")
    kind: str = Field(description="character, fighting_style, pose or visual_style")
    family: str | None = Field(description="Base-model family it was made for")
    trigger_words: list[str] = Field(description="Trigger words")
    description: str = Field(description="What it looks like")
    recommended_strength: float | None = Field(description="Strength recorded at training")
    source: str = Field(description="trained, imported or prebuilt")
    public: bool = Field(default=False, description="Shared with every user (read-only for them)")
    character_id: int | None = Field(description="Character it belongs to")
    style_id: int | None = Field(description="Fighting style it belongs to")
    usage_count: int = Field(description="Generation jobs that used it")
    kept_count: int = Field(description="Images kept from those jobs")
    judged_count: int = Field(description="Images kept or rejected from those jobs")
    success_rate: float | None = Field(description="kept / judged (None until an image is judged)")
    rating_avg: float | None = Field(description="Average user rating, 1-5")
    rating_count: int = Field(description="How many users rated it")
    training_seconds: float | None = Field(description="Training time of the newest version")
    versions: list[LoraVersionOut] = Field(default_factory=list, description="Files, newest last")
    created_at: datetime = Field(description="When it entered the library (UTC)")


class LoraUpdate(BaseModel):
    """What a user may change on a LoRA of their own (all optional)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    name: str | None = Field(default=None, min_length=1, max_length=120, description="Library name")
    description: str | None = Field(
        default=None,
        max_length=300,
        description="What it looks like, in plain words (a regional scene describes the character with it)",
        examples=["red gi, yellow hair, white headband"],
    )


class LoraPage(BaseModel):
    """One page of the library."""

    items: list[LoraOut] = Field(description="The LoRAs on this page")
    total: int = Field(description="How many match the search and filters")
    page: int = Field(description="This page (1-based)")
    per_page: int = Field(description="Page size")


class RatingIn(BaseModel):
    """A rating of a LoRA: one per user, a new one replaces the old."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    stars: int = Field(ge=1, le=5, description="1 to 5 stars")


class ImageVerdictIn(BaseModel):
    """Keep or reject a generated image (feeds the LoRAs' success rate)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    verdict: Literal["kept", "rejected"] | None = Field(description="kept, rejected, or null to undo")


class DatasetIn(BaseModel):
    """A new dataset (a set of training images)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    name: str = Field(min_length=1, max_length=120, description="Dataset name", examples=["John references"])
    kind: Kind = Field(description="What it will train")
    trigger: str = Field(min_length=1, max_length=64, description="Trigger word its captions carry")
    character_id: int | None = Field(default=None, ge=1, le=2**62, description="Character it is for")
    style_id: int | None = Field(default=None, ge=1, le=2**62, description="Fighting style it is for")


class DatasetImageOut(Out):
    """One uploaded file and its verdict."""

    id: int = Field(description="Image id")
    filename: str = Field(description="The uploaded file's name (cleaned)")
    status: str = Field(description="ok, warning or skipped (skipped files are kept but not trained on)")
    problems: list[dict] = Field(description="What the checks found: code, severity, message")
    caption: str | None = Field(description="Caption used for training")
    width: int | None = Field(description="Width in pixels")
    height: int | None = Field(description="Height in pixels")


class DatasetOut(Out):
    """A dataset with every image's verdict."""

    id: int = Field(description="Dataset id")
    name: str = Field(description="Name")
    kind: str = Field(description="What it will train")
    trigger: str = Field(description="Trigger word")
    character_id: int | None = Field(description="Character it is for")
    style_id: int | None = Field(description="Fighting style it is for")
    images: list[DatasetImageOut] = Field(default_factory=list, description="Every uploaded file")
    usable: int = Field(default=0, description="Images training will use")
    notes: list[dict] = Field(default_factory=list, description="Dataset-level findings (image count vs the guide)")


class CaptionIn(BaseModel):
    """A new caption for one image."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    caption: str = Field(min_length=1, max_length=1000, description="Caption; the trigger word is added if missing")


# The training settings a user may change ("custom configuration"): never paths, devices or the dataset gate.
TUNABLE = (
    "steps", "learning_rate", "text_encoder_lr", "network_dim", "network_alpha", "resolution", "batch_size",
    "gradient_accumulation", "target", "train_text_encoder", "optimizer", "lr_scheduler", "warmup_steps",
    "min_snr_gamma", "noise_offset", "precision", "gradient_checkpointing", "flip_augment", "seed",
    "checkpoint_every", "sample_every",
)  # fmt: skip


def _tunable(name: str) -> tuple:
    """A TrainConfig field as an optional override with the same type and limits (one copy of each limit)."""
    field = TrainConfig.model_fields[name]
    copy = Field(default=None, description=field.description)
    copy.metadata = list(field.metadata)
    if name == "seed":  # -1: pick one and record it, as A1111 and the CLI take it
        copy = Field(default=None, ge=-1, lt=2**64, description=field.description + "; -1: random")
    annotation = field.annotation if field.annotation is not None else object
    return (annotation | None, copy)


TrainingSettings = create_model(
    "TrainingSettings",
    __config__=ConfigDict(extra="forbid", allow_inf_nan=False),
    __doc__="Preset values to change; each left out keeps the preset's.",
    **{name: _tunable(name) for name in TUNABLE},
)


class TrainingIn(BaseModel):
    """A training job: a dataset, a kind and preset, and any overrides of the preset."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    dataset_id: int = Field(ge=1, le=2**62, description="Dataset to train on")
    preset: str | None = Field(default=None, max_length=40, description="Preset name (default: the kind's)")
    base: str | None = Field(default=None, max_length=200, description="Base model, by name (default: the studio's)")
    description: str | None = Field(
        default=None, max_length=300, description="What the subject looks like (default: its character's)"
    )
    overrides: TrainingSettings = Field(  # type: ignore[valid-type]
        default_factory=TrainingSettings,
        description="Preset values to change: " + ", ".join(TUNABLE),
        examples=[{"steps": 1200}],
    )


class Estimate(BaseModel):
    """What a training will take: at the speed measured on this studio's devices, or on the reference GPU."""

    minutes: tuple[float, float] = Field(description="Time range on `device`")
    credits: tuple[int, int] = Field(description="Credits range; the upper figure is held at submit")
    dollars: float = Field(description="Device cost of the minutes at the configured hourly rent")
    images: int = Field(description="Usable images")
    steps: int = Field(description="Training steps")
    resolution: int = Field(description="Training resolution")
    breakdown: list[str] = Field(description="How the numbers were reached")
    device: str = Field(
        default="", description="What the minutes are for: a device measured here, or the reference GPU"
    )
    measured_minutes: float | None = Field(default=None, description="From training speeds measured here")
    rule: str = Field(default="", description="How the training is charged")


class GenerationIn(BaseModel):
    """A scene to generate: prompt, LoRA selection (strengths, regions), seed, size, sampler, batch."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    prompt: str = Field(
        min_length=1,
        max_length=2000,
        description="Prompt; trigger words of characters and styles",
        examples=["johnhero faces kanehero, kungfustyle, fighting stance"],
    )
    negative_prompt: str = Field(default="", max_length=2000, description="Negative prompt")
    loras: list[LibrarySelection] = Field(default_factory=list, max_length=8, description="LoRAs from the library")
    base: str | None = Field(default=None, max_length=1000, description="Base model (default: the server's)")
    seed: int | None = Field(default=None, ge=-1, lt=2**64, description="Seed; -1 or null: random (recorded)")
    n: int = Field(default=1, ge=1, le=8, description="Images in the batch (seeds seed, seed+1, ...)")
    steps: int = Field(default=20, ge=1, le=150, description="Sampling steps")
    cfg_scale: float = Field(default=7.0, ge=0, le=30, allow_inf_nan=False, description="CFG scale")
    width: int | None = Field(default=None, ge=32, le=2048, multiple_of=8, description="Width (default: the model's)")
    height: int | None = Field(default=None, ge=32, le=2048, multiple_of=8, description="Height")
    sampler: str = Field(default="DPM++ 2M Karras", max_length=40, description="Sampler (A1111 or ComfyUI name)")
    add_triggers: bool = Field(default=True, description="Put missing trigger words into the prompt")

    @field_validator("prompt")
    @classmethod
    def _words(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("describe the scene in words (the prompt is empty)")
        if any(ord(c) < 32 and c not in "\t\n\r" for c in v):
            raise ValueError("the prompt contains control characters (a NUL?); type the scene in words")
        return v


class LibrarySelection(BaseModel):
    """A library LoRA in a selection: which one, how strong, where."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    lora_id: int = Field(ge=1, le=2**62, description="Library id")
    version: int | None = Field(default=None, ge=1, le=2**62, description="Version (default: the newest)")
    strength: float | None = Field(
        default=None, ge=-4, le=4, allow_inf_nan=False, description="Strength (default: the LoRA's recommended one)"
    )
    region: str | None = Field(default=None, max_length=60, description="left, right, ... or x0,y0,x1,y1")

    def engine_selection(self, path: str) -> LoraSelection:
        """The engine's selection for this LoRA's file."""
        return LoraSelection(lora=path, strength=self.strength, region=self.region)


GenerationIn.model_rebuild()


class JobOut(Out):
    """A job: its status, progress and result."""

    id: int = Field(description="Job id")
    type: str = Field(description="training, generation or export")
    status: str = Field(description="pending, running, succeeded, failed or canceled")
    attempts: int = Field(description="How many times a worker started it")
    progress: dict = Field(description="step, total, loss, eta_seconds, message, losses, previews")
    result: dict | None = Field(description="What it made (LoRA id and version, or image ids)")
    error_code: str | None = Field(description="Stable error code when it failed")
    error_message: str | None = Field(description="What went wrong and what to do")
    request: dict = Field(description="What was asked for")
    cancel_requested: bool = Field(description="A cancel was asked for")
    created_at: datetime = Field(description="Submitted (UTC)")
    started_at: datetime | None = Field(description="First started (UTC)")
    finished_at: datetime | None = Field(description="Finished (UTC)")
    credits: dict | None = Field(
        default=None, description="This job's credits: held at submit, then charged and released when it ends"
    )
    balance: int | None = Field(default=None, description="Your credit balance as this was read")
    family: str | None = Field(default=None, description="Model family a worker must be able to load")
    memory_mb: int | None = Field(default=None, description="Device memory (MB) a worker must have; null: any")
    waiting: str | None = Field(default=None, description="Why a pending job has not started, when known")


class WorkerOut(Out):
    """A worker process of the studio."""

    name: str = Field(description="Its name (lorastudio worker --name)")
    host: str = Field(description="The machine it runs on")
    device: str = Field(description="cuda: <card>, mps or cpu")
    memory_mb: int = Field(description="Device memory it offers (MB)")
    families: list[str] = Field(description="Model families it loads")
    queues: list[str] = Field(description="Job types it runs")
    version: str = Field(description="LoRA Studio version it runs")
    current_job_id: int | None = Field(description="The job it runs now")
    jobs_done: int = Field(description="Jobs it has ended since it first registered")
    started_at: datetime = Field(description="Last start (UTC)")
    seen_at: datetime = Field(description="Last heartbeat (UTC)")
    state: str = Field(default="alive", description="alive, lost (no heartbeat for a lease) or stopped")


class ImageOut(Out):
    """A generated image."""

    id: int = Field(description="Image id")
    job_id: int = Field(description="The generation job")
    seed: str = Field(description="Its seed (text: seeds reach 2**64)")
    params: dict = Field(description="Everything that reproduces it")
    verdict: str | None = Field(description="kept, rejected or null")
    url: str = Field(default="", description="Where to download the PNG")


class RecipeIn(BaseModel):
    """A saved LoRA combination ("Save LoRA settings")."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    name: str = Field(min_length=1, max_length=120, description="Recipe name", examples=["John vs Kane, kung fu"])
    loras: list[LibrarySelection] = Field(default_factory=list, max_length=8, description="LoRAs with strengths")
    prompt_template: str = Field(default="", max_length=2000, description="Prompt; {action} is replaced on apply")
    negative_prompt: str = Field(default="", max_length=2000, description="Negative prompt")
    sampler: str = Field(default="DPM++ 2M Karras", max_length=40, description="Sampler")
    seed: int | None = Field(default=None, ge=-1, lt=2**64, description="Seed (null: random)")
    steps: int = Field(default=20, ge=1, le=150, description="Steps")
    cfg_scale: float = Field(default=7.0, ge=0, le=30, allow_inf_nan=False, description="CFG scale")


class RecipeOut(Out):
    """A saved recipe."""

    id: int = Field(description="Recipe id")
    name: str = Field(description="Recipe name")
    settings: dict = Field(description="The recipe's LoRAs, prompt template and sampler settings")
    created_at: datetime = Field(description="Saved (UTC)")


class ApplyRecipeIn(BaseModel):
    """Apply a recipe to a new scene."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    action: str = Field(
        default="", max_length=1000, description="Replaces {action} in the prompt template", examples=["punch sequence"]
    )
    seed: int | None = Field(default=None, ge=-1, lt=2**64, description="Seed (default: the recipe's)")
    n: int = Field(default=1, ge=1, le=8, description="Images")


class CreditEntryOut(Out):
    """One line of the credit ledger."""

    id: int = Field(description="Entry id")
    kind: str = Field(description="grant, hold, capture (what a hold cost) or release (what it gave back)")
    amount: int = Field(description="Credits (always >= 0)")
    delta: int = Field(description="Change to the balance")
    hold_id: int | None = Field(description="The hold a capture or release settles")
    job_id: int | None = Field(description="The job it is for")
    note: str = Field(description="Why")
    created_at: datetime = Field(description="When (UTC)")


class CreditsOut(BaseModel):
    """A balance and the newest ledger lines."""

    balance: int = Field(description="Credits available")
    entries: list[CreditEntryOut] = Field(description="Ledger, newest first")


class UserOut(Out):
    """A user (accounts on), or the local user."""

    id: int = Field(description="User id")
    name: str = Field(description="User name")
    disabled: bool = Field(description="Disabled users cannot log in")
    created_at: datetime = Field(description="When the account was made (UTC)")
    balance: int | None = Field(default=None, description="Credits available")


class LoginIn(BaseModel):
    """A login with user name and password."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    name: str = Field(min_length=1, max_length=80, description="User name", examples=["maya"])
    password: str = Field(min_length=1, max_length=1024, description="Password")


class MeOut(BaseModel):
    """Who the request acts for."""

    user: UserOut = Field(description="The user")
    accounts: bool = Field(description="Whether accounts are on (off: the single local user, no login)")
    csrf_token: str | None = Field(
        default=None, description="Send as X-CSRF-Token with every write made with the login cookie"
    )


class TokenIn(BaseModel):
    """A new API token."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    name: str = Field(min_length=1, max_length=80, description="What it is for", examples=["render farm"])


class TokenOut(Out):
    """An API token, without its secret."""

    id: int = Field(description="Token id")
    name: str = Field(description="What it is for")
    prefix: str = Field(description="Its first characters, to tell tokens apart")
    revoked: bool = Field(description="Revoked tokens are refused")
    last_used_at: datetime | None = Field(description="Last used (UTC, to the minute)")
    created_at: datetime = Field(description="Created (UTC)")


class TokenCreated(TokenOut):
    """A new token with its secret, shown this once."""

    token: str = Field(description="The secret: send as `Authorization: Bearer <token>`; it is not shown again")


class PublicIn(BaseModel):
    """Share a LoRA with every user (read-only for them) or take it back."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    public: bool = Field(description="True: in everyone's library; False: yours only")
