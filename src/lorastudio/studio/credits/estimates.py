"""Training estimates: minutes follow the work (steps x batch x pixels, per model family) at the speed this
studio's own devices were measured at, or, before any was measured, at the guide's reference GPU (RTX 6000
Ada). Credits follow the minutes by the one rule in `credits.charge_rule`.

A data-parallel run on N GPUs takes its steps N batches at a time: its minutes are the single-GPU minutes of the
same work over the assumed speed-up (engine.DATA_PARALLEL_EFFICIENCY of a linear speed-up for each added GPU),
and it bills N GPU-minutes for each minute it runs.

The reference speeds reproduce the guide's table for its presets: a character (1200 steps, 768 px, batch 1)
takes 15-25 min and a fighting style (1750 steps, batch 2) 20-35 min; 1024 px costs its extra pixels.
"""

from __future__ import annotations

import math
import statistics

from sqlalchemy import select
from sqlalchemy.orm import Session

from lorastudio.engine import DATA_PARALLEL_EFFICIENCY, get_family
from lorastudio.studio.credits.ledger import charge_rule, cost_of
from lorastudio.studio.credits.schemas import Estimate
from lorastudio.studio.db import DeviceTiming

REFERENCE_DEVICE = "the reference GPU (RTX 6000 Ada)"
# A base whose family is not known before loading (a hub id): an SD1.5-sized model's speed until measured.
UNKNOWN_STEP_SECONDS = 0.75
OVERHEAD_MINUTES = 1.0  # loading the base and caching latents, on the reference GPU
SPREAD = 0.2  # the range shown around a point estimate
PREVIEW_COST = 2 / 3  # a preview's sampling step (two UNet passes under CFG) against a training step's three


def batch_factor(batch: int) -> float:
    """How much longer a step takes at this batch than at 1: a GPU runs a batch's images side by side, so
    the time grows by about the square root (the guide's style at batch 2 fits it)."""
    return math.sqrt(max(1, batch))


def speed_up(devices: int) -> float:
    """How many times faster N devices take the same work than one: each added device brings
    DATA_PARALLEL_EFFICIENCY of a linear speed-up (assumed, not measured on a multi-GPU machine yet)."""
    return 1 + (max(1, devices) - 1) * DATA_PARALLEL_EFFICIENCY


