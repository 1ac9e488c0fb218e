# Copyright 2026 The DeepSight authors. Licensed under the Apache License, Version 2.0.
"""Depth codec: every depth encoding DeepSight reads, decoded to metres (and encoded back).

Inside DeepSight depth is metric: a float32 ``H x W`` array in metres where ``0`` means "invalid"
(no return, saturated sensor, NaN...). Users hold depth in many encodings; the helpers here are the
one place that turns each of them into metres (and back):

=============  =====================================================================================
encoding       on-disk / in-memory layout
=============  =====================================================================================
``"metres"``   float array of metres (``.npy``, PIL ``F``, torch tensors). NaN / inf are invalid.
``"mm"``       uint16 millimetres (NYU, 16-bit PNGs written by this project, most RGB-D datasets).
``"sun"``      SUN RGB-D's bit-rotated uint16: ``mm = ((d >> 3) | (d << 13)) & 0xFFFF``, i.e. a 16-bit
               rotate-right by 3 bits, exactly as the SUNRGBD toolbox ``read3dPoints.m`` reads it.
``"gray8"``    8-bit *relative* grayscale, brighter = closer (the paper's depth images). ``0`` is
               invalid; ``v`` in ``1..255`` decodes linearly to ``max_depth * (256 - v) / 255`` metres
               (``max_depth`` defaults to ``GRAY8_MAX_DEPTH`` = 10 m; the image processor passes its own),
               a *pseudo-metric* scale in ``(0, max_depth]``: the order of depths is right, their
               absolute values are not (an 8-bit relative map carries no scale).
=============  =====================================================================================

This file may import only numpy, PIL, torch and transformers: `save_pretrained` copies it next to the weights,
as a relative import of ``image_processing_deepsight.py``, for ``trust_remote_code``.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
from PIL import Image
from transformers.utils import logging

from .depth_estimation_deepsight import DEFAULT_DEPTH_ESTIMATOR


logger = logging.get_logger(__name__)

DEPTH_ENCODINGS = ("metres", "mm", "sun", "gray8")
# Encodings `encode_depth` can write (metres is already the in-memory form).
STORAGE_ENCODINGS = ("mm", "sun", "gray8")
# Scale of the gray8 pseudo-metric decoding: the farthest gray level (1) decodes to this many metres.
GRAY8_MAX_DEPTH = 10.0
# Largest depth a uint16 millimetre value can hold.
MAX_UINT16_METRES = 65.535

# Plausible range of an indoor RGB-D sensor, used only to tell SUN's rotated layout from plain mm.
_SUN_PLAUSIBLE_METRES = (0.1, 20.0)
# Half, not more: a SUN map of a large room has many pixels beyond 8.19 m (which set the low bits), while
# plain millimetres have the low bits clear in only ~1 pixel in 8.
_SUN_LOW_BITS_CLEAR = 0.5
_SUN_MIN_PIXELS = 64
_DETECTION_SAMPLE_PIXELS = 65536


# --------------------------------------------------------------------------------------------------
# Small array utilities
# --------------------------------------------------------------------------------------------------


def _to_numpy(array: Any, name: str) -> np.ndarray:
    """numpy view of a numpy array, torch tensor, PIL image or nested list (no decoding); numbers only."""
    if isinstance(array, torch.Tensor):
        array = array.detach().cpu()
        # numpy has no bfloat16; half precision is widened too so decoding never loses range
        array = (array.float() if array.dtype in (torch.bfloat16, torch.float16) else array).numpy()
    elif isinstance(array, Image.Image):
        array = _pil_to_numpy(array, name)
    elif isinstance(array, (list, tuple)):
        try:
            array = np.asarray(array)
        except ValueError as error:  # ragged nesting
            raise ValueError(f"`{name}` is a nested list that is not a rectangular array of numbers.") from error
    elif not isinstance(array, np.ndarray):
        raise ValueError(
            f"`{name}` must be a numpy array, torch tensor, PIL image or path, got {type(array).__name__}."
        )
    _check_depth_dtype(array, name)
    return array


def _check_depth_dtype(array: np.ndarray, name: str) -> None:
    """Depth is real numbers: a bool mask, complex values or Python objects are no depth map."""
    if array.dtype == np.bool_ or not (
        np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)
    ):
        raise ValueError(
            f"`{name}` has dtype {array.dtype}; expected a depth map of real numbers: float metres, uint16 "
            "millimetres (or SUN layout) or uint8 gray levels."
        )


# PIL modes of 16-bit (or wider) single-channel images: their values reach numpy intact.
_WIDE_PIL_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")
# Errors PIL and numpy raise for a file they cannot decode (corrupt, truncated, a lying header).
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)


def check_pil_bit_depth(image: Image.Image, name: str) -> None:
    """Refuse an image PIL would narrow: a 16-bit colour / gray+alpha file opens as 8 bits per channel.

    Read from the undecoded image's tile descriptors (the file's raw layout): once loaded, the 16 bits are gone.
    """
    for tile in getattr(image, "tile", None) or []:
        args = tile.args if isinstance(tile.args, tuple) else (tile.args,)
        rawmode = next((arg for arg in args if isinstance(arg, str)), "")
        if image.mode not in _WIDE_PIL_MODES and ";16" in rawmode:
            raise ValueError(
                f"`{name}` is a 16-bit {image.mode} image (raw layout {rawmode}), which PIL reads as 8 bits per "
                "channel: its depth would be lost (1.23 m read as ~9.8 m). Save depth as a single-channel 16-bit "
                "PNG (PIL mode I;16, millimetres) or pass the uint16 array."
            )


def _pil_to_numpy(image: Image.Image, name: str) -> np.ndarray:
    if image.mode == "1":
        raise ValueError(
            f"`{name}` is a 1-bit (black and white) image: a mask, not a depth map. Pass the depth map itself."
        )
    check_pil_bit_depth(image, name)
    try:
        image.load()  # a lazily opened image decodes here
    except _DECODE_ERRORS as error:
        raise ValueError(f"`{name}` is corrupt or truncated; PIL could not decode it: {error}") from error
    # PIL's "I;16" family converts to uint16 via numpy directly; "I" (int32) holds 16-bit PNGs too.
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        return np.asarray(image, dtype=np.uint16)
    if image.mode == "I":
        return np.asarray(image, dtype=np.int32)
    if image.mode == "F":
        return np.asarray(image, dtype=np.float32)
    if image.mode in ("L", "RGB"):
        return np.asarray(image)
    if image.mode == "LA":
        return np.asarray(image.getchannel("L"))
    if image.mode in ("RGBA", "P", "CMYK", "YCbCr"):
        return np.asarray(image.convert("RGB"))
    raise ValueError(f"`{name}` is a PIL image of unsupported mode {image.mode!r} for a depth map.")


def _is_gray_rgb(array: np.ndarray) -> bool:
    """True for an H x W x 3(+alpha) array whose colour channels are equal up to JPEG chroma noise.

    "Equal" allows a mean absolute difference below one gray level, which a grayscale image saved as an RGB
    JPEG stays under; a photograph or a false-colour depth rendering is far above it.
    """
    if array.ndim != 3 or array.shape[-1] not in (3, 4):
        return False
    red, green, blue = (array[..., c].astype(np.int32) for c in range(3))
    return bool(np.mean(np.abs(red - green)) < 1.0 and np.mean(np.abs(red - blue)) < 1.0)


def is_colour_photo(image: Any) -> bool:
    """True for an 8-bit RGB(A) photo: a PIL colour image or an H x W x 3(+alpha) uint8 array whose colour channels
    differ (a grayscale depth image saved as RGB, `_is_gray_rgb`, is not a photo).

    The test that sends an input to a depth estimator instead of the depth decoder.
    """
    if isinstance(image, Image.Image):
        if image.mode not in ("RGB", "RGBA", "P", "CMYK", "YCbCr"):
            return False
        image = np.asarray(image.convert("RGB"))
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        return False
    return image.ndim == 3 and image.shape[-1] in (3, 4) and image.size > 0 and not _is_gray_rgb(image)


def _luma(array: np.ndarray) -> np.ndarray:
    """ITU-R 601 luma of an RGB(A) array, rounded like PIL's ``convert("L")``."""
    rgb = array[..., :3].astype(np.float32)
    return np.round(rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)).clip(0, 255).astype(np.uint8)


