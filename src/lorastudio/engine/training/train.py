"""train_lora: images + trigger word + preset -> a kohya-format LoRA file. Reads top to bottom."""

from __future__ import annotations

import json
import math
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers.optimization import get_scheduler

from lorastudio.config import Settings
from lorastudio.engine.data.buckets import fit_to_bucket
from lorastudio.engine.data.dataset import scan_dataset
from lorastudio.engine.lora.file import check_lora_path, read_lora, save_lora
from lorastudio.engine.models.base import base_family, load_base_model
from lorastudio.engine.models.denoisers import Cond, denoiser_for
from lorastudio.engine.models.device import (
    is_out_of_memory,
    peak_memory_mb,
    resolve_precision,
    weight_dtype,
)
from lorastudio.engine.models.families import FAMILIES, get_family
from lorastudio.engine.models.loading import LOADING
from lorastudio.engine.models.memory import check_training_fits
from lorastudio.engine.models.offload import swap_blocks
from lorastudio.engine.models.quantize import quantize_frozen
from lorastudio.engine.models.textenc import sdxl_time_ids
from lorastudio.engine.progress import OnProgress, ProgressEvent, ShouldStop, never_stop, no_progress
from lorastudio.engine.training.adapters import add_adapters
from lorastudio.engine.training.checkpoint import list_checkpoints, load_checkpoint, save_checkpoint
from lorastudio.engine.training.config import TrainConfig, TrainResult
from lorastudio.engine.training.distributed import Ranks, training_device
from lorastudio.engine.training.evaluate import RunEvaluation
from lorastudio.engine.training.family_checks import check_family_settings, memory_settings
from lorastudio.engine.training.launch import train_on_devices
from lorastudio.engine.training.metadata import export_lora
from lorastudio.engine.training.objectives import FlowObjective, NoiseObjective
from lorastudio.engine.training.parts import (
    Sample,
    autocast,
    check_optimizer,
    epoch_batches,
    make_optimizer,
    release,
    step_noise,
    to_device,
    to_pixels,
)
from lorastudio.engine.training.presets import get_preset
from lorastudio.engine.training.samples import render_samples
from lorastudio.engine.training.steplog import LossLog, PhaseTimer
from lorastudio.errors import Invalid, NaNLoss, OutOfMemory
from lorastudio.fileio import check_writable_dir, check_writable_file, write_bytes_atomic

RESUME_KEYS = (
    "kind",
    "trigger",
    "base",
    "network_dim",
    "network_alpha",
    "target",
    "train_text_encoder",
    "seed",
)


