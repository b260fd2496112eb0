"""`manifest.json` of a storyboard ZIP: everything that regenerates each panel (base model, prompt, seed,
batch, sampler, size, LoRA files by sha256 with strength and region, the panel PNG's hashes), and
`regenerate`, which redoes every panel with the engine and says whether its pixels match.

A manifest is untrusted input: it is validated before anything is loaded, and every file it names must
be a plain relative path that stays inside the manifest's folder (symlinks included)."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from lorastudio.engine import SEED_LIMIT, STRENGTH_LIMIT, ImageRejected, open_image
from lorastudio.errors import Invalid, format_validation_error
from lorastudio.fileio import check_writable_dir

FORMAT = "lorastudio-storyboard"
MAX_MANIFEST = 8 * 2**20  # bytes: a manifest of 100 panels is a few hundred KB
_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,120}")


def safe_relative(value: str) -> str:
    """A path of plain names joined by '/', none of them '..': it cannot leave its folder by itself."""
    parts = value.split("/")
    if not value or len(parts) > 4 or not all(_PART.fullmatch(p) and p not in (".", "..") for p in parts):
        raise ValueError(
            f"{value[:80]!r} is not a plain relative path inside the manifest's folder (like panels/01.png)"
        )
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ManifestLora(_Strict):
    """A LoRA file a panel used."""

    name: str = Field(max_length=200, description="The LoRA's library name")
    file: str = Field(description="Its file, relative to the manifest (loras/<sha256>.safetensors)")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="sha256 of the file")
    strength: float = Field(ge=-STRENGTH_LIMIT, le=STRENGTH_LIMIT, allow_inf_nan=False, description="Strength")
    region: str | None = Field(default=None, max_length=60, description="Region, if confined to one")

    @field_validator("file")
    @classmethod
    def _file(cls, v: str) -> str:
        return safe_relative(v)


class ManifestIdentity(_Strict):
    """How much a panel looks like one character's references when it was exported (informative only:
    `regenerate` checks pixels, not these)."""

    name: str = Field(max_length=200, description="The character's trigger word")
    score: float | None = Field(allow_inf_nan=False, description="The score (null: not measured)")
    by: str = Field(max_length=40, description="dino, clip_i, toy detectors or none")
    text: str = Field(max_length=400, description="The score in words")
    drifted: bool = Field(description="Flagged as drifted against the character's other panels")
    reason: str | None = Field(default=None, max_length=400, description="Why it is flagged")


class ManifestPanel(_Strict):
    """One panel and the request that renders it (the whole batch is re-run; the panel is one image of it)."""

    number: int = Field(ge=1, le=1000, description="Panel number, from 1")
    title: str = Field(max_length=200, description="Scene title")
    notes: str = Field(max_length=4000, description="Scene notes")
    file: str = Field(description="The panel PNG, relative to the manifest")
    png_sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="sha256 of the PNG file")
    pixels_sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="sha256 of its decoded RGB pixels")
    base: str = Field(min_length=1, max_length=4096, description="Base model as the studio named it")
    model: str = Field(max_length=4096, description="Base model's name")
    model_hash: str = Field(max_length=64, description="sha256 of the base model's weights")
    prompt: str = Field(max_length=10_000, description="Prompt as rendered (trigger words added)")
    negative_prompt: str = Field(max_length=10_000, description="Negative prompt")
    seed: int = Field(ge=0, lt=SEED_LIMIT, description="The panel image's seed")
    first_seed: int = Field(ge=0, lt=SEED_LIMIT, description="Seed of the batch's first image")
    batch_index: int = Field(ge=0, lt=16, description="The panel's index in its batch")
    batch_size: int = Field(ge=1, le=16, description="Images in the batch")
    steps: int = Field(ge=1, le=150, description="Sampling steps")
    cfg_scale: float = Field(ge=0, le=30, allow_inf_nan=False, description="CFG scale")
    sampler: str = Field(max_length=40, description="Sampler")
    width: int = Field(ge=32, le=2048, description="Width")
    height: int = Field(ge=32, le=2048, description="Height")
    variation_seed: int | None = Field(default=None, ge=0, lt=SEED_LIMIT, description="Variation seed")
    variation_strength: float = Field(default=0.0, ge=0, le=1, description="Variation strength")
    region_blend: float = Field(ge=0, le=1, description="Share of the steps regions are blended over")
    loras: list[ManifestLora] = Field(max_length=16, description="LoRAs with strengths and regions")
    identity: list[ManifestIdentity] = Field(
        default_factory=list, max_length=16, description="Identity per character, as scored (empty: not scored)"
    )

    @field_validator("file")
    @classmethod
    def _file(cls, v: str) -> str:
        return safe_relative(v)


class Manifest(_Strict):
    """What a storyboard ZIP holds, and how to regenerate it."""

    format: str = Field(pattern=f"^{FORMAT}$", description=f"Always {FORMAT!r}")
    version: int = Field(ge=1, le=1, description="Manifest version (1)")
    generator: str = Field(max_length=80, description="What wrote it")
    title: str = Field(max_length=200, description="Storyboard title")
    description: str = Field(max_length=4000, description="Storyboard description")
    characters: list[dict] = Field(max_length=100, description="Characters in it: name, trigger, description")
    panels: list[ManifestPanel] = Field(min_length=1, max_length=1000, description="Panels in order")


def pixel_digest(image: Image.Image) -> str:
    """sha256 of an image's size and decoded RGB pixels (the same picture in any PNG encoding)."""
    rgb = image.convert("RGB")
    return hashlib.sha256(f"{rgb.width}x{rgb.height}:".encode() + rgb.tobytes()).hexdigest()


