import pytest
from PIL import Image, ImageFilter

from lorastudio.engine.data.buckets import bucket_for, fit_to_bucket
from lorastudio.engine.data.dataset import make_caption, scan_dataset
from lorastudio.engine.data.synthetic import render_figure, write_reference_set
from lorastudio.engine.training.presets import PRESETS, get_preset
from lorastudio.errors import Invalid, NotFound


def scan(folder, kind="character", resolution=128, **kw):
    return scan_dataset(
        folder,
        kind=kind,
        trigger="johnhero",
        preset=get_preset(None, kind),
        resolution=resolution,
        max_pixels=64_000_000,
        **kw,
    )


def by_name(report):
    return {r["path"].rsplit("/", 1)[-1]: r for r in report.to_dict()["images"]}


def test_bad_images_are_reported_and_skipped_the_rest_kept(tmp_path):
    write_reference_set(tmp_path, 6, size=160)
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    render_figure(50, 160).save(tmp_path / "anim.gif.png", format="GIF")
    Image.open(tmp_path / "ref_000.png").save(tmp_path / "zz_copy_of_0.png")
    render_figure(51, 40).save(tmp_path / "tiny.png")
    render_figure(52, 160).filter(ImageFilter.GaussianBlur(4)).save(tmp_path / "blurry.png")
    render_figure(1, 160).resize((150, 150)).save(tmp_path / "zz_near_1.png")
    report, items = scan(tmp_path)
    rows = by_name(report)
    assert rows["empty.png"]["problems"][0]["code"] == "empty_file"
    assert rows["broken.jpg"]["problems"][0]["code"] in ("corrupt", "not_an_image")
    assert rows["anim.gif.png"]["problems"][0]["code"] == "unsupported_format"
    assert rows["zz_copy_of_0.png"]["problems"][0]["code"] == "duplicate"
    assert rows["tiny.png"]["problems"][0]["code"] == "too_small"
    assert {p["code"] for p in rows["blurry.png"]["problems"]} == {"blurry"}
    assert "near_duplicate" in {p["code"] for p in rows["zz_near_1.png"]["problems"]}
    skipped = {n for n, r in rows.items() if r["status"] == "skipped"}
    assert skipped == {"empty.png", "broken.jpg", "anim.gif.png", "zz_copy_of_0.png", "tiny.png"}
    assert len(items) == 8 and report.usable  # 6 refs + blurry + near duplicate (warnings only)
    assert all(r["status"] == "ok" for n, r in rows.items() if n.startswith("ref_"))


def test_image_count_against_the_guide(tmp_path):
    write_reference_set(tmp_path, 3, size=160)
    report, _ = scan(tmp_path)
    assert not report.usable
    note = report.notes[0]
    assert note.code == "too_few_images" and "at least 5" in note.message and "15-25" in note.message
    write_reference_set(tmp_path, 7, size=160)
    report, _ = scan(tmp_path)
    assert report.usable and report.notes[0].code == "few_images"
    report, _ = scan(tmp_path, kind="fighting_style")
    assert not report.usable and "20-40" in report.notes[0].message


def test_low_resolution_warns_below_training_resolution(tmp_path):
    write_reference_set(tmp_path, 5, size=100)
    report, items = scan(tmp_path, resolution=128)
    assert len(items) == 5
    assert all("low_resolution" in {p.code for p in r.problems} for r in report.images)


def test_captions_always_contain_the_trigger(tmp_path):
    assert make_caption(None, "johnhero", "a person") == ("johnhero, a person", "generated")
    assert make_caption("a man kicking", "johnhero", "x") == ("johnhero, a man kicking", "sidecar")
    assert make_caption("johnhero kicks", "johnhero", "x") == ("johnhero kicks", "sidecar")
    write_reference_set(tmp_path, 5, size=160)
    (tmp_path / "ref_002.txt").write_text("side kick,  night street\n")
    _, items = scan(tmp_path)
    captions = {i.path.name: i.caption for i in items}
    assert captions["ref_002.png"] == "johnhero, side kick, night street"
    assert captions["ref_000.png"] == "johnhero, a person"


def test_bad_trigger_and_missing_folder(tmp_path):
    with pytest.raises(Invalid, match="one word"):
        scan_dataset(
            tmp_path,
            kind="character",
            trigger="john hero",
            preset=PRESETS["character"],
            resolution=64,
            max_pixels=10**8,
        )
    with pytest.raises(NotFound):
        scan(tmp_path / "nope")


def test_buckets_are_multiples_of_64_and_never_upscale():
    assert bucket_for(1024, 1024, 768) == (768, 768)
    w, h = bucket_for(1200, 800, 768)
    assert w % 64 == 0 and h % 64 == 0 and w * h <= 768 * 768 and w > h
    assert bucket_for(300, 200, 768) == (256, 192)  # small image: its own size, rounded down
    fitted = fit_to_bucket(render_figure(1, 300).resize((300, 200)), 768)
    assert fitted.image.size == (256, 192) and fitted.original_size == (200, 300)


def test_presets_match_the_guide():
    c, f = PRESETS["character"], PRESETS["fighting_style"]
    assert (c.steps_range, c.learning_rate, c.network_dim, c.network_alpha, c.resolution, c.batch_size) == (
        (1000, 1500),
        1e-4,
        64,
        32,
        768,
        1,
    )
    assert (f.steps_range, f.learning_rate, f.dim_range, f.resolution, f.batch_size) == (
        (1500, 2000),
        8e-5,
        (32, 48),
        768,
        2,
    )
    assert 16 <= f.network_alpha <= 24 and 32 <= f.network_dim <= 48
    assert PRESETS["character-hires"].resolution == 1024
    assert {"pose", "visual_style", "pose-hires", "visual_style-hires"} <= set(PRESETS)
