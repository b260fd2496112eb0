"""The studio treats the transformer families like any other: a worker advertises only the families whose smallest
job fits its memory (so a FLUX.1 job never reaches a card that cannot hold it), and the estimate knows each
family's speed."""

from __future__ import annotations

from lorastudio.studio import jobs
from lorastudio.studio.accounts import local_user
from lorastudio.studio.credits import estimate
from lorastudio.studio.db import make_engine, session_factory
from lorastudio.studio.jobs import Capabilities, detect, generation_memory_mb, training_memory_mb
from tests.jobrequests import sample_request


def _caps(memory_gb: float) -> Capabilities:
    """What `lorastudio worker --memory-gb N` (no --family) advertises on this machine."""
    return detect("cpu", memory_gb=memory_gb, families=None)


def test_a_worker_advertises_the_families_whose_smallest_job_fits_its_memory():
    small, big = _caps(8), _caps(48)
    assert small.memory_mb == 8 * 1024
    assert "flux1" not in small.families and "qwen-image" not in small.families
    assert {"sd15", "toyworld", "tiny-flux1", "tiny-qwen-image"} <= set(small.families)  # built-ins run anywhere
    assert {"flux1", "flux2-klein", "z-image", "sdxl", "sd15"} <= set(big.families)
    # Qwen-Image generation holds its 20B transformer and the 7B Qwen2.5-VL that encodes each prompt: 60 GB
    assert "qwen-image" not in big.families and "qwen-image" in _caps(80).families
    assert "flux1" in _caps(40).families and "flux1" not in _caps(32).families  # 37 GB with T5-XXL beside it
    assert detect("cpu", memory_gb=8, families=("flux1",)).families == ("flux1",)  # --family is taken as given


def test_the_worker_says_which_families_it_left_out_and_why():
    from lorastudio.cli.studio import advertised

    words = advertised(_caps(8))
    assert "8.0 GB" in words and "flux1 (needs 37.0 GB)" in words and "--family" in words
    assert "sd15" not in words.split("not ")[1]  # only the left-out ones are listed with their need
    assert advertised(_caps(200)) == "families: all of them fit this device's memory"


def test_an_8gb_worker_never_claims_a_flux1_job(client, studio_settings):
    factory = session_factory(make_engine(studio_settings))
    with factory() as session:
        owner = local_user(session)
        specs = [
            ("training", "flux1", training_memory_mb("flux1", "flux1-dev", resolution=1024, batch_size=1)),
            ("generation", "flux1", generation_memory_mb("flux1", "flux1-dev", width=None, height=None, batch=1)),
            ("generation", "sd15", generation_memory_mb("sd15", "sd15", width=512, height=512, batch=1)),
        ]
        rows = [
            jobs.add_job(session, owner_id=owner, request=sample_request(t), family=f, memory_mb=m) for t, f, m in specs
        ]
        session.commit()
        flux_training, flux_generation, sd15_generation = (r.id for r in rows)

    def claim(name: str, caps: Capabilities) -> int | None:
        return jobs.claim(
            factory,
            worker=name,
            lease_seconds=30,
            types=("training", "generation"),
            families=caps.families,
            memory_mb=caps.memory_mb,
        )

    small = _caps(8)
    assert claim("small", small) == sd15_generation  # skips both older FLUX.1 jobs
    assert claim("small", small) is None
    # Told it loads flux1 (--family flux1) it still cannot take them: each job's own memory need is checked too.
    assert claim("small", Capabilities("cpu", 8 * 1024, ("flux1",), "h")) is None
    big = _caps(48)
    assert claim("big", big) == flux_training
    assert claim("big", big) == flux_generation


def test_a_flux1_training_is_estimated_slower_than_an_sd15_one_at_the_same_steps(client, studio_settings):
    factory = session_factory(make_engine(studio_settings))

    def minutes(family: str, resolution: int) -> float:
        with factory() as session:
            est = estimate(
                session,
                kind="character",
                images=20,
                steps=1500,
                batch_size=1,
                resolution=resolution,
                family=family,
                credits_per_minute=studio_settings.credits_per_gpu_minute,
                dollars_per_gpu_hour=studio_settings.dollars_per_gpu_hour,
            )
        return est.minutes[0]

    assert minutes("flux1", 1024) > 2 * minutes("sd15", 768)  # each at its presets' resolution
    assert minutes("flux1", 1024) > minutes("sd15", 1024)  # and at the same pixels
    assert minutes("qwen-image", 1024) > minutes("flux1", 1024) > minutes("flux2-klein", 1024)
