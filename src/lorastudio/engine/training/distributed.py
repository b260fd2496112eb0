"""One training on N processes (data parallel), seen from inside one of them: which rank this is, its
share of each global batch, the gradients summed over all ranks, and caches built once and shared.

The same object serves a single process (`Ranks.single()`), where every call is the identity, so the
training loop has one path. Ranks are started by torchrun (launch.py); this module only joins the group
that torchrun set up in the environment.

Gradients are summed with one all-reduce of one flat buffer per optimizer step rather than by wrapping the
model in DistributedDataParallel: a LoRA's gradients are a few MB, so overlapping their reduction with the
backward pass gains nothing measurable, while DDP would need `find_unused_parameters` around block swap and
gradient checkpointing, and would average over ranks where an uneven last batch needs a sum over samples.
Each rank's loss is its samples' share of the global batch's mean, so the sum over ranks is exactly the loss
(and the gradient) one process computes for the whole global batch."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from lorastudio.engine.models.device import resolve_device
from lorastudio.errors import Invalid

# A rank waits at the next all-reduce while rank 0 renders previews or scores a checkpoint, which may take
# minutes on a big model; a rank that died is noticed by torchrun in well under a second, not by this timeout.
COLLECTIVE_TIMEOUT = timedelta(hours=2)


class PeerLost(RuntimeError):
    """A collective broke: another rank of the run died (torchrun stops this one next)."""


@dataclass(frozen=True)
class Ranks:
    """This process's place in a data-parallel run."""

    world: int = 1
    rank: int = 0
    local_rank: int = 0

    @classmethod
    def single(cls) -> Ranks:
        """A run of one process."""
        return cls()

    @classmethod
    def joined(cls) -> Ranks:
        """The group torchrun started this process in (already initialized by `join`), or a single process."""
        if dist.is_available() and dist.is_initialized():
            return cls(dist.get_world_size(), dist.get_rank(), int(os.environ.get("LOCAL_RANK", 0)))
        return cls.single()

    @property
    def main(self) -> bool:
        """Rank 0: the one that reports progress, renders samples, scores and writes files."""
        return self.rank == 0

    def shard(self, indices: list[int]) -> tuple[int, int]:
        """This rank's slice [start, end) of a global batch: contiguous, the first ranks one longer when the
        batch does not divide (a rank may get none at the end of a bucket)."""
        n, w = len(indices), self.world
        base, extra = divmod(n, w)
        start = self.rank * base + min(self.rank, extra)
        return start, start + base + (1 if self.rank < extra else 0)

    def sum_gradients(self, params: list[torch.Tensor], extra: torch.Tensor) -> torch.Tensor:
        """Sum every parameter's gradient, and `extra` (loss, stop flag), over the ranks in one all-reduce;
        the gradients are replaced in place and the summed `extra` is returned. A rank that saw no sample
        this step adds zeros."""
        if self.world == 1:
            return extra
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.reshape(-1).float() for g in grads] + [extra.float().reshape(-1)])
        with _peers():
            dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        offset = 0
        for p, g in zip(params, grads, strict=True):
            n = g.numel()
            p.grad = flat[offset : offset + n].view_as(g).to(g.dtype)
            offset += n
        return flat[offset:]

    def share(self, count: int, compute, device: torch.device) -> list:
        """compute(list(range(count))), where `compute(indices)` returns one item per index, with each index
        computed by one rank only (rank i % world) and the results sent to all: a latent or text cache is
        built once, not N times. Items are tensors or dicts of them."""
        if self.world == 1:
            return list(compute(list(range(count))))
        mine_idx = list(range(self.rank, count, self.world))
        made = compute(mine_idx) if mine_idx else []
        mine = dict(zip(mine_idx, (_to(x, torch.device("cpu")) for x in made), strict=True))
        gathered: list[dict | None] = [None] * self.world
        # Objects travel pickled between our own ranks (a loopback group torchrun made), never from a user file.
        with _peers():
            dist.all_gather_object(gathered, mine)
        merged = {k: v for part in gathered for k, v in (part or {}).items()}
        return [_to(merged[i], device) for i in range(count)]

    def barrier(self) -> None:
        """Wait for every rank (nothing for one process)."""
        if self.world > 1:
            with _peers():
                dist.barrier()


@contextlib.contextmanager
def _peers():
    """A collective's failure (gloo and NCCL raise plain RuntimeErrors) as PeerLost."""
    try:
        yield
    except RuntimeError as exc:
        raise PeerLost(f"a collective with the other ranks failed: {exc}") from exc


def join(cfg, settings) -> Ranks:
    """Join the process group torchrun described in the environment: NCCL on CUDA, gloo elsewhere."""
    device = training_device(cfg, settings, int(os.environ.get("LOCAL_RANK", 0)))
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=COLLECTIVE_TIMEOUT)
    ranks = Ranks.joined()
    if ranks.world != cfg.devices:
        raise Invalid(f"torchrun started {ranks.world} processes for a run of $devices {cfg.devices}")
    return ranks


def training_device(cfg, settings, local_rank: int = 0) -> torch.device:
    """The device this process trains on: the settings' (or the run's own), and on CUDA the rank's card (the
    launcher narrowed CUDA_VISIBLE_DEVICES to the run's) or the one `device_ids` names for a single process."""
    device = resolve_device(settings.device if cfg.device == "auto" else cfg.device)
    if cfg.devices > 1 and device.type not in ("cuda", "cpu"):
        raise Invalid(
            f"training on {cfg.devices} devices needs CUDA GPUs (or a CPU, for a test); {device.type} runs one "
            "process: use $devices 1",
            setting="devices",
        )
    if cfg.device_ids and len(cfg.device_ids) != cfg.devices:
        raise Invalid(
            f"{len(cfg.device_ids)} device ids were given for a run of $devices {cfg.devices}; give one per device",
            setting="devices",
        )
    if device.type != "cuda":
        return device
    if cfg.devices > 1:
        found = torch.cuda.device_count()  # in a rank: the launcher's CUDA_VISIBLE_DEVICES, the run's own
        if cfg.devices > found and not cfg.device_ids:
            raise Invalid(
                f"training on {cfg.devices} GPUs was asked for but this machine has {found}; use $devices {found}",
                setting="devices",
            )
        return torch.device("cuda", local_rank)
    if cfg.device_ids:
        if cfg.device_ids[0] >= torch.cuda.device_count():
            raise Invalid(
                f"CUDA device {cfg.device_ids[0]} was asked for but {torch.cuda.device_count()} are visible",
                setting="device",
            )
        return torch.device("cuda", cfg.device_ids[0])
    return device


def leave() -> None:
    """Leave the process group, if this process joined one."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _to(item, device: torch.device):
    if isinstance(item, torch.Tensor):
        return item.to(device)
    if isinstance(item, dict):
        return {k: _to(v, device) for k, v in item.items()}
    if isinstance(item, list | tuple):
        return type(item)(_to(v, device) for v in item)
    return item