def estimate(
    session: Session,
    *,
    kind: str,
    images: int,
    steps: int,
    batch_size: int,
    resolution: int,
    family: str | None,
    previews: int = 0,
    preview_steps: int = 20,
    evaluation_renders: int = 0,
    evaluation_steps: int = 12,
    evaluation_share: float = 0.1,
    evaluation_cap: float = 1.0,
    evaluation_skipped: bool = False,
    credits_per_minute: float,
    dollars_per_gpu_hour: float,
    hires_dollars: float = 0.0,
    devices: int = 1,
) -> Estimate:
    """Minutes, credits and dollars for a training of `steps` steps at this batch and resolution; with
    `evaluation_renders` (a scored run's renders of `evaluation_steps` each, the baseline's included) their
    minutes, at most `evaluation_cap` times the training's own (the engine's bound for `evaluation_share` of the
    run); `evaluation_skipped`: scoring was asked for and this run is too short for its share. `devices`: a
    data-parallel run, each of its `steps` taking a batch on every device; the credits and dollars count every
    device's minutes."""
    fam = get_family(family)
    native = fam.train_resolution if fam else 768
    pixels = (resolution / native) ** 2
    measured = measured_seconds(session, family=family, resolution=resolution)
    breakdown = []
    if measured is not None:
        per_step, device, where = measured[0] * batch_factor(batch_size), measured[1], "measured here"
        overhead = 0.0  # measured seconds already include loading and caching
        breakdown.append(f"{per_step:.3f} s a step at batch {batch_size}, {resolution} px: {where} on {device}")
    else:
        base = fam.step_seconds if fam else UNKNOWN_STEP_SECONDS  # the family table's reference speed
        per_step, device, overhead = base * pixels * batch_factor(batch_size), REFERENCE_DEVICE, OVERHEAD_MINUTES
        breakdown.append(
            f"{per_step:.3f} s a step at batch {batch_size}, {resolution} px on {device} (nothing like it has run "
            "here yet; measured speeds replace this after the first training)"
        )
    # N devices take N batches a step: N times one device's work, done speed_up(N) times faster.
    train_minutes = steps * devices * per_step / speed_up(devices) / 60
    if devices > 1:
        breakdown.append(
            f"on {devices} GPUs: each step takes {devices} batches of {batch_size}, one a GPU, "
            f"{speed_up(devices):.2f}x as fast as one GPU would take them ({DATA_PARALLEL_EFFICIENCY:.0%} of a "
            "linear speed-up for each added GPU: assumed, not yet measured)"
        )
    # Previews and scoring run on the first device alone (the others wait): no faster on more devices.
    preview_minutes = previews * preview_steps * per_step * PREVIEW_COST / batch_factor(batch_size) / 60
    eval_minutes = evaluation_renders * evaluation_steps * per_step * PREVIEW_COST / batch_factor(batch_size) / 60
    # The engine scores fewer checkpoints rather than spend more than its share of the run.
    eval_minutes = min(eval_minutes, train_minutes * evaluation_cap)
    minutes = overhead + train_minutes + preview_minutes + eval_minutes
    breakdown.append(
        f"{steps} steps: {train_minutes:.1f} min" + (f" + {overhead:g} min to load and cache" if overhead else "")
    )
    if previews:
        share = preview_minutes / minutes if minutes else 0
        breakdown.append(
            f"{previews} sample previews ({preview_steps} sampling steps each): "
            f"{preview_minutes:.1f} min, {share:.0%} of the run (Advanced: sample every N steps, 0 for "
            "none)"
        )
    if evaluation_renders:
        share = eval_minutes / minutes if minutes else 0
        breakdown.append(
            f"scoring the checkpoints ({evaluation_renders} evaluation renders at most): {eval_minutes:.1f} min, "
            f"{share:.0%} of the run (at most {evaluation_share:.0%} of it; Advanced: evaluate, eval share)"
        )
    elif evaluation_skipped:
        breakdown.append(
            f"checkpoints not scored: this run is too short for the evaluation's share ({evaluation_share:.0%} of "
            "the run; Advanced: eval share), so its last step becomes the LoRA"
        )
    low, high = minutes * (1 - SPREAD), minutes * (1 + SPREAD)
    hires = resolution >= 1024 and (fam is None or fam.train_resolution < 1024)  # above what the family trains at
    gpu_minutes = minutes * devices  # every device is rented, and charged, for the whole run
    dollars = gpu_minutes / 60 * dollars_per_gpu_hour + (hires_dollars if hires else 0.0)
    if measured is None or devices > 1:
        breakdown.append(
            f"device cost: {minutes:.1f} min"
            + (f" x {devices} GPUs = {gpu_minutes:.1f} GPU-minutes" if devices > 1 else "")
            + f" at ${dollars_per_gpu_hour:.2f}/h"
            + (f" + ${hires_dollars:.2f} for 1024 px" if hires else "")
        )
    rule = charge_rule(credits_per_minute, devices)
    breakdown.append(rule)
    return Estimate(
        minutes=(round(low, 1), round(high, 1)),
        credits=(cost_of(low * 60 * devices, credits_per_minute), cost_of(high * 60 * devices, credits_per_minute)),
        dollars=round(dollars, 2),
        images=images,
        steps=steps,
        resolution=resolution,
        breakdown=breakdown,
        device=device,
        measured_minutes=round(minutes, 2) if measured is not None else None,
        rule=rule,
        devices=devices,
    )


def measured_seconds(session: Session, *, family: str | None, resolution: int) -> tuple[float, str] | None:
    """(median seconds per step at batch 1, the device) measured here for this family, scaled from the
    nearest resolution measured by its pixels; None before any training of the family ran here."""
    if family is None:
        return None
    rows = session.execute(
        select(DeviceTiming.resolution, DeviceTiming.seconds_per_step, DeviceTiming.device)
        .where(DeviceTiming.family == family)
        .order_by(DeviceTiming.id.desc())
        .limit(50)
    ).all()
    if not rows:
        return None
    nearest = min({r.resolution for r in rows}, key=lambda r: abs(r - resolution))
    chosen = [r for r in rows if r.resolution == nearest][:20]
    seconds = statistics.median(r.seconds_per_step for r in chosen) * (resolution / nearest) ** 2
    return seconds, statistics.mode(r.device for r in chosen)


def record_timing(
    session: Session,
    *,
    device: str,
    family: str,
    resolution: int,
    batch_size: int,
    seconds_per_step: float,
    devices: int = 1,
) -> None:
    """Remember how fast a device trained (called when a training job finishes), as one device's seconds at
    batch 1; a run on `devices` devices is brought back to one device by the speed-up the estimate assumes, so
    the same run estimated again is quoted the time it took."""
    one_device = seconds_per_step * speed_up(devices) / max(1, devices)
    session.add(
        DeviceTiming(
            device=device[:120],
            family=family,
            resolution=resolution,
            seconds_per_step=one_device / batch_factor(batch_size),
        )
    )