def _squeeze_to_2d(array: np.ndarray, name: str, allow_gray_rgb: bool = False) -> np.ndarray:
    """Accept H x W, H x W x 1 and 1 x H x W; an RGB(A) image only as gray8 (its luma) when allowed."""
    if array.ndim == 2:
        return array
    if array.ndim == 3 and array.shape[-1] == 1:
        return array[..., 0]
    if array.ndim == 3 and array.shape[0] == 1:
        return array[0]
    if array.ndim == 3 and array.shape[-1] in (3, 4):
        if allow_gray_rgb:
            return _luma(array)
        raise ValueError(
            f"`{name}` has {array.shape[-1]} colour channels (shape {array.shape}) where a single-channel depth map "
            "was expected. Pass a depth map, not an RGB photo, or have photos estimated to metric depth by naming "
            "an AutoModelForDepthEstimation checkpoint on the image processor, e.g. DeepSightImageProcessor("
            f"depth_estimator={DEFAULT_DEPTH_ESTIMATOR!r}); a grayscale depth image saved as RGB (equal "
            "channels) is detected as gray8, and depth_encoding='gray8' reads any RGB image by its luma."
        )
    hint = (
        " It looks like a channel-first colour image (C x H x W): pass a depth map, not a photo."
        if array.ndim == 3 and array.shape[0] in (3, 4) else ""
    )
    raise ValueError(
        f"`{name}` must be a depth map of shape (H, W), (H, W, 1) or (1, H, W); got shape {array.shape}.{hint}"
    )


