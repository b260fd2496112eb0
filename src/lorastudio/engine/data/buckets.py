"""Aspect-ratio bucketing without upscaling past the target area (kohya's bucket_no_upscale idea)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from PIL import Image

STEP = 64  # bucket sides are multiples of 64, so latents divide through every UNet level


@dataclass(frozen=True)
class Fitted:
    """An image resized and centre-cropped to its bucket, with SDXL's size conditioning facts."""

    image: Image.Image
    bucket: tuple[int, int]  # (width, height)
    original_size: tuple[int, int]  # (height, width), SDXL convention
    crop_top_left: tuple[int, int]  # (top, left)


def bucket_for(width: int, height: int, resolution: int, step: int = STEP) -> tuple[int, int]:
    """Largest bucket (multiple of `step`) with about the image's aspect ratio and area <= resolution^2."""
    scale = min(1.0, math.sqrt(resolution * resolution / (width * height)))
    w = max(step, int(width * scale) // step * step)
    h = max(step, int(height * scale) // step * step)
    return w, h


def fit_to_bucket(img: Image.Image, resolution: int, step: int = STEP) -> Fitted:
    """Resize `img` to cover its bucket, then centre-crop to it."""
    bw, bh = bucket_for(img.width, img.height, resolution, step)
    scale = max(bw / img.width, bh / img.height)
    rw, rh = max(bw, round(img.width * scale)), max(bh, round(img.height * scale))
    resized = img.resize((rw, rh), Image.Resampling.LANCZOS)
    left, top = (rw - bw) // 2, (rh - bh) // 2
    cropped = resized.crop((left, top, left + bw, top + bh))
    return Fitted(cropped, (bw, bh), (img.height, img.width), (top, left))