def train_lora(
    cfg: TrainConfig,
    *,
    settings: Settings,
    on_progress: OnProgress | None = None,
    should_stop: ShouldStop | None = None,
) -> TrainResult:
    """Train one LoRA. Checks everything it can before loading a model; checkpoints as it goes."""
    emit, stop = on_progress or no_progress, should_stop or never_stop
    started_at, t0 = time.time(), time.perf_counter()
    ranks = Ranks.joined()  # one process, or one rank of a data-parallel run (distributed.py)
    device = training_device(cfg, settings, ranks.local_rank)
    if not ranks.main:
        emit = no_progress  # progress, samples, scores and files are rank 0's
    resolve_precision(cfg.precision, device)  # refuse fp16 on a CPU before any work
    preset = get_preset(cfg.preset, cfg.kind)
    check_optimizer(cfg.optimizer, device)
    check_lora_path(cfg.output)
    check_writable_file(cfg.output, "$output", setting="output")
    check_writable_dir(cfg.run_dir, "$run_dir", setting="run_dir")

    # 1. The dataset, validated before any model is loaded.
    emit(ProgressEvent("prepare", message="checking images"))
    report, items = scan_dataset(
        cfg.images,
        kind=cfg.kind,
        trigger=cfg.trigger,
        preset=preset,
        resolution=cfg.resolution,
        max_pixels=settings.max_image_pixels,
        min_images=cfg.min_images,
        bucket_step=cfg.bucket_step,
    )
    if not report.usable:
        reasons = "; ".join(p.message for p in report.notes if p.severity == "error")
        raise Invalid(f"cannot train: {reasons} (see `lorastudio dataset check` for every image)")

    # 2. Resume point, if asked for: the run's config must match what made the checkpoint.
    checkpoint = None
    if cfg.resume:
        found = list_checkpoints(cfg.run_dir)
        if not found:
            raise Invalid(
                f"$resume: no checkpoint in {cfg.run_dir / 'checkpoints'}; start without $resume", setting="resume"
            )
        checkpoint = load_checkpoint(found[-1])  # a damaged one is named, with the one to fall back to
        changed = [k for k in RESUME_KEYS if str(checkpoint.config.get(k)) != str(getattr(cfg, k))]
        if changed:
            raise Invalid(
                f"$resume: these settings differ from the checkpoint's run: {', '.join(changed)}", setting="resume"
            )
    if cfg.devices > 1 and ranks.world == 1:  # asked for N devices: N ranks run this function (launch.py)
        return train_on_devices(cfg, settings, device, emit, stop)

    # 3. Base model, frozen, with LoRA adapters on the target modules.
    family = get_family(base_family(cfg.base, settings))  # read from its files: nothing loaded yet
    check_family_settings(cfg, family)
    precision = resolve_precision(cfg.precision, device, family.name if family else None)  # 'auto' by model
    if family is not None and device.type == "cuda":  # a run that cannot fit is refused before the load
        total_gb = torch.cuda.get_device_properties(device).total_memory / 2**30
        need = memory_settings(cfg) | {"full_precision": precision == "no"}
        check_training_fits(family, total_gb, torch.cuda.get_device_name(device), **need)
    emit(ProgressEvent("prepare", message=f"loading base model {cfg.base}"))
    wdtype = weight_dtype(precision)
    # Loaded in the training dtype: an fp32 copy first would double the peak (4.0 against 2.0 GB at bf16 on
    # SD1.5, benchmarks/train_speed.py). The VAE is then upcast; diffusers' SD1.5 script runs it in wdtype.
    base = load_base_model(cfg.base, settings, dtype=wdtype)
    family = FAMILIES[base.family]
    model = denoiser_for(base)  # how this family's denoiser is called, in training and sampling alike
    denoiser, vae = model.module, base.pipe.vae
    encoders = base.text_encoders
    for module in (denoiser, vae, *encoders):
        module.requires_grad_(False)
    if cfg.quantize_base != "none":
        quantize_frozen(denoiser, cfg.quantize_base)  # before the LoRA: its layers wrap the 8-bit ones
    # The LoRA's init draws from the global generator, and peft swaps torch's parameter registration for the
    # whole process while another thread loads an adapter: both under the process's loading lock.
    with LOADING:
        add_adapters(cfg, denoiser, encoders, family)
    if cfg.blocks_to_swap:
        swap_blocks(denoiser, cfg.blocks_to_swap, device)  # the rest goes to the device; these when they run
    elif cfg.quantize_base != "none":
        denoiser.to(device)  # loaded in wdtype already; a dtype cast would undo the 8-bit weights
    else:
        denoiser.to(device, dtype=wdtype)
    vae.to(device, dtype=torch.float32)  # fp32 VAE: SDXL's VAE overflows in fp16
    for encoder in encoders:
        encoder.to(device, dtype=wdtype)
    named = {f"unet.{n}": p for n, p in denoiser.named_parameters() if p.requires_grad}
    for i, encoder in enumerate(encoders):
        named.update({f"te{i}.{n}": p for n, p in encoder.named_parameters() if p.requires_grad})
    for p in named.values():
        p.data = p.data.float()  # LoRA weights train in fp32 whatever the base precision
    if cfg.gradient_checkpointing:
        denoiser.enable_gradient_checkpointing()
        if cfg.train_text_encoder:
            for encoder in encoders:
                encoder.gradient_checkpointing_enable()

    # 4. Bucketed samples; latents and text embeddings cached once when nothing varies per step.
    emit(ProgressEvent("cache", message=f"preparing {len(items)} images"))
    samples = []
    for item in items:
        fitted = fit_to_bucket(item.image, cfg.resolution, cfg.bucket_step)
        time_ids = sdxl_time_ids(fitted.original_size, fitted.crop_top_left, fitted.bucket[::-1])
        for flip in (False, True) if cfg.flip_augment else (False,):
            samples.append(Sample(to_pixels(fitted, flip), None, item.caption, time_ids, fitted.bucket))
    if cfg.cache_latents:  # on N ranks each encodes its share and all get every latent (distributed.py)

        def encode(indices: list[int]) -> list[torch.Tensor]:
            made = []
            for n, i in enumerate(indices):
                made.append(model.to_latents(samples[i].pixels[None])[0])  # stays on the device: no copy per step
                emit(ProgressEvent("cache", n + 1, len(indices), message=f"caching latents {n + 1}/{len(indices)}"))
            return made

        for s, latent in zip(samples, ranks.share(len(samples), encode, device), strict=True):
            s.latent, s.pixels = latent, None
    text_cache: dict[str, Cond] = {}
    if not cfg.train_text_encoder:
        captions = sorted({s.caption for s in samples})
        with torch.no_grad(), autocast(device, precision):
            conds = ranks.share(len(captions), lambda indices: model.encode([captions[i] for i in indices]), device)
        text_cache = dict(zip(captions, conds, strict=True))
    sampling = bool(cfg.sample_every and cfg.sample_prompts) and ranks.main
    sample_conds: list[Cond] = []
    if sampling and family.is_flow:
        # The flow families sample with our own loop from cached prompts (_samples), so their big text encoders
        # go even when previews are on; the VAE stays to draw them.
        with torch.no_grad(), autocast(device, precision):
            sample_conds = model.encode(list(cfg.sample_prompts))
            if family.guidance == "cfg" and model.uses_cfg(family.default_cfg):
                sample_conds.append(model.encode([""])[0])  # the unconditional row of their guidance
    evaluation = None
    if cfg.evaluate and ranks.main:  # its prompts are encoded now, before the text encoders go
        emit(ProgressEvent("prepare", message="preparing the evaluation set"))
        evaluation = RunEvaluation(cfg, base, model, [item.image for item in items], device, precision, settings)
    drawing = sampling or evaluation is not None
    if text_cache and (family.is_flow or not drawing):
        # What the caches replaced is freed: 580 MB on SD1.5 and up to 2 GB on SDXL at bf16 (CLIP), 9.5 GB of
        # T5-XXL on FLUX.1, 16 GB of Qwen2.5-VL on Qwen-Image. SD's previews run its pipeline, which needs them.
        release(tuple(encoders), device)
    if cfg.cache_latents and not drawing:
        release((vae,), device)  # the VAE in fp32, unless a preview or the evaluation must decode

    # 5. Optimizer, schedule, loss settings.
    unet_params = [p for n, p in named.items() if n.startswith("unet.")]
    te_params = [p for n, p in named.items() if n.startswith("te")]
    groups = [{"params": unet_params, "lr": cfg.learning_rate}]
    if te_params:
        groups.append({"params": te_params, "lr": cfg.text_encoder_lr or cfg.learning_rate})
    optimizer = make_optimizer(cfg.optimizer, groups, device, cfg.weight_decay)
    lr_schedule = get_scheduler(
        cfg.lr_scheduler, optimizer, num_warmup_steps=cfg.warmup_steps, num_training_steps=cfg.steps
    )
    if family.is_flow:
        objective = FlowObjective(model.flow_shift(cfg.resolution, cfg.resolution))
    else:
        objective = NoiseObjective(base.pipe.scheduler.config, cfg.min_snr_gamma)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    scaler.scale(torch.zeros((), device=device))  # its scale exists even on a rank whose first step is empty
    loss_history: list[tuple[int, float]] = []
    start_step = 0
    if checkpoint is not None:
        if set(checkpoint.lora) != set(named):
            raise Invalid(
                f"$resume: {found[-1].name} holds other LoRA layers than this run trains; start afresh",
                setting="resume",
            )
        with torch.no_grad():
            for name, p in named.items():
                p.copy_(checkpoint.lora[name])
        optimizer.load_state_dict(checkpoint.optimizer)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for _ in range(checkpoint.step):
                lr_schedule.step()
        start_step, loss_history = checkpoint.step, list(checkpoint.loss_history)
        emit(ProgressEvent("prepare", step=start_step, total=cfg.steps, message="resumed from checkpoint"))

    def lora_file(at_step: int):
        """The adapters as trained so far, as a LoRA file of a run that ended at `at_step`."""
        return export_lora(
            base,
            cfg.model_copy(update={"steps": at_step}),
            denoiser,
            encoders,
            report,
            [s.caption for s in samples],
            started_at,
            time.perf_counter() - t0,
            loss_history=loss_history,
            per_epoch=per_epoch,
            buckets=[s.bucket for s in samples],
            precision=precision,
        )

    # 6. The loop. Micro-step k always sees the same batch and noise, so resuming is exact. On N ranks each
    # takes its slice of the global batch (N x batch_size) and of its noise, and the gradients are summed.
    config_dict = cfg.model_dump(mode="json")
    checkpoints, sample_paths = [], []
    global_batch = cfg.batch_size * ranks.world
    per_epoch = len(epoch_batches(samples, global_batch, cfg.seed, 0))
    plans: dict[int, list[list[int]]] = {}
    losses = LossLog()  # read every 0.5 s: an .item() per step would leave the GPU idle while the host waits
    phases = PhaseTimer(device, cfg.profile)
    denoiser.train()
    loop_t0, step, stopped, stop_agreed = time.perf_counter(), start_step, False, False
    try:
        while step < cfg.steps:
            if stop() if ranks.world == 1 else stop_agreed:
                stopped = True
                break
            step_loss = torch.zeros((), device=device)
            for micro in range(cfg.gradient_accumulation):
                k = step * cfg.gradient_accumulation + micro
                epoch = k // per_epoch
                if epoch not in plans:
                    plans = {epoch: epoch_batches(samples, global_batch, cfg.seed, epoch)}
                indices = plans[epoch][k % per_epoch]
                start, end = ranks.shard(indices)
                if start == end:
                    continue  # the end of a bucket left this rank nothing: it adds zeros to the sum
                batch = [samples[i] for i in indices[start:end]]
                if cfg.cache_latents:
                    latents = torch.stack([s.latent for s in batch])
                else:
                    latents = model.to_latents(torch.stack([s.pixels for s in batch]))
                shape = (len(indices), *latents.shape[1:])  # the global batch's noise, so N ranks draw as one
                noise, t = step_noise(torch.Size(shape), cfg.seed, k, cfg.noise_offset, objective)
                noise, t = to_device(noise[start:end], device), to_device(t[start:end], device)
                noisy = objective.noisy(latents, noise, t)
                target = objective.target(latents, noise, t)
                phases.mark("data and VAE")
                with autocast(device, precision):
                    if text_cache:
                        conds = [text_cache[s.caption] for s in batch]
                    else:
                        conds = model.encode([s.caption for s in batch])
                    phases.mark("text encoder")
                    time_ids = to_device(torch.stack([s.time_ids for s in batch]), device)  # SDXL's size ids
                    pred = model.predict(noisy.to(wdtype), t, conds, extra=time_ids)
                loss = F.mse_loss(pred.float(), target.float(), reduction="none").mean(dim=(1, 2, 3))
                weights = objective.weights(t)
                # This rank's share of the global batch's mean: the sum over ranks is that mean.
                loss = (loss * weights if weights is not None else loss).sum() / len(indices)
                phases.mark("forward")
                scaler.scale(loss / cfg.gradient_accumulation).backward()
                step_loss += loss.detach().float() / cfg.gradient_accumulation
                phases.mark("backward")
            if ranks.world > 1:  # one all-reduce: gradients, the loss, and rank 0's stop request
                asked = torch.tensor(float(ranks.main and stop()), device=device)
                summed = ranks.sum_gradients(list(named.values()), torch.stack([step_loss, asked]))
                # Read on every rank at the same step, so all stop together (a host sync: one per step).
                step_loss, stop_agreed = summed[0], bool(summed[1] > 0)
                phases.mark("all-reduce")
            if cfg.max_grad_norm:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(list(named.values()), cfg.max_grad_norm)
            scaler.step(optimizer)
            scaler.update()
            lr_schedule.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            losses.add(step, step_loss)
            phases.mark("optimizer")
            if not ranks.main:
                continue  # rank 0 reports, checkpoints, samples and scores; the others go on to the next step
            checkpoint_due = cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and step < cfg.steps
            sample_due = sampling and step % cfg.sample_every == 0
            if losses.due() or checkpoint_due or sample_due or step == cfg.steps:  # never checkpoint a NaN
                per_step = (time.perf_counter() - loop_t0) / (step - start_step)
                _report(losses.read(), loss_history, cfg, per_step, emit)
                phases.mark("loss read")
            if checkpoint_due:
                checkpoints.append(_checkpoint(cfg, step, named, optimizer, loss_history, config_dict))
                emit(
                    ProgressEvent(
                        "checkpoint", step, cfg.steps, message=str(checkpoints[-1]), checkpoint=checkpoints[-1]
                    )
                )
            if sample_due:
                sample_paths += render_samples(base, model, sample_conds, cfg, step, device, precision, emit)
            if evaluation and checkpoint_due:
                training = time.perf_counter() - loop_t0 - evaluation.seconds_here  # the plan counts training only
                if evaluation.due(step, training / (step - start_step)):
                    _evaluate(evaluation, step, lambda path, at=step: save_lora(path, lora_file(at)), emit, device)
    except RuntimeError as exc:  # torch.OutOfMemoryError is one
        if not is_out_of_memory(exc):
            raise
        last = list_checkpoints(cfg.run_dir)
        levers = ", $quantize_base int8, $blocks_to_swap" if family.is_flow else ""
        raise OutOfMemory(
            f"the {device.type} device ran out of memory at step {step + 1}. Lower $batch_size "
            f"(now {cfg.batch_size}) or $resolution (now {cfg.resolution}), turn on $gradient_checkpointing{levers}, "
            "or use $precision fp16 or bf16",
            setting="batch_size",
            aside="$resume continues from the last checkpoint"
            + (f" ({last[-1].name})" if last else " (none was written yet)"),
        ) from exc
    if not ranks.main:
        return TrainResult(None, step, cfg.steps, stopped, time.perf_counter() - t0, [], len(items), base.family)
    if stopped:
        _report(losses.read(), loss_history, cfg, (time.perf_counter() - loop_t0) / max(1, step - start_step), emit)
        if step > start_step:
            checkpoints.append(_checkpoint(cfg, step, named, optimizer, loss_history, config_dict))
        emit(
            ProgressEvent(
                "checkpoint",
                step,
                cfg.steps,
                message="stopped; the last checkpoint is kept",
                checkpoint=checkpoints[-1] if step > start_step else None,
            )
        )
        return TrainResult(
            None,
            step,
            cfg.steps,
            True,
            time.perf_counter() - t0,
            loss_history,
            len(items),
            base.family,
            checkpoints,
            sample_paths,
            peak_memory_mb(device),
            report.to_dict(),
            phases.result(),
        )

    # 7. Export: kohya key names and ss_* metadata, written atomically; loss history beside the run. With the
    # evaluation, the last checkpoint is scored too and the best scored one becomes the LoRA.
    emit(ProgressEvent("save", step, cfg.steps, message=f"saving {cfg.output}"))
    alternatives, scored = {}, None
    if evaluation:
        training = time.perf_counter() - loop_t0 - evaluation.seconds_here
        if evaluation.due(step, training / max(1, step - start_step)):
            _evaluate(evaluation, step, lambda path: save_lora(path, lora_file(step)), emit, device)
    denoiser.eval()
    seconds = time.perf_counter() - t0
    if evaluation and evaluation.files:
        scored, alternatives = evaluation.finish(cfg.output)
        lora = read_lora(cfg.output)
    else:
        lora = lora_file(step)
        save_lora(cfg.output, lora)
        if evaluation:
            scored = evaluation.skipped()
    history = json.dumps({"loss": loss_history, "steps": cfg.steps, "seconds": seconds}).encode()
    write_bytes_atomic(cfg.run_dir / "loss_history.json", history)
    return TrainResult(
        cfg.output,
        step,
        cfg.steps,
        False,
        seconds,
        loss_history,
        len(items),
        base.family,
        checkpoints,
        sample_paths,
        peak_memory_mb(device),
        report.to_dict(),
        phases.result(),
        lora.info,
        scored,
        alternatives,
    )


