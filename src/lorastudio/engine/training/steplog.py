"""What the training loop reads back from the device: losses in batches, and (when profiling) phase times.

Reading a loss with `.item()` makes the host wait until the device has finished the step, so the
next step cannot be queued behind it: on a GPU every step then ends with an idle gap. The loss of each
step stays a device tensor until `LossLog.read`, which copies all waiting ones in one transfer.
"""

from __future__ import annotations

import time

import torch


class LossLog:
    """Per-step losses kept on the device; `read` fetches them all with one host sync."""

    def __init__(self, every_seconds: float = 0.5):
        self.every_seconds = every_seconds
        self._steps: list[int] = []
        self._values: list[torch.Tensor] = []
        self._last_read = time.perf_counter()

    def add(self, step: int, loss: torch.Tensor) -> None:
        """Keep the step's loss (a 0-d tensor) without reading it."""
        self._steps.append(step)
        self._values.append(loss.detach())

    def due(self) -> bool:
        """True once `every_seconds` have passed since the last read (the progress cadence)."""
        return bool(self._steps) and time.perf_counter() - self._last_read >= self.every_seconds

    def read(self) -> list[tuple[int, float]]:
        """Every waiting (step, loss), oldest first; one device-to-host copy."""
        if not self._steps:
            return []
        values = torch.stack(self._values).float().cpu().tolist()
        read = list(zip(self._steps, values, strict=True))
        self._steps, self._values, self._last_read = [], [], time.perf_counter()
        return read


class PhaseTimer:
    """Seconds spent per phase of a step (`--profile`). Each mark waits for the device, so the figures
    are true but the run is slower on a GPU; when off, `mark` does nothing and costs nothing."""

    def __init__(self, device: torch.device, enabled: bool):
        self.device, self.enabled = device, enabled
        self.seconds: dict[str, float] = {}
        self._t = time.perf_counter()

    def mark(self, phase: str) -> None:
        """Charge the time since the previous mark to `phase`."""
        if not self.enabled:
            return
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        now = time.perf_counter()
        self.seconds[phase] = self.seconds.get(phase, 0.0) + now - self._t
        self._t = now

    def result(self) -> dict[str, float] | None:
        """Seconds per phase, rounded; None when profiling was off."""
        return {k: round(v, 4) for k, v in self.seconds.items()} if self.enabled else None
