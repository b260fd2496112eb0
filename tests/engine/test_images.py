import struct

import numpy as np
import pytest
from PIL import Image

from lorastudio.engine.data.images import ImageRejected, dhash, hamming, open_image, sharpness
from lorastudio.engine.data.synthetic import render_figure

LIMIT = 64_000_000


def save(img: Image.Image, path, **kw):
    img.save(path, **kw)
    return path


def test_png_and_jpeg_open_as_rgb(tmp_path):
    img = render_figure(1, 96)
    for name in ("a.png", "a.jpg"):
        opened = open_image(save(img, tmp_path / name), max_pixels=LIMIT)
        assert opened.image.mode == "RGB" and opened.image.size == (96, 96)


def test_format_is_decided_by_content_not_extension(tmp_path):
    path = save(render_figure(1, 64), tmp_path / "looks.png", format="GIF")
    with pytest.raises(ImageRejected) as exc:
        open_image(path, max_pixels=LIMIT)
    assert exc.value.code == "unsupported_format" and "GIF" in str(exc.value)
    jpeg_named_png = save(render_figure(1, 64), tmp_path / "really_jpeg.png", format="JPEG")
    assert open_image(jpeg_named_png, max_pixels=LIMIT).source_format == "JPEG"


@pytest.mark.parametrize(
    "content,code",
    [(b"", "empty_file"), (b"this is not an image at all", "not_an_image")],
)
def test_empty_and_non_image_files(tmp_path, content, code):
    path = tmp_path / "x.png"
    path.write_bytes(content)
    with pytest.raises(ImageRejected) as exc:
        open_image(path, max_pixels=LIMIT)
    assert exc.value.code == code


def test_truncated_file_is_corrupt(tmp_path):
    path = save(render_figure(2, 128), tmp_path / "t.jpg", quality=95)
    path.write_bytes(path.read_bytes()[:600])
    with pytest.raises(ImageRejected) as exc:
        open_image(path, max_pixels=LIMIT)
    assert exc.value.code == "corrupt"


def test_decompression_bomb_is_refused_before_decoding(tmp_path):
    path = save(Image.new("RGB", (64, 64)), tmp_path / "bomb.png")
    data = bytearray(path.read_bytes())
    # Rewrite the IHDR size to 60000x60000 (3.6 gigapixels); the CRC is recomputed so it parses.
    data[16:24] = struct.pack(">II", 60000, 60000)
    import zlib

    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF)
    path.write_bytes(bytes(data))
    with pytest.raises(ImageRejected) as exc:
        open_image(path, max_pixels=LIMIT)
    assert exc.value.code == "too_many_pixels"


def test_modes_convert_deterministically(tmp_path):
    base = render_figure(3, 64)
    rgba = base.convert("RGBA")
    rgba.putalpha(0)  # fully transparent -> white
    out = open_image(save(rgba, tmp_path / "alpha.png"), max_pixels=LIMIT).image
    assert np.asarray(out).min() == 255
    pal = open_image(save(base.convert("P"), tmp_path / "pal.png"), max_pixels=LIMIT)
    assert pal.image.mode == "RGB" and pal.source_mode == "P"
    cmyk = open_image(save(base.convert("CMYK"), tmp_path / "cmyk.jpg"), max_pixels=LIMIT)
    assert cmyk.image.mode == "RGB" and cmyk.source_mode == "CMYK"
    sixteen = Image.fromarray((np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16))
    out16 = open_image(save(sixteen, tmp_path / "16.png"), max_pixels=LIMIT)
    arr = np.asarray(out16.image)
    assert out16.image.mode == "RGB" and arr.max() > 200 and arr.min() == 0
    again = open_image(tmp_path / "16.png", max_pixels=LIMIT)
    assert again.pixel_sha256 == out16.pixel_sha256


def test_exif_orientation_is_applied(tmp_path):
    img = Image.new("RGB", (80, 40), (200, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    path = tmp_path / "rot.jpg"
    img.save(path, exif=exif)
    assert open_image(path, max_pixels=LIMIT).image.size == (40, 80)


def test_blur_and_near_duplicate_measures():
    from PIL import ImageFilter

    sharp = render_figure(4, 256)
    blurred = sharp.filter(ImageFilter.GaussianBlur(6))
    assert sharpness(sharp) > 3 * sharpness(blurred)
    assert hamming(dhash(sharp), dhash(sharp.resize((250, 250)))) <= 4
    assert hamming(dhash(sharp), dhash(render_figure(99, 256))) > 8
