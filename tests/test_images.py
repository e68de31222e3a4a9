"""The clean-image loader: odd modes are normalised, bad files rejected with one line."""

import io

import numpy as np
import pytest
from PIL import Image

from datasets.image_hash import difference_hash, hamming_within
from datasets.images import ImageError, inspect_image, load_image
from tests.imagegen import png_bomb, style_image


def pixel(im: Image.Image, xy=(0, 0)) -> tuple[int, int, int]:
    return im.getpixel(xy)


def test_rgba_transparency_becomes_white(tmp_path):
    im = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    im.putpixel((1, 1), (255, 0, 0, 255))
    im.save(tmp_path / "a.png")
    out = load_image(tmp_path / "a.png")
    assert out.mode == "RGB"
    assert pixel(out) == (255, 255, 255)
    assert pixel(out, (1, 1)) == (255, 0, 0)


def test_half_transparent_la_is_composited(tmp_path):
    Image.new("LA", (4, 4), (0, 128)).save(tmp_path / "la.png")
    value = pixel(load_image(tmp_path / "la.png"))
    assert value[0] == value[1] == value[2] and 120 <= value[0] <= 135


def test_palette_with_transparency(tmp_path):
    im = Image.new("P", (4, 4), 0)
    im.putpalette([0, 0, 255, 10, 200, 10] + [0] * 762)
    im.putpixel((2, 2), 1)
    im.info["transparency"] = 0
    im.save(tmp_path / "p.png", transparency=0)
    out = load_image(tmp_path / "p.png")
    assert pixel(out) == (255, 255, 255)
    assert pixel(out, (2, 2)) == (10, 200, 10)


def test_palette_gif_without_transparency(tmp_path):
    style_image(1, 1).convert("P").save(tmp_path / "p.gif")
    assert load_image(tmp_path / "p.gif").mode == "RGB"


def test_cmyk_jpeg(tmp_path):
    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(tmp_path / "c.jpg")
    r, g, b = pixel(load_image(tmp_path / "c.jpg"))
    assert r > 200 and g < 60 and b < 60


def test_sixteen_bit_greyscale_keeps_tonal_range(tmp_path):
    values = np.array([[0, 32768], [65535, 1000]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    out = np.asarray(load_image(tmp_path / "g16.png"))
    assert out[0, 0].tolist() == [0, 0, 0]
    assert out[1, 0].tolist() == [255, 255, 255]
    assert 126 <= out[0, 1, 0] <= 129


def test_greyscale_and_bilevel(tmp_path):
    Image.new("L", (4, 4), 77).save(tmp_path / "l.png")
    Image.new("1", (4, 4), 1).save(tmp_path / "b.bmp")
    assert pixel(load_image(tmp_path / "l.png")) == (77, 77, 77)
    assert pixel(load_image(tmp_path / "b.bmp")) == (255, 255, 255)


def test_exif_orientation_is_applied(tmp_path):
    im = Image.new("RGB", (40, 20), (255, 255, 255))
    im.paste((0, 0, 0), (0, 0, 10, 20))  # a black band on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: viewers turn it 90 degrees clockwise
    im.save(tmp_path / "e.jpg", exif=exif, quality=95)
    out = load_image(tmp_path / "e.jpg")
    assert out.size == (20, 40)
    assert sum(pixel(out, (10, 2))) < 100  # the band is now on top
    assert sum(pixel(out, (10, 38))) > 600


@pytest.mark.parametrize("ext", ["gif", "webp"])
def test_animation_gives_first_frame(tmp_path, ext):
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 0, 255), (0, 255, 0))]
    frames[0].save(tmp_path / f"anim.{ext}", save_all=True, append_images=frames[1:], duration=50,
                   lossless=True)
    assert getattr(Image.open(tmp_path / f"anim.{ext}"), "n_frames", 1) == 3
    r, g, b = pixel(load_image(tmp_path / f"anim.{ext}"))
    assert r > 200 and g < 50 and b < 50