def _check_not_empty(array: np.ndarray, name: str) -> None:
    if array.size == 0 or min(array.shape) == 0:
        raise ValueError(f"`{name}` is empty (shape {array.shape}); expected a non-empty depth map.")


# --------------------------------------------------------------------------------------------------
# Decoding / encoding
# --------------------------------------------------------------------------------------------------


def _rotate_right_3(raw: np.ndarray) -> np.ndarray:
    """SUN RGB-D layout -> millimetres: 16-bit rotate-right by 3 bits."""
    d = raw.astype(np.uint32)
    return (((d >> 3) | (d << 13)) & 0xFFFF).astype(np.uint16)


def _rotate_left_3(mm: np.ndarray) -> np.ndarray:
    """Millimetres -> SUN RGB-D layout (inverse of `_rotate_right_3`)."""
    d = mm.astype(np.uint32)
    return (((d << 3) | (d >> 13)) & 0xFFFF).astype(np.uint16)


def _check_integer_range(array: np.ndarray, low: int, high: int, name: str, encoding: str) -> np.ndarray:
    """Integer-valued array in [low, high] (floats holding integers are accepted, e.g. after a resize)."""
    if np.issubdtype(array.dtype, np.floating):
        finite = np.isfinite(array)
        if not np.all(finite):
            array = np.where(finite, array, 0)
        if not np.array_equal(array, np.round(array)):
            raise ValueError(f"`{name}` declared as {encoding!r} must hold integers; got non-integer floats.")
    elif not np.issubdtype(array.dtype, np.integer):
        raise ValueError(
            f"`{name}` declared as {encoding!r} must be an integer array; got dtype {array.dtype}."
        )
    if array.size and (array.min() < low or array.max() > high):
        raise ValueError(
            f"`{name}` declared as {encoding!r} must hold values in [{low}, {high}]; got "
            f"[{array.min()}, {array.max()}]" + (" (negative depth)" if array.min() < 0 else "") + "."
        )
    return array


