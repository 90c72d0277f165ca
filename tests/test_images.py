"""Image loading (every PIL mode, EXIF, broken files, bombs) and image-batch validation."""

import io

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile

from artquant_core.images import (ImageBatch, float_to_uint8, image_batch, load_image, pad_to_square,
                                  pil_to_uint8_tensor, round_to_uint8_grid, to_image_batch, to_pil_images,
                                  to_rgb)


def _save(img, path, **kw):
    img.save(path, **kw)
    return path


def test_exif_rotated_jpeg_is_transposed(tmp_path):
    # 40 wide x 20 high, left half red; orientation 6 = rotate 90 CW on display.
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:, :20] = (255, 0, 0)
    img = Image.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = 6
    path = _save(img, tmp_path / "rot.jpg", exif=exif, quality=95)
    out = load_image(path)
    assert out.mode == "RGB" and out.size == (20, 40)
    pixels = np.asarray(out).astype(int)
    # Rotated 90 deg clockwise: the former left (red) half is now on top.
    assert pixels[5, 10, 0] > 200 and pixels[5, 10, 1] < 60
    assert pixels[35, 10, 0] < 60


def test_rgba_composited_on_white(tmp_path):
    arr = np.zeros((8, 8, 4), np.uint8)
    arr[..., 0] = 255
    arr[:, :4, 3] = 0      # fully transparent -> white
    arr[:, 4:, 3] = 255    # opaque red
    path = _save(Image.fromarray(arr, "RGBA"), tmp_path / "a.png")
    out = np.asarray(load_image(path))
    assert (out[:, :4] == 255).all()
    assert (out[:, 4:] == (255, 0, 0)).all()


def test_la_half_alpha_blends_with_white(tmp_path):
    arr = np.zeros((4, 4, 2), np.uint8)
    arr[..., 1] = 128       # black at ~50 % alpha
    out = np.asarray(load_image(_save(Image.fromarray(arr, "LA"), tmp_path / "la.png")))
    assert np.all(np.abs(out.astype(int) - 127) <= 1)


def test_palette_with_transparency_on_white(tmp_path):
    img = Image.new("P", (6, 6), 1)
    img.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)
    img.paste(0, (0, 0, 3, 6))
    img.info["transparency"] = 0
    path = _save(img, tmp_path / "p.png", transparency=0)
    assert Image.open(path).mode == "P"
    out = np.asarray(load_image(path))
    assert (out[:, :3] == 255).all()               # transparent black -> white
    assert (out[:, 3:] == (0, 0, 255)).all()        # opaque blue stays


def test_l_and_plain_palette(tmp_path):
    grey = Image.fromarray(np.full((5, 5), 77, np.uint8), "L")
    assert (np.asarray(load_image(_save(grey, tmp_path / "l.png"))) == 77).all()
    pal = Image.new("P", (3, 3), 0)
    pal.putpalette([10, 20, 30] + [0] * 765)
    assert (np.asarray(load_image(_save(pal, tmp_path / "p.png"))) == (10, 20, 30)).all()


def test_cmyk_jpeg_converted(tmp_path):
    img = Image.new("CMYK", (16, 16), (0, 255, 255, 0))  # pure red in CMYK
    path = _save(img, tmp_path / "c.jpg", quality=100)
    assert Image.open(path).mode == "CMYK"
    r, g, b = np.asarray(load_image(path)).reshape(-1, 3).mean(0)
    assert r > 240 and g < 15 and b < 15


def test_sixteen_bit_grey_scaled_not_clipped(tmp_path):
    values = np.array([[0, 257 * 64, 257 * 128, 65535]], np.uint16)
    path = _save(Image.fromarray(values), tmp_path / "g16.png")
    assert Image.open(path).mode.startswith("I")
    out = np.asarray(load_image(path))
    assert out.shape == (1, 4, 3)
    assert out[0, :, 0].tolist() == [0, 64, 128, 255]


def test_truncated_jpeg_raises_naming_file(tmp_path):
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(buf, "JPEG")
    path = tmp_path / "trunc.jpg"
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(ValueError, match="trunc.jpg"):
        load_image(path)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_truncated_file_raises_even_if_someone_enabled_truncated_loading(tmp_path, monkeypatch):
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (64, 64, 3), np.uint8)).save(buf, "PNG")
    path = tmp_path / "trunc.png"
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(ValueError, match="trunc.png"):
        load_image(path)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # restored for the caller


def test_garbage_bytes_and_missing_file(tmp_path):
    path = tmp_path / "garbage.png"
    path.write_bytes(b"this is not an image at all" * 10)
    with pytest.raises(ValueError, match="garbage.png"):
        load_image(path)
    with pytest.raises(FileNotFoundError, match="nope.png"):
        load_image(tmp_path / "nope.png")


