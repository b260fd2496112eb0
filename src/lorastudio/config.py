"""The one settings object. Read once at an entry point (CLI, server) and passed down."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_home() -> Path:
    return Path.home() / ".lorastudio"


class Settings(BaseSettings):
    """Every LoRA Studio setting; each can be set as an environment variable `LORASTUDIO_<NAME>`."""

    model_config = SettingsConfigDict(env_prefix="LORASTUDIO_", env_file=None, extra="ignore")

    home: Path = Field(
        default_factory=_default_home,
        description="Data directory: built-in models, datasets, LoRA files, outputs. Created on first use.",
    )
    device: Literal["auto", "cpu", "cuda", "mps"] = Field(
        default="auto",
        description="Where models run. 'auto' picks CUDA when a GPU is present, then Apple MPS, then CPU.",
    )
    default_base_model: str = Field(
        default="toyworld",
        description=(
            "Base model used when a command gets no --base: a built-in name (toyworld, tiny-sd15, tiny-sdxl), "
            "a diffusers folder, a single .safetensors checkpoint, or 'hf:<org>/<repo>'."
        ),
    )
    single_file_config: Path | None = Field(
        default=None,
        description=(
            "A diffusers folder of the same family (configs + tokenizer) used to load a single-file "
            ".safetensors checkpoint offline. Unset: the Hugging Face cache is tried, never the network."
        ),
    )
    allow_downloads: bool = Field(
        default=False,
        description="Allow 'hf:<org>/<repo>' base models to be downloaded. Off: only local files are read.",
    )
    max_image_pixels: int = Field(
        default=64_000_000,
        description="Images with more pixels than this are refused as possible decompression bombs.",
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the studio database. Unset: SQLite (WAL) at $LORASTUDIO_HOME/studio.db.",
    )
    host: str = Field(default="127.0.0.1", description="Address `lorastudio serve` listens on.")
    port: int = Field(default=8000, ge=1, le=65535, description="Port `lorastudio serve` listens on.")
    serve_workers: int = Field(
        default=1, ge=0, le=16, description="Worker processes `lorastudio serve` spawns (0: run `lorastudio worker`)."
    )
    http_processes: int = Field(
        default=1,
        ge=1,
        le=64,
        description="HTTP server processes `lorastudio serve` runs; more serve more concurrent clients (one a core).",
    )
    accounts: bool = Field(
        default=False,
        description="Users log in (passwords, API tokens). Off: one local user without login, loopback only.",
    )
    starting_credits: int = Field(
        default=1000, ge=0, le=10**9, description="Credits a new user (and the local user) starts with."
    )
    credits_per_gpu_minute: float = Field(
        default=10 / 3,
        gt=0,
        le=10_000,
        description="Credits a training is charged per minute it ran, within its estimate (guide: 50 for 15 min).",
    )
    dollars_per_gpu_hour: float = Field(
        default=3.2, gt=0, le=10_000, description="Rent of the reference GPU (RTX 6000 Ada) in the estimate's $."
    )
    hires_surcharge_dollars: float = Field(
        default=0.5, ge=0, le=10_000, description="Added to the estimate's $ for 1024 px trainings (guide: +$0.50)."
    )
    session_days: int = Field(default=14, ge=1, le=365, description="How long a login lasts (accounts on).")
    secure_cookies: bool = Field(
        default=False, description="Mark the login cookie Secure: turn on when the studio is served over HTTPS."
    )
    max_upload_mb: int = Field(default=50, ge=1, description="Largest single uploaded file (MB); larger is a 413.")
    max_upload_files: int = Field(default=200, ge=1, description="Most files in one upload request (zip entries too).")
    max_zip_mb: int = Field(
        default=500, ge=1, description="Most bytes a zip may unpack to (MB); more is refused as a zip bomb."
    )
    lease_seconds: int = Field(
        default=60, ge=2, description="A worker's claim on a job lasts this long unless its heartbeat renews it."
    )
    heartbeat_seconds: float = Field(default=10.0, gt=0, description="How often a running job renews its lease.")
    queue_url: str | None = Field(
        default=None,
        description=(
            "Where wake-ups for workers go: redis://HOST:PORT/DB (Redis) for workers on other machines. "
            "Unset: a SQLite queue under $LORASTUDIO_HOME (one machine)."
        ),
    )
    poll_seconds: float = Field(
        default=15.0,
        gt=0,
        le=3600,
        description="An idle worker looks at the job table this often even without a wake-up (lost messages).",
    )
    blob_url: str | None = Field(
        default=None,
        description=(
            "Where the studio keeps its files: s3://BUCKET/PREFIX (S3 or an S3-compatible store; credentials "
            "from the usual AWS_* variables). Unset: the folder $LORASTUDIO_HOME/blobs (one machine)."
        ),
    )
    s3_endpoint_url: str | None = Field(
        default=None,
        description="Endpoint of an S3-compatible store (MinIO, Ceph, R2...), e.g. http://10.0.0.5:9000. Unset: AWS.",
    )
    cache_gb: float = Field(
        default=50.0,
        gt=0,
        description="With s3:// files: most gigabytes of them kept on local disk (least recently used go first).",
    )
    trusted_proxies: str = Field(
        default="",
        max_length=2000,
        description=(
            "Comma-separated addresses of reverse proxies whose X-Forwarded-For / X-Forwarded-Proto headers are "
            "believed (the client address of logins' rate limit and of /metrics). Empty: none, the peer is the client."
        ),
    )
    metrics_token: str | None = Field(
        default=None,
        min_length=16,
        max_length=200,
        description="A secret that lets a scraper read /metrics with `Authorization: Bearer <token>` from anywhere.",
    )
    metrics_public: bool = Field(
        default=False,
        description="Serve /metrics to anyone. Off: only to loopback clients and to the metrics token.",
    )
    operators: str = Field(
        default="",
        max_length=2000,
        description=(
            "Comma-separated user names who see the whole studio (every worker's host and job). With accounts off "
            "the local user is the operator."
        ),
    )
    scorer_clip: str | None = Field(
        default=None,
        max_length=500,
        description="CLIP model that scores checkpoints (CLIP-I, CLIP-T): a local transformers folder, or "
        "'hf:<org>/<repo>' with allow_downloads (e.g. hf:openai/clip-vit-base-patch32). Unset: no CLIP scores.",
    )
    scorer_dino: str | None = Field(
        default=None,
        max_length=500,
        description="DINOv2 model that scores identity/style similarity: a local transformers folder, or "
        "'hf:<org>/<repo>' with allow_downloads (e.g. hf:facebook/dinov2-small). Unset: no DINO scores.",
    )
    captioner: str | None = Field(
        default=None,
        max_length=500,
        description="Captioning model (BLIP or Florence-2 in transformers' classes): a local folder, or "
        "'hf:<org>/<repo>' with allow_downloads. Unset: the toy world's own captioner only.",
    )
    alternatives_days: int = Field(
        default=14,
        ge=0,
        le=3650,
        description="Days a training's other evaluated checkpoints are kept as alternatives you can switch to.",
    )
    min_free_mb: int = Field(
        default=500,
        ge=0,
        le=10**7,
        description="Free disk space (MB) under $LORASTUDIO_HOME below which trainings are refused and /readyz "
        "says not ready.",
    )

    @property
    def models_dir(self) -> Path:
        """Folder holding built-in models (tiny-sd15, tiny-sdxl) once they are built."""
        return self.home / "models"

    @property
    def loras_dir(self) -> Path:
        """Folder where trained LoRA files are written by default."""
        return self.home / "loras"

    @property
    def runs_dir(self) -> Path:
        """Folder for training runs: checkpoints, samples, loss history."""
        return self.home / "runs"

    @property
    def blobs_dir(self) -> Path:
        """Content-addressed files of the studio (images, LoRA files)."""
        return self.home / "blobs"

    @property
    def cache_dir(self) -> Path:
        """Local copies of files from an s3:// blob store (bounded by cache_gb)."""
        return self.home / "cache"

    @property
    def db_url(self) -> str:
        """The database URL in force (the SQLite default under home when none is set)."""
        return self.database_url or f"sqlite:///{self.home / 'studio.db'}"


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment, with explicit overrides on top; a bad value is Invalid."""
    from pydantic import ValidationError

    from lorastudio.errors import Invalid, format_validation_error

    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        raise Invalid(format_validation_error(exc, "settings (LORASTUDIO_* environment variables)")) from exc