def decode_depth(
    array: Any, encoding: str, name: str = "depth", max_depth: float = GRAY8_MAX_DEPTH
) -> np.ndarray:
    """Decode a depth map in `encoding` to float32 metres (H x W, ``0`` = invalid).

    Args:
        array: numpy array, torch tensor or PIL image of shape (H, W) (a singleton channel is squeezed).
        encoding: one of ``"metres"``, ``"mm"``, ``"sun"``, ``"gray8"`` (see the module docstring).
        name: how error messages call the input.
        max_depth: the scale of the ``"gray8"`` pseudo-metres (ignored by the metric encodings).

    NaN and inf are not errors: they become ``0`` (invalid). Negative depth is a `ValueError`. A map
    without any valid pixel is returned as is (readers may want to count and skip those); `load_depth`
    rejects it. ``"gray8"`` decodes to a relative pseudo-metric scale in ``(0, max_depth]``
    (brighter = closer).
    """
    if encoding not in DEPTH_ENCODINGS:
        raise ValueError(f"`depth_encoding` must be one of {DEPTH_ENCODINGS}; got {encoding!r}.")
    array = _squeeze_to_2d(_to_numpy(array, name), name, allow_gray_rgb=encoding == "gray8")
    _check_not_empty(array, name)

    if encoding == "metres":
        metres = array.astype(np.float32, copy=True)
        metres[~np.isfinite(metres)] = 0.0
        if metres.min() < 0:
            raise ValueError(
                f"`{name}` holds negative depth (min {metres.min():.4g} m); depth must be >= 0 (0 = invalid)."
            )
        return metres
    if encoding == "mm":
        mm = _check_integer_range(array, 0, 0xFFFF, name, encoding)
        return (mm.astype(np.float32) / 1000.0).astype(np.float32)
    if encoding == "sun":
        raw = _check_integer_range(array, 0, 0xFFFF, name, encoding)
        return _rotate_right_3(raw).astype(np.float32) / np.float32(1000.0)
    # gray8
    gray = _check_integer_range(array, 0, 255, name, encoding).astype(np.float32)
    if not max_depth > 0:
        raise ValueError(f"`max_depth` for gray8 must be > 0 metres; got {max_depth}.")
    metres = np.float32(max_depth) * (256.0 - gray) / 255.0
    metres[gray == 0] = 0.0
    return metres.astype(np.float32)


def encode_depth(
    metres: Any, encoding: str, name: str = "metres", max_depth: float = GRAY8_MAX_DEPTH
) -> np.ndarray:
    """Encode float metres (``0`` / NaN / inf = invalid) as ``"mm"``, ``"sun"`` (uint16) or ``"gray8"``.

    The inverse of `decode_depth`: mm and sun round to the nearest millimetre (values beyond 65.535 m are a
    `ValueError`); gray8 quantises ``(0, max_depth]`` to levels ``255..1`` (brighter = closer) and
    clips farther depths to level 1. Invalid pixels are written as ``0`` in every encoding.
    """
    if encoding not in STORAGE_ENCODINGS:
        raise ValueError(f"`encoding` must be one of {STORAGE_ENCODINGS} for encode_depth; got {encoding!r}.")
    metres = decode_depth(metres, "metres", name=name)
    valid = metres > 0
    if encoding == "gray8":
        if not max_depth > 0:
            raise ValueError(f"`max_depth` for gray8 must be > 0 metres; got {max_depth}.")
        levels = np.clip(np.round(256.0 - 255.0 * metres / max_depth), 1, 255)
        return np.where(valid, levels, 0).astype(np.uint8)
    if metres.max() > MAX_UINT16_METRES:
        raise ValueError(
            f"`{name}` holds {metres.max():.3f} m, beyond the {MAX_UINT16_METRES} m a uint16 millimetre "
            "value can store."
        )
    mm = np.round(metres.astype(np.float64) * 1000.0).astype(np.uint16)
    return _rotate_left_3(mm) if encoding == "sun" else mm


def depth_to_png_mm(metres: Any) -> np.ndarray:
    """Float metres -> uint16 millimetres, the project's lossless on-disk form (``0`` = invalid).

    Write it with ``PIL.Image.fromarray(depth_to_png_mm(m))`` (mode ``I;16``) and read it back with
    `load_depth`.
    """
    return encode_depth(metres, "mm")


