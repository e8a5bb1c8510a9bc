"""Decoding of raster formats (8/16 bit, EXIF, alpha, pages), the fast resized path, batch API and bad inputs."""

from __future__ import annotations

import io
import pickle
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from breastclip.data.images import (
    ImageDecodeError,
    ImageFailure,
    format_failures,
    is_dicom,
    load_image,
    load_image_resized,
    load_images,
    to_uint8,
)


def _rgb(h=24, w=32, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _save(arr_or_im, path, **kw):
    im = arr_or_im if isinstance(arr_or_im, Image.Image) else Image.fromarray(arr_or_im)
    im.save(path, **kw)
    return path


# ---- 8-bit rasters ---------------------------------------------------------------------------------------------
def test_png_rgb_roundtrip_exact(tmp_path):
    a = _rgb()
    out = load_image(_save(a, tmp_path / "a.png"))
    assert out.dtype == np.uint8 and out.shape == (24, 32, 3)
    np.testing.assert_array_equal(out, a)


def test_grayscale_is_replicated_to_three_channels(tmp_path):
    g = _rgb()[..., 0]
    out = load_image(_save(g, tmp_path / "g.png"))
    assert out.shape == (24, 32, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], g)


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_alpha_is_dropped_not_composited(tmp_path, mode):
    a = _rgb()
    im = Image.fromarray(a).convert(mode)
    alpha = Image.fromarray(np.full((24, 32), 7, np.uint8))
    im.putalpha(alpha)  # nearly transparent: compositing would change the colours
    out = load_image(_save(im, tmp_path / "a.png"))
    expected = np.asarray(Image.fromarray(a).convert(mode[:-1]).convert("RGB"))
    np.testing.assert_array_equal(out, expected)


def test_palette_image(tmp_path):
    im = Image.fromarray(_rgb()).quantize(16)
    out = load_image(_save(im, tmp_path / "p.png"))
    np.testing.assert_array_equal(out, np.asarray(im.convert("RGB")))


def test_jpeg_close_to_source(tmp_path):
    a = np.zeros((64, 80, 3), np.uint8)
    a[:, :40] = (200, 40, 40)
    a[:, 40:] = (30, 30, 220)
    out = load_image(_save(a, tmp_path / "a.jpg", quality=95))
    assert out.shape == a.shape
    assert np.abs(out.astype(int) - a).mean() < 4


def test_cmyk_jpeg_to_rgb(tmp_path):
    a = _smooth(64, 96)
    path = _save(Image.fromarray(a).convert("CMYK"), tmp_path / "cmyk.jpg", quality=95)
    assert Image.open(path).mode == "CMYK"
    out = load_image(path)
    assert out.shape == (64, 96, 3) and np.abs(out.astype(int) - a).mean() < 6
    assert load_image_resized(path, 32).shape == (32, 48, 3)


def test_exif_orientation_applied(tmp_path):
    a = _rgb(20, 40)
    im = Image.fromarray(a)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    path = tmp_path / "o.jpg"
    im.save(path, exif=exif, quality=100)
    out = load_image(path)
    assert out.shape == (40, 20, 3)
    raw = np.asarray(Image.open(path).convert("RGB"))
    np.testing.assert_array_equal(out, np.rot90(raw, k=-1))
    assert load_image_resized(path, 10).shape == (20, 10, 3)  # the fast path honours it too


def test_multipage_tiff_frame_choice(tmp_path):
    pages = [Image.fromarray(np.full((8, 8), v, np.uint8)) for v in (10, 20, 30)]
    path = tmp_path / "pages.tif"
    pages[0].save(path, save_all=True, append_images=pages[1:])
    assert load_image(path)[0, 0, 0] == 10
    assert load_image(path, frame=2)[0, 0, 0] == 30
    with pytest.raises(ImageDecodeError, match="frame 3 out of range: the file has 3 frame"):
        load_image(path, frame=3)


