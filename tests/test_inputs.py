"""Bad input gets a clear error; odd images are converted and said so."""

import io

import numpy as np
import pytest
from PIL import Image

from recontext import images


def _png(img) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def test_non_image_file_is_rejected_clearly(tmp_path):
    fake = tmp_path / "notes.png"
    fake.write_text("this is not a picture")
    with pytest.raises(ValueError, match="not an image"):
        images.load_image(str(fake))


def test_truncated_jpeg_is_rejected_clearly(tmp_path, photo):
    buf = io.BytesIO()
    photo.save(buf, format="JPEG")
    path = tmp_path / "cut.jpg"
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(ValueError, match="corrupt or truncated"):
        images.load_image(str(path))


def test_a_huge_jpeg_is_decoded_reduced_and_a_bomb_gets_the_size_message(tmp_path, monkeypatch):
    path = tmp_path / "big.jpg"
    Image.new("RGB", (4096, 3072), (200, 30, 30)).save(path, quality=80)
    img, notes = images.load_image(str(path), max_side=256)
    assert img.size == (512, 384) and "instead of 4096×3072" in notes[0]  # reduced by 8, not below 256
    assert images.load_image(str(path))[0].size == (4096, 3072)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000_000)  # PIL's own limit, below ours
    with pytest.raises(ValueError, match="more than 64 megapixels.*downscale"):
        images.load_image(str(path))


def test_missing_file_and_none(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        images.load_image(str(tmp_path / "nope.png"))
    with pytest.raises(ValueError, match="no image"):
        images.load_image(None)


def test_grayscale_rgba_16bit_are_converted():
    gray16 = Image.fromarray((np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16))
    img, notes = images.load_image(_png(gray16))
    assert img.mode == "RGB" and any("16-bit" in n for n in notes)
    assert np.asarray(img).max() > 200  # the dynamic range survives the conversion

    rgba = Image.new("RGBA", (32, 32), (255, 0, 0, 0))
    img, notes = images.load_image(_png(rgba))
    assert img.mode == "RGB" and np.asarray(img)[0, 0].tolist() == [255, 255, 255]
    assert any("transparency" in n for n in notes)

    img, notes = images.load_image(_png(Image.new("L", (32, 32), 7)))
    assert img.mode == "RGB" and any("grayscale" in n for n in notes)


def test_working_size_keeps_aspect_and_multiple():
    assert images.working_size(6000, 6000, 1024, 64) == (1024, 1024)
    w, h = images.working_size(451, 300, 64, 4)
    assert (w, h) == (64, 44) and w % 4 == 0 and h % 4 == 0


def test_huge_photo_is_resized_and_said(studio):
    big = Image.fromarray(np.random.default_rng(0).integers(0, 255, (3000, 2000, 3), dtype=np.uint8))
    r = studio.reconstruct(big, method="ddim", steps=2)
    assert r.image.size == (2000, 3000)
    side, multiple = studio.preset.resolution, studio.models.size_multiple
    assert r.source.size == images.working_size(2000, 3000, side, multiple)
    assert max(r.source.size) == side and all(s % multiple == 0 for s in r.source.size)
    assert any("resized from 2000×3000" in n for n in r.notes)


@pytest.mark.parametrize("kwargs, field", [
    ({"steps": 0}, "steps"), ({"steps": 10_000}, "steps"), ({"steps": 2.5}, "steps"),
    ({"image_scale": -0.1}, "image_scale"), ({"image_scale": 9}, "image_scale"),
    ({"seed": -1}, "seed"), ({"steps": "many"}, "steps"), ({"image_scale": float("nan")}, "image_scale"),
])
def test_out_of_range_values_are_rejected(studio, photo, kwargs, field):
    with pytest.raises(ValueError, match=field):
        studio.reconstruct(photo, **{"steps": 2, **kwargs})


def test_long_prompt_truncation_is_said(studio, photo):
    r = studio.reconstruct(photo, prompt="a cat " * 60, method="ddim", steps=2)  # 360 characters, > 77 tokens
    assert any("tokens were cut off" in n for n in r.notes)


def test_a_prompt_over_2000_characters_is_refused_before_tokenizing(studio, photo):
    with pytest.raises(ValueError, match="prompt is 2400 characters long; at most 2000"):
        studio.reconstruct(photo, prompt="a cat " * 400, method="ddim", steps=2)
