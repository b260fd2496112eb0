"""Training estimates: the guide's table for its reference GPU (RTX 6000 Ada), and what the training
speeds measured on this studio's own devices predict.

Guide: character, 15-25 images: 15-25 min, 50-75 credits, ~$1.00; fighting style, 20-40 images:
20-35 min, 75-100 credits, ~$1.50; 1024 px: +50% time, +$0.50. Between and beyond those image counts
the table is interpolated linearly, and time scales with the steps asked for against the preset's.
"""

from __future__ import annotations

import statistics

from sqlalchemy import select
from sqlalchemy.orm import Session

from lorastudio.studio.models import DeviceTiming
from lorastudio.studio.schemas import Estimate

# kind -> (images low, images high, minutes low, minutes high, credits low, credits high)
GUIDE = {
    "character": (15, 25, 15.0, 25.0, 50, 75),
    "pose": (15, 25, 15.0, 25.0, 50, 75),
    "fighting_style": (20, 40, 20.0, 35.0, 75, 100),
    "visual_style": (20, 40, 20.0, 35.0, 75, 100),
}
DOLLARS_PER_GPU_HOUR = 3.2  # the reference GPU's rent: makes the guide's ~$1.00 and ~$1.50
HIRES_TIME, HIRES_DOLLARS = 1.5, 0.50
SPREAD = 0.1  # the range shown around a point estimate


def _lerp(x: float, x0: float, x1: float, y0: float, y1: float) -> float:
    return y0 + (y1 - y0) * (x - x0) / (x1 - x0)


def estimate(
    session: Session,
    *,
    kind: str,
    images: int,
    steps: int,
    preset_steps: int,
    resolution: int,
    family: str | None,
    dollars_per_gpu_hour: float = DOLLARS_PER_GPU_HOUR,
    hires_dollars: float = HIRES_DOLLARS,
) -> Estimate:
    """Minutes, credits and dollars for a training of `images` images and `steps` steps (costs: Settings)."""
    lo_n, hi_n, lo_m, hi_m, lo_c, hi_c = GUIDE[kind]
    n = max(images, 1)
    scale = steps / preset_steps
    minutes = max(1.0, _lerp(n, lo_n, hi_n, lo_m, hi_m) * scale)
    credits = max(1.0, _lerp(n, lo_n, hi_n, lo_c, hi_c) * scale)
    breakdown = [
        f"guide ({kind.replace('_', ' ')}): {lo_n}-{hi_n} images take {lo_m:g}-{hi_m:g} min and "
        f"{lo_c}-{hi_c} credits on an RTX 6000 Ada; {n} images at {steps} steps (preset {preset_steps})"
    ]
    hires = resolution >= 1024
    dollars = minutes / 60 * dollars_per_gpu_hour
    if hires:
        minutes *= HIRES_TIME
        credits *= HIRES_TIME
        dollars += hires_dollars
        breakdown.append(f"high resolution (1024 px): +50% time, +${hires_dollars:.2f}")
    breakdown.append(
        f"GPU cost: {minutes:.1f} min at ${dollars_per_gpu_hour:.2f}/h" + (f" + ${hires_dollars:.2f}" if hires else "")
    )
    breakdown.append("credits are held at submit; you are charged for the minutes it runs, within this range")
    measured = measured_minutes(session, family=family, resolution=resolution, steps=steps)
    if measured is not None:
        breakdown.append(f"measured here: {measured:.1f} min on the devices that ran jobs like it")
    return Estimate(
        minutes=(round(minutes * (1 - SPREAD), 1), round(minutes * (1 + SPREAD), 1)),
        credits=(round(credits * (1 - SPREAD)), round(credits * (1 + SPREAD))),
        dollars=round(dollars, 2),
        images=images,
        steps=steps,
        resolution=resolution,
        breakdown=breakdown,
        measured_minutes=None if measured is None else round(measured, 2),
    )


def measured_minutes(session: Session, *, family: str | None, resolution: int, steps: int) -> float | None:
    """steps x the median seconds per step measured here for this family and resolution (recent runs)."""
    if family is None:
        return None
    rows = list(
        session.scalars(
            select(DeviceTiming.seconds_per_step)
            .where(DeviceTiming.family == family, DeviceTiming.resolution == resolution)
            .order_by(DeviceTiming.id.desc())
            .limit(20)
        )
    )
    return statistics.median(rows) * steps / 60 if rows else None


def record_timing(session: Session, *, device: str, family: str, resolution: int, seconds_per_step: float) -> None:
    """Remember how fast a device trained (called when a training job finishes)."""
    session.add(
        DeviceTiming(device=device[:120], family=family, resolution=resolution, seconds_per_step=seconds_per_step)
    )