def load_manifest(path: Path) -> tuple[Manifest, Path]:
    """The validated manifest and its folder; Invalid (one line) for anything that is not ours."""
    path = Path(path)
    if not path.is_file():
        raise Invalid(f"{path} is not a file; give the manifest.json of an unzipped storyboard export")
    if path.stat().st_size > MAX_MANIFEST:
        raise Invalid(f"{path.name} is over {MAX_MANIFEST // 2**20} MB; it is not a storyboard manifest")
    try:
        data = json.loads(path.read_bytes())
    except (ValueError, RecursionError) as exc:
        raise Invalid(f"{path.name} is not valid JSON ({str(exc)[:80]})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise Invalid(f"{path.name} is not a LoRA Studio storyboard manifest (no format {FORMAT!r})")
    try:
        manifest = Manifest.model_validate(data)
    except ValidationError as exc:
        raise Invalid(format_validation_error(exc, "storyboard manifest")) from None
    folder = path.resolve().parent
    for panel in manifest.panels:
        for name in [panel.file, *(x.file for x in panel.loras)]:
            inside(folder, name)  # symlinks out of the folder refused before anything is read
    return manifest, folder


def inside(folder: Path, name: str) -> Path:
    """folder/name, refused when it resolves outside folder (a link pointing elsewhere)."""
    target = (folder / safe_relative(name)).resolve()
    if not target.is_relative_to(folder):
        raise Invalid(f"{name} leads outside the manifest's folder; refusing to open it")
    return target


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _base_spec(panel: ManifestPanel, override: str | None) -> str:
    from lorastudio.engine import BUILT_IN

    if override:
        return override
    if panel.base in BUILT_IN or panel.base.startswith("hf:"):
        return panel.base
    # Anything else is a path on the machine that made the export: never opened from a manifest.
    raise Invalid(
        f"panel {panel.number} was made with the base model {panel.base[:80]!r} of another machine; "
        "pass --base with that model here"
    )


def regenerate(
    manifest_path: Path,
    out_dir: Path | None,
    settings,
    *,
    base: str | None = None,
    on_panel: Callable[[int, int], None] | None = None,
) -> dict:
    """Render every panel again and compare its pixels with the exported PNG (or, when that file is gone,
    with the manifest's pixel hash); the regenerated PNGs go to out_dir (default: <folder>/regenerated)."""
    from lorastudio.engine import PipelineCache, generate, request_from_params, save_png

    manifest, folder = load_manifest(manifest_path)
    out_dir = Path(out_dir) if out_dir else folder / "regenerated"
    check_writable_dir(out_dir)
    specs = [_base_spec(p, base) for p in manifest.panels]  # all refused up front, before any long work
    cache = PipelineCache(settings)
    panels = []
    for panel, spec in zip(manifest.panels, specs, strict=True):
        report = {"number": panel.number, "title": panel.title, "matches": False, "problems": []}
        loras = []
        for x in panel.loras:
            lora_path = inside(folder, x.file)
            if not lora_path.is_file() or _sha256(lora_path) != x.sha256:
                report["problems"].append(f"{x.file} is missing or not the file the panel used")
            loras.append({"lora": str(lora_path), "strength": x.strength, "region": x.region})
        if report["problems"]:
            panels.append(report)
            continue
        params = panel.model_dump(exclude={"loras", "number", "title", "notes", "file"}) | {"base": spec}
        request, index = request_from_params(params | {"loras": loras}, what=f"panel {panel.number}")
        result = generate(cache, request)
        image, record = result.images[index], result.params[index]
        if cache.base.model_hash != panel.model_hash:
            report["problems"].append("the base model's weights differ from the ones the panel was made with")
        report["output"] = str(save_png(out_dir / f"{panel.number:02d}.png", image, record))
        report["matches"] = _matches(folder, panel, image, report["problems"])
        panels.append(report)
        if on_panel:
            on_panel(panel.number, len(manifest.panels))
    return {"title": manifest.title, "panels": panels, "all_match": all(p["matches"] for p in panels)}


def _matches(folder: Path, panel: ManifestPanel, image: Image.Image, problems: list[str]) -> bool:
    stored = inside(folder, panel.file)
    if not stored.is_file():
        problems.append(f"{panel.file} is not there; compared with the manifest's pixel hash")
        return pixel_digest(image) == panel.pixels_sha256
    if _sha256(stored) != panel.png_sha256:
        problems.append(f"{panel.file} is not the PNG that was exported (its sha256 differs)")
        return False
    try:
        png = open_image(stored, max_pixels=2048 * 2048).image
    except ImageRejected as exc:
        problems.append(f"{panel.file}: {exc}")
        return False
    return np.array_equal(np.asarray(png), np.asarray(image.convert("RGB")))
