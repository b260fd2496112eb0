import re
import shutil

import pytest
import torch
from diffusers import StableDiffusionPipeline
from safetensors.torch import load_file

from lorastudio.cli.common import FLAGS
from lorastudio.engine.data.buckets import fit_to_bucket
from lorastudio.engine.data.dataset import list_images
from lorastudio.engine.data.images import open_image
from lorastudio.engine.data.synthetic import write_reference_set
from lorastudio.engine.models.denoisers.common import encode_latents
from lorastudio.engine.training.checkpoint import list_checkpoints
from lorastudio.engine.training.parts import to_pixels
from lorastudio.engine.training.train import train_lora
from lorastudio.errors import Invalid, NaNLoss, OutOfMemory, words
from lorastudio.web.errors import words_for_web
from tests.conftest import tiny_config


def denoise_loss(model_dir, lora_path, folder, prompt="johnhero, a person") -> float:
    """Fixed-noise denoising error of the model (+LoRA) on the training pictures: lower = learned them."""
    pipe = StableDiffusionPipeline.from_pretrained(model_dir, safety_checker=None)
    if lora_path:
        pipe.load_lora_weights(str(lora_path))
    pixels = torch.stack(
        [to_pixels(fit_to_bucket(open_image(p, max_pixels=10**8).image, 64)) for p in list_images(folder)]
    )
    latents = encode_latents(pipe.vae, pixels)
    gen = torch.Generator().manual_seed(0)
    total = 0.0
    with torch.no_grad():
        cond = pipe.encode_prompt(prompt, "cpu", 1, False)[0].expand(len(latents), -1, -1)
        for t in (100, 300, 500, 700, 900):
            noise = torch.randn(latents.shape, generator=gen)
            ts = torch.full((len(latents),), t)
            noisy = pipe.scheduler.add_noise(latents, noise, ts)
            total += torch.nn.functional.mse_loss(pipe.unet(noisy, ts, cond).sample, noise).item()
    return total / 5


def test_training_learns_the_pictures(settings, figure_dir, tmp_path):
    cfg = tiny_config(figure_dir, tmp_path, steps=60, network_dim=8, network_alpha=8, learning_rate=2e-3)
    result = train_lora(cfg, settings=settings)
    assert result.lora_path.exists() and result.steps_done == 60 and not result.stopped
    assert len(result.loss_history) == 60 and (cfg.run_dir / "loss_history.json").exists()
    model = settings.models_dir / "tiny-sd15"
    before = denoise_loss(model, None, figure_dir)
    after = denoise_loss(model, result.lora_path, figure_dir)
    assert after < before * 0.9, (before, after)


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(settings, figure_dir, tmp_path):
    common = dict(steps=12, checkpoint_every=4, batch_size=2, gradient_accumulation=2, seed=5)
    straight = train_lora(tiny_config(figure_dir, tmp_path / "a", **common), settings=settings)

    cfg = tiny_config(figure_dir, tmp_path / "b", **common)
    calls = iter(range(1000))
    stopped = train_lora(cfg, settings=settings, should_stop=lambda: next(calls) >= 6)
    assert stopped.stopped and stopped.steps_done == 6 and stopped.lora_path is None
    assert [p.name for p in list_checkpoints(cfg.run_dir)][-1] == "checkpoint-000006.safetensors"
    resumed = train_lora(cfg.model_copy(update={"resume": True}), settings=settings)
    assert resumed.steps_done == 12
    a, b = load_file(straight.lora_path), load_file(resumed.lora_path)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert resumed.loss_history == straight.loss_history


def test_checkpoints_keep_only_the_last_k(settings, figure_dir, tmp_path):
    cfg = tiny_config(figure_dir, tmp_path, steps=10, checkpoint_every=2, keep_checkpoints=2)
    train_lora(cfg, settings=settings)
    assert [p.name for p in list_checkpoints(cfg.run_dir)] == [
        "checkpoint-000006.safetensors",
        "checkpoint-000008.safetensors",
    ]


def test_resume_refuses_changed_settings_and_missing_checkpoints(settings, figure_dir, tmp_path):
    with pytest.raises(Invalid, match="no checkpoint"):
        train_lora(tiny_config(figure_dir, tmp_path, resume=True), settings=settings)
    cfg = tiny_config(figure_dir, tmp_path, steps=4, checkpoint_every=2)
    train_lora(cfg, settings=settings)
    with pytest.raises(Invalid, match="network_dim"):
        train_lora(tiny_config(figure_dir, tmp_path, steps=4, network_dim=8, resume=True), settings=settings)


