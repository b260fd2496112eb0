"""The pre-built fighting styles and their shipped toyworld LoRA files."""

import pytest

from lorastudio.config import Settings
from lorastudio.engine.generation.pipecache import PipelineCache
from lorastudio.engine.lora.file import read_lora
from lorastudio.engine.lora.fit import check_fits
from lorastudio.engine.models.base import load_base_model
from lorastudio.engine.toyworld.consistency import hit_rate, style_hit, style_prompts
from lorastudio.engine.toyworld.prebuilt import PREBUILT_STYLES, STYLES_DIR, prebuilt_lora_path, prebuilt_style
from lorastudio.engine.toyworld.world import HELD_OUT_STYLE, STYLES, all_words
from lorastudio.errors import NotFound


@pytest.fixture(scope="module")
def toy_settings(tmp_path_factory) -> Settings:
    # Its own data dir: the toyworld base ships in the package, so the session's tiny models are not needed.
    return Settings(home=tmp_path_factory.mktemp("prebuilt"), device="cpu")


def test_the_guide_four_styles_with_their_trigger_words():
    assert [(s.key, s.name, s.trigger) for s in PREBUILT_STYLES] == [
        ("boxing", "Professional Boxing", "boxingstyle"),
        ("kungfu", "Kung Fu Martial Arts", "kungfustyle"),
        ("mma", "Mixed Martial Arts", "mmastyle"),
        ("sword", "Sword Combat", "swordstyle"),
    ]
    words = set(all_words())
    for style in PREBUILT_STYLES:
        assert style.trigger == STYLES[style.key].trigger and style.phrases[0] == style.trigger
        # Each phrase is the style's trigger or one of its poses, in the toyworld tokenizer's own words.
        assert set(style.phrases) <= {style.trigger, *STYLES[style.key].poses}
        assert all(w in words for p in style.phrases for w in p.split())
    with pytest.raises(NotFound):
        prebuilt_lora_path("karate")


def test_shipped_files_load_fit_the_toyworld_base_and_say_what_they_are(toy_settings):
    base = load_base_model("toyworld", toy_settings)
    for style in PREBUILT_STYLES:
        path = prebuilt_lora_path(style.key)
        assert path.parent == STYLES_DIR and path.is_file() and path.stat().st_size < 1_000_000
        lora = read_lora(path)
        info = lora.info
        assert info.kind == "fighting_style" and info.trigger_words == [style.trigger]
        assert info.description == style.description and info.recommended_strength == style.strength
        assert not info.warnings
        check_fits(lora, base)
    assert (STYLES_DIR / "training_log.txt").is_file()


@pytest.mark.slow  # 8 s: benchmarks/consistency.py measures the same on 20 prompts
def test_sword_lora_draws_the_held_out_style_the_prompt_alone_does_not(toy_settings):
    style = prebuilt_style(HELD_OUT_STYLE)
    cache = PipelineCache(toy_settings)
    prompts = style_prompts(style.key, 3)
    lora = [{"lora": str(prebuilt_lora_path(style.key)), "strength": style.strength}]
    assert hit_rate(cache, prompts, [], style_hit, steps=20) == 0
    assert hit_rate(cache, prompts, lora, style_hit, steps=20) == 1