def test_pixel_limit_against_bombs(tmp_path):
    path = _save(Image.new("RGB", (200, 100)), tmp_path / "bomb.png")
    with pytest.raises(ValueError, match=r"bomb\.png.*20000 pixels.*limit of 19999"):
        load_image(path, max_pixels=19_999)
    assert load_image(path, max_pixels=20_000).size == (200, 100)
    assert load_image(path, max_pixels=None).size == (200, 100)


def test_pil_to_uint8_tensor_and_pad_to_square():
    img = Image.fromarray(np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3))
    t = pil_to_uint8_tensor(img)
    assert t.dtype == torch.uint8 and t.shape == (3, 2, 3)
    assert t[:, 1, 2].tolist() == [15, 16, 17]
    sq = pad_to_square(img, fill=(1, 2, 3))
    assert sq.size == (3, 3)
    a = np.asarray(sq)
    assert a[0].tolist() == [[0, 1, 2], [3, 4, 5], [6, 7, 8]] and a[2, 0].tolist() == [1, 2, 3]


def test_to_image_batch_uint8_and_float():
    u8 = torch.tensor([0, 51, 255], dtype=torch.uint8).view(1, 3, 1, 1).expand(2, 3, 4, 4)
    out = to_image_batch(u8)
    assert out.dtype == torch.float32 and out.shape == (2, 3, 4, 4)
    assert torch.allclose(out[0, :, 0, 0], torch.tensor([0.0, 0.2, 1.0]))
    x64 = torch.rand(2, 3, 5, 5, dtype=torch.float64)
    assert to_image_batch(x64).dtype == torch.float64
    tiny = torch.full((1, 3, 2, 2), 1 + 5e-7)
    assert to_image_batch(tiny).max() == 1.0          # rounding noise within tolerance clamped


def test_to_image_batch_keeps_autograd_float64():
    x = torch.rand(2, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    torch.autograd.gradcheck(lambda t: to_image_batch(t, size=3).sum(dim=(1, 2, 3)) ** 2, (x,))
    y = to_image_batch(x)
    (y * 2).sum().backward()
    assert torch.equal(x.grad, torch.full_like(x, 2.0))


def test_to_image_batch_errors():
    with pytest.raises(ValueError, match=r"imgs must have shape \(B, 3, H, W\), got \(3, 4, 4\)"):
        to_image_batch(torch.rand(3, 4, 4), name="imgs")
    with pytest.raises(ValueError, match=r"got \(2, 4, 4, 4\)"):
        to_image_batch(torch.rand(2, 4, 4, 4))
    bad = torch.rand(3, 3, 2, 2)
    bad[2, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"images\[2\] contains NaN or inf"):
        to_image_batch(bad)
    bad = torch.rand(3, 3, 2, 2)
    bad[1, 1, 1, 1] = 1.5
    with pytest.raises(ValueError, match=r"images\[1\] has values outside \[0, 1\] \(min .*, max 1.5\)"):
        to_image_batch(bad)
    with pytest.raises(ValueError, match="dtype torch.int64"):
        to_image_batch(torch.zeros(1, 3, 2, 2, dtype=torch.int64))
    with pytest.raises(ValueError, match="single PIL image"):
        to_image_batch(Image.new("RGB", (2, 2)))


def test_to_image_batch_empty():
    assert to_image_batch(torch.zeros(0, 3, 8, 8)).shape == (0, 3, 8, 8)
    assert to_image_batch(torch.zeros(0, 3, 8, 8, dtype=torch.uint8)).dtype == torch.float32
    assert to_image_batch([]).shape == (0, 3, 0, 0)
    assert to_image_batch([], size=16).shape == (0, 3, 16, 16)
    assert to_image_batch(torch.zeros(0, 3, 8, 8), size=(4, 5)).shape == (0, 3, 4, 5)


def test_to_image_batch_pil_list():
    rgba = Image.fromarray(np.zeros((4, 6, 4), np.uint8), "RGBA")   # fully transparent -> white
    grey = Image.fromarray(np.full((4, 6), 51, np.uint8), "L")
    out = to_image_batch([rgba, grey])
    assert out.shape == (2, 3, 4, 6)
    assert torch.all(out[0] == 1.0) and torch.allclose(out[1], torch.full((3, 4, 6), 0.2))
    with pytest.raises(ValueError, match=r"images\[1\] has size \(5, 6\).*images\[0\] has \(4, 6\)"):
        to_image_batch([grey, Image.new("RGB", (6, 5))])
    resized = to_image_batch([grey, Image.new("RGB", (6, 5))], size=(8, 8))
    assert resized.shape == (2, 3, 8, 8)
    mixed = to_image_batch([grey, torch.zeros(3, 4, 6, dtype=torch.uint8)])
    assert mixed.shape == (2, 3, 4, 6) and mixed[1].max() == 0
    with pytest.raises(ValueError, match=r"images\[1\] contains NaN"):
        to_image_batch([grey, torch.full((3, 4, 6), float("nan"))])
    with pytest.raises(ValueError, match=r"images\[0\] must be a PIL image"):
        to_image_batch(["a.png"])


def test_to_rgb_float_grey():
    img = Image.fromarray(np.array([[0.0, 0.5, 1.0]], np.float32), "F")
    assert np.asarray(to_rgb(img))[0, :, 0].tolist() == [0, 128, 255]


def test_image_batch_keeps_the_8bit_fact_and_passes_through():
    u8 = torch.randint(0, 256, (2, 3, 4, 5), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    batch = image_batch(u8)
    assert batch.from_uint8 and batch.same_size and len(batch) == 2 and batch.sizes == [(4, 5), (4, 5)]
    assert torch.equal(batch.pixels, u8.float() / 255)
    assert image_batch(batch) is batch                      # validated once, never again
    pil = image_batch([Image.new("RGB", (5, 4)), u8[0]])   # PIL and uint8 tensors are both 8-bit
    assert pil.from_uint8 and pil.pixels.shape == (2, 3, 4, 5)
    floats = image_batch([Image.new("RGB", (5, 4)), torch.rand(3, 4, 5)])
    assert not floats.from_uint8 and not image_batch(torch.rand(1, 3, 2, 2)).from_uint8
    assert len(image_batch([])) == 0 and not image_batch([]).from_uint8


def test_image_batch_mixed_sizes_slices_and_grad():
    x = torch.rand(3, 6, 4, dtype=torch.float64, requires_grad=True)
    batch = image_batch([Image.new("RGB", (5, 4)), x, Image.new("RGB", (7, 2))])
    assert not batch.same_size and batch.sizes == [(4, 5), (6, 4), (2, 7)]
    assert batch.dtype == torch.float64 and batch.requires_grad and not batch.from_uint8
    one = batch[1:2]
    assert isinstance(one, ImageBatch) and one.same_size and one.pixels.shape == (1, 3, 6, 4)
    one.pixels.sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))
    assert len(batch[0:3:2]) == 2 and not batch[0:3:2].same_size
    assert batch.to("cpu").sizes == batch.sizes
    with pytest.raises(TypeError, match="slices"):
        batch[0]
    with pytest.raises(ValueError, match=r"images\[1\] contains NaN"):
        image_batch([Image.new("RGB", (5, 4)), torch.full((3, 2, 2), float("nan"))])


