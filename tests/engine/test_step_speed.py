"""What makes a training step fast without changing what it computes: losses read in batches (no host
sync per step), phase timing on request, precision 'auto' by device and model."""

import pytest
import torch

from lorastudio.engine.models.device import cpu_has_bf16, resolve_precision
from lorastudio.engine.training.steplog import LossLog, PhaseTimer
from lorastudio.engine.training.train import train_lora
from lorastudio.errors import Invalid
from tests.conftest import tiny_config


def test_losses_stay_on_the_device_until_one_read():
    log = LossLog(every_seconds=3600)
    for step in range(1, 4):
        log.add(step, torch.tensor(step / 10))
    assert not log.due()  # an hour has not passed: nothing is read yet
    assert log.read() == [(1, pytest.approx(0.1)), (2, pytest.approx(0.2)), (3, pytest.approx(0.3))]
    assert log.read() == [] and not LossLog(every_seconds=0).due()  # empty: nothing is due


def test_reading_the_loss_does_not_grow_with_the_steps(settings, figure_dir, tmp_path, monkeypatch):
    """An `.item()` per step makes a GPU wait for every step; the loop may read a few times, not per step."""
    import sys

    calls = []
    item = torch.Tensor.item

    def spy(self):
        # Ours only: torch's per-tensor AdamW reads its step counters, which stay on the host anyway.
        if "lorastudio" in sys._getframe(1).f_code.co_filename:
            calls.append(1)
        return item(self)

    monkeypatch.setattr(torch.Tensor, "item", spy)
    counts, events = [], {}
    for steps in (4, 16):
        calls.clear()
        seen = events.setdefault(steps, [])
        result = train_lora(
            tiny_config(figure_dir, tmp_path / str(steps), steps=steps), settings=settings, on_progress=seen.append
        )
        counts.append(len(calls))
        assert [s for s, _ in result.loss_history] == list(range(1, steps + 1))
    assert counts[1] - counts[0] < 4, counts  # 12 more steps, (almost) no more reads
    # Every step is still announced with its loss, in order, and the latents cache counts its images.
    train = [e for e in events[16] if e.phase == "train"]
    assert [e.step for e in train] == list(range(1, 17)) and all(e.loss is not None for e in train)
    cache = [e for e in events[16] if e.phase == "cache" and e.total]
    assert cache and cache[-1].step == cache[-1].total == 8


def test_profile_times_each_phase_of_a_step(settings, figure_dir, tmp_path):
    result = train_lora(tiny_config(figure_dir, tmp_path, steps=3, profile=True), settings=settings)
    phases = result.phase_seconds
    assert {"data and VAE", "text encoder", "forward", "backward", "optimizer", "loss read"} <= set(phases)
    assert all(v >= 0 for v in phases.values()) and phases["forward"] > 0 and phases["backward"] > 0
    assert result.to_dict()["phase_seconds"] == phases
    plain = train_lora(tiny_config(figure_dir, tmp_path / "plain", steps=2), settings=settings)
    assert plain.phase_seconds is None


def test_phase_timer_off_records_nothing():
    timer = PhaseTimer(torch.device("cpu"), enabled=False)
    timer.mark("forward")
    assert timer.result() is None


def test_auto_precision_follows_the_device_and_the_model():
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu, "tiny-sd15") == "no"  # bf16 is slower on tiny shapes
    assert resolve_precision("auto", cpu, "toyworld") == "no"
    assert resolve_precision("auto", cpu, "sd15") == ("bf16" if cpu_has_bf16() else "no")
    assert resolve_precision("auto", cpu) == "no"
    assert resolve_precision("bf16", cpu, "tiny-sd15") == "bf16"  # what is asked for explicitly stands
    with pytest.raises(Invalid, match="fp16 training needs a GPU"):
        resolve_precision("fp16", cpu, "sd15")


def test_threads_follow_the_cores_a_container_allows(tmp_path, monkeypatch):
    from lorastudio.engine.models.device import available_cores, threads_per_process

    quota = tmp_path / "cpu.max"
    quota.write_text("150000 100000\n")  # docker --cpus 1.5
    assert available_cores(quota) == min(2, available_cores(tmp_path / "none"))
    quota.write_text("max 100000\n")
    assert available_cores(quota) == available_cores(tmp_path / "none") >= 1
    quota.write_text("garbage")
    assert available_cores(quota) >= 1
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert threads_per_process(10_000) == 1 and threads_per_process(1) == available_cores()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # what the operator set is a cap, never raised
    assert threads_per_process(1) == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "lots")
    assert threads_per_process(1) == available_cores()


@pytest.mark.parametrize("samples", [False, True])
def test_what_the_caches_replace_is_freed_unless_samples_need_it(settings, figure_dir, tmp_path, monkeypatch, samples):
    from lorastudio.engine.training import train as train_module

    loaded, load = [], train_module.load_base_model

    def load_and_keep(*args, **kwargs):  # the real loader; the test keeps a handle on the base it made
        loaded.append(load(*args, **kwargs))
        return loaded[-1]

    monkeypatch.setattr(train_module, "load_base_model", load_and_keep)
    extra = dict(sample_every=2, sample_prompts=["johnhero kick"], sample_steps=1) if samples else {}
    result = train_lora(tiny_config(figure_dir, tmp_path, steps=2, **extra), settings=settings)
    assert result.lora_path.is_file()
    base = loaded[0]
    devices = {
        part: {p.device.type for p in module.parameters()}
        for part, module in [("vae", base.pipe.vae), ("text", base.text_encoders[0]), ("unet", base.unet)]
    }
    assert devices["unet"] == {"cpu"}  # still trained
    expect = {"cpu"} if samples else {"meta"}
    assert devices["vae"] == expect and devices["text"] == expect