def test_bad_images_are_skipped_and_the_rest_trains(settings, tmp_path):
    folder = tmp_path / "mixed"
    write_reference_set(folder, 5, size=96)
    (folder / "zero.png").write_bytes(b"")
    (folder / "junk.jpg").write_bytes(b"garbage")
    result = train_lora(tiny_config(folder, tmp_path, steps=2), settings=settings)
    assert result.images_used == 5
    skipped = [i for i in result.report["images"] if i["status"] == "skipped"]
    assert len(skipped) == 2


def test_too_few_images_is_refused_before_loading_a_model(settings, tmp_path):
    folder = tmp_path / "few"
    write_reference_set(folder, 2, size=96)
    cfg = tiny_config(folder, tmp_path, base="/does/not/exist")  # never reached: dataset fails first
    with pytest.raises(Invalid, match="needs at least 4"):
        train_lora(cfg, settings=settings)


def test_nan_loss_stops_with_a_clear_error(settings, figure_dir, tmp_path):
    broken = tmp_path / "broken-model"
    shutil.copytree(settings.models_dir / "tiny-sd15", broken)
    unet_file = next((broken / "unet").glob("*.safetensors"))
    from safetensors.torch import save_file

    weights = load_file(unet_file)
    weights["conv_in.weight"][0, 0, 0, 0] = float("nan")
    save_file(weights, unet_file)
    with pytest.raises(NaNLoss, match="learning rate"):
        train_lora(tiny_config(figure_dir, tmp_path, base=str(broken), steps=3), settings=settings)


def test_sdxl_family_trains_with_text_encoders_and_samples(settings, figure_dir, tmp_path):
    cfg = tiny_config(
        figure_dir,
        tmp_path,
        base="tiny-sdxl",
        steps=3,
        train_text_encoder=True,
        target="all",
        sample_every=3,
        sample_prompts=["johnhero kick"],
        sample_steps=2,
    )
    result = train_lora(cfg, settings=settings)
    keys = load_file(result.lora_path).keys()
    assert result.family == "tiny-sdxl" and len(result.samples) == 1 and result.samples[0].exists()
    assert any(k.startswith("lora_te1_text_model_encoder_layers_0_self_attn_q_proj") for k in keys)
    assert any(k.startswith("lora_te2_") for k in keys)
    assert any(k.startswith("lora_unet_input_blocks_1_0_in_layers_2") for k in keys)  # conv (target=all)


def test_invalid_settings_are_refused_with_the_field_named(figure_dir, tmp_path):
    with pytest.raises(Invalid, match="learning_rate"):
        tiny_config(figure_dir, tmp_path, learning_rate=-1)
    with pytest.raises(Invalid, match="unknown kind"):
        tiny_config(figure_dir, tmp_path, kind="dance")
    with pytest.raises(Invalid, match="unknown preset"):
        tiny_config(figure_dir, tmp_path, preset="nope")


@pytest.mark.parametrize(
    "error",
    [
        torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory"),
    ],
    ids=["cuda", "cpu"],
)
def test_out_of_memory_keeps_the_checkpoint_and_the_earlier_lora(settings, figure_dir, tmp_path, error):
    cfg = tiny_config(figure_dir, tmp_path, steps=4, checkpoint_every=1)
    cfg.output.write_bytes(b"an earlier version")
    calls = []

    def runs_out_at_step_3() -> bool:
        # should_stop runs on the training thread before every step, so what it raises surfaces exactly
        # as the allocator failing inside that step would (the supported fault-injection hook).
        calls.append(1)
        if len(calls) == 3:
            raise error
        return False

    with pytest.raises(OutOfMemory, match=r"step 3\. Lower the batch size \(now 1\)") as raised:
        train_lora(cfg, settings=settings, should_stop=runs_out_at_step_3)
    # Face-neutral words (what a job stores), with the setting to change; the CLI's words name its flags and
    # the checkpoint --resume continues from.
    assert raised.value.setting == "batch_size" and "resume" not in str(raised.value)
    web = words_for_web(raised.value)  # a web user cannot resume a failed job: no --resume, no checkpoint file
    assert web.startswith("the cpu device ran out of memory at step 3. Lower batch_size (now 1) or resolution")
    assert "resume" not in web and "--" not in web and "checkpoint-0" not in web
    cli_words = words(raised.value, FLAGS)
    assert re.search(r"Lower --batch-size .* --resume .* \(checkpoint-000002\.safetensors\)", cli_words)
    assert cfg.output.read_bytes() == b"an earlier version"
    resumed = train_lora(cfg.model_copy(update={"resume": True}), settings=settings)
    assert resumed.steps_done == 4 and resumed.lora_path == cfg.output
