"""What a job asks for, reports and makes: one typed model per job type (a union on `type`) and one progress
model for every producer. A job row's JSON columns hold these models' dumps; code reads them only through
`request_of`, `progress_of` and `result_of`, never by key.

Adding a job type: its request and result here (in the unions), its runner in `studio/workers/runners.py`."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from lorastudio.engine import CheckpointScore, Evaluation, GenerateRequest
from lorastudio.studio.credits import Estimate


class _Payload(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TrainingJob(_Payload):
    """A training, planned once at submit and run as stored."""

    type: Literal["training"] = Field(default="training", description="The job type")
    dataset_id: int = Field(ge=1, description="The dataset it trains on")
    plan: dict = Field(
        description="The engine's TrainConfig as validated at submit (preset, seed picked, previews), without "
        "the worker's own folders (images, output, run folder)"
    )
    estimate: Estimate = Field(description="What the submit quoted")
    credits_per_gpu_minute: float = Field(ge=0, description="The price it is settled at (the one quoted)")


class GenerationJob(GenerateRequest):
    """A scene: the engine's own request, resolved at submit. Each LoRA selection names its library entry
    (`lora_id`, `version`, `name`) and its file by blob key in `lora`; the worker puts its local path there."""

    type: Literal["generation"] = Field(default="generation", description="The job type")


class ExportJob(_Payload):
    """A storyboard export."""

    type: Literal["export"] = Field(default="export", description="The job type")
    storyboard_id: int = Field(ge=1, description="The storyboard")
    format: Literal["pdf", "png", "zip"] = Field(description="pdf, png (contact sheet) or zip")


class CaptionJob(_Payload):
    """Auto-captioning a dataset's images."""

    type: Literal["caption"] = Field(default="caption", description="The job type")
    dataset_id: int = Field(ge=1, description="The dataset whose images it captions")
    captioner: str = Field(min_length=1, max_length=80, description="The captioner, by name (never a path)")
    overwrite: bool = Field(default=False, description="Replace captions you wrote too (default: only empty ones)")
    leave_out_identity: bool = Field(
        default=True,
        description="Leave out what the LoRA should learn (a character's look): the trigger word absorbs it",
    )


JobRequest = Annotated[TrainingJob | GenerationJob | ExportJob | CaptionJob, Field(discriminator="type")]
# The job types, read off the union: the claim, the queues a worker takes (`--queue`) and the metrics use them.
JOB_TYPES: tuple[str, ...] = tuple(
    m.model_fields["type"].default for m in (TrainingJob, GenerationJob, ExportJob, CaptionJob)
)
JobType = Literal[JOB_TYPES]  # type: ignore[valid-type]  # for the API's filters


class Checkpoint(_Payload):
    """A training's newest checkpoint in the blob store: where a worker taking the job over resumes."""

    step: int = Field(ge=0)
    blob: str = Field(min_length=1, max_length=128)


class JobProgress(BaseModel):
    """How far a job is, as every job type reports it (fields a type does not use stay empty)."""

    model_config = ConfigDict(extra="ignore")  # rows written by older versions carried more
    phase: str = Field(default="", description="prepare, cache, train, evaluate, save, generate, export, caption")
    step: int = Field(default=0, ge=0, description="Steps (or panels) done")
    total: int | None = Field(default=None, description="Steps (or panels) in all")
    message: str | None = Field(default=None, description="What it is doing, in words")
    eta_seconds: float | None = Field(default=None, description="Seconds left, estimated")
    loss: float | None = Field(default=None, description="Training loss of the latest step")
    losses: list[tuple[int, float]] = Field(default_factory=list, description="Loss curve (step, loss), thinned")
    previews: list[str] = Field(default_factory=list, description="Sample previews so far (blob keys), newest last")
    scores: list[CheckpointScore] = Field(
        default_factory=list, description="Evaluated checkpoints so far: the no-LoRA baseline (step 0) first"
    )
    eval_renders: list[tuple[int, list[str]]] = Field(
        default_factory=list, description="Each evaluated checkpoint's renders (step, blob keys), in step order"
    )

    def percent(self) -> float:
        """Share done, 0..100."""
        return round(100 * self.step / self.total, 1) if self.total and self.step else 0.0


class TrainingResult(_Payload):
    """What a training made."""

    type: Literal["training"] = Field(default="training", description="The job type")
    lora_id: int | None = Field(default=None, description="The library LoRA it added a version to")
    version: int | None = Field(default=None, description="That version")
    seconds: float | None = Field(default=None, description="Seconds it trained")
    final_loss: float | None = Field(default=None, description="Mean loss of its last steps")
    resumed_from_step: int | None = Field(default=None, description="A worker died and another went on from here")
    steps: int | None = Field(default=None, description="Steps done (a canceled run)")
    evaluation: Evaluation | None = Field(
        default=None, description="Every evaluated checkpoint's scores and the one chosen as the version"
    )


class GenerationResult(_Payload):
    """What a scene made."""

    type: Literal["generation"] = Field(default="generation", description="The job type")
    images: list[int] = Field(default_factory=list, description="Image ids")
    warnings: list[str] = Field(default_factory=list, description="What the user should know about them")
    seconds: float | None = Field(default=None, description="Seconds it took")


class ExportResult(_Payload):
    """What an export made."""

    type: Literal["export"] = Field(default="export", description="The job type")
    blob: str = Field(description="The file in the blob store")
    content_type: str = Field(description="Its media type")
    filename: str = Field(description="The name it downloads as")
    format: Literal["pdf", "png", "zip"] = Field(description="pdf, png (contact sheet) or zip")
    panels: int = Field(ge=0, description="Panels it holds")
    size: int = Field(ge=0, description="Bytes")


class CaptionResult(_Payload):
    """What a captioning made."""

    type: Literal["caption"] = Field(default="caption", description="The job type")
    captioned: int = Field(default=0, ge=0, description="Images given a new caption")
    kept: int = Field(default=0, ge=0, description="Images whose caption you wrote was kept")
    failed: int = Field(default=0, ge=0, description="Images the captioner could not read (left as they were)")
    captioner: str = Field(default="", description="The captioner, by name")


JobResult = Annotated[TrainingResult | GenerationResult | ExportResult | CaptionResult, Field(discriminator="type")]
_REQUEST: TypeAdapter = TypeAdapter(JobRequest)
_RESULT: TypeAdapter = TypeAdapter(JobResult)


def request_of(job) -> TrainingJob | GenerationJob | ExportJob | CaptionJob:
    """A job row's request, typed."""
    return _REQUEST.validate_python({"type": job.type} | dict(job.request))


def progress_of(job) -> JobProgress:
    """A job row's progress, typed."""
    return JobProgress.model_validate(job.progress or {})


def result_of(job) -> TrainingResult | GenerationResult | ExportResult | CaptionResult | None:
    """A job row's result, typed (None while it has none)."""
    return _RESULT.validate_python({"type": job.type} | dict(job.result)) if job.result else None


def dump(model: BaseModel) -> dict:
    """A payload as the row stores it (JSON types)."""
    return model.model_dump(mode="json", exclude_none=False)
