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


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment, with explicit overrides on top; a bad value is Invalid."""
    from pydantic import ValidationError

    from lorastudio.errors import Invalid, format_validation_error

    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        raise Invalid(format_validation_error(exc, "settings (LORASTUDIO_* environment variables)")) from exc
