"""Image decoding: any supported file to an (H, W, 3) uint8 RGB array, or a specific error.

Formats: PNG, JPEG, TIFF, BMP, PGM/PPM, WebP, GIF (anything Pillow reads) in 8 and 16 bit, and DICOM via pydicom.

Intensity policy (``intensity=``):

- ``"auto"`` (default): 8-bit data is kept as is. 16-bit, 32-bit and float rasters (PNG ``I;16``, TIFF, PGM with
  maxval > 255, and 16-bit colour PNG/TIFF, which Pillow would truncate and OpenCV decodes instead) are scaled
  linearly from their *actual* min..max to 0..255 (colour: one window for all channels, so hues are kept), so
  12-bit data stored in a 16-bit container uses the full output range instead of being darkened by a blind
  ``>> 8``. DICOM greyscale applies the Modality LUT (rescale slope/intercept), then the first VOI LUT or window
  centre/width stored in the file; a file without either gets a 0.5..99.5 percentile window (what most viewers
  and the shared data PNGs do).
- ``"minmax"``: linear min..max for every non-8-bit source (DICOM after the Modality LUT, windows ignored).
- ``"percentile"``: a 0.5..99.5 percentile window for every non-8-bit source (robust to a few hot pixels).

DICOM specifics: MONOCHROME1 (and Presentation LUT Shape INVERSE) are inverted so that bright means dense, YBR is
converted to RGB by pydicom, PALETTE COLOR goes through its colour LUT, a multi-frame file gives one frame
(``frame=``; default the middle frame, ``n_frames // 2``; enhanced multi-frame files such as DBT take that frame's
rescale and window from their functional groups), and compressed transfer syntaxes decode through the
pydicom pixel-data plugins installed (pylibjpeg, pylibjpeg-libjpeg, Pillow, gdcm); when none handles the file the
error names the transfer syntax and the packages to install.

Other guarantees: EXIF orientation applied, greyscale replicated to three channels, alpha dropped (not composited),
a decompression-bomb guard (``max_pixels``, checked from the header before any pixel is decoded), and an
:class:`ImageDecodeError` that names the file and the problem for a missing, zero-byte, non-image, truncated or
corrupt file.

Fast path for embedding: :func:`load_image_resized` downsizes while decoding where the format allows it (JPEG DCT
scaling via ``Image.draft``; JPEG 2000 DICOM decoded at a reduced wavelet resolution level; then ``Image.reduce`` by
an integer factor, then one antialiased resize; greyscale is resampled as one channel). 16-bit PNG/TIFF and
uncompressed or lossless-compressed DICOM cannot be decoded at reduced scale (zlib, RLE, JPEG-LS): their values are
area-averaged (``cv2.INTER_AREA`` on uint16, one pass) to twice the target before the intensity mapping, so the
8-bit mapping and the final resize touch 4-16x fewer pixels. ``benchmarks/embed_large.py`` measures where the time
goes on full-field inputs. Callers that embed many large images should cache the resized copy.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .intensity import Intensity, _gray_to_rgb, to_uint8

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "DICOM_SUFFIXES",
    "IMAGE_SUFFIXES",
    "ImageDecodeError",
    "ImageFailure",
    "format_failures",
    "is_dicom",
    "load_image",
    "load_image_resized",
    "load_images",
    "area_reduce",
    "to_uint8",  # re-exported from .intensity
]

#: Largest image accepted by default (pixels per frame): 150 megapixels, far above any mammogram (~40 MP) or
#: DBT slice, below Pillow's own hard limit (2 x ``Image.MAX_IMAGE_PIXELS`` = 179 MP).
DEFAULT_MAX_PIXELS = 150_000_000
DICOM_SUFFIXES = (".dcm", ".dicom", ".dic")
#: THE list of image file suffixes for the whole package (folder readers, predict, explain, check-images): what
#: :func:`load_image` decodes (Pillow's formats, 16-bit PNG/TIFF, DICOM).
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".pgm", ".ppm", ".pnm", ".pbm", ".webp",
                            ".gif", *DICOM_SUFFIXES})

class ImageDecodeError(ValueError):
    """An image that cannot be decoded; ``path`` and ``problem`` say which and why."""

    def __init__(self, path: str | os.PathLike, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")

    def __reduce__(self):  # picklable across DataLoader / process-pool workers
        return (type(self), (self.path, self.problem))


@dataclass(frozen=True)
class ImageFailure:
    """One file a batch could not decode."""

    path: str
    problem: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


# ---- public API -----------------------------------------------------------------------------------------------
def load_image(
    path: str | os.PathLike,
    *,
    frame: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    intensity: Intensity = "auto",
) -> np.ndarray:
    """Decode ``path`` to an (H, W, 3) uint8 RGB array (see the module docstring for the intensity policy).

    ``frame`` picks one frame of a multi-frame DICOM or a multi-page TIFF/GIF (default: the middle frame for DICOM,
    the first page otherwise). Raises :class:`ImageDecodeError` naming the file and the problem.
    """
    path = Path(path)
    _check_file(path)
    if is_dicom(path):
        return _load_dicom(path, frame=frame, max_pixels=max_pixels, intensity=intensity)
    with _open_pil(path, max_pixels) as im:
        if _is_deep_colour(im, path):
            return _load_deep_colour(path, intensity)
        _seek(im, path, frame)
        im = _oriented(im, path)
        return _pil_to_rgb_array(im, path, intensity)


def load_image_resized(
    path: str | os.PathLike,
    size: int,
    *,
    frame: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    intensity: Intensity = "auto",
    resample: Image.Resampling = Image.Resampling.BICUBIC,
) -> np.ndarray:
    """Decode ``path`` downscaled so that its *shorter* side is ``size`` (aspect kept, never upscaled).

    Meant for embedding and hashing: the backbone's own transform still resizes and centre-crops afterwards, so the
    result only has to keep at least ``size`` pixels on the short side. JPEGs are decoded at a reduced DCT scale
    (``Image.draft``), other 8-bit rasters shrink by an integer ``Image.reduce`` (box filter, cheap) to at most 2x
    the target before one antialiased resize. 16-bit and DICOM greyscale are area-averaged in their own depth to
    ``REDUCING_GAP`` x the target (JPEG 2000 DICOM first decoded at a reduced resolution level), mapped to uint8
    with the window of the full image, then resized. The long side is rounded as torchvision's ``Resize`` does, so
    an image below twice the target gives exactly the pixels of a full decode followed by ``Resize(size)``.
    """
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    path = Path(path)
    _check_file(path)
    # greyscale is resized as one channel and replicated to RGB last (3x less resampling work)
    if is_dicom(path):
        arr = _load_dicom(path, frame=frame, max_pixels=max_pixels, intensity=intensity, rgb=False,
                          min_side=REDUCING_GAP * size)
        return _gray_to_rgb(_resize_array(arr, size, resample))
    with _open_pil(path, max_pixels) as im:
        if _is_deep_colour(im, path):
            return _resize_array(_load_deep_colour(path, intensity), size, resample)
        _seek(im, path, frame)
        w, h = im.size
        if im.format == "JPEG" and min(w, h) > size:
            # DCT-domain downscale by 1/2, 1/4 or 1/8 while keeping the short side >= size
            scale = min(w, h) / size
            im.draft(im.mode if im.mode in ("L", "RGB") else "RGB", (int(w / scale), int(h / scale)))
        im = _oriented(im, path)
        if im.mode in _HIGH_DEPTH_MODES:
            # area-average the 16-bit values down to twice the target in one pass, map them to 8 bit with the
            # window of the full image (its histogram), then the final antialiased resize
            full = np.asarray(im)
            small = area_reduce(full, REDUCING_GAP * size)
            grey = to_uint8(full, "percentile" if intensity == "percentile" else "minmax", apply_to=small)
            return _gray_to_rgb(_resize_array(grey, size, resample))
        if im.mode in ("L", "LA", "1", "La"):
            return _gray_to_rgb(np.asarray(_resize_pil(im.convert("L"), size, resample)))
        rgb = _pil_to_rgb_image(im, path)
        return np.asarray(_resize_pil(rgb, size, resample))


def load_images(
    paths: Iterable[str | os.PathLike],
    *,
    frame: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    intensity: Intensity = "auto",
    size: int | None = None,
    workers: int = 0,
) -> tuple[list[np.ndarray | None], list[ImageFailure]]:
    """Decode many files; a file that fails becomes ``None`` and an :class:`ImageFailure`, the rest go on.

    ``size`` switches to :func:`load_image_resized`. ``workers > 0`` decodes in that many threads (Pillow and
    pydicom release the GIL in their decoders). Results keep the input order.
    """
    files = [Path(p) for p in paths]
    if size is None:
        def one(p: Path) -> np.ndarray:
            return load_image(p, frame=frame, max_pixels=max_pixels, intensity=intensity)
    else:
        def one(p: Path) -> np.ndarray:
            return load_image_resized(p, size, frame=frame, max_pixels=max_pixels, intensity=intensity)
    return _map_collect(one, files, workers)


def format_failures(failures: Sequence[ImageFailure], limit: int = 20) -> str:
    """A short human-readable report of decode failures (count, then one line per file)."""
    if not failures:
        return "all images decoded"
    lines = [f"{len(failures)} image(s) could not be decoded:"]
    lines += [f"  {f.path}: {f.problem}" for f in failures[:limit]]
    if len(failures) > limit:
        lines.append(f"  ... and {len(failures) - limit} more")
    return "\n".join(lines)


def pixel_size(path: str | os.PathLike) -> tuple[int, int] | None:
    """``(width, height)`` from the file header (PIL formats and DICOM), or None when it cannot be read."""
    path = Path(path)
    try:
        if is_dicom(path):
            import pydicom  # lazy: DICOM support is optional

            ds = pydicom.dcmread(path, stop_before_pixels=True)
            return int(ds.Columns), int(ds.Rows)
        with Image.open(path) as im:
            return int(im.size[0]), int(im.size[1])
    except Exception:  # any unreadable header: the size is simply unknown
        return None


def is_dicom(path: str | os.PathLike) -> bool:
    """True for a DICOM suffix or the ``DICM`` magic at byte 128 (files without a suffix are common in PACS dumps)."""
    path = Path(path)
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


# ---- helpers: files and Pillow ---------------------------------------------------------------------------------
def _check_file(path: Path) -> None:
    if not path.exists():
        raise ImageDecodeError(path, "file not found")
    if path.is_dir():
        raise ImageDecodeError(path, "is a directory, not an image file")
    try:
        size = path.stat().st_size
    except OSError as e:
        raise ImageDecodeError(path, f"cannot read file ({e.strerror or e})") from e
    if size == 0:
        raise ImageDecodeError(path, "zero-byte file (empty; an interrupted copy or download?)")


_MAGIC = {b"\x89PNG": "PNG", b"\xff\xd8\xff": "JPEG", b"II*\x00": "TIFF", b"MM\x00*": "TIFF", b"GIF8": "GIF",
          b"BM": "BMP", b"P5": "PGM", b"P6": "PPM", b"P2": "PGM", b"RIFF": "WebP"}


def _describe_non_image(path: Path, error: Exception) -> str:
    with open(path, "rb") as fh:
        head = fh.read(512)
    for magic, fmt in _MAGIC.items():
        if head.startswith(magic):
            return f"corrupt {fmt} header: the file starts like a {fmt} but cannot be parsed ({error})"
    if head.lstrip().startswith((b"<!DOCTYPE", b"<html", b"<HTML", b"<?xml")):
        kind = "an HTML/XML document (a failed download?)"
    elif head.startswith(b"version https://git-lfs"):
        kind = "a Git LFS pointer (run `git lfs pull`)"
    elif head.startswith(b"PK\x03\x04"):
        kind = "a ZIP archive"
    elif head.startswith(b"%PDF"):
        kind = "a PDF document"
    elif _looks_like_text(head):
        kind = "a text file"
    else:
        kind = f"an unrecognised binary format (first bytes {head[:8].hex(' ')})"
    return f"not an image: the content is {kind}, whatever the '{path.suffix}' suffix says"


def _looks_like_text(head: bytes) -> bool:
    if not head or b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


class _open_pil:
    """Context manager: open with Pillow, turning its failures and bomb checks into ImageDecodeError."""

    def __init__(self, path: Path, max_pixels: int):
        self.path, self.max_pixels = path, max_pixels
        self.im: Image.Image | None = None

    def __enter__(self) -> Image.Image:
        path = self.path
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                im = self.im = Image.open(path)
        except Image.DecompressionBombError as e:
            raise ImageDecodeError(path, f"decompression bomb guard: {e} (Pillow's own limit, "
                                         "PIL.Image.MAX_IMAGE_PIXELS; raise it if the image is genuine)") from e
        except UnidentifiedImageError as e:
            raise ImageDecodeError(path, _describe_non_image(path, e)) from e
        except (OSError, SyntaxError, ValueError) as e:
            raise ImageDecodeError(path, f"corrupt image header ({e})") from e
        w, h = im.size
        if w * h > self.max_pixels:
            im.close()
            raise ImageDecodeError(path, f"decompression bomb guard: {w}x{h} = {w * h:,} pixels exceeds max_pixels="
                                         f"{self.max_pixels:,} (raise max_pixels if the image is genuine)")
        return im

    def __exit__(self, *exc) -> None:
        if self.im is not None:
            self.im.close()


def _seek(im: Image.Image, path: Path, frame: int | None) -> None:
    n = getattr(im, "n_frames", 1)
    if frame is None:
        return
    if not 0 <= frame < n:
        raise ImageDecodeError(path, f"frame {frame} out of range: the file has {n} frame(s) (0..{n - 1})")
    try:
        im.seek(frame)
    except (OSError, EOFError) as e:
        raise ImageDecodeError(path, f"cannot read frame {frame}: {e}") from e


def _oriented(im: Image.Image, path: Path) -> Image.Image:
    """Load the pixels (surfacing truncation/corruption here) and apply the EXIF orientation."""
    _load_pixels(im, path)
    try:
        out = ImageOps.exif_transpose(im)
    except Exception:  # a malformed EXIF block must not lose a decodable image
        return im
    return out if out is not None else im


def _load_pixels(im: Image.Image, path: Path) -> None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im.load()
    except OSError as e:
        msg = str(e)
        if "truncated" in msg or "not enough data" in msg.lower() or "EOF" in msg:
            raise ImageDecodeError(path, f"truncated image data ({msg}); the file is incomplete") from e
        raise ImageDecodeError(path, f"corrupt image data ({msg})") from e
    except (SyntaxError, ValueError, EOFError) as e:
        raise ImageDecodeError(path, f"corrupt image data ({e})") from e


_HIGH_DEPTH_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")


def _pil_to_rgb_array(im: Image.Image, path: Path, intensity: Intensity) -> np.ndarray:
    if im.mode in _HIGH_DEPTH_MODES:
        arr = np.asarray(im)
        return _gray_to_rgb(to_uint8(arr, "percentile" if intensity == "percentile" else "minmax"))
    if im.mode in ("L", "LA", "1", "La"):
        return _gray_to_rgb(np.asarray(im.convert("L")))
    return np.asarray(_pil_to_rgb_image(im, path))


def _pil_to_rgb_image(im: Image.Image, path: Path) -> Image.Image:
    try:
        if im.mode == "RGB":
            return im
        if im.mode in ("L", "LA", "1", "La"):
            return im.convert("L").convert("RGB")
        # RGBA / P / PA / CMYK / YCbCr / LAB / HSV: Pillow's convert handles the colour maths; alpha is dropped
        if im.mode == "P" and "transparency" in im.info:
            im = im.convert("RGBA")
        return im.convert("RGB")
    except (OSError, ValueError) as e:
        raise ImageDecodeError(path, f"cannot convert mode {im.mode} to RGB ({e})") from e


def _is_deep_colour(im: Image.Image, path: Path) -> bool:
    """16-bit-per-sample colour PNG/TIFF, which Pillow would silently truncate to the top 8 bits."""
    if im.format == "PNG":
        with open(path, "rb") as fh:
            head = fh.read(26)
        return len(head) == 26 and head[24] == 16 and head[25] in (2, 6)  # bit depth 16, RGB or RGBA
    if im.format == "TIFF":
        bits = getattr(im, "tag_v2", {}).get(258)
        bits = bits if isinstance(bits, tuple) else (bits,)
        return len(bits) >= 3 and any(b is not None and b > 8 for b in bits)
    return False


def _load_deep_colour(path: Path, intensity: Intensity) -> np.ndarray:
    """Decode 16-bit colour with OpenCV (a grad-cam dependency) and scale all channels by one window."""
    try:
        import cv2
    except ImportError as e:  # pragma: no cover - opencv comes with grad-cam
        raise ImageDecodeError(path, "16-bit colour image needs OpenCV (pip install opencv-python-headless)") from e
    data = np.fromfile(path, dtype=np.uint8)
    arr = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise ImageDecodeError(path, "corrupt or truncated 16-bit colour image (OpenCV could not decode it)")
    if arr.ndim == 2:
        return _gray_to_rgb(to_uint8(arr, "percentile" if intensity == "percentile" else "minmax"))
    rgb = arr[..., 2::-1] if arr.shape[2] >= 3 else arr  # BGR(A) -> RGB, alpha dropped
    return to_uint8(np.ascontiguousarray(rgb), "percentile" if intensity == "percentile" else "minmax")


def _target_size(w: int, h: int, size: int) -> tuple[int, int]:
    """torchvision's ``Resize(size)`` rule: the short side becomes ``size``, the long side ``int(size * long /
    short)``; using the same rule means a later ``Resize(size)`` of the result is the identity (same pixels as a
    direct resize of the full image, for inputs that are not reduced first)."""
    if w <= h:
        return size, max(1, int(size * h / w))
    return max(1, int(size * w / h)), size


def _resize_pil(im: Image.Image, size: int, resample: Image.Resampling) -> Image.Image:
    w, h = im.size
    short = min(w, h)
    if short <= size:
        return im
    new = _target_size(w, h, size)  # from the full size, before any integer reduce
    factor = short // (2 * size)
    if factor >= 2:
        im = im.reduce(factor)
    return im.resize(new, resample, reducing_gap=None)


#: The reduced-resolution paths shrink cheaply (DCT scaling, JPEG 2000 resolution levels, area averaging) to at
#: least this many times the target before the final antialiased resize, like Pillow's ``reducing_gap``.
REDUCING_GAP = 2
_AREA_DTYPES = (np.uint8, np.uint16, np.int16, np.float32, np.float64)


def area_reduce(arr: np.ndarray, min_side: int, full_shape: tuple[int, int] | None = None) -> np.ndarray:
    """Shrink an (H, W) or (H, W, C) array by area averaging (``cv2.INTER_AREA``, one pass, in its own dtype:
    uint8, uint16, int16, float) so that its shorter side is ``min_side``; returned as is when not larger, or of
    a dtype OpenCV cannot average. ``full_shape``: the (H, W) of the full-resolution image when ``arr`` is already a
    reduced decode of it, so the output size (and aspect) is exactly what reducing the full image gives."""
    h, w = arr.shape[:2]
    if min(h, w) <= min_side or arr.dtype.type not in _AREA_DTYPES:
        return arr
    import cv2  # a core dependency, imported here so that importing this module stays light

    fh, fw = full_shape or (h, w)
    scale = min_side / min(fh, fw)
    return cv2.resize(np.ascontiguousarray(arr), (max(1, round(fw * scale)), max(1, round(fh * scale))),
                      interpolation=cv2.INTER_AREA)


def _resize_array(arr: np.ndarray, size: int, resample: Image.Resampling) -> np.ndarray:
    if min(arr.shape[:2]) <= size:
        return arr
    return np.asarray(_resize_pil(Image.fromarray(arr), size, resample))


def _map_collect(fn: Callable[[Path], np.ndarray], paths: list[Path],
                 workers: int) -> tuple[list[np.ndarray | None], list[ImageFailure]]:
    def safe(p: Path) -> np.ndarray | ImageFailure:
        try:
            return fn(p)
        except ImageDecodeError as e:
            return ImageFailure(e.path, e.problem)
        except MemoryError:
            return ImageFailure(str(p), "out of memory while decoding")

    if workers > 0 and len(paths) > 1:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(safe, paths))
    else:
        results = [safe(p) for p in paths]
    arrays: list[np.ndarray | None] = []
    failures: list[ImageFailure] = []
    for r in results:
        if isinstance(r, ImageFailure):
            failures.append(r)
            arrays.append(None)
        else:
            arrays.append(r)
    return arrays, failures


# ---- DICOM ---------------------------------------------------------------------------------------------------------
def _load_dicom(path: Path, *, frame: int | None, max_pixels: int, intensity: Intensity,
                rgb: bool = True, min_side: int | None = None) -> np.ndarray:
    from ._dicom import load_dicom

    return load_dicom(path, frame=frame, max_pixels=max_pixels, intensity=intensity, rgb=rgb, min_side=min_side)
