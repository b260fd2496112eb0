"""Block swap: keep some of a transformer's frozen blocks in host memory and bring each one to the
device only while it computes, in the forward pass and again in the backward pass.

A 12B FLUX.1 denoiser does not fit a 16-24 GB card in bf16 with its activations; with `count` of its
57 blocks swapped, the device holds the other blocks plus one swapped block at a time.

How (the scheme of musubi-tuner's and ai-toolkit's block swap and OneTrainer's layer offloading, our own
code): each swapped block's frozen tensors get a host copy (pinned on CUDA, so copies can be async), and
their device storage is resized to zero between uses. A forward pre-hook refills the storage from the
host; a forward hook frees it again. Weights are frozen, so nothing is ever copied back. The backward
pass needs the weights again (a Linear saves its weight to compute the input's gradient): the storage the
autograd graph saved is the same storage, so refilling it before the block's backward makes the saved
tensors valid again. Two identity autograd nodes do that: one on the block's outputs refills the block
when the backward reaches it, one on its inputs frees it when the block's backward is done.

Gradient checkpointing: the recomputation runs the block's forward inside the backward; the block is
already loaded then, and the forward hook leaves it loaded until the input node frees it. This works
with torch's non-reentrant checkpoint (what diffusers uses) and the reentrant one.

The LoRA's trainable parameters are not swapped: they are small and the optimizer updates them in place.
Copies are issued on the compute stream, so they do not overlap with compute yet (musubi-tuner does that
on a side stream); the saving in memory is the same, the step is slower by the copy time.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from lorastudio.errors import Invalid


def transformer_blocks(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The model's repeated blocks in the order they run: each top-level ModuleList, in turn."""
    return [block for child in model.children() if isinstance(child, torch.nn.ModuleList) for block in child]


class BlockSwap:
    """Keeps the last `count` blocks of `model` on the host, moving each to `device` around its use."""

    def __init__(self, model: torch.nn.Module, count: int, device: torch.device | str, *, trace: list | None = None):
        blocks = transformer_blocks(model)
        if not 0 <= count <= len(blocks):
            raise Invalid(
                f"$blocks_to_swap is {count} but {type(model).__name__} has {len(blocks)} blocks; "
                f"use 0 to {len(blocks)}",
                setting="blocks_to_swap",
            )
        self.device = torch.device(device)
        self.trace = trace  # (event, block index) pairs, for tests; None records nothing
        self.swapped = blocks[len(blocks) - count :]
        self._index = {id(b): len(blocks) - count + i for i, b in enumerate(self.swapped)}
        self._storages: dict[int, list[tuple[torch.UntypedStorage, torch.UntypedStorage]]] = {}
        self._loaded: set[int] = set()
        self._handles = []
        keep = {id(b) for b in self.swapped}
        for child in model.children():  # everything else goes to the device whole
            if isinstance(child, torch.nn.ModuleList):
                for block in child:
                    if id(block) not in keep:
                        block.to(self.device)
            else:
                child.to(self.device)
        for block in self.swapped:
            self._storages[id(block)] = self._park(block)
            self._handles.append(block.register_forward_pre_hook(self._before, with_kwargs=True))
            self._handles.append(block.register_forward_hook(self._after))

    def is_loaded(self, block: torch.nn.Module) -> bool:
        """True while the swapped block's frozen weights are on the device."""
        return id(block) in self._loaded

    def remove(self) -> None:
        """Stop swapping: the hooks go and the swapped blocks' frozen weights stay on the device."""
        for block in self.swapped:
            self._load(block)
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _park(self, block: torch.nn.Module) -> list[tuple[torch.UntypedStorage, torch.UntypedStorage]]:
        """Give the block's frozen tensors a host copy and an empty device storage; LoRA params go to the device."""
        for p in block.parameters():
            if p.requires_grad:
                p.data = p.data.to(self.device)
        by_storage: dict[int, list[torch.Tensor]] = {}
        for t in _frozen_leaves(block):
            by_storage.setdefault(t.untyped_storage().data_ptr(), []).append(t)
        pairs = []
        with torch.no_grad():
            for tensors in by_storage.values():
                source = tensors[0].untyped_storage()
                host = source.cpu() if source.device.type != "cpu" else source.clone()
                if self.device.type == "cuda":
                    host = host.pin_memory()
                # A fresh storage of our own: a tensor read from a safetensors file may sit on a memory map,
                # which cannot be resized; every tensor that shared the old storage shares the new one.
                storage = torch.UntypedStorage(host.nbytes(), device=self.device)
                storage.copy_(host)
                for t in tensors:
                    t.set_(storage, t.storage_offset(), t.size(), t.stride())
                storage.resize_(0)
                pairs.append((storage, host))
        return pairs

    def _load(self, block: torch.nn.Module) -> None:
        if id(block) in self._loaded:
            return
        for storage, host in self._storages[id(block)]:
            storage.resize_(host.nbytes())
            storage.copy_(host, non_blocking=True)
        self._loaded.add(id(block))
        self._record("load", block)

    def _free(self, block: torch.nn.Module) -> None:
        if id(block) not in self._loaded:
            return
        for storage, _host in self._storages[id(block)]:
            storage.resize_(0)
        self._loaded.discard(id(block))
        self._record("free", block)

    def _record(self, event: str, block: torch.nn.Module) -> None:
        if self.trace is not None:
            self.trace.append((event, self._index[id(block)]))

    def _before(self, block, args, kwargs):
        self._load(block)
        if not torch.is_grad_enabled():
            return None
        # When the backward has gone through this block, the gradients of its inputs are computed: free it.
        free = _OnBackward(lambda: self._free(block))
        return free.wrap(args), {k: free.wrap_one(v) for k, v in kwargs.items()}

    def _after(self, block, args, output):
        if _in_backward():
            return None  # checkpoint recomputing inside the backward: the block's backward comes next
        if torch.is_grad_enabled():
            output = _OnBackward(lambda: self._load(block)).wrap_output(output)
        self._free(block)
        return output


