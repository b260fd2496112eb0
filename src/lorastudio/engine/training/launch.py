"""A training on N devices, seen from the process that asked for it: torchrun starts N ranks, rank 0's
progress comes back as events, a stop request goes to them as a file, and the run's result or error comes
back as the same TrainResult or domain error a single process gives.

Everything travels through files in the run folder's `launch/` (the run folder is the training's own):
`config.json` and `settings.json` in, `events.jsonl`, `result.json` or `error-<rank>.json` out, `stop` to stop,
`rank-<n>.pid` for whoever must find a rank, and `torchrun.log` with every process's output."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from lorastudio import errors
from lorastudio.config import Settings
from lorastudio.engine.evaluation.results import CheckpointScore, Evaluation
from lorastudio.engine.lora.file import read_lora
from lorastudio.engine.models.device import threads_per_process
from lorastudio.engine.progress import OnProgress, ProgressEvent, ShouldStop
from lorastudio.engine.training.config import TrainConfig, TrainResult
from lorastudio.engine.training.distributed import PeerLost
from lorastudio.errors import Invalid, LoraStudioError, TrainingFailed
from lorastudio.fileio import write_bytes_atomic

POLL_SECONDS = 0.1
# torchrun's agent looks at its ranks this often: a rank that dies ends the others within about this long.
MONITOR_SECONDS = 0.5
STOP_GRACE_SECONDS = 10.0  # after a SIGTERM, how long the ranks get before a SIGKILL
# The settings a training reads; only these reach the ranks' file (a database URL may hold a password, and a
# setting added later stays out until it is named here).
RANK_SETTINGS = {
    "home",
    "device",
    "default_base_model",
    "single_file_config",
    "allow_downloads",
    "max_image_pixels",
    "scorer_clip",
    "scorer_dino",
    "captioner",
}


def launch_folder(run_dir: Path) -> Path:
    """Where a run's ranks and the process that started them talk."""
    return run_dir / "launch"


