"""Training jobs: validated and estimated at submit (before any long work), run by a worker through the
engine's train_lora, resumed from the run's checkpoint after a restart, registered as a new LoRA version."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from lorastudio.config import Settings
from lorastudio.engine import (
    Evaluation,
    Preset,
    ProgressEvent,
    TrainConfig,
    base_family,
    budget_in_steps,
    check_family_settings,
    check_kind,
    expected_evaluations,
    get_family,
    get_preset,
)
from lorastudio.errors import Invalid
from lorastudio.studio import credits, datasets, jobs, library
from lorastudio.studio.base_models import check_base
from lorastudio.studio.credits import Estimate, estimate, record_timing
from lorastudio.studio.db import Character, Dataset, FightingStyle, Job, write_transaction
from lorastudio.studio.disk import check_room
from lorastudio.studio.jobs import (
    Checkpoint,
    JobOut,
    JobProgress,
    JobRun,
    TrainingJob,
    TrainingResult,
    check_key,
    once,
    training_memory_mb,
)
from lorastudio.studio.library import VersionScores
from lorastudio.studio.training import checkpoints
from lorastudio.studio.training.schemas import TrainingIn

LOSS_POINTS = 200  # how much of the loss curve the job row keeps (evenly thinned)
EVAL_STRIP = 16  # evaluated checkpoints whose renders the job's progress names (the baseline's and the newest)
PREVIEWS = 4  # sample previews a run renders by default (Advanced: sample_every; 0 turns them off)
PREVIEW_SHARE = 0.1  # the most of a run's time the default previews may take
EVALUATE = True  # a studio run scores its checkpoints and keeps the best unless the user turns it off


def plan(settings: Settings, dataset: Dataset, data: TrainingIn) -> TrainConfig:
    """The run a request asks for, validated: the preset fitted to the base's family, the overrides on top, a
    seed picked for -1, and a few previews. Built once at submit and stored; the worker runs it as stored."""
    return planned(settings, dataset, data)[0]


def planned(settings: Settings, dataset: Dataset, data: TrainingIn) -> tuple[TrainConfig, list[str]]:
    """The plan (see `plan`) and its notes: what it changed from the preset for the devices asked for."""
    base = check_base(settings, data.base)
    family = base_family(base, settings)
    values, notes = data_parallel(
        get_preset(data.preset, dataset.kind, family), data.overrides.model_dump(exclude_none=True)
    )
    here = Path("plan")  # the worker's own folders replace these (LOCAL below)
    cfg = TrainConfig.from_preset(
        kind=dataset.kind,
        preset=data.preset,
        family=family,
        images=here / "images",
        trigger=dataset.trigger,
        description=data.description or "",
        base=base,
        output=here / "lora.safetensors",
        run_dir=here / "run",
        **values,
    )
    check_family_settings(cfg, get_family(cfg.family))  # a setting the base's family cannot use: 422 now, not later
    if "checkpoint_every" not in values:  # a studio run keeps checkpoints often: a worker may die
        cfg = cfg.model_copy(update={"checkpoint_every": 50})
    if "evaluate" not in values:  # the library gets the best checkpoint, not merely the last
        cfg = cfg.model_copy(update={"evaluate": EVALUATE})
    if "sample_every" in values:
        return cfg.model_copy(update={"sample_prompts": preview_prompts(cfg)} if cfg.sample_every else {}), notes
    # A few previews by default, so the job page shows the LoRA taking shape: at most PREVIEWS and at most
    # PREVIEW_SHARE of the run (a preview's sampling step runs the UNet twice, a training step about 3x its batch).
    affordable = int(PREVIEW_SHARE * cfg.steps * 3 * cfg.batch_size / (2 * cfg.sample_steps))
    previews = min(PREVIEWS, affordable)
    if previews == 0:
        return cfg, notes
    every = max(1, cfg.steps // previews)
    return cfg.model_copy(update={"sample_every": every, "sample_prompts": preview_prompts(cfg)}), notes


def data_parallel(preset: Preset, values: dict) -> tuple[dict, list[str]]:
    """The overrides for a run on `devices` devices, and notes saying what changed. Each step takes a batch on
    every device (N x the images), so the preset's steps are divided by N (rounded up: the same images seen) and
    its learning rate multiplied by sqrt(N) (Adam's square-root rule for an N x larger batch), each only where
    the user did not set it; the engine itself uses both as given."""
    n = values.get("devices", 1)
    if n <= 1:
        return values, []
    notes = []
    if "steps" in values:
        notes.append(f"{values['steps']} steps as you set them: {n} times the images one GPU would see")
    else:
        values = values | {"steps": math.ceil(preset.steps / n)}
        notes.append(
            f"{values['steps']} steps: the preset's {preset.steps} over {n} GPUs, the same images seen "
            "(set the steps to choose them)"
        )
    if values.get("optimizer") == "prodigy":  # it finds its own step size; its learning rate stays a multiplier
        notes.append("learning rate as set: Prodigy adapts its own step size to the batch")
    elif "learning_rate" in values:
        notes.append(f"learning rate {values['learning_rate']:g} as you set it (not scaled for the larger batch)")
    else:
        values = values | {"learning_rate": float(f"{preset.learning_rate * math.sqrt(n):.4g}")}
        notes.append(
            f"learning rate {values['learning_rate']:g}: the preset's {preset.learning_rate:g} x sqrt({n}) for the "
            f"{n} x larger batch (Adam's square-root rule; set the learning rate to choose it)"
        )
    return values, notes


LOCAL = {"images", "output", "run_dir", "resume"}  # where a run's files go is the worker's business


def stored_plan(cfg: TrainConfig) -> dict:
    """The plan as a job row keeps it: every setting, none of the worker's folders."""
    return cfg.model_dump(mode="json", exclude=LOCAL)


def preview_prompts(cfg: TrainConfig) -> list[str]:
    """The one prompt a run's previews render: the trigger word with the kind's class words."""
    return [f"{cfg.trigger}, {check_kind(cfg.kind).class_words}"]


def _with_description(session: Session, dataset: Dataset, data: TrainingIn) -> TrainingIn:
    """The request with its subject's description when none was typed: a character's look reaches its LoRA."""
    if data.description:
        return data
    owner = (session.get(Character, dataset.character_id) if dataset.character_id else None) or (
        session.get(FightingStyle, dataset.style_id) if dataset.style_id else None
    )
    return data.model_copy(update={"description": owner.description[:300] if owner and owner.description else None})


def _estimate(session: Session, settings: Settings, dataset: Dataset, cfg: TrainConfig, notes: list[str]) -> Estimate:
    """The quote for a plan, with the plan's notes first among the lines that say how it was reached."""
    usable = sum(1 for i in datasets.images_of(session, dataset.id) if i.status != "skipped")
    quote = estimate(
        session,
        kind=cfg.kind,
        images=usable,
        steps=cfg.steps,
        batch_size=cfg.batch_size,
        resolution=cfg.resolution,
        family=cfg.family,
        previews=len(cfg.sample_prompts) * (cfg.steps // cfg.sample_every) if cfg.sample_every else 0,
        preview_steps=cfg.sample_steps,
        evaluation_renders=evaluation_renders(cfg),
        evaluation_steps=cfg.eval_steps,
        evaluation_share=cfg.eval_share,
        evaluation_cap=budget_in_steps(cfg) / cfg.steps,
        evaluation_skipped=cfg.evaluate and not evaluation_renders(cfg),
        credits_per_minute=settings.credits_per_gpu_minute,
        dollars_per_gpu_hour=settings.dollars_per_gpu_hour,
        hires_dollars=settings.hires_surcharge_dollars,
        devices=cfg.devices,
    )
    return quote.model_copy(update={"breakdown": notes + quote.breakdown}) if notes else quote


def check_devices(session: Session, settings: Settings, devices: int) -> None:
    """Refuse a run on more devices than any live worker reports (it would wait for ever). With no worker
    running at all the run is queued, as every job is: the one that starts may have them, and the job's page
    says it waits for a worker."""
    if devices <= 1:
        return
    largest = jobs.most_devices(session, stale_seconds=settings.lease_seconds)
    if 0 < largest < devices:
        raise Invalid(
            f"no worker has {devices} devices; the largest has {largest} - set $devices to {largest} or fewer, or "
            f"start a worker on a machine with {devices} (`lorastudio worker --devices {devices}`)",
            setting="devices",
        )


def evaluation_renders(cfg: TrainConfig) -> int:
    """The renders a scored run is expected to make: its prompts at each evaluation the engine plans for it
    (the baseline included); 0 when it will not be scored."""
    return cfg.eval_prompts * expected_evaluations(cfg)


def estimate_training(session: Session, settings: Settings, *, owner_id: int, data: TrainingIn) -> Estimate:
    """The estimate a submit would show (minutes, credits, dollars), without submitting."""
    dataset = datasets.get_row(session, owner_id=owner_id, dataset_id=data.dataset_id)
    cfg, notes = planned(settings, dataset, data)
    check_devices(session, settings, cfg.devices)  # said beside the quote, before the user submits
    return _estimate(session, settings, dataset, cfg, notes)


def submit_training(
    session: Session, settings: Settings, *, owner_id: int, data: TrainingIn, idempotency_key: str | None = None
) -> JobOut:
    """Check everything a run needs, plan and estimate it, hold its credits and queue it, all or nothing. A
    repeated Idempotency-Key answers the first submit's job."""
    check_key(idempotency_key)  # validate before the work below
    check_room(settings)  # a run that would fill the disk is refused now, in words, not failed later
    dataset = datasets.get_row(session, owner_id=owner_id, dataset_id=data.dataset_id)
    data = _with_description(session, dataset, data)
    cfg, notes = planned(settings, dataset, data)
    check_devices(session, settings, cfg.devices)
    usable = sum(1 for i in datasets.images_of(session, dataset.id) if i.status != "skipped")
    minimum = cfg.min_images or get_preset(cfg.preset, cfg.kind).min_images
    if usable < minimum:
        raise Invalid(
            f"dataset {dataset.id} has {usable} usable image(s); a {cfg.kind.replace('_', ' ')} LoRA needs "
            f"at least {minimum} - upload more or fix the skipped ones"
        )
    est = _estimate(session, settings, dataset, cfg, notes)
    request = TrainingJob(
        dataset_id=dataset.id,
        plan=stored_plan(cfg),
        estimate=est,
        credits_per_gpu_minute=settings.credits_per_gpu_minute,
    )

    def make() -> JobOut:
        need = training_memory_mb(
            cfg.family,
            cfg.base,
            resolution=cfg.resolution,
            batch_size=cfg.batch_size,
            gradient_checkpointing=cfg.gradient_checkpointing,
            quantize_base=cfg.quantize_base,
            blocks_to_swap=cfg.blocks_to_swap,
        )
        job = jobs.add_job(
            session, owner_id=owner_id, request=request, family=cfg.family, memory_mb=need, devices=cfg.devices
        )
        session.flush()
        job.credit_hold_id = credits.hold(
            session, user_id=owner_id, amount=est.credits[1], job_id=job.id, note=f"training job {job.id}"
        )
        return jobs.to_out(session, job)

    return once(session, user_id=owner_id, key=idempotency_key, scope="trainings", body=data, out=JobOut, make=make)


def running_by_character(session: Session, *, owner_id: int) -> dict[int, int]:
    """{character id: job id} of the user's trainings still pending or running, for the Character Manager."""
    rows = session.scalars(
        select(Job).where(Job.owner_id == owner_id, Job.type == "training", Job.status.in_(("pending", "running")))
    )
    by_dataset = {jobs.request_of(job).dataset_id: job.id for job in rows}
    found = session.execute(select(Dataset.id, Dataset.character_id).where(Dataset.id.in_(list(by_dataset))))
    return {character: by_dataset[dataset] for dataset, character in found if character is not None}


def _thin(losses: list[list[float]]) -> list[list[float]]:
    if len(losses) <= LOSS_POINTS:
        return losses
    stride = len(losses) / LOSS_POINTS
    return [losses[int(i * stride)] for i in range(LOSS_POINTS - 1)] + [losses[-1]]


def _config(
    settings: Settings,
    request: TrainingJob,
    dataset: Dataset,
    folder: Path,
    resume: bool,
    device_ids: tuple[int, ...] = (),
) -> TrainConfig:
    """The stored plan with this worker's folders and the devices it was given (a job resumed on another
    worker trains on what that one hands it; the plan's steps and learning rate stay as planned)."""
    local = {"images": folder / "images", "output": folder / "lora.safetensors", "run_dir": folder / "run"}
    if "asked" in request.plan:  # queued before plans were stored (migration 0005): planned now, as a submit does
        asked = dict(request.plan["asked"])
        seed = asked.pop("seed", None)
        overrides = {k: v for k, v in (asked.get("overrides") or {}).items() if v is not None}
        asked["overrides"] = overrides | ({"seed": seed} if seed is not None else {})
        stored = stored_plan(plan(settings, dataset, TrainingIn.model_validate(asked)))
    else:
        stored = request.plan
    # The ids matter on CUDA only (the engine ignores them on a CPU, where N processes share the cores).
    given = {"devices": len(device_ids), "device_ids": list(device_ids)} if device_ids else {}
    return TrainConfig.model_validate(stored | local | {"resume": resume} | given)


def run_training(run: JobRun) -> None:
    """Run a claimed training job to its end. Resumes from the job's stored checkpoint when one exists (a
    previous worker died), so nothing is trained twice; the new LoRA version and the job's end are one commit."""
    from lorastudio.engine import train_lora

    job, settings, store, request = run.job, run.settings, run.store, run.request
    folder = settings.home / "jobs" / f"job-{job.id}"
    stored = Checkpoint.model_validate(job.checkpoint) if job.checkpoint else None  # perhaps another machine's
    with run.factory() as session:  # read what the run needs, then hold no transaction while it trains
        dataset = session.get(Dataset, request.dataset_id)
        if dataset is None or dataset.owner_id != job.owner_id:
            raise Invalid(f"dataset {request.dataset_id} was deleted; the job cannot run")
        datasets.materialize(session, store, dataset, folder / "images")
        resumed_from = checkpoints.restore(store, stored, folder / "run")
        name = dataset.name
        if dataset.character_id and (c := session.get(Character, dataset.character_id)):
            name = c.name
        elif dataset.style_id and (s := session.get(FightingStyle, dataset.style_id)):
            name = s.name
        owner = (dataset.character_id, dataset.style_id)
    cfg = _config(settings, request, dataset, folder, resume=resumed_from is not None, device_ids=run.device_ids)
    losses: list[tuple[int, float]] = []
    state = JobProgress(phase="prepare", total=cfg.steps)
    if resumed_from is not None:  # the checkpoints scored before the restart stay on the job page
        before = jobs.progress_of(job)
        state = state.model_copy(update={"scores": before.scores, "eval_renders": before.eval_renders})
    newest = {"checkpoint": stored}

    def on_progress(event: ProgressEvent) -> None:
        nonlocal state
        counts_steps = event.phase != "cache"  # the cache phase counts images, not training steps
        update = {
            "phase": event.phase,
            "step": (event.step if counts_steps else 0) or state.step,
            "total": (event.total if counts_steps else 0) or cfg.steps,
            "message": event.message,
            "eta_seconds": event.eta_seconds,
        }
        if event.loss is not None:
            losses.append((event.step, round(event.loss, 6)))
            update["loss"] = event.loss
        if event.preview is not None:
            update["previews"] = [*state.previews, store.put_file(event.preview)][-8:]
        if event.phase == "evaluate" and event.score is not None:
            update |= _scored(state, event, [store.put_file(p) for p in event.renders or []])
        state = state.model_copy(update=update | {"losses": _thin(losses)})
        superseded = None
        if event.checkpoint is not None:
            superseded = newest["checkpoint"]
            newest["checkpoint"] = checkpoints.keep(store, event.checkpoint, event.step)
            run.keep_checkpoint(newest["checkpoint"])
        run.progress(state, event.phase != "train")
        if superseded and superseded != newest["checkpoint"]:
            checkpoints.forget(store, superseded)  # the row names the new one now

    result = train_lora(cfg, settings=settings, on_progress=on_progress, should_stop=run.should_stop)
    with write_transaction(run.factory) as session:
        if result.stopped:
            run.finish(session, "canceled", TrainingResult(steps=result.steps_done))
        else:
            _register(session, run, cfg, result, name, owner, resumed_from)
    checkpoints.forget(store, newest["checkpoint"])  # the job has ended: nobody resumes it
    shutil.rmtree(folder, ignore_errors=True)  # what it made is in the blob store; a worker's disk stays small


def _scored(state: JobProgress, event: ProgressEvent, renders: list[str]) -> dict:
    """The progress fields an evaluated checkpoint changes: its scores and renders, in step order (one entry a
    step: a resumed run that scores a checkpoint again replaces it)."""
    step = event.score.step
    scores = sorted([s for s in state.scores if s.step != step] + [event.score], key=lambda s: s.step)
    shown = sorted([r for r in state.eval_renders if r[0] != step] + [(step, renders)], key=lambda r: r[0])
    if len(shown) > EVAL_STRIP:  # the baseline and the newest: the progress row is rewritten at every report
        shown = shown[:1] + shown[-(EVAL_STRIP - 1) :]
    return {"scores": scores, "eval_renders": shown}


def chosen_step(evaluation: Evaluation, last: int) -> int:
    """The step of the file a scored run made its LoRA (the engine says which), else the run's last step."""
    return evaluation.chosen_step if evaluation.chosen_step is not None else last


def version_scores(evaluation: Evaluation, step: int, *, chosen: bool) -> VersionScores | None:
    """What the library keeps of a run's evaluation for the checkpoint at `step` (None: it was not scored)."""
    score = next((s for s in evaluation.scores if s.step == step), None)
    if score is None:
        return None
    choice = evaluation.choice
    return VersionScores(
        score=score,
        chosen=chosen,
        by=choice.by,
        overtrained_after=choice.overtrained_after,
        message=choice.message,  # the run's reason for its choice, beside every checkpoint it weighed
        scorers=evaluation.scorers,
        note=evaluation.note,
    )


def _register(
    session: Session, run: JobRun, cfg: TrainConfig, result, name: str, owner: tuple, resumed_from: int | None
) -> None:
    """The new LoRA version (a scored run's chosen checkpoint, the others kept beside it as alternatives), the
    measured speed and the job's end, in the caller's transaction."""
    job = run.job
    evaluation: Evaluation | None = result.evaluation
    step = scores = None
    if evaluation is not None:
        step = chosen_step(evaluation, result.steps_done)
        # The run's own pick (ranked, or the last step when nothing ranked them): not a switch by the user.
        scores = version_scores(evaluation, step, chosen=True)
    lora = library.register_file(
        session,
        run.store,
        owner_id=job.owner_id,
        path=result.lora_path or cfg.output,
        name=name,
        source="trained",
        character_id=owner[0],
        style_id=owner[1],
        job_id=job.id,
        training_seconds=result.seconds,
        info=result.info,
        step=step,
        scores=scores,
    )
    if evaluation is not None:
        others = [
            (path, kept)
            for at, path in sorted(result.alternatives.items())
            if at != step and (kept := version_scores(evaluation, at, chosen=False)) is not None
        ]
        library.add_alternatives(
            session, run.store, lora_id=lora.id, alternatives=others, days=run.settings.alternatives_days
        )
    trained = result.steps_done - (result.loss_history[0][0] - 1 if result.loss_history else 0)
    # The speed of training alone, the evaluation's time left out (a resumed run's scores span processes: as is).
    seconds = evaluation.train_seconds if evaluation is not None and resumed_from is None else result.seconds
    if trained > 0 and seconds > 0:
        record_timing(
            session,
            device=run.worker.split("@")[-1],
            family=result.family,
            resolution=cfg.resolution,
            batch_size=cfg.batch_size,
            seconds_per_step=seconds / trained,
            devices=cfg.devices,
        )
    run.finish(
        session,
        "succeeded",
        TrainingResult(
            lora_id=lora.id,
            version=lora.versions[-1].version,
            seconds=round(result.seconds, 2),
            final_loss=result.to_dict()["final_loss"],
            resumed_from_step=resumed_from,  # a worker died and another went on from its checkpoint
            evaluation=evaluation,
        ),
    )