def one_line_naming(err: ImageError, path) -> str:
    text = str(err)
    assert "\n" not in text and str(path) in text
    return text


def test_truncated_file_is_rejected(tmp_path):
    buffer = io.BytesIO()
    style_image(0, 0, 64).save(buffer, "PNG")
    path = tmp_path / "cut.png"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(ImageError) as info:
        load_image(path)
    assert "truncated" in one_line_naming(info.value, path)


def test_non_image_is_rejected(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("this is not a picture")
    with pytest.raises(ImageError) as info:
        load_image(path)
    assert "not an image" in one_line_naming(info.value, path)


def test_zero_byte_file_is_rejected(tmp_path):
    path = tmp_path / "empty.jpg"
    path.touch()
    with pytest.raises(ImageError) as info:
        load_image(path)
    assert "empty file" in one_line_naming(info.value, path)


def test_decompression_bomb_is_rejected_before_decoding(tmp_path):
    path = png_bomb(tmp_path / "bomb.png")
    with pytest.raises(ImageError) as info:
        load_image(path)
    assert "decompression bomb" in one_line_naming(info.value, path)


def test_pixel_limit_is_configurable(tmp_path):
    style_image(0, 0, 64).save(tmp_path / "big.png")
    load_image(tmp_path / "big.png", max_pixels=64 * 64)
    with pytest.raises(ImageError, match="decompression bomb"):
        load_image(tmp_path / "big.png", max_pixels=64 * 64 - 1)


def test_missing_path_and_directory(tmp_path):
    with pytest.raises(ImageError, match="no such file"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(ImageError, match="is a directory"):
        load_image(tmp_path)


def test_flat_image_is_detected(tmp_path):
    Image.new("RGB", (16, 16), (40, 90, 200)).save(tmp_path / "flat.png")
    style_image(0, 0).save(tmp_path / "busy.png")
    assert inspect_image(tmp_path / "flat.png").is_flat
    assert not inspect_image(tmp_path / "busy.png").is_flat


def test_difference_hash_sees_near_duplicates():
    a = style_image(0, 1, 64)
    slightly = Image.fromarray(np.clip(np.asarray(a).astype(int) + 6, 0, 255).astype(np.uint8))
    other = style_image(2, 7, 64)
    near = hamming_within(np.array([difference_hash(a)]), np.array([difference_hash(slightly)]), 64)
    far = hamming_within(np.array([difference_hash(a)]), np.array([difference_hash(other)]), 64)
    assert near[0][2] <= 4 < far[0][2]


def test_hamming_within_matches_brute_force():
    rng = np.random.default_rng(0)
    left = rng.integers(-(2**63), 2**63 - 1, 50, dtype=np.int64)
    right = np.concatenate([left[:5] ^ 1, rng.integers(-(2**63), 2**63 - 1, 40, dtype=np.int64)])
    found = {(i, j) for i, j, _ in hamming_within(left, right, 3, chunk=7)}
    expected = {(i, j) for i in range(50) for j in range(45)
                if bin((int(left[i]) ^ int(right[j])) & (2**64 - 1)).count("1") <= 3}
    assert found == expected and {(i, i) for i in range(5)} <= found



def test_the_resize_fingerprint_names_the_size_and_the_pass_order(monkeypatch):
    import PIL

    from datasets.images import resize_fingerprint
    from tests.resize_orders import across_first_resize

    here = resize_fingerprint((32, 40))
    resize_fingerprint.cache_clear()
    assert resize_fingerprint((32, 40)) == here and len(here) == 16
    assert resize_fingerprint((40, 32)) != here
    with across_first_resize(monkeypatch):
        pillow_12_order = resize_fingerprint((32, 40))
    assert resize_fingerprint((32, 40)) == here
    if int(PIL.__version__.split(".")[0]) >= 13:  # 13 resizes the probe's tall picture down first
        assert pillow_12_order != here
