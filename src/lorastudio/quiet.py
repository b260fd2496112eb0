"""Silence the ML libraries' own progress bars and advisory warnings; our faces report progress."""

from __future__ import annotations

import importlib.abc
import importlib.util
import logging
import os
import sys
import warnings


def quiet_libraries() -> None:
    """Call once at an entry point, before importing torch/diffusers/transformers."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    warnings.filterwarnings("ignore", category=FutureWarning)
    # peft warns whenever a second adapter is loaded; stacking adapters is what generation does.
    warnings.filterwarnings("ignore", message="Already found a `peft_config`")
    # peft wraps a torchao-quantized base layer and warns that it cannot merge into it; we never merge in training.
    warnings.filterwarnings("ignore", message="TorchaoLoraLinear was instantiated without")
    for name in ("transformers", "diffusers", "peft", "huggingface_hub", "torchao"):
        logging.getLogger(name).setLevel(logging.ERROR)
    # Their own tqdm bars ("Loading weights", "Writing model shards") ignore the log level. transformers
    # reads HF_HUB_DISABLE_PROGRESS_BARS; diffusers is told when it is first imported, not here: importing
    # it costs seconds that commands which never load a model (db upgrade, users add) should not pay.
    if "diffusers.utils.logging" in sys.modules:
        _silence_diffusers(sys.modules["diffusers.utils.logging"])
    elif not any(isinstance(f, _AfterImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _AfterImport())


def _silence_diffusers(module) -> None:
    module.disable_progress_bar()


class _AfterImport(importlib.abc.MetaPathFinder):
    """Runs _silence_diffusers right after diffusers' logging module is imported, whoever imports it."""

    def find_spec(self, name, path, target=None):
        if name != "diffusers.utils.logging":
            return None
        sys.meta_path.remove(self)  # once is enough
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        run = spec.loader.exec_module

        def exec_module(module) -> None:
            run(module)
            _silence_diffusers(module)

        spec.loader.exec_module = exec_module
        return spec