def train_on_devices(
    cfg: TrainConfig, settings: Settings, device: torch.device, emit: OnProgress, stop: ShouldStop
) -> TrainResult:
    """Run `cfg` as `cfg.devices` data-parallel processes started by torchrun; block until they end."""
    folder = launch_folder(cfg.run_dir)
    shutil.rmtree(folder, ignore_errors=True)  # what a previous launch left: its events are not this run's
    folder.mkdir(parents=True)
    write_bytes_atomic(folder / "config.json", cfg.model_dump_json().encode())
    # Created private (0600), not narrowed after: no moment at which another user could read it.
    fd = os.open(folder / "settings.json", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(settings.model_dump(mode="json", include=RANK_SETTINGS), f)
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    if cfg.device_ids and device.type == "cuda":
        env["CUDA_VISIBLE_DEVICES"] = _visible(cfg.device_ids, env.get("CUDA_VISIBLE_DEVICES"))
    env["OMP_NUM_THREADS"] = str(threads_per_process(cfg.devices))  # torchrun's own default is 1
    # One machine: the ranks talk over loopback only, whatever interface the host name resolves to.
    env.setdefault("GLOO_SOCKET_IFNAME", "lo")
    env.setdefault("NCCL_SOCKET_IFNAME", "lo")
    command = [
        sys.executable,
        "-m",
        "lorastudio.engine.training.torchrun",  # torchrun itself, tied to this process's life
        "--standalone",
        "--rdzv-endpoint=127.0.0.1:0",
        f"--nproc-per-node={cfg.devices}",
        f"--monitor-interval={MONITOR_SECONDS}",
        "--max-restarts=0",
        "-m",
        "lorastudio.engine.training.rank",
        str(folder),
    ]
    with open(folder / "torchrun.log", "ab") as log:
        # Its own session: the whole group (torchrun and its ranks) can be signalled at once.
        proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        events = _Events(folder / "events.jsonl")
        stop_asked = False
        while proc.poll() is None:
            for event in events.read():
                _emit_held(event, folder, emit)
            if not stop_asked and stop():
                stop_asked = True
                (folder / "stop").touch()
            time.sleep(POLL_SECONDS)
        for event in events.read():
            _emit_held(event, folder, emit)
    finally:
        _end(proc)
        (folder / "settings.json").unlink(missing_ok=True)
    return _outcome(folder, cfg, proc.returncode)


def _emit_held(event: ProgressEvent, folder: Path, emit: OnProgress) -> None:
    """Hand the caller an event; a checkpoint it names is held (hard-linked) while the caller reads it, since
    rank 0 trains on and may prune it meanwhile (the studio uploads each one)."""
    if event.checkpoint is None:
        emit(event)
        return
    held = folder / "held" / event.checkpoint.name
    held.parent.mkdir(exist_ok=True)
    try:
        os.link(event.checkpoint, held)
    except FileNotFoundError:  # pruned already: newer ones exist, and their events follow
        event.checkpoint = None
        emit(event)
        return
    except OSError:  # a file system without hard links: handed over as it is
        emit(event)
        return
    try:
        event.checkpoint = held
        emit(event)
    finally:
        held.unlink(missing_ok=True)


def _visible(ids: list[int], current: str | None) -> str:
    """CUDA_VISIBLE_DEVICES for the ranks: `ids` index the devices this process sees, which a
    CUDA_VISIBLE_DEVICES of its own may already have narrowed."""
    seen = [d.strip() for d in current.split(",")] if current else [str(i) for i in range(torch.cuda.device_count())]
    missing = [i for i in ids if i >= len(seen)]
    if missing:
        raise Invalid(f"$device {missing[0]} is not one of the {len(seen)} CUDA devices visible here", setting="device")
    return ",".join(seen[i] for i in ids)


def _end(proc: subprocess.Popen) -> None:
    """No rank outlives the launch: SIGTERM the group, then SIGKILL what is left."""
    if proc.poll() is None:
        _signal_group(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(STOP_GRACE_SECONDS)
    _signal_group(proc.pid, signal.SIGKILL)  # ranks whose agent died first are still in its group
    proc.wait()


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


class _Events:
    """Reads rank 0's events as they are appended (whole lines only)."""

    def __init__(self, path: Path):
        self.path, self.offset = path, 0

    def read(self) -> list[ProgressEvent]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return []
        end = data.rfind(b"\n") + 1
        self.offset += end
        return [event_from_json(line) for line in data[:end].splitlines() if line.strip()]


def event_to_json(event: ProgressEvent) -> bytes:
    """One event as a line of JSON (the in-memory preview image is left out: rank 0 wrote it as a file)."""
    data = event.to_dict() | {"renders": [str(p) for p in event.renders] if event.renders is not None else None}
    return json.dumps(data).encode() + b"\n"


def event_from_json(line: bytes) -> ProgressEvent:
    """The event `event_to_json` wrote."""
    d = json.loads(line)
    return ProgressEvent(
        d["phase"],
        d["step"],
        d["total"],
        d["loss"],
        d["seconds_per_step"],
        d["eta_seconds"],
        d["message"],
        preview=Path(d["preview"]) if d["preview"] else None,
        checkpoint=Path(d["checkpoint"]) if d["checkpoint"] else None,
        score=CheckpointScore.model_validate(d["score"]) if d["score"] else None,
        renders=[Path(p) for p in d["renders"]] if d["renders"] is not None else None,
    )


def result_to_json(result: TrainResult) -> bytes:
    """What rank 0 hands back: the result without its LoRA's info, which is read back from the file."""
    return json.dumps(
        {
            "lora_path": str(result.lora_path) if result.lora_path else None,
            "steps_done": result.steps_done,
            "total_steps": result.total_steps,
            "stopped": result.stopped,
            "seconds": result.seconds,
            "loss_history": result.loss_history,
            "images_used": result.images_used,
            "family": result.family,
            "checkpoints": [str(p) for p in result.checkpoints],
            "samples": [str(p) for p in result.samples],
            "peak_memory_mb": result.peak_memory_mb,
            "report": result.report,
            "phase_seconds": result.phase_seconds,
            "evaluation": result.evaluation.model_dump(mode="json") if result.evaluation else None,
            "alternatives": {str(k): str(v) for k, v in result.alternatives.items()},
        }
    ).encode()


def _result_from_json(data: dict) -> TrainResult:
    lora = Path(data["lora_path"]) if data["lora_path"] else None
    return TrainResult(
        lora,
        data["steps_done"],
        data["total_steps"],
        data["stopped"],
        data["seconds"],
        [tuple(p) for p in data["loss_history"]],
        data["images_used"],
        data["family"],
        [Path(p) for p in data["checkpoints"]],
        [Path(p) for p in data["samples"]],
        data["peak_memory_mb"],
        data["report"],
        data["phase_seconds"],
        read_lora(lora).info if lora else None,
        Evaluation.model_validate(data["evaluation"]) if data["evaluation"] else None,
        {int(k): Path(v) for k, v in data["alternatives"].items()},
    )


def error_to_json(exc: BaseException) -> bytes:
    """A rank's failure, as the error the caller will raise: a domain error keeps its class and setting;
    anything else (a collective that broke because another rank died, say) is only named."""
    if isinstance(exc, LoraStudioError) and type(exc) is getattr(errors, type(exc).__name__, None):
        template = str(exc.args[0]) if exc.args else ""
        return json.dumps(
            {"class": type(exc).__name__, "message": template, "setting": exc.setting, "aside": exc.aside}
        ).encode()
    first = (str(exc).splitlines() or [""])[0][:200]
    # A collective that broke (gloo, NCCL) says another rank died first; anything else is this rank's own fault.
    peer = isinstance(exc, PeerLost | getattr(torch.distributed, "DistError", PeerLost))
    return json.dumps({"class": "peer" if peer else None, "message": f"{type(exc).__name__}: {first}"}).encode()


def _outcome(folder: Path, cfg: TrainConfig, code: int | None) -> TrainResult:
    """The result rank 0 wrote; else a rank's domain error as itself; else why the ranks ended: a rank that
    left no word was killed (the others then fail in their collectives), or every rank failed unexpectedly."""
    result = folder / "result.json"
    if result.exists() and code == 0:
        return _result_from_json(json.loads(result.read_text()))
    failures = [json.loads(p.read_text()) for p in sorted(folder.glob("error-*.json"))]
    for d in failures:
        cls = getattr(errors, d["class"] or "", None)
        if isinstance(cls, type) and issubclass(cls, LoraStudioError) and cls is not errors.InsufficientCredits:
            raise cls(d["message"], setting=d["setting"], aside=d["aside"])
    from lorastudio.engine.training.checkpoint import list_checkpoints

    last = list_checkpoints(cfg.run_dir)
    aside = "$resume continues from the last checkpoint" + (
        f" ({last[-1].name})" if last else " (none was written yet)"
    )
    own = [d for d in failures if d["class"] != "peer"]
    if own:  # a rank failed of itself (a bug, a library error); the others were stopped
        raise TrainingFailed(
            f"the training failed unexpectedly ({own[0]['message']}); its output is in launch/torchrun.log in "
            "the run folder",
            aside=aside,
        )
    raise TrainingFailed(
        f"one of the {cfg.devices} training processes ended without a result (exit code {code}: killed, or out of "
        "host memory); the others were stopped. Its output is in launch/torchrun.log in the run folder",
        setting="resume",
        aside=aside,
    )