def _evaluate(evaluation: RunEvaluation, step: int, export, emit, device) -> None:
    """Score the checkpoint at `step`; a failure of the evaluation (out of memory while drawing, a scorer that
    broke) ends the evaluation, never the training: the run keeps its last step and says why."""
    try:
        evaluation.score(step, export, emit)
    except Exception as exc:  # noqa: BLE001 - the training stands without its scores
        evaluation.failed(exc)
        if device.type == "cuda":
            torch.cuda.empty_cache()
        emit(ProgressEvent("evaluate", step, 0, message=evaluation.skipped_note or "the evaluation failed"))


def _report(read: list[tuple[int, float]], history: list, cfg: TrainConfig, per_step: float, emit) -> None:
    """Record and announce losses read back from the device; a non-finite one ends the run."""
    for step, loss in read:
        if not math.isfinite(loss):
            last = list_checkpoints(cfg.run_dir)
            raise NaNLoss(
                f"the loss became {loss} at step {step}; training stopped. Lower $learning_rate "
                f"(now {cfg.learning_rate:g}) or use $precision bf16 or no"
                + (f"; the last good checkpoint is {last[-1]}" if last else ""),
                setting="learning_rate",
            )
        history.append((step, loss))
        emit(ProgressEvent("train", step, cfg.steps, loss, per_step, per_step * (cfg.steps - step)))


def _checkpoint(cfg: TrainConfig, step, named, optimizer, loss_history, config_dict) -> Path:
    params = {n: p.detach() for n, p in named.items()}
    return save_checkpoint(
        cfg.run_dir,
        step=step,
        params=params,
        optimizer=optimizer,
        loss_history=loss_history,
        config=config_dict,
        keep=cfg.keep_checkpoints,
    )