def test_uint8_rounding_helpers():
    x = torch.tensor([0.0, 0.1, 0.5, 1 / 255 * 2.5, 1.0 + 5e-7, 1.0])
    assert float_to_uint8(x).tolist() == [0, 26, 128, 2, 255, 255]
    assert float_to_uint8(x.to(torch.bfloat16)).tolist()[:3] == [0, 26, 128]  # scaled in float32
    leaf = x.clone().requires_grad_(True)
    snapped = round_to_uint8_grid(leaf)
    assert torch.equal(snapped.detach(), float_to_uint8(x).float() / 255)
    snapped.sum().backward()
    assert torch.equal(leaf.grad, torch.ones_like(x))   # straight through


def test_to_pil_images_round_trips_uint8_and_rounds_floats():
    u8 = torch.randint(0, 256, (2, 3, 4, 5), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    pil = to_pil_images(u8)
    assert [im.size for im in pil] == [(5, 4), (5, 4)]
    assert torch.equal(torch.stack([pil_to_uint8_tensor(im) for im in pil]), u8)
    assert torch.equal(pil_to_uint8_tensor(to_pil_images(u8.float() / 255)[1]), u8[1])
    assert to_pil_images(pil) == pil and to_pil_images([]) == []
    mixed = to_pil_images(image_batch([pil[0], u8[1, :, :2]]))
    assert [im.size for im in mixed] == [(5, 4), (5, 2)]
    assert to_pil_images(np.zeros((1, 1, 3, 3), np.float32))[0].mode == "L"
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\).*got \(3, 4, 5\)"):
        to_pil_images(u8[0])


def test_pad_to_square_tensor_equals_pil():
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (3, 8, 3), dtype=np.uint8))
    padded = pil_to_uint8_tensor(pad_to_square(img)).float() / 255
    assert torch.equal(pad_to_square(pil_to_uint8_tensor(img).float()[None] / 255)[0], padded)
    tall = torch.rand(2, 3, 5, 2, requires_grad=True)
    out = pad_to_square(tall, fill=(0, 255, 0))
    assert out.shape == (2, 3, 5, 5) and torch.equal(out[:, :, :, 1:3], tall.detach())
    assert torch.equal(out[0, :, 0, 0], torch.tensor([0.0, 1.0, 0.0]))
    out.sum().backward()
    assert torch.equal(tall.grad, torch.ones_like(tall))
