"""Shared fixtures: one data dir per session with the tiny models built once, synthetic image folders."""

from __future__ import annotations

from pathlib import Path

import pytest

from lorastudio.config import Settings
from lorastudio.engine.data.synthetic import write_reference_set
from lorastudio.engine.models.tiny import ensure_tiny_model
from lorastudio.engine.training.config import TrainConfig
from lorastudio.quiet import quiet_libraries

quiet_libraries()


@pytest.fixture(scope="session")
def settings(tmp_path_factory) -> Settings:
    home = tmp_path_factory.mktemp("home")
    s = Settings(home=home, device="cpu")
    for name in ("tiny-sd15", "tiny-sdxl"):
        ensure_tiny_model(name, s.models_dir)
    return s


@pytest.fixture(scope="session")
def figure_dir(tmp_path_factory) -> Path:
    """Eight 128px pictures of one figure with captions - enough for the tiny models."""
    folder = tmp_path_factory.mktemp("figure")
    write_reference_set(folder, 8, seed=3, size=128, caption="johnhero, a person")
    return folder


@pytest.fixture(scope="session")
def trained(settings, figure_dir, tmp_path_factory) -> dict[str, Path]:
    """Small LoRAs trained hard enough to show: a character per family (text encoder included, so every
    key kind is exercised) and a fighting style for stacking."""
    from lorastudio.engine.training.train import train_lora

    out = {}
    jobs = {
        "tiny-sd15": dict(base="tiny-sd15"),
        "tiny-sdxl": dict(base="tiny-sdxl"),
        "style-sd15": dict(base="tiny-sd15", kind="fighting_style", trigger="kungfustyle", batch_size=1),
    }
    for name, extra in jobs.items():
        folder = tmp_path_factory.mktemp(name)
        cfg = tiny_config(
            figure_dir,
            folder,
            steps=6,
            learning_rate=5e-2,
            train_text_encoder=True,
            output=folder / f"{name}.safetensors",
            **extra,
        )
        out[name] = train_lora(cfg, settings=settings).lora_path
    return out


def tiny_config(images: Path, out: Path, **overrides) -> TrainConfig:
    """A fast training config on tiny-sd15 at 64px; tests override what they examine."""
    values = dict(
        images=images,
        trigger="johnhero",
        base="tiny-sd15",
        output=out / "lora.safetensors",
        run_dir=out / "run",
        steps=8,
        resolution=64,
        network_dim=4,
        network_alpha=2,
        learning_rate=1e-3,
        checkpoint_every=0,
        min_images=4,
        device="cpu",
    )
    values.update(overrides)
    return TrainConfig.from_preset(kind=values.pop("kind", "character"), **values)


@pytest.fixture
def run(settings, monkeypatch):
    """Invoke the `lorastudio` command in-process (typer's runner) on the session's data dir."""
    from typer.testing import CliRunner

    from lorastudio.cli import app

    monkeypatch.setenv("LORASTUDIO_HOME", str(settings.home))
    monkeypatch.setenv("LORASTUDIO_DEVICE", "cpu")
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None):
        return runner.invoke(app, [str(a) for a in args], input=input)

    return invoke
