"""A folder (or list) of images -> a validation report per image -> captioned training items.

Nothing here is fatal per image: a bad file is reported and skipped, the rest go on. Only the
dataset as a whole can be refused (too few usable images), and that happens before any training.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image

from lorastudio.engine.data.images import IMAGE_SUFFIXES, ImageRejected, dhash, hamming, open_image, sharpness
from lorastudio.engine.kinds import check_kind
from lorastudio.engine.prompts import check_trigger
from lorastudio.errors import Invalid, NotFound

if TYPE_CHECKING:
    from lorastudio.engine.training.presets import Preset

MAX_CAPTION_BYTES = 4096  # a caption is a line of tags; a bigger sidecar is read only this far

NEAR_DUPLICATE_BITS = 4  # dHash distance at or under which two images count as near duplicates
BLUR_THRESHOLD = 15.0  # Laplacian variance below which an image is reported as blurry


@dataclass
class Problem:
    """One finding about an image: errors skip the image, warnings keep it."""

    code: str
    severity: str  # "error" | "warning"
    message: str


@dataclass
class ImageReport:
    """Validation result for one file."""

    path: str
    status: str = "ok"  # ok | warning | skipped
    width: int | None = None
    height: int | None = None
    format: str | None = None
    caption: str | None = None
    caption_source: str | None = None  # sidecar | generated
    problems: list[Problem] = field(default_factory=list)

    def add(self, code: str, severity: str, message: str) -> None:
        """Record a problem and update the status."""
        self.problems.append(Problem(code, severity, message))
        if severity == "error":
            self.status = "skipped"
        elif self.status == "ok":
            self.status = "warning"


@dataclass
class DatasetReport:
    """The whole validation report; `usable` says whether training may start."""

    kind: str
    trigger: str
    images: list[ImageReport]
    notes: list[Problem] = field(default_factory=list)

    @property
    def valid(self) -> list[ImageReport]:
        """Images that will be trained on."""
        return [r for r in self.images if r.status != "skipped"]

    @property
    def usable(self) -> bool:
        """True when no dataset-level error was found."""
        return not any(p.severity == "error" for p in self.notes)

    def to_dict(self) -> dict:
        """Plain JSON-able form (used by --json)."""
        return {
            "kind": self.kind,
            "trigger": self.trigger,
            "usable": self.usable,
            "counts": {
                "total": len(self.images),
                "valid": len(self.valid),
                "skipped": len(self.images) - len(self.valid),
                "warnings": sum(1 for r in self.images if r.status == "warning"),
            },
            "notes": [asdict(p) for p in self.notes],
            "images": [asdict(r) for r in self.images],
        }


@dataclass
class TrainItem:
    """One usable image with its caption, ready for bucketing."""

    path: Path
    image: Image.Image
    caption: str


def list_images(source: Path | Iterable[Path]) -> list[Path]:
    """Image-looking files in a folder (sorted), or the given list; missing inputs raise NotFound."""
    if isinstance(source, Path):
        if not source.exists():
            raise NotFound(f"dataset folder {source} does not exist")
        if source.is_file():
            return [source]
        files = [p for p in sorted(source.iterdir()) if p.is_file() and not p.name.startswith(".")]
        return [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES or p.suffix == ""]
    paths = [Path(p) for p in source]
    for p in paths:
        if not p.exists():
            raise NotFound(f"image {p} does not exist")
    return paths


def make_caption(sidecar_text: str | None, trigger: str, class_words: str) -> tuple[str, str]:
    """Caption for an image: the sidecar text with the trigger ensured, else trigger + class words."""
    if sidecar_text and sidecar_text.strip():
        text = " ".join(sidecar_text.split())
        words = {w.strip(" ,.;:").lower() for w in text.split()}
        if trigger.lower() not in words:
            text = f"{trigger}, {text}"
        return text, "sidecar"
    return f"{trigger}, {class_words}", "generated"


def scan_dataset(
    source: Path | Iterable[Path],
    *,
    kind: str,
    trigger: str,
    preset: Preset,
    resolution: int,
    max_pixels: int,
    min_images: int | None = None,
    bucket_step: int = 64,
) -> tuple[DatasetReport, list[TrainItem]]:
    """Validate every image and build the captioned items; never raises for a single bad image."""
    trigger = check_trigger(trigger)
    class_words = check_kind(kind).class_words
    if resolution < 32 or resolution > 4096:
        raise Invalid(f"resolution {resolution} is out of range; use 32 to 4096 (the preset's is {preset.resolution})")
    report = DatasetReport(kind=kind, trigger=trigger, images=[])
    items: list[TrainItem] = []
    seen_exact: dict[str, str] = {}
    seen_hashes: list[tuple[int, str]] = []
    floor = max(bucket_step, resolution // 2)
    for path in list_images(source):
        entry = ImageReport(path=str(path))
        report.images.append(entry)
        try:
            opened = open_image(path, max_pixels=max_pixels)
        except ImageRejected as exc:
            entry.add(exc.code, "error", str(exc))
            continue
        img = opened.image
        entry.width, entry.height, entry.format = img.width, img.height, opened.source_format
        if opened.source_mode not in ("RGB", "L"):
            entry.add("converted", "warning", f"{opened.source_mode} image converted to RGB")
        short = min(img.size)
        if short < floor:
            entry.add(
                "too_small",
                "error",
                f"{img.width}x{img.height} is below the {floor}px minimum for {resolution}px training; "
                f"use an image at least {resolution}px on its short side",
            )
            continue
        if short < resolution:
            entry.add(
                "low_resolution",
                "warning",
                f"{img.width}x{img.height} is below the recommended {resolution}px; "
                "it trains at its own lower resolution",
            )
        if opened.pixel_sha256 in seen_exact:
            entry.add("duplicate", "error", f"exact duplicate of {seen_exact[opened.pixel_sha256]}; skipped")
            continue
        seen_exact[opened.pixel_sha256] = path.name
        h = dhash(img)
        twin = next((name for other, name in seen_hashes if hamming(h, other) <= NEAR_DUPLICATE_BITS), None)
        if twin:
            entry.add(
                "near_duplicate",
                "warning",
                f"almost the same picture as {twin}; near copies add little, replace it with a new angle",
            )
        seen_hashes.append((h, path.name))
        if sharpness(img) < BLUR_THRESHOLD:
            entry.add("blurry", "warning", "looks blurry or very flat; sharp images give sharper LoRAs")
        sidecar = path.with_suffix(".txt")
        text = _read_caption(sidecar)
        entry.caption, entry.caption_source = make_caption(text, trigger, class_words)
        items.append(TrainItem(path=path, image=img, caption=entry.caption))
    _count_notes(report, preset, len(items), min_images or preset.min_images)
    return report, items


def _count_notes(report: DatasetReport, preset: Preset, n: int, minimum: int) -> None:
    low, high = preset.images_range
    label = preset.kind.replace("_", " ")
    if n < minimum:
        report.notes.append(
            Problem(
                "too_few_images",
                "error",
                f"{n} usable image(s); a {label} LoRA needs at least {minimum} "
                f"(the guide recommends {low}-{high}). Add images or fix the skipped ones.",
            )
        )
    elif n < low:
        report.notes.append(
            Problem("few_images", "warning", f"{n} images; the guide recommends {low}-{high} for a {label}")
        )
    elif n > high:
        report.notes.append(
            Problem("many_images", "warning", f"{n} images; the guide recommends {low}-{high} for a {label}")
        )


def _read_caption(sidecar: Path) -> str | None:
    """The sidecar caption's text (at most MAX_CAPTION_BYTES), None when there is none or it is unreadable."""
    try:
        if not sidecar.is_file():
            return None
        with sidecar.open("rb") as fh:
            raw = fh.read(MAX_CAPTION_BYTES)
    except OSError:
        return None
    text = raw.decode("utf-8", errors="replace").replace("\x00", " ")
    return "".join(c if c.isprintable() else " " for c in text)
