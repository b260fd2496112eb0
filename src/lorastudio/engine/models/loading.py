"""One model load at a time per process.

transformers and diffusers build a model under context managers that patch torch for the whole process
(the default device set to `meta`, `init_empty_weights`), so two threads loading at once (a worker running a
job per GPU) see each other's patches: "Unsupported device type 'meta'". Loading is seconds beside the jobs
it starts, so a worker's jobs take turns at it and run side by side after."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import TypeVar

LOADING = threading.RLock()  # re-entrant: a loader may call another (a pipeline loads its text encoders)
F = TypeVar("F", bound=Callable)


def loads_alone(fn: F) -> F:
    """Run `fn` while no other thread of this process loads a model."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with LOADING:
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
