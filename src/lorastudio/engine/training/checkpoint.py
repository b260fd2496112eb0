"""Training checkpoints as plain safetensors: LoRA weights, optimizer state, step and config in metadata.

No pickle: tensors go in the file, everything else is JSON in the header. Written atomically, so a
crash mid-write leaves the previous checkpoint as the latest complete one.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from lorastudio.engine.fileio.tensorfile import read_safetensors, write_safetensors
from lorastudio.errors import Invalid

FORMAT = "lorastudio-checkpoint-1"
_NAME = re.compile(r"checkpoint-(\d+)\.safetensors$")


@dataclass
class Checkpoint:
    """A loaded checkpoint."""

    step: int
    lora: dict[str, torch.Tensor]  # trainable parameter name -> tensor
    optimizer: dict
    loss_history: list[tuple[int, float]]
    config: dict


def save_checkpoint(
    run_dir: Path,
    *,
    step: int,
    params: dict[str, torch.Tensor],
    optimizer: torch.optim.Optimizer,
    loss_history: list[tuple[int, float]],
    config: dict,
    keep: int,
) -> Path:
    """Write checkpoint-<step>.safetensors and delete all but the newest `keep`."""
    tensors = {f"lora.{k}": v for k, v in params.items()}
    opt_state = optimizer.state_dict()
    scalars: dict[str, dict] = {}
    for idx, state in opt_state["state"].items():
        for key, value in state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"opt.{idx}.{key}"] = value
            else:
                scalars.setdefault(str(idx), {})[key] = value
    meta = {
        "format": FORMAT,
        "step": str(step),
        "param_groups": json.dumps(opt_state["param_groups"]),
        "opt_scalars": json.dumps(scalars),
        "loss_history": json.dumps(loss_history),
        "config": json.dumps(config, default=str),
    }
    path = write_safetensors(run_dir / "checkpoints" / f"checkpoint-{step:06d}.safetensors", tensors, meta)
    for old in list_checkpoints(run_dir)[:-keep]:
        old.unlink(missing_ok=True)
    return path


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    folder = run_dir / "checkpoints"
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.search(p.name))]
    return [p for _, p in sorted(found)]


def load_checkpoint(path: Path) -> Checkpoint:
    """Read a checkpoint written by save_checkpoint; a damaged one is named, with the earlier ones."""
    earlier = [p.name for p in list_checkpoints(path.parent.parent) if p != path]
    hint = (
        f"it is damaged; delete it and $resume continues from {earlier[-1]}"
        if earlier
        else "it is damaged and no earlier checkpoint is kept; start the run again without $resume"
    )
    tensors, meta = read_safetensors(path, hint=hint)
    if meta.get("format") != FORMAT:
        raise Invalid(f"{path.name} is not a LoRA Studio training checkpoint")
    try:
        state: dict[int, dict] = {}
        for key, value in tensors.items():
            if key.startswith("opt."):
                _, idx, name = key.split(".", 2)
                state.setdefault(int(idx), {})[name] = value
        for idx, values in json.loads(meta["opt_scalars"]).items():
            state.setdefault(int(idx), {}).update(values)
        return Checkpoint(
            step=int(meta["step"]),
            lora={k[5:]: v for k, v in tensors.items() if k.startswith("lora.")},
            optimizer={"state": state, "param_groups": json.loads(meta["param_groups"])},
            loss_history=[(int(s), float(v)) for s, v in json.loads(meta["loss_history"])],
            config=json.loads(meta["config"]),
        )
    except (KeyError, ValueError, TypeError, AttributeError) as exc:
        raise Invalid(f"{path.name}: {hint} (its header is garbled: {exc})") from exc