def detect_depth_encoding(array: Any, name: str = "depth") -> str:
    """Guess the encoding of a raw depth map. The rule, in order:

    1. floating point -> ``"metres"``;
    2. uint8 (PIL ``L``), or an 8-bit H x W x 3 image whose three channels are equal up to JPEG noise (a
       grayscale depth image saved as RGB; a warning says so) -> ``"gray8"``; other 3-channel images ->
       `ValueError` (colour, not depth), unless the caller declares ``"gray8"`` (then the luma is used);
    3. 16-bit integers -> ``"sun"`` when at least half of the non-zero pixels have their 3 low bits zero
       (SUN stores ``mm`` rotated left by 3, so only depths beyond 8.19 m set them; in plain millimetres
       about 1 pixel in 8 has them zero) *and* the SUN decoding puts the median valid depth within
       0.1-20 m; else ``"mm"``. Fewer than 64 non-zero pixels are too few to tell: ``"mm"``. These statistics
       are taken on a regular subsample of about 65k pixels.
       Wider integer types (PIL mode ``I``) whose values fit in 16 bits are treated the same way.
    """
    raw = _to_numpy(array, name)
    if raw.ndim == 3 and raw.shape[-1] in (3, 4):
        if np.issubdtype(raw.dtype, np.integer) and raw.max(initial=0) <= 255 and _is_gray_rgb(raw):
            logger.warning(
                f"`{name}` is a grayscale image stored as RGB (equal channels); reading it as gray8."
            )
            return "gray8"
        _squeeze_to_2d(raw, name)  # raises the colour-image error
    raw = _squeeze_to_2d(raw, name)
    _check_not_empty(raw, name)
    if np.issubdtype(raw.dtype, np.floating):
        return "metres"
    if raw.dtype == np.uint8:
        return "gray8"
    if raw.min() < 0:
        raise ValueError(
            f"`{name}` holds negative values (min {raw.min()}); depth must be >= 0 (0 = invalid)."
        )
    if raw.max() > 0xFFFF:
        raise ValueError(
            f"`{name}` holds integers up to {raw.max()}, beyond 16 bits; expected uint16 millimetres or SUN "
            "layout. Convert metres to float to pass them as 'metres'."
        )
    # The statistics need no more than a regular subsample (deterministic; detection dominated the runtime).
    stride = max(1, int(np.sqrt(raw.size / _DETECTION_SAMPLE_PIXELS)))
    nonzero = raw[::stride, ::stride]
    nonzero = nonzero[nonzero > 0]
    if nonzero.size < _SUN_MIN_PIXELS:
        return "mm"
    low_bits_clear = float(np.mean((nonzero & 0b111) == 0))
    median_sun = float(np.median(_rotate_right_3(nonzero))) / 1000.0
    low, high = _SUN_PLAUSIBLE_METRES
    if low_bits_clear >= _SUN_LOW_BITS_CLEAR and low <= median_sun <= high:
        return "sun"
    return "mm"


def _num_pixels(raw: Any) -> int:
    """Pixels of a raw depth map, from its size alone (nothing decoded yet)."""
    if isinstance(raw, Image.Image):
        return raw.width * raw.height
    shape = tuple(raw.shape) if hasattr(raw, "shape") else np.shape(raw)
    return int(np.prod(shape[:2])) if len(shape) == 3 and shape[-1] in (1, 3, 4) else int(np.prod(shape[-2:]))


def _check_max_pixels(raw: Any, name: str, max_pixels: int | None) -> None:
    """Refuse a map over `max_pixels` from its size alone (a lazily opened file: its header), before decoding."""
    if max_pixels is not None and _num_pixels(raw) > max_pixels:
        raise ValueError(
            f"`{name}` has {_num_pixels(raw):,} pixels, more than max_pixels={max_pixels:,}; downscale it "
            "first or raise `max_pixels`."
        )


