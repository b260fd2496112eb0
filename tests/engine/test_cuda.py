"""The CUDA path: mixed precision, gradient checkpointing, memory. Skipped where no GPU is visible."""

import pytest
import torch
from diffusers import StableDiffusionPipeline

from lorastudio.engine.training.train import train_lora
from tests.conftest import tiny_config

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_mixed_precision_training_on_cuda(settings, figure_dir, tmp_path, precision):
    cfg = tiny_config(
        figure_dir,
        tmp_path,
        device="cuda",
        precision=precision,
        steps=20,
        resolution=128,
        gradient_checkpointing=True,
        checkpoint_every=10,
    )
    result = train_lora(cfg, settings=settings)
    assert all(torch.isfinite(torch.tensor(loss)) for _, loss in result.loss_history)
    assert result.peak_memory_mb and result.peak_memory_mb > 0
    pipe = StableDiffusionPipeline.from_pretrained(settings.models_dir / "tiny-sd15", dtype=torch.float16)
    pipe.to("cuda")
    pipe.load_lora_weights(str(result.lora_path))
    image = pipe("johnhero", num_inference_steps=2, height=64, width=64, output_type="np").images[0]
    assert image.shape == (64, 64, 3)
    print(f"{precision}: peak {result.peak_memory_mb:.1f} MB, {result.steps_done / result.seconds:.1f} steps/s")


def test_cuda_resume_matches_uninterrupted(settings, figure_dir, tmp_path):
    common = dict(device="cuda", precision="no", steps=8, checkpoint_every=4)
    a = train_lora(tiny_config(figure_dir, tmp_path / "a", **common), settings=settings)
    cfg = tiny_config(figure_dir, tmp_path / "b", **common)
    calls = iter(range(100))
    train_lora(cfg, settings=settings, should_stop=lambda: next(calls) >= 4)
    b = train_lora(cfg.model_copy(update={"resume": True}), settings=settings)
    from safetensors.torch import load_file

    wa, wb = load_file(a.lora_path), load_file(b.lora_path)
    assert all(torch.allclose(wa[k].float(), wb[k].float(), atol=1e-3) for k in wa)


def test_generation_on_cuda_fp16(settings, trained):
    import numpy as np

    from lorastudio.config import Settings
    from lorastudio.engine.generation.generate import GenerateRequest, generate
    from lorastudio.engine.generation.pipecache import PipelineCache

    cache = PipelineCache(Settings(home=settings.home, device="cuda"))
    assert cache.dtype == torch.float16

    def run(**kw):
        req = GenerateRequest.build(prompt="johnhero", base="tiny-sd15", seed=3, steps=4, **kw)
        return np.asarray(generate(cache, req).images[0], dtype=np.int16)

    plain = run()
    hero = [{"lora": str(trained["tiny-sd15"]), "strength": 1.0}]
    assert np.array_equal(run(), plain)
    assert np.abs(run(loras=hero) - plain).mean() > 1.0
    assert np.array_equal(run(loras=[{"lora": str(trained["tiny-sd15"]), "strength": 0}]), plain)
    run(loras=hero, n=2, fuse=True)  # explicit fuse on fp16, then the plain model again
    print("fp16 plain drift after fuse/unfuse:", int(np.abs(run() - plain).max()))


@pytest.mark.parametrize("precision", ["bf16", "no"])
def test_training_steps_do_not_wait_for_the_gpu(settings, figure_dir, tmp_path, precision):
    """CUDA's sync debug mode warns at every operation that makes the host wait for the GPU; their number
    must not grow with the steps (loading, caching and the 0.5 s loss reads may wait, a step may not)."""
    import warnings

    counts = []
    for steps in (4, 24):
        cfg = tiny_config(
            figure_dir,
            tmp_path / str(steps),
            device="cuda",
            precision=precision,
            steps=steps,
            max_grad_norm=1.0,
            min_snr_gamma=5.0,
        )
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                train_lora(cfg, settings=settings)
            finally:
                torch.cuda.set_sync_debug_mode("default")
        counts.append(sum("synchroniz" in str(w.message) for w in caught))
    assert counts[1] - counts[0] < 10, counts  # 20 more steps
