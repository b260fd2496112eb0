"""Open, verify and normalise one image: format by content, bombs, truncation, EXIF, colour modes."""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

ALLOWED_FORMATS = ("PNG", "JPEG")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".avif", ".heic")


class ImageRejected(Exception):
    """One image cannot be used; `code` names the reason, the message says what to do."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class OpenedImage:
    """A verified image converted to 8-bit RGB, with facts for the dataset report."""

    image: Image.Image
    source_format: str
    source_mode: str
    pixel_sha256: str


def open_image(path: Path, *, max_pixels: int) -> OpenedImage:
    """Open `path` as RGB or raise ImageRejected with a specific reason."""
    if path.stat().st_size == 0:
        raise ImageRejected("empty_file", "the file is empty (0 bytes); copy it again from the source")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                fmt = img.format or "unknown"
                if fmt not in ALLOWED_FORMATS:
                    raise ImageRejected(
                        "unsupported_format",
                        f"the file contains {fmt} data; only PNG and JPEG are accepted - save it as PNG",
                    )
                width, height = img.size
                if width * height > max_pixels:
                    raise ImageRejected(
                        "too_many_pixels",
                        f"{width}x{height} is over the {max_pixels:,}-pixel limit (possible decompression "
                        "bomb); downscale it or raise LORASTUDIO_MAX_IMAGE_PIXELS",
                    )
                img.load()
                mode = img.mode
                rgb = _to_rgb(ImageOps.exif_transpose(img))
    except ImageRejected:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageRejected("too_many_pixels", f"refused as a possible decompression bomb ({exc})") from exc
    except Image.UnidentifiedImageError as exc:
        raise ImageRejected("not_an_image", "not an image file (PNG or JPEG expected)") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageRejected(
            "corrupt", f"the image is corrupt or truncated ({exc}); re-export or re-download it"
        ) from exc
    pixel_hash = hashlib.sha256(rgb.tobytes() + f"{rgb.size}".encode()).hexdigest()
    return OpenedImage(image=rgb, source_format=fmt, source_mode=mode, pixel_sha256=pixel_hash)


def _to_rgb(img: Image.Image) -> Image.Image:
    """Deterministic conversion to 8-bit RGB; transparency is flattened onto white."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.int64)
        peak = 65535 if img.mode.startswith("I;16") or arr.max() > 255 else 255
        img = Image.fromarray((arr * 255 // peak).clip(0, 255).astype(np.uint8), "L")
    elif img.mode == "F":
        img = Image.fromarray(np.asarray(img).clip(0, 255).astype(np.uint8), "L")
    if img.mode == "P":
        img = img.convert("RGBA") if "transparency" in img.info else img.convert("RGB")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return img.convert("RGB") if img.mode != "RGB" else img.copy()


def sharpness(img: Image.Image, side: int = 256) -> float:
    """Variance of the Laplacian on a grey, downscaled copy: low means blurry."""
    grey = img.convert("L")
    grey.thumbnail((side, side), Image.Resampling.BILINEAR)
    a = np.asarray(grey, dtype=np.float32)
    if a.shape[0] < 3 or a.shape[1] < 3:
        return 0.0
    lap = a[1:-1, :-2] + a[1:-1, 2:] + a[:-2, 1:-1] + a[2:, 1:-1] - 4 * a[1:-1, 1:-1]
    return float(lap.var())


def dhash(img: Image.Image, size: int = 8) -> int:
    """64-bit difference hash: near-identical pictures differ in only a few bits."""
    grey = img.convert("L").resize((size + 1, size), Image.Resampling.LANCZOS)
    a = np.asarray(grey, dtype=np.int16)
    bits = (a[:, 1:] > a[:, :-1]).flatten()
    return int("".join("1" if b else "0" for b in bits), 2)


def hamming(a: int, b: int) -> int:
    """Number of differing bits between two hashes."""
    return (a ^ b).bit_count()