def _read_depth_file(path: str, name: str, max_pixels: int | None) -> np.ndarray:
    """The file's raw depth array; its size is checked from the header, before anything is decoded."""
    if not os.path.isfile(path):
        raise ValueError(f"Depth file {path!r} does not exist.")
    unreadable = f"`{name}` is not a readable depth file (corrupt, truncated or not an image)"
    if path.lower().endswith(".npy"):
        try:
            lazy = np.load(path, mmap_mode="r", allow_pickle=False)  # maps the file: only the header is read
        except Exception as error:  # noqa: BLE001 - a corrupt header escapes numpy's parser as ast/tokenize errors
            raise ValueError(f"{unreadable}: {error!r}") from error
    else:
        try:
            lazy = Image.open(path)  # reads the header only
        except _DECODE_ERRORS as error:
            raise ValueError(f"{unreadable}: {error}") from error
    if isinstance(lazy, np.ndarray):
        _check_max_pixels(lazy, name, max_pixels)
        return np.array(lazy)
    with lazy:
        _check_max_pixels(lazy, name, max_pixels)
        return _pil_to_numpy(lazy, name)


def input_name(obj: Any, name: str) -> str:
    """How messages call a depth input: `name`, followed by the file's path for a path."""
    return f"{name} ({os.fspath(obj)})" if isinstance(obj, (str, os.PathLike)) else name


def read_depth_input(obj: Any, name: str = "depth", max_pixels: int | None = None) -> tuple[np.ndarray, str]:
    """``(raw array, name)`` of a path, PIL image, array or tensor, nothing decoded yet; a path's name gains the path.

    The size is checked against `max_pixels` first (a file's from its header).
    """
    if isinstance(obj, (str, os.PathLike)):
        name = input_name(obj, name)
        obj = _read_depth_file(os.fspath(obj), name, max_pixels)
    _check_max_pixels(obj, name, max_pixels)
    return _to_numpy(obj, name), name


def load_depth(
    obj: Any,
    encoding: str | None = None,
    name: str = "depth",
    max_depth: float = GRAY8_MAX_DEPTH,
    max_pixels: int | None = None,
) -> tuple[np.ndarray, str]:
    """Load a depth map from any supported source and decode it to float32 metres.

    Args:
        obj: a path (``.png`` 16- or 8-bit, ``.npy``, ``.jpg`` grayscale...), a PIL image (modes ``I;16``,
            ``I``, ``L``, ``F``, or ``RGB`` with equal channels), a numpy array or a torch tensor.
        encoding: one of ``DEPTH_ENCODINGS``, or ``None`` to detect it with `detect_depth_encoding`.
        name: how error messages call the input.
        max_depth: the scale of ``"gray8"`` pseudo-metres (see `decode_depth`).
        max_pixels: larger maps are rejected before anything is decoded (``None``: no limit); a file's size is
            read from its header.

    Returns:
        ``(metres, encoding_used)``: float32 H x W metres (``0`` = invalid) and the encoding assumed.

    Raises:
        ValueError: unknown encoding, wrong shape, colour image, negative depth, more than `max_pixels`, a map
            with no valid pixel, a dtype that is not real numbers (bool, complex, object), a 1-bit or a 16-bit
            colour image, or a file that cannot be decoded (corrupt, truncated, a decompression bomb); the message
            names `name` (and the file).
    """
    raw, name = read_depth_input(obj, name, max_pixels)
    if encoding is None:
        encoding = detect_depth_encoding(raw, name=name)
    metres = decode_depth(raw, encoding, name=name, max_depth=max_depth)
    if not np.any(metres > 0):
        raise ValueError(f"`{name}` has no valid pixel (all zero, NaN or inf); expected some depth > 0.")
    return metres, encoding


__all__ = [
    "DEPTH_ENCODINGS",
    "check_pil_bit_depth",
    "decode_depth",
    "depth_to_png_mm",
    "detect_depth_encoding",
    "encode_depth",
    "is_colour_photo",
    "load_depth",
    "read_depth_input",
]