def swap_blocks(model: torch.nn.Module, count: int, device: torch.device | str) -> BlockSwap:
    """Keep the last `count` blocks of `model` on the host and the rest on `device`; see BlockSwap."""
    return BlockSwap(model, count, device)


def _frozen_leaves(block: torch.nn.Module):
    """The plain tensors behind the block's frozen parameters and buffers (a quantized weight is a tensor
    subclass: its int8 data and scales are the tensors that hold memory)."""
    seen = set()

    def leaves(t: torch.Tensor):
        if type(t) in (torch.Tensor, torch.nn.Parameter):
            yield t
        elif hasattr(t, "__tensor_flatten__"):
            names, _ = t.__tensor_flatten__()
            for name in names:
                yield from leaves(getattr(t, name))
        else:
            yield t

    frozen = [p for p in block.parameters() if not p.requires_grad] + list(block.buffers())
    for tensor in frozen:
        for leaf in leaves(tensor):
            if id(leaf) not in seen:
                seen.add(id(leaf))
                yield leaf


def _in_backward() -> bool:
    """True while autograd's engine runs (a checkpointed block being recomputed for its backward)."""
    return torch._C._current_graph_task_id() != -1


class _OnBackward:
    """Calls `callback` when the backward reaches the tensors it wraps (an identity in the forward)."""

    def __init__(self, callback: Callable[[], None]):
        self.callback = callback

    def wrap_one(self, value):
        if isinstance(value, torch.Tensor) and value.requires_grad:
            return _Identity.apply(self.callback, value)[0]
        return value

    def wrap(self, values: tuple) -> tuple:
        return tuple(self.wrap_one(v) for v in values)

    def wrap_output(self, output):
        if isinstance(output, torch.Tensor):
            return self.wrap_one(output)
        if isinstance(output, tuple):
            differentiable = [i for i, v in enumerate(output) if isinstance(v, torch.Tensor) and v.requires_grad]
            if not differentiable:
                return output
            # One node for all outputs: it runs once, when every output's gradient has arrived.
            wrapped = _Identity.apply(self.callback, *(output[i] for i in differentiable))
            out = list(output)
            for i, tensor in zip(differentiable, wrapped, strict=True):
                out[i] = tensor
            return tuple(out)
        return output


class _Identity(torch.autograd.Function):
    @staticmethod
    def forward(ctx, callback, *tensors):
        ctx.callback = callback
        return tuple(t.view_as(t) for t in tensors)

    @staticmethod
    def backward(ctx, *grads):
        ctx.callback()
        return (None, *grads)