# ---- 16-bit and float rasters ------------------------------------------------------------------------------------
def _twelve_bit(h=32, w=48) -> np.ndarray:
    """12-bit data (0..4095) in a 16-bit container: a blind >> 8 would leave it almost black (0..15)."""
    return (np.arange(h * w).reshape(h, w) * 4095 // (h * w - 1)).astype(np.uint16)


@pytest.mark.parametrize("suffix", [".png", ".tif", ".pgm"])
def test_16bit_scaled_by_actual_range(tmp_path, suffix):
    a = _twelve_bit()
    path = _save(a, tmp_path / f"a{suffix}")
    out = load_image(path)
    assert out.shape == (32, 48, 3) and out.dtype == np.uint8
    assert out.min() == 0 and out.max() == 255
    expected = np.rint(a / 4095 * 255).astype(np.uint8)
    np.testing.assert_array_equal(out[..., 0], expected)


def test_16bit_pgm_written_by_hand_big_endian(tmp_path):
    a = _twelve_bit(8, 8) + 1000
    path = tmp_path / "hand.pgm"
    path.write_bytes(b"P5\n8 8\n65535\n" + a.astype(">u2").tobytes())
    out = load_image(path)[..., 0]
    np.testing.assert_array_equal(out, to_uint8(a))
    assert out[0, 0] == 0 and out[-1, -1] == 255


def test_8bit_pgm(tmp_path):
    g = _rgb()[..., 1]
    path = tmp_path / "g.pgm"
    path.write_bytes(b"P5\n32 24\n255\n" + g.tobytes())
    np.testing.assert_array_equal(load_image(path)[..., 2], g)


def test_float_tiff(tmp_path):
    a = np.linspace(-1.5, 2.5, 64, dtype=np.float32).reshape(8, 8)
    out = load_image(_save(a, tmp_path / "f.tif"))[..., 0]
    assert out[0, 0] == 0 and out[-1, -1] == 255
    assert np.all(np.diff(out.ravel().astype(int)) >= 0)


def _png_16bit_rgb(path, a: np.ndarray):
    """A 16-bit RGB PNG written by hand (Pillow cannot write one): filter byte 0 per row, big-endian samples."""
    h, w, _ = a.shape
    raw = b"".join(b"\x00" + a[y].astype(">u2").tobytes() for y in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    return path


def test_16bit_colour_png_not_truncated(tmp_path):
    a = np.zeros((8, 10, 3), np.uint16)
    a[..., 0] = 4095  # 12-bit red: Pillow alone would give 15
    a[:, 5:, 2] = 2048
    out = load_image(_png_16bit_rgb(tmp_path / "rgb16.png", a))
    assert out.shape == (8, 10, 3)
    assert (out[..., 0] == 255).all() and (out[:, :5, 2] == 0).all() and (out[:, 5:, 2] == 128).all()
    assert load_image_resized(tmp_path / "rgb16.png", 4).shape == (4, 5, 3)


def test_16bit_colour_tiff_not_truncated(tmp_path):
    import tifffile  # dev extra; only writes the fixture, decoding does not use it
    a = np.zeros((6, 6, 3), np.uint16)
    a[..., 1] = 4000
    tifffile.imwrite(tmp_path / "rgb16.tif", a, photometric="rgb")
    out = load_image(tmp_path / "rgb16.tif")
    assert (out[..., 1] == 255).all() and (out[..., 0] == 0).all()


def test_percentile_intensity_ignores_hot_pixel(tmp_path):
    a = _twelve_bit()
    a[0, 0] = 65535  # one saturated detector pixel
    path = _save(a, tmp_path / "hot.png")
    minmax = load_image(path)
    robust = load_image(path, intensity="percentile")
    assert minmax[..., 0].mean() < 20  # squashed by the outlier
    assert robust[..., 0].mean() > 100


# ---- resized fast path ---------------------------------------------------------------------------------------------
def _smooth(h, w) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([(xx * 255 // w), (yy * 255 // h), ((xx + yy) * 255 // (h + w))], -1).astype(np.uint8)


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_resized_short_side_and_close_to_full_decode(tmp_path, suffix):
    a = _smooth(800, 1000)
    path = _save(a, tmp_path / f"big{suffix}", **({"quality": 95} if suffix == ".jpg" else {}))
    small = load_image_resized(path, 100)
    assert small.shape == (100, 125, 3)
    ref = np.asarray(Image.fromarray(load_image(path)).resize((125, 100), Image.Resampling.BICUBIC))
    assert np.abs(small.astype(int) - ref).mean() < 3


def test_resized_never_upscales_and_handles_16bit(tmp_path):
    a = _twelve_bit(32, 48)
    path = _save(a, tmp_path / "a.png")
    np.testing.assert_array_equal(load_image_resized(path, 64), load_image(path))
    small = load_image_resized(path, 16)
    assert small.shape == (16, 24, 3) and small.max() > 240


def test_resized_greyscale_stays_grey(tmp_path):
    g = _smooth(300, 200)[..., 0]
    out = load_image_resized(_save(g, tmp_path / "g.png"), 50)
    assert out.shape == (75, 50, 3)
    assert np.array_equal(out[..., 0], out[..., 1]) and np.array_equal(out[..., 0], out[..., 2])
    ref = np.asarray(Image.fromarray(g).resize((50, 75), Image.Resampling.BICUBIC))
    assert np.abs(out[..., 0].astype(int) - ref).max() <= 2


def test_resized_rejects_bad_size(tmp_path):
    with pytest.raises(ValueError, match="size"):
        load_image_resized(_save(_rgb(), tmp_path / "a.png"), 0)


# ---- bad inputs ------------------------------------------------------------------------------------------------------
def _png_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


def test_missing_file(tmp_path):
    with pytest.raises(ImageDecodeError, match="file not found") as e:
        load_image(tmp_path / "nope.png")
    assert e.value.path.endswith("nope.png") and e.value.problem == "file not found"


def test_directory(tmp_path):
    with pytest.raises(ImageDecodeError, match="is a directory"):
        load_image(tmp_path)


def test_zero_byte_file(tmp_path):
    p = tmp_path / "empty.png"
    p.write_bytes(b"")
    with pytest.raises(ImageDecodeError, match="zero-byte") as e:
        load_image(p)
    assert str(p) in str(e.value)


@pytest.mark.parametrize("content,kind", [
    (b"patient,label\n1,benign\n", "text file"),
    (b"<!DOCTYPE html><html><body>Access denied</body></html>", "HTML"),
    (b"version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 12\n", "Git LFS pointer"),
    (bytes(range(256)) * 4, "unrecognised binary"),
])
def test_non_image_content(tmp_path, content, kind):
    p = tmp_path / "fake.png"
    p.write_bytes(content)
    with pytest.raises(ImageDecodeError, match=f"not an image: the content is .*{kind}") as e:
        load_image(p)
    assert e.value.path == str(p)


def test_truncated_png(tmp_path):
    raw = _png_bytes(_rgb(64, 64))
    p = tmp_path / "cut.png"
    p.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ImageDecodeError, match="truncated"):
        load_image(p)


def test_truncated_jpeg(tmp_path):
    buf = io.BytesIO()
    Image.fromarray(_rgb(128, 128)).save(buf, format="JPEG", quality=90)
    p = tmp_path / "cut.jpg"
    p.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 3])
    with pytest.raises(ImageDecodeError, match="truncated"):
        load_image(p)


def test_corrupt_png_data(tmp_path):
    raw = bytearray(_png_bytes(_rgb(64, 64)))
    start = raw.index(b"IDAT") + 4
    for i in range(start + 10, start + 60):
        raw[i] ^= 0xFF  # damage the compressed stream (the chunk CRC no longer matches)
    p = tmp_path / "bad.png"
    p.write_bytes(bytes(raw))
    with pytest.raises(ImageDecodeError, match="corrupt|truncated") as e:
        load_image(p)
    assert str(p) in str(e.value)


def test_corrupt_header(tmp_path):
    raw = bytearray(_png_bytes(_rgb(8, 8)))
    raw[16:24] = b"\xff" * 8  # IHDR width/height garbage with a stale CRC
    p = tmp_path / "hdr.png"
    p.write_bytes(bytes(raw))
    with pytest.raises(ImageDecodeError, match="corrupt PNG header") as e:
        load_image(p)
    assert str(p) in str(e.value)


def test_decompression_bomb_guard_own_limit(tmp_path):
    p = _save(_rgb(64, 64), tmp_path / "a.png")
    with pytest.raises(ImageDecodeError, match="decompression bomb guard: 64x64 = 4,096 pixels exceeds max_pixels=1,000"):
        load_image(p, max_pixels=1000)
    assert load_image(p, max_pixels=4096).shape == (64, 64, 3)


def test_decompression_bomb_guard_crafted_header(tmp_path):
    """A tiny PNG whose header claims 100000 x 100000 pixels is refused before any pixel is decoded."""
    raw = _png_bytes(np.zeros((8, 8), np.uint8))
    ihdr = bytearray(raw[16:29])
    ihdr[0:8] = struct.pack(">II", 100_000, 100_000)
    crc = struct.pack(">I", zlib.crc32(b"IHDR" + bytes(ihdr)))
    p = tmp_path / "bomb.png"
    p.write_bytes(raw[:16] + bytes(ihdr) + crc + raw[33:])
    with pytest.raises(ImageDecodeError, match="decompression bomb"):
        load_image(p)
    with pytest.raises(ImageDecodeError, match="decompression bomb"):
        load_image_resized(p, 64)


def test_error_is_valueerror_and_picklable(tmp_path):
    err = ImageDecodeError(tmp_path / "x.png", "zero-byte file")
    assert isinstance(err, ValueError)
    back = pickle.loads(pickle.dumps(err))
    assert back.path == err.path and back.problem == err.problem and str(back) == str(err)


# ---- batch API ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("workers", [0, 2])
def test_load_images_collects_failures_and_goes_on(tmp_path, workers):
    good1 = _save(_rgb(seed=1), tmp_path / "g1.png")
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    good2 = _save(_rgb(seed=2), tmp_path / "g2.png")
    arrays, failures = load_images([good1, empty, text, good2, tmp_path / "missing.png"], workers=workers)
    assert [a is None for a in arrays] == [False, True, True, False, True]
    np.testing.assert_array_equal(arrays[3], _rgb(seed=2))
    assert [f.path for f in failures] == [str(empty), str(text), str(tmp_path / "missing.png")]
    assert "zero-byte" in failures[0].problem and "text file" in failures[1].problem
    report = format_failures(failures)
    assert report.startswith("3 image(s) could not be decoded") and str(empty) in report


def test_load_images_resized(tmp_path):
    arrays, failures = load_images([_save(_smooth(200, 300), tmp_path / "a.png")], size=50)
    assert not failures and arrays[0].shape == (50, 75, 3)


def test_format_failures_limits_listing():
    fails = [ImageFailure(f"/x/{i}.png", "corrupt") for i in range(25)]
    text = format_failures(fails, limit=5)
    assert "... and 20 more" in text and text.count("corrupt") == 5
    assert format_failures([]) == "all images decoded"


def test_is_dicom_by_suffix_and_magic(tmp_path):
    p = tmp_path / "noext"
    p.write_bytes(b"\0" * 128 + b"DICM" + b"\0" * 10)
    assert is_dicom(p) and is_dicom(tmp_path / "x.DCM")
    assert not is_dicom(_save(_rgb(), tmp_path / "a.png"))


def test_to_uint8_edge_cases():
    assert to_uint8(np.full((3, 3), 7, np.uint16)).max() == 0  # constant image: no division by zero
    a = np.array([[np.nan, 0.0], [1.0, np.inf]])
    out = to_uint8(a)
    assert out[1, 0] == 255 and out[0, 1] == 0


@pytest.mark.parametrize("dtype", [np.uint16, np.int16, np.int32])
@pytest.mark.parametrize("mode", ["minmax", "percentile"])
def test_to_uint8_lookup_path_matches_float_path(dtype, mode):
    """Integer images go through a histogram + lookup table; the result must equal the plain float computation."""
    rng = np.random.default_rng(0)
    a = rng.normal(1200, 300, (96, 80)).astype(dtype)
    a[0, 0] = 4000  # an outlier the percentile window clips
    fast = to_uint8(a, mode)
    slow = to_uint8(a.astype(np.float64), mode)
    lo, hi = (np.percentile(a, (0.5, 99.5)) if mode == "percentile" else (a.min(), a.max()))
    np.testing.assert_array_equal(fast, slow)
    lo, hi = float(lo), float(hi)
    reference = np.rint((np.clip(a.astype(float), lo, hi) - lo) * 255 / (hi - lo)).astype(np.uint8)
    np.testing.assert_array_equal(fast, reference)
