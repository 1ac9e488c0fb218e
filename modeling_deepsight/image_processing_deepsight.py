# Copyright 2026 The DeepSight authors. Licensed under the Apache License, Version 2.0.
"""Depth decoding helpers and the DeepSight image processor.

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

This module may import only numpy, PIL, torch and transformers (it is copied next to the weights by
``save_pretrained`` for ``trust_remote_code``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from transformers.image_processing_base import BatchFeature
from transformers.image_processing_utils import BaseImageProcessor
from transformers.processing_utils import ImagesKwargs
from transformers.utils import logging

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
    """numpy view of a numpy array, torch tensor, PIL image or nested list (no decoding)."""
    if isinstance(array, torch.Tensor):
        array = array.detach().cpu()
        # numpy has no bfloat16; half precision is widened too so decoding never loses range
        return (array.float() if array.dtype in (torch.bfloat16, torch.float16) else array).numpy()
    if isinstance(array, Image.Image):
        return _pil_to_numpy(array)
    if isinstance(array, np.ndarray):
        return array
    if isinstance(array, (list, tuple)):
        return np.asarray(array)
    raise ValueError(
        f"`{name}` must be a numpy array, torch tensor, PIL image or path, got {type(array).__name__}."
    )


def _pil_to_numpy(image: Image.Image) -> np.ndarray:
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
    if image.mode in ("RGBA", "P", "1", "CMYK", "YCbCr"):
        return np.asarray(image.convert("RGB"))
    raise ValueError(f"Depth image has unsupported PIL mode {image.mode!r}.")


def _is_gray_rgb(array: np.ndarray) -> bool:
    """True for an H x W x 3(+alpha) array whose colour channels are equal up to JPEG chroma noise.

    "Equal" allows a mean absolute difference below one gray level, which a grayscale image saved as an RGB
    JPEG stays under; a photograph or a false-colour depth rendering is far above it.
    """
    if array.ndim != 3 or array.shape[-1] not in (3, 4):
        return False
    red, green, blue = (array[..., c].astype(np.int32) for c in range(3))
    return bool(np.mean(np.abs(red - green)) < 1.0 and np.mean(np.abs(red - blue)) < 1.0)


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
            f"`{name}` has 3 colour channels (shape {array.shape}) where a single-channel depth map was "
            "expected. Pass a depth map, not an RGB photo; a grayscale depth image saved as RGB (equal "
            "channels) is detected as gray8, and depth_encoding='gray8' reads any RGB image by its luma."
        )
    raise ValueError(
        f"`{name}` must be a depth map of shape (H, W), (H, W, 1) or (1, H, W); got shape {array.shape}."
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
    elif not np.issubdtype(array.dtype, np.integer) and array.dtype != np.bool_:
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
        if not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
            raise ValueError(f"`{name}` declared as 'metres' must be numeric; got dtype {array.dtype}.")
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
    if raw.dtype == np.uint8 or raw.dtype == np.bool_:
        return "gray8"
    if not np.issubdtype(raw.dtype, np.integer):
        raise ValueError(f"`{name}` has dtype {raw.dtype}; expected a float, uint8 or uint16 depth map.")
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


def _read_depth_file(path: str | os.PathLike) -> Any:
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"Depth file {path!r} does not exist.")
    if path.lower().endswith(".npy"):
        return np.load(path, allow_pickle=False)
    with Image.open(path) as image:
        image.load()
        return image


def load_depth(
    obj: Any, encoding: str | None = None, name: str = "depth", max_depth: float = GRAY8_MAX_DEPTH
) -> tuple[np.ndarray, str]:
    """Load a depth map from any supported source and decode it to float32 metres.

    Args:
        obj: a path (``.png`` 16- or 8-bit, ``.npy``, ``.jpg`` grayscale...), a PIL image (modes ``I;16``,
            ``I``, ``L``, ``F``, or ``RGB`` with equal channels), a numpy array or a torch tensor.
        encoding: one of ``DEPTH_ENCODINGS``, or ``None`` to detect it with `detect_depth_encoding`.
        name: how error messages call the input.
        max_depth: the scale of ``"gray8"`` pseudo-metres (see `decode_depth`).

    Returns:
        ``(metres, encoding_used)``: float32 H x W metres (``0`` = invalid) and the encoding assumed.

    Raises:
        ValueError: unknown encoding, wrong shape, colour image, negative depth, or a map with no valid pixel.
    """
    if isinstance(obj, (str, os.PathLike)):
        name = f"{name} ({os.fspath(obj)})"
        obj = _read_depth_file(obj)
    raw = _to_numpy(obj, name)
    if encoding is None:
        encoding = detect_depth_encoding(raw, name=name)
    metres = decode_depth(raw, encoding, name=name, max_depth=max_depth)
    if not np.any(metres > 0):
        raise ValueError(f"`{name}` has no valid pixel (all zero, NaN or inf); expected some depth > 0.")
    return metres, encoding


# --------------------------------------------------------------------------------------------------
# The image processor
# --------------------------------------------------------------------------------------------------

DEPTH_TRANSFORMS = ("inverse", "linear", "relative")
RESIZE_MODES = ("pad", "stretch")
# A resized pixel is valid when at least this fraction of its footprint was valid.
_VALID_FRACTION = 0.5
# Per-call overrides of the stored configuration that `__call__` accepts.
_CONFIG_KEYS = (
    "size",
    "max_depth",
    "depth_transform",
    "depth_mean",
    "depth_std",
    "invalid_value",
    "resize_mode",
    "max_pixels",
    "box_tolerance",
)


class DeepSightImagesKwargs(ImagesKwargs, total=False):
    """The image processor's keyword arguments, declared so that `ProcessorMixin` routes them to it.

    boxes (`list[list[list[float]]]`): per image, ``[x0, y0, x1, y1]`` boxes in original pixels.
    depth_encoding (`str` or `list[str]`): ``"metres"``, ``"mm"``, ``"sun"``, ``"gray8"``; ``None`` = detect.
    The other keys override the stored settings of the same name for one call.
    """

    boxes: Any
    depth_encoding: str | list[str | None] | None
    max_depth: float | None
    depth_transform: str | list[str] | None
    depth_mean: float | None
    depth_std: float | None
    invalid_value: float | None
    resize_mode: str | None
    max_pixels: int | None
    box_tolerance: float | None


def _validate_depth_transform(depth_transform: Any) -> str | list[str]:
    """A transform name (one channel) or a list of distinct names (one channel each, in order)."""
    if isinstance(depth_transform, str) and depth_transform in DEPTH_TRANSFORMS:
        return depth_transform
    if (
        isinstance(depth_transform, (list, tuple))
        and len(depth_transform) > 0
        and all(isinstance(name, str) and name in DEPTH_TRANSFORMS for name in depth_transform)
        and len(set(depth_transform)) == len(depth_transform)
    ):
        return list(depth_transform)  # a list, so that it saves to JSON and compares equal after loading
    raise ValueError(
        f"`depth_transform` must be one of {DEPTH_TRANSFORMS} or a list of distinct ones (one input channel "
        f"each); got {depth_transform!r}."
    )


def depth_channels(depth_transform: str | Sequence[str]) -> tuple[str, ...]:
    """The transform of each input channel: ``"inverse"`` -> ``("inverse",)``, a list -> a tuple of it."""
    return (depth_transform,) if isinstance(depth_transform, str) else tuple(depth_transform)


def _is_image_like(obj: Any) -> bool:
    return isinstance(obj, (str, os.PathLike, Image.Image, np.ndarray, torch.Tensor))


def _is_number(obj: Any) -> bool:
    return isinstance(obj, (int, float, np.integer, np.floating)) and not isinstance(obj, bool)


def _split_array_batch(array: np.ndarray | torch.Tensor) -> tuple[list[Any], bool]:
    """One image (H x W, H x W x C, 1 x H x W) or a batch (B x H x W, B x 1 x H x W, B x H x W x 1)."""
    if array.ndim == 2:
        return [array], True
    if array.ndim == 3 and (array.shape[-1] in (1, 3, 4) or array.shape[0] == 1):
        return [array], True
    if array.ndim == 3:
        return list(array), False
    if array.ndim == 4 and (array.shape[1] == 1 or array.shape[-1] == 1):
        return list(array), False
    raise ValueError(
        "`images` as a single array must have shape (H, W), (H, W, 1), (1, H, W), (B, H, W), "
        f"(B, 1, H, W) or (B, H, W, 1); got shape {tuple(array.shape)}."
    )


def _make_list_of_depths(images: Any) -> tuple[list[Any], bool]:
    """Flatten `images` to a list of depth maps; also say whether a single (unbatched) image was given."""
    if images is None:
        raise ValueError("`images` is None; expected a depth map or a list of depth maps.")
    if isinstance(images, (np.ndarray, torch.Tensor)):
        return _split_array_batch(images)
    if _is_image_like(images):
        return [images], True
    if isinstance(images, (list, tuple)):
        if len(images) == 0:
            raise ValueError("`images` is an empty list; expected at least one depth map.")
        flat: list[Any] = []
        for i, item in enumerate(images):
            if _is_image_like(item):
                flat.append(item)
            elif isinstance(item, (list, tuple)) and item and all(_is_image_like(x) for x in item):
                flat.extend(item)  # one list of images per sample, as multimodal processors receive them
            else:
                raise ValueError(
                    f"`images[{i}]` is a {type(item).__name__}; expected a depth map (numpy array, "
                    "torch tensor, PIL image or path) or a list of them."
                )
        return flat, False
    raise ValueError(
        f"`images` is a {type(images).__name__}; expected a depth map (numpy array, torch tensor, "
        "PIL image or path) or a list of them."
    )


def _box_list_nesting(boxes: Any) -> int:
    """1 for a single box (4 numbers), 2 for a list of boxes, 3 for a list of per-image box lists."""
    if isinstance(boxes, (np.ndarray, torch.Tensor)):
        return boxes.ndim
    if isinstance(boxes, (list, tuple)):
        if len(boxes) == 0:
            return 2
        first = next(
            (b for b in boxes if b is not None and not (isinstance(b, (list, tuple)) and len(b) == 0)), None
        )
        if first is None:
            return 3
        return 1 + _box_list_nesting(first) if not _is_number(first) else 1
    return 0


def _make_list_of_boxes(boxes: Any, num_images: int, single_image: bool) -> list[Any]:
    """One entry (None or a sequence of boxes) per image."""
    if boxes is None:
        return [None] * num_images
    nesting = _box_list_nesting(boxes)
    if single_image and nesting == 2:
        boxes = [boxes]
    elif nesting == 1:
        raise ValueError(
            "`boxes` looks like a single box; expected a list of [x0, y0, x1, y1] boxes per image, e.g. "
            "[[x0, y0, x1, y1]] for one image or [[[x0, y0, x1, y1]], []] for two."
        )
    elif nesting not in (2, 3):
        raise ValueError("`boxes` must be a list (one entry per image) of lists of [x0, y0, x1, y1] boxes.")
    if len(boxes) != num_images:
        raise ValueError(
            f"`boxes` has {len(boxes)} box lists but {num_images} images were given; expected one list "
            "per image (use [] or None for an image without boxes)."
        )
    return list(boxes)


class DeepSightImageProcessor(BaseImageProcessor):
    r"""
    Turns depth maps in any encoding into DeepSight's vision input: normalised depth ``pixel_values`` and
    the binary object mask ``bbox_mask`` for the Bbox Conv.

    Pipeline, for every image:

    1. **Decode** to metres with `load_depth` (the encoding is declared by `depth_encoding` or detected by
       `detect_depth_encoding`; the encodings assumed are returned under ``"depth_encoding"``). Invalid
       pixels (0, NaN, inf) are tracked in a validity mask from here on.
    2. **Intensity**: depth is clipped to ``max_depth`` and mapped to ``[0, 1]``.
       ``depth_transform="inverse"`` gives ``1 - d / max_depth`` (brighter = closer, the paper's grayscale
       convention; a ``gray8`` level ``v`` becomes ``(v - 1) / 255``, i.e. the paper's image as CLIP would
       read it); ``"linear"`` gives ``d / max_depth``; ``"relative"`` min-max normalises each map over its
       valid pixels (the nearest 1, the farthest 0, as 8-bit relative depth images): the depth order and
       contrast, not the metres. A list of transforms gives one channel each, in order (e.g.
       ``["inverse", "relative"]``: the metres and the contrast side by side, for a tower with
       ``num_channels=2``).
    3. **Geometry** (the whole map is kept, never centre-cropped, so no named object can be cut away):
       ``resize_mode="pad"`` (default, LLaVA-1.5's ``expand2square``) scales the longer side to ``size``
       and centres the map in the square, the margins being invalid; ``"stretch"`` resizes to ``size``
       ignoring the aspect ratio. The resize is an antialiased bilinear average of *valid pixels only*:
       depth * validity and validity are resized separately and divided, so invalid pixels are never
       blended into valid ones; an output pixel is valid when at least half of its footprint was valid.
    4. **Normalisation**: ``(intensity - depth_mean) / depth_std``; invalid pixels become ``invalid_value``
       (default: the normalised value of intensity 0, i.e. "black" / as far as it gets under "inverse").
       The defaults ``depth_mean=0.4492`` / ``depth_std=0.2686`` are the means of CLIP's RGB statistics,
       so that a Depth Conv initialised from CLIP's RGB patch weights sees inputs in the range CLIP was
       trained on.
    5. **Boxes** ``[x0, y0, x1, y1]`` in pixels of the original map go through the same scale and offset
       and are rasterised as the union of every output pixel they overlap (a tiny box keeps at least one
       pixel): ``bbox_mask`` is 1 on objects and 0 elsewhere; an image without boxes gets all ones (as in
       the paper). Boxes overhanging the map by up to ``box_tolerance`` (a fraction of its width / height)
       are clipped.

    All these settings are saved by `save_pretrained`, so a checkpoint preprocesses exactly as it was
    trained.

    Args:
        size (`int` or `dict`, defaults to 224): output side, or ``{"height": h, "width": w}``.
        max_depth (`float`, defaults to 10.0): metres mapped to intensity 0 (inverse) / 1 (linear);
            farther is clipped.
        depth_transform (`str` or `list[str]`, defaults to ``"inverse"``): ``"inverse"``, ``"linear"`` or
            ``"relative"``, or a list of them, one per channel (see above; `num_channels` is their number).
        depth_mean (`float`), depth_std (`float`): normalisation of the intensity.
        invalid_value (`float`, *optional*): value of invalid pixels after normalisation.
        resize_mode (`str`, defaults to ``"pad"``): ``"pad"`` or ``"stretch"``.
        max_pixels (`int`, defaults to 40_000_000): larger inputs are rejected (a guard against
            decompression bombs and against passing the wrong array).
        box_tolerance (`float`, defaults to 0.05): how far (fraction of the side) a box may overhang the map.
    """

    model_input_names = ["pixel_values", "bbox_mask"]
    valid_kwargs = DeepSightImagesKwargs

    def __init__(
        self,
        size: int | dict[str, int] = 224,
        max_depth: float = 10.0,
        depth_transform: str | list[str] = "inverse",
        depth_mean: float = 0.4492,
        depth_std: float = 0.2686,
        invalid_value: float | None = None,
        resize_mode: str = "pad",
        max_pixels: int = 40_000_000,
        box_tolerance: float = 0.05,
        **kwargs,
    ):
        super().__init__(**kwargs)
        settings = self._validate_settings(
            size=size,
            max_depth=max_depth,
            depth_transform=depth_transform,
            depth_mean=depth_mean,
            depth_std=depth_std,
            invalid_value=invalid_value,
            resize_mode=resize_mode,
            max_pixels=max_pixels,
            box_tolerance=box_tolerance,
        )
        for key, value in settings.items():
            setattr(self, key, value)

    @staticmethod
    def _validate_settings(**settings: Any) -> dict[str, Any]:
        size = settings["size"]
        if isinstance(size, int) and not isinstance(size, bool):
            size = {"height": size, "width": size}
        elif isinstance(size, dict) and set(size) >= {"height", "width"}:
            size = {"height": int(size["height"]), "width": int(size["width"])}
        elif isinstance(size, dict) and "shortest_edge" in size:
            size = {"height": int(size["shortest_edge"]), "width": int(size["shortest_edge"])}
        else:
            raise ValueError(f"`size` must be an int or {{'height': h, 'width': w}}; got {size!r}.")
        if min(size.values()) < 1:
            raise ValueError(f"`size` must be positive; got {size}.")
        settings["size"] = size
        if not settings["max_depth"] > 0:
            raise ValueError(f"`max_depth` must be > 0 metres; got {settings['max_depth']}.")
        settings["depth_transform"] = _validate_depth_transform(settings["depth_transform"])
        if settings["resize_mode"] not in RESIZE_MODES:
            raise ValueError(f"`resize_mode` must be one of {RESIZE_MODES}; got {settings['resize_mode']!r}.")
        if not settings["depth_std"] > 0:
            raise ValueError(f"`depth_std` must be > 0; got {settings['depth_std']}.")
        if not settings["max_pixels"] > 0:
            raise ValueError(f"`max_pixels` must be > 0; got {settings['max_pixels']}.")
        if not settings["box_tolerance"] >= 0:
            raise ValueError(f"`box_tolerance` must be >= 0; got {settings['box_tolerance']}.")
        settings["max_depth"] = float(settings["max_depth"])
        settings["depth_mean"] = float(settings["depth_mean"])
        settings["depth_std"] = float(settings["depth_std"])
        if settings["invalid_value"] is None:
            settings["invalid_value"] = -settings["depth_mean"] / settings["depth_std"]
        settings["invalid_value"] = float(settings["invalid_value"])
        return settings

    @property
    def num_channels(self) -> int:
        """Channels of ``pixel_values``: one per `depth_transform` (the vision config's ``num_channels``)."""
        return len(depth_channels(self.depth_transform))

    def fetch_images(self, image_url_or_urls: Any) -> Any:
        # The base class opens paths as RGB, which would destroy 16-bit depth; paths are read by `load_depth`.
        return image_url_or_urls

    def preprocess(
        self,
        images: Any,
        boxes: Any = None,
        depth_encoding: str | Sequence[str | None] | None = None,
        return_tensors: str | None = "pt",
        **kwargs: Any,
    ) -> BatchFeature:
        """Preprocess one depth map or a batch.

        Args:
            images: a depth map (path, PIL image, numpy array, torch tensor) or a list of them; a single
                array of shape (B, H, W) / (B, 1, H, W) is a batch.
            boxes: per image, a list of ``[x0, y0, x1, y1]`` boxes in original pixels (``None`` / ``[]`` =
                no box, all-ones mask). For a single image the list of boxes may be passed directly.
            depth_encoding: one encoding for all images, one per image, or ``None`` to detect (per image).
            return_tensors: ``"pt"`` (default), ``"np"`` or ``None`` (numpy).
            kwargs: per-call overrides of the stored settings (``size``, ``max_depth``, ...). Other
                image-processor keyword arguments that a generic processor forwards are ignored when ``None``.

        Returns:
            `BatchFeature` with ``pixel_values`` (B, C, H, W) float32 (C = `num_channels`, one per
            `depth_transform`), ``bbox_mask`` (B, 1, H, W) float32 in
            {0, 1} and ``depth_encoding`` (list of str, the encoding assumed for each image; not a tensor, and
            `DeepSightProcessor` drops it (``unused_input_names``) before the model sees the inputs).
        """
        overrides = {key: kwargs.pop(key) for key in _CONFIG_KEYS if kwargs.get(key) is not None}
        # generic processors forward these; they mean nothing for depth
        forwarded = ("device", "image_seq_length", "do_convert_rgb")
        unexpected = sorted(
            key for key, value in kwargs.items() if value is not None and key not in forwarded
        )
        if unexpected:
            logger.warning_once(f"DeepSightImageProcessor ignores the arguments {unexpected}.")
        settings = self._validate_settings(
            **{key: overrides.get(key, getattr(self, key)) for key in _CONFIG_KEYS}
        )
        if "depth_mean" in overrides or "depth_std" in overrides:
            if "invalid_value" not in overrides:
                settings["invalid_value"] = -settings["depth_mean"] / settings["depth_std"]

        depths, single_image = _make_list_of_depths(images)
        box_lists = _make_list_of_boxes(boxes, len(depths), single_image)
        encodings = self._make_list_of_encodings(depth_encoding, len(depths))

        pixel_values, bbox_masks, used = [], [], []
        for index, (depth, image_boxes, encoding) in enumerate(
            zip(depths, box_lists, encodings, strict=True)
        ):
            name = f"images[{index}]"
            metres, encoding_used = self._load_one(
                depth, encoding, name, settings["max_pixels"], settings["max_depth"]
            )
            values, mask = self._process_one(metres, image_boxes, settings, name)
            pixel_values.append(values)
            bbox_masks.append(mask)
            used.append(encoding_used)
        if any(encoding is None for encoding in encodings):
            logger.info(f"DeepSightImageProcessor detected depth encodings {used}.")

        data: dict[str, Any] = {
            "pixel_values": torch.stack(pixel_values),
            "bbox_mask": torch.stack(bbox_masks),
        }
        if return_tensors != "pt":
            data = {key: value.numpy() for key, value in data.items()}
        data["depth_encoding"] = used
        return BatchFeature(data=data, tensor_type=return_tensors if return_tensors == "pt" else None)

    @staticmethod
    def _make_list_of_encodings(depth_encoding: Any, num_images: int) -> list[str | None]:
        if depth_encoding is None or isinstance(depth_encoding, str):
            encodings = [depth_encoding] * num_images
        elif isinstance(depth_encoding, (list, tuple)):
            if len(depth_encoding) != num_images:
                raise ValueError(
                    f"`depth_encoding` has {len(depth_encoding)} entries but {num_images} images were given; "
                    "expected one encoding, or one per image."
                )
            encodings = list(depth_encoding)
        else:
            raise ValueError(
                f"`depth_encoding` must be a str, a list of str or None; got {type(depth_encoding).__name__}."
            )
        for encoding in encodings:
            if encoding is not None and encoding not in DEPTH_ENCODINGS:
                raise ValueError(
                    f"`depth_encoding` must be one of {DEPTH_ENCODINGS} or None; got {encoding!r}."
                )
        return encodings

    @staticmethod
    def _load_one(
        depth: Any, encoding: str | None, name: str, max_pixels: int, max_depth: float
    ) -> tuple[np.ndarray, str]:
        if isinstance(depth, (str, os.PathLike)):
            name = f"{name} ({os.fspath(depth)})"
            depth = _read_depth_file(depth)
        if isinstance(depth, Image.Image):
            num_pixels = depth.width * depth.height
        else:
            shape = tuple(depth.shape) if hasattr(depth, "shape") else np.shape(depth)
            num_pixels = (
                int(np.prod(shape[:2]))
                if len(shape) == 3 and shape[-1] in (1, 3, 4)
                else int(np.prod(shape[-2:]))
            )
        if num_pixels > max_pixels:
            raise ValueError(
                f"`{name}` has {num_pixels:,} pixels, more than max_pixels={max_pixels:,}; downscale it "
                "first or raise `max_pixels`."
            )
        # gray8 is relative: spread its levels over this processor's depth range, so that level v
        # always becomes intensity (v - 1) / 255 under "inverse", whatever max_depth is
        return load_depth(depth, encoding, name=name, max_depth=max_depth)

    def _process_one(
        self, metres: np.ndarray, boxes: Any, settings: dict[str, Any], name: str
    ) -> tuple[torch.Tensor, torch.Tensor]:
        height, width = metres.shape
        out_h, out_w = settings["size"]["height"], settings["size"]["width"]
        if settings["resize_mode"] == "pad":
            scale = min(out_h / height, out_w / width)
            new_h, new_w = max(1, round(height * scale)), max(1, round(width * scale))
        else:
            new_h, new_w = out_h, out_w
        top, left = (out_h - new_h) // 2, (out_w - new_w) // 2

        depth = torch.from_numpy(metres)
        valid = depth > 0
        intensities = [
            self._intensity(depth, valid, transform, settings["max_depth"]) * valid
            for transform in depth_channels(settings["depth_transform"])
        ]
        # Resize intensity * validity and validity together, then divide: a mean over valid pixels only.
        stacked = torch.stack([*intensities, valid.to(torch.float32)])[None]
        if (new_h, new_w) != (height, width):
            stacked = F.interpolate(
                stacked, size=(new_h, new_w), mode="bilinear", align_corners=False, antialias=True
            )
        weighted, coverage = stacked[0, :-1], stacked[0, -1]
        resized_valid = coverage >= _VALID_FRACTION
        normalised = (weighted / coverage.clamp(min=1e-6) - settings["depth_mean"]) / settings["depth_std"]

        num_channels = len(intensities)
        pixel_values = torch.full((num_channels, out_h, out_w), settings["invalid_value"], dtype=torch.float32)
        pixel_values[:, top : top + new_h, left : left + new_w] = torch.where(
            resized_valid, normalised, torch.tensor(settings["invalid_value"], dtype=torch.float32)
        )
        scale_x, scale_y = new_w / width, new_h / height
        mask = self._boxes_to_mask(
            boxes,
            (height, width),
            (out_h, out_w),
            (scale_x, scale_y),
            (left, top),
            (new_w, new_h),
            settings["box_tolerance"],
            name,
        )
        return pixel_values, mask

    @staticmethod
    def _intensity(depth: torch.Tensor, valid: torch.Tensor, transform: str, max_depth: float) -> torch.Tensor:
        """Depth in metres -> intensity in [0, 1] by one `depth_transform`; invalid pixels are masked later."""
        if transform == "relative":
            # invalid pixels are 0 m (finite) here: the farthest is the plain max, the nearest the min with
            # them set to the farthest (cheaper than indexing the valid pixels out)
            far = depth.max()
            near = torch.where(valid, depth, far).min()
            return 1.0 - (depth - near) / (far - near).clamp(min=1e-6)
        depth = depth.clamp(max=max_depth) / max_depth
        return 1.0 - depth if transform == "inverse" else depth

    @staticmethod
    def _boxes_to_mask(
        boxes: Any,
        original_size: tuple[int, int],
        output_size: tuple[int, int],
        scale: tuple[float, float],
        offset: tuple[int, int],
        content_size: tuple[int, int],
        tolerance: float,
        name: str,
    ) -> torch.Tensor:
        out_h, out_w = output_size
        if boxes is None or len(boxes) == 0:
            return torch.ones((1, out_h, out_w), dtype=torch.float32)
        try:
            box_array = np.asarray(
                boxes.detach().cpu().numpy() if isinstance(boxes, torch.Tensor) else boxes, dtype=np.float64
            )
        except (TypeError, ValueError) as error:
            raise ValueError(
                f"`boxes` for {name} must be a list of [x0, y0, x1, y1] boxes of numbers; got {boxes!r}."
            ) from error
        if box_array.ndim != 2 or box_array.shape[1] != 4:
            raise ValueError(
                f"`boxes` for {name} must be a list of [x0, y0, x1, y1] boxes; got shape {box_array.shape}."
            )
        height, width = original_size
        mask = np.zeros((out_h, out_w), dtype=np.float32)
        for j, (x0, y0, x1, y1) in enumerate(box_array):
            where = f"`boxes` for {name}, box {j} [{x0:g}, {y0:g}, {x1:g}, {y1:g}]"
            if not np.all(np.isfinite([x0, y0, x1, y1])):
                raise ValueError(f"{where} has a non-finite coordinate.")
            if x1 <= x0 or y1 <= y0:
                raise ValueError(f"{where} is inverted or empty; expected x0 < x1 and y0 < y1.")
            if x1 <= 0 or y1 <= 0 or x0 >= width or y0 >= height:
                raise ValueError(f"{where} lies entirely outside the {width}x{height} depth map.")
            slack_x, slack_y = tolerance * width, tolerance * height
            if x0 < -slack_x or y0 < -slack_y or x1 > width + slack_x or y1 > height + slack_y:
                raise ValueError(
                    f"{where} overhangs the {width}x{height} depth map by more than "
                    f"box_tolerance={tolerance:g} of its size; boxes are [x0, y0, x1, y1] in pixels of the "
                    "original map."
                )
            x0, x1 = max(x0, 0.0), min(x1, float(width))
            y0, y1 = max(y0, 0.0), min(y1, float(height))
            # Every output pixel the box overlaps is part of the object (a tiny box keeps one pixel).
            col0 = int(np.floor(x0 * scale[0]))
            col1 = max(col0 + 1, int(np.ceil(x1 * scale[0])))
            row0 = int(np.floor(y0 * scale[1]))
            row1 = max(row0 + 1, int(np.ceil(y1 * scale[1])))
            col1, row1 = min(col1, content_size[0]), min(row1, content_size[1])
            left, top = offset
            mask[top + row0 : top + row1, left + col0 : left + col1] = 1.0
        return torch.from_numpy(mask)[None]


DeepSightImageProcessor.register_for_auto_class("AutoImageProcessor")


__all__ = [
    "DEPTH_ENCODINGS",
    "DeepSightImageProcessor",
    "decode_depth",
    "depth_channels",
    "depth_to_png_mm",
    "detect_depth_encoding",
    "encode_depth",
    "load_depth",
]
