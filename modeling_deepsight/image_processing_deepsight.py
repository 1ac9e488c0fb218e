# Copyright 2026 The DeepSight authors. Licensed under the Apache License, Version 2.0.
"""The DeepSight image processor: depth maps in any encoding -> normalised depth and the box mask.

The encodings and their decoding to metres live in ``depth_codec_deepsight.py``. This file may import only
numpy, PIL, torch, transformers and its siblings (relative imports): `save_pretrained` copies it next to
the weights for ``trust_remote_code``.
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
from transformers.processing_utils import ImagesKwargs, Unpack
from transformers.utils import logging

from .bbox_mask_deepsight import boxes_to_mask, make_list_of_boxes
from .depth_codec_deepsight import DEPTH_ENCODINGS, is_colour_photo, load_depth, read_depth_input
from .depth_estimation_deepsight import DEFAULT_DEPTH_ESTIMATOR, MetricDepthEstimator, resolve_depth_estimator


logger = logging.get_logger(__name__)

DEPTH_TRANSFORMS = ("inverse", "linear", "relative")
RESIZE_MODES = ("pad", "stretch")
# A resized pixel is valid when at least this fraction of its footprint was valid.
_VALID_FRACTION = 0.5
# A float map is refused as millimetres passed as metres when more than this share of its valid pixels lies beyond
# this many times `max_depth` (100 m at the default 10 m): such a map would be clipped to one flat far plane.
_MILLIMETRES_AS_METRES_FACTOR = 10.0
_MILLIMETRES_AS_METRES_SHARE = 0.5
# Generic image keywords that multimodal processors forward: meaningless for depth, dropped without a warning.
_FORWARDED_KWARGS = ("device", "image_seq_length", "do_convert_rgb")


class DeepSightImageProcessorKwargs(ImagesKwargs, total=False):
    """The image processor's keyword arguments, declared so that `ProcessorMixin` routes them to it.

    boxes (`list[list[list[float]]]`): per image, ``[x0, y0, x1, y1]`` boxes in original pixels.
    depth_encoding (`str` or `list[str]`): ``"metres"``, ``"mm"``, ``"sun"``, ``"gray8"``; ``None`` = detect (an RGB
        photo goes to `depth_estimator`).
    The other keys (and ``size``) are the stored settings; passed to a call, they override them for that call.
    """

    boxes: Any
    depth_encoding: str | list[str | None] | tuple[str | None, ...] | None
    max_depth: float | int | None
    depth_transform: str | list[str] | tuple[str, ...] | None
    depth_mean: float | int | None
    depth_std: float | int | None
    invalid_value: float | int | None
    resize_mode: str | None
    max_pixels: int | None
    box_tolerance: float | int | None
    depth_estimator: str | os.PathLike | None


# The keywords DeepSight reads; every other image keyword is generic and ignored.
_DEPTH_KWARGS = {"size", *DeepSightImageProcessorKwargs.__annotations__.keys() - ImagesKwargs.__annotations__.keys()}


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


def _channel_first_colour_values(array: np.ndarray | torch.Tensor) -> str | None:
    """What makes a 3 or 4 x H x W array a channel-first colour image, not depth maps (None: it does not look so).

    8-bit values, or floats all in [0, 1] (torchvision's ``ToTensor``): no depth map batch looks like that.
    """
    if array.ndim != 3 or array.shape[0] not in (3, 4):
        return None
    values = array.detach().cpu().float().numpy() if isinstance(array, torch.Tensor) else array
    if array.dtype in (np.uint8, torch.uint8):
        return "8-bit values"
    if isinstance(array, np.ndarray) and not np.issubdtype(array.dtype, np.floating):
        return None
    if isinstance(array, torch.Tensor) and not array.is_floating_point():
        return None
    finite = values[np.isfinite(values)]
    return "values all in [0, 1]" if finite.size and np.all((finite >= 0) & (finite <= 1)) else None


def _split_array_batch(array: np.ndarray | torch.Tensor) -> tuple[list[Any], bool]:
    """One image (H x W, H x W x C, 1 x H x W) or a batch (B x H x W, B x 1 x H x W, B x H x W x 1).

    A 3 or 4 x H x W array that looks like a channel-first colour image (`_channel_first_colour_values`) is
    refused rather than read as 3 or 4 depth maps; such a batch of maps is passed as a list or as B x 1 x H x W.
    """
    if array.ndim == 2:
        return [array], True
    if array.ndim == 3 and (array.shape[-1] in (1, 3, 4) or array.shape[0] == 1):
        return [array], True
    if array.shape[0] == 0:
        raise ValueError(f"`images` is an empty batch (shape {tuple(array.shape)}); expected at least one depth map.")
    colour = _channel_first_colour_values(array)
    if colour:
        raise ValueError(
            f"`images` has shape {tuple(array.shape)} and {colour}: it looks like a channel-first colour image "
            f"(C x H x W), not depth. Pass a depth map; a batch of {array.shape[0]} depth maps like these goes as a "
            "list or with shape (B, 1, H, W)."
        )
    if array.ndim == 3:
        return list(array), False
    if array.ndim == 4 and (array.shape[1] == 1 or array.shape[-1] == 1):
        return list(array), False
    raise ValueError(
        "`images` as a single array must have shape (H, W), (H, W, 1), (1, H, W), (B, H, W), "
        f"(B, 1, H, W) or (B, H, W, 1); got shape {tuple(array.shape)}"
        + (" (channel-first colour images are not depth)." if array.ndim == 4 and array.shape[1] in (3, 4) else ".")
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
            elif isinstance(item, (list, tuple)) and all(_is_image_like(x) for x in item):
                # one list of images per sample, as chat templates and SFT collators give them ([] = text only)
                flat.extend(item)
            else:
                raise ValueError(
                    f"`images[{i}]` is a {type(item).__name__}; expected a depth map (numpy array, "
                    "torch tensor, PIL image or path) or a list of them."
                )
        if not flat:
            raise ValueError(
                f"`images` holds {len(images)} empty per-sample lists and no depth map; pass images=None for a "
                "batch of text only."
            )
        return flat, False
    raise ValueError(
        f"`images` is a {type(images).__name__}; expected a depth map (numpy array, torch tensor, "
        "PIL image or path) or a list of them."
    )


class _EstimatorCache(dict):
    """Estimators loaded by a processor, by name; never copied (a copy loads its own) nor saved."""

    def __deepcopy__(self, memo: dict) -> _EstimatorCache:
        return type(self)()


def _refuse_millimetres_as_metres(metres: np.ndarray, max_depth: float, name: str) -> None:
    """A metric map mostly beyond `_MILLIMETRES_AS_METRES_FACTOR` x `max_depth` holds millimetres, not metres.

    Not checked when every channel is ``"relative"``: that transform reads order and contrast, not the scale.
    """
    limit = _MILLIMETRES_AS_METRES_FACTOR * max_depth
    valid = metres[metres > 0]
    share = float(np.mean(valid > limit))
    if share > _MILLIMETRES_AS_METRES_SHARE:
        raise ValueError(
            f"`{name}` is read as metres but {share:.0%} of its valid pixels lie beyond {limit:g} m "
            f"({_MILLIMETRES_AS_METRES_FACTOR:g} x max_depth={max_depth:g} m; median {np.median(valid):.4g}): it "
            "looks like millimetres. Divide by 1000, or pass the integer millimetres (uint16) with "
            "depth_encoding='mm'."
        )


class DeepSightImageProcessor(BaseImageProcessor):
    r"""
    Turns depth maps in any encoding into DeepSight's vision input: normalised depth ``pixel_values`` and the
    binary object mask ``bbox_mask`` for the Bbox Conv. For every image:

    1. **Decode** to metres with `load_depth` (encoding declared by `depth_encoding` or detected; the
       encodings assumed come back under ``"depth_encoding"``). Invalid pixels (0, NaN, inf) are tracked from
       here on. A map read as metres with most valid pixels beyond 10 x ``max_depth`` is refused as millimetres
       (unless every channel is ``"relative"``, which does not read the scale).
    2. **Intensity** in ``[0, 1]``, depth clipped to ``max_depth``: ``depth_transform="inverse"`` gives
       ``1 - d / max_depth`` (brighter = closer, the paper's grayscale: a ``gray8`` level ``v`` becomes
       ``(v - 1) / 255``, the paper's image as CLIP reads it); ``"linear"`` gives ``d / max_depth``;
       ``"relative"`` min-max normalises each map over its valid pixels (nearest 1, farthest 0: the order and
       contrast, not the metres). A list of transforms gives one channel each, in order (e.g.
       ``["inverse", "relative"]`` for a tower with ``num_channels=2``).
    3. **Geometry**, the whole map kept (never centre-cropped, so no named object is cut away):
       ``resize_mode="pad"`` (LLaVA-1.5's ``expand2square``) scales the longer side to ``size`` and centres
       the map, the margins invalid; ``"stretch"`` ignores the aspect ratio. The resize is an antialiased
       bilinear average of *valid pixels only* (depth * validity and validity resized apart, then divided); an
       output pixel is valid when at least half of its footprint was.
    4. **Normalisation** ``(intensity - depth_mean) / depth_std``; invalid pixels become ``invalid_value`` (by
       default the normalised intensity 0). The default mean / std are the means of CLIP's RGB statistics, so
       a Depth Conv initialised from CLIP's RGB kernels sees inputs in the range CLIP was trained on.
    5. **Boxes** ``[x0, y0, x1, y1]`` in pixels of the original map go through the same scale and offset and
       are rasterised as the union of every output pixel they overlap (a tiny box keeps one pixel); an image
       without boxes gets all ones (as in the paper). Boxes overhanging the map by up to ``box_tolerance`` (a
       fraction of its side) are clipped.

    RGB photos: with ``depth_estimator`` set (a Hub id or folder of any ``AutoModelForDepthEstimation``
    checkpoint, e.g. ``DEFAULT_DEPTH_ESTIMATOR``, or a short name of ``KNOWN_DEPTH_ESTIMATORS``), an input whose
    encoding is detected and which is an 8-bit colour photo (`is_colour_photo`; a gray depth image stored as RGB
    is not one) is turned into metres by that model, loaded once per processor at the first photo (safetensors
    only, never the checkpoint's own code), and goes on from step 2 as a map read as ``"metres"``. Without an
    estimator a photo is refused with a `ValueError` saying how to set one.

    The settings below are class attributes (the defaults) and saved by `save_pretrained`, so a checkpoint
    preprocesses exactly as it was trained; passed to a call, they apply to that call only.

    Args:
        size (`int` or `dict`): output side, or ``{"height": h, "width": w}``.
        max_depth (`float`): metres mapped to intensity 0 (inverse) / 1 (linear); farther is clipped.
        depth_transform (`str` or `list[str]`): ``"inverse"``, ``"linear"``, ``"relative"`` or a list of them.
        depth_mean (`float`), depth_std (`float`): normalisation of the intensity.
        invalid_value (`float`, *optional*): value of invalid pixels after normalisation.
        resize_mode (`str`): ``"pad"`` or ``"stretch"``.
        max_pixels (`int`): larger inputs are rejected (decompression bombs, a wrong array passed).
        box_tolerance (`float`): how far (fraction of the side) a box may overhang the map.
        depth_estimator (`str`, *optional*): the depth-estimation checkpoint that turns RGB photos into metres
            (``None``: photos are refused).
    """

    model_input_names = ["pixel_values", "bbox_mask"]
    valid_kwargs = DeepSightImageProcessorKwargs
    size = {"height": 224, "width": 224}
    max_depth = 10.0
    depth_transform = "inverse"
    depth_mean = 0.4492
    depth_std = 0.2686
    invalid_value = None  # the normalised value of intensity 0: -depth_mean / depth_std
    resize_mode = "pad"
    max_pixels = 40_000_000
    box_tolerance = 0.05
    depth_estimator = None

    def __init__(self, **kwargs: Unpack[DeepSightImageProcessorKwargs]):
        super().__init__(**kwargs)
        self._set_attributes(**kwargs)
        self._depth_estimators = _EstimatorCache()

    def to_dict(self) -> dict[str, Any]:
        output = super().to_dict()
        output.pop("_depth_estimators", None)
        return output

    def get_depth_estimator(self, name: str | None = None) -> MetricDepthEstimator:
        """The estimator named `name` (default: this processor's ``depth_estimator``), loaded at the first call."""
        name = name or self.depth_estimator
        if name is None:
            raise ValueError(
                "This image processor has no `depth_estimator`; set one, e.g. "
                f"DeepSightImageProcessor(depth_estimator={DEFAULT_DEPTH_ESTIMATOR!r})."
            )
        name = resolve_depth_estimator(name)  # a short name and its Hub id share one loaded model
        if name not in self._depth_estimators:
            logger.info(f"DeepSightImageProcessor loads the depth estimator {name!r} for RGB photos.")
            self._depth_estimators[name] = MetricDepthEstimator(name)
        return self._depth_estimators[name]

    def _standardize_kwargs(
        self, size=None, max_depth=None, depth_transform=None, depth_mean=None, depth_std=None,
        invalid_value=None, resize_mode=None, max_pixels=None, box_tolerance=None, depth_estimator=None, **kwargs,
    ) -> dict[str, Any]:
        """Check the settings (stored ones and per-call overrides alike) and bring them to their saved form.

        The call's own inputs (``boxes``, ``depth_encoding``, ``return_tensors``) pass through; the generic
        image keywords (``do_resize``, ...) are dropped.
        """
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
        if not max_depth > 0:
            raise ValueError(f"`max_depth` must be > 0 metres; got {max_depth}.")
        depth_transform = _validate_depth_transform(depth_transform)
        if resize_mode not in RESIZE_MODES:
            raise ValueError(f"`resize_mode` must be one of {RESIZE_MODES}; got {resize_mode!r}.")
        if not depth_std > 0:
            raise ValueError(f"`depth_std` must be > 0; got {depth_std}.")
        if not max_pixels > 0:
            raise ValueError(f"`max_pixels` must be > 0; got {max_pixels}.")
        if not box_tolerance >= 0:
            raise ValueError(f"`box_tolerance` must be >= 0; got {box_tolerance}.")
        if depth_estimator is not None:
            depth_estimator = resolve_depth_estimator(depth_estimator)
        depth_mean, depth_std = float(depth_mean), float(depth_std)
        if invalid_value is None:
            invalid_value = -depth_mean / depth_std
        call_keys = ("boxes", "depth_encoding", "return_tensors")
        call_inputs = {key: kwargs[key] for key in call_keys if kwargs.get(key) is not None}
        return dict(
            size=size, max_depth=float(max_depth), depth_transform=depth_transform, depth_mean=depth_mean,
            depth_std=depth_std, invalid_value=float(invalid_value), resize_mode=resize_mode,
            max_pixels=max_pixels, box_tolerance=box_tolerance, depth_estimator=depth_estimator, **call_inputs,
        )

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
        **kwargs: Unpack[DeepSightImageProcessorKwargs],
    ) -> BatchFeature:
        """Preprocess one depth map or a batch.

        Args:
            images: a depth map (path, PIL image, numpy array, torch tensor) or a list of them; a single
                array of shape (B, H, W) / (B, 1, H, W) is a batch, except a (3 | 4, H, W) array of 8-bit values
                or of floats all in [0, 1]: a channel-first colour image, refused. Per-sample lists (the
                chat-template and SFT-collator format) are flattened in order, an empty one being a text-only
                sample.
            boxes: per image, a list of ``[x0, y0, x1, y1]`` boxes in original pixels (``None`` / ``[]`` =
                no box, all-ones mask). For a single image passed alone the list of boxes may be passed
                directly; a flat list for a batch is refused, and so are an image's boxes that all lie in
                [0, 1] (normalised coordinates) on a map of at least ``NORMALISED_BOX_MIN_SIDE`` pixels a side.
            depth_encoding: one encoding for all images, one per image, or ``None`` to detect (per image).
            return_tensors: ``"pt"`` (default), ``"np"`` or ``None`` (numpy).
            kwargs: per-call overrides of the stored settings (``size``, ``max_depth``, ...); ``None`` keeps
                the stored value. Generic image-processor arguments (``do_resize``, ...) are ignored.

        Returns:
            `BatchFeature` with ``pixel_values`` (B, C, H, W) float32 (C = `num_channels`, one per
            `depth_transform`), ``bbox_mask`` (B, 1, H, W) float32 in
            {0, 1} and ``depth_encoding`` (list of str, the encoding assumed for each image), ``depth_source``
            (list of str: the encoding read, or ``"estimated:<depth_estimator>"`` for a photo) and
            ``estimated_depth`` (per image, the estimated H x W metres of a photo, else ``None``). The last three
            are not tensors, and `DeepSightProcessor` drops them (``unused_input_names``) before the model sees the
            inputs.
        """
        kwargs = {key: value for key, value in kwargs.items() if value is not None}  # None: the stored value
        ignored = sorted(kwargs.keys() - _DEPTH_KWARGS - set(_FORWARDED_KWARGS))
        if ignored:
            logger.warning_once(f"DeepSightImageProcessor ignores the arguments {ignored}.")
        overrides = {key: value for key, value in kwargs.items() if key in _DEPTH_KWARGS}
        if "invalid_value" not in overrides and overrides.keys() & {"depth_mean", "depth_std"}:
            overrides["invalid_value"] = None  # the default follows a per-call normalisation
        return super().preprocess(
            images, boxes=boxes, depth_encoding=depth_encoding, return_tensors=return_tensors, **overrides
        )

    def _preprocess_image_like_inputs(
        self, images: Any, boxes: Any = None, depth_encoding: Any = None, return_tensors: str | None = None,
        **settings: Any,
    ) -> BatchFeature:
        """Decode, transform, resize and normalise each map and draw its box mask (merged `settings`)."""
        depths, single_image = _make_list_of_depths(images)
        box_lists = make_list_of_boxes(boxes, len(depths), single_image)
        encodings = self._make_list_of_encodings(depth_encoding, len(depths))

        raws = [read_depth_input(depth, f"images[{i}]", settings["max_pixels"]) for i, depth in enumerate(depths)]
        estimated = self._estimate_photos(raws, encodings, settings["depth_estimator"])

        pixel_values, bbox_masks, used, sources = [], [], [], []
        for index, ((raw, label), image_boxes, encoding) in enumerate(
            zip(raws, box_lists, encodings, strict=True)
        ):
            if estimated[index] is not None:
                metres, encoding_used = estimated[index], "metres"
                sources.append(f"estimated:{settings['depth_estimator']}")
            else:
                # gray8 is relative: its levels spread over this processor's depth range, so that level v always
                # becomes intensity (v - 1) / 255 under "inverse", whatever max_depth is
                metres, encoding_used = load_depth(
                    raw, encoding, label, max_depth=settings["max_depth"], max_pixels=settings["max_pixels"]
                )
                if encoding_used == "metres" and set(depth_channels(settings["depth_transform"])) != {"relative"}:
                    _refuse_millimetres_as_metres(metres, settings["max_depth"], label)
                sources.append(encoding_used)
            values, mask = self._process_one(metres, image_boxes, settings, f"images[{index}]")
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
        features = BatchFeature(data=data, tensor_type=return_tensors if return_tensors == "pt" else None)
        # set after the conversion: maps of different sizes and None are no tensor
        features["depth_source"] = sources
        features["estimated_depth"] = estimated
        return features

    def _estimate_photos(
        self, raws: list[tuple[np.ndarray, str]], encodings: list[str | None], estimator_name: str | None
    ) -> list[np.ndarray | None]:
        """Per input, the metres estimated from it when it is an RGB photo with a detected encoding, else None.

        Without an estimator nothing is estimated: the decoder then refuses the photo, saying how to set one.
        """
        photos = [
            index for index, ((raw, _), encoding) in enumerate(zip(raws, encodings))
            if encoding is None and is_colour_photo(raw)
        ]
        estimated: list[np.ndarray | None] = [None] * len(raws)
        if not photos or estimator_name is None:
            return estimated
        depths = self.get_depth_estimator(estimator_name)([raws[index][0] for index in photos])
        for index, metres in zip(photos, depths):
            if not np.any(metres > 0):
                raise ValueError(
                    f"`{raws[index][1]}` is an RGB photo and the depth estimator {estimator_name!r} found no valid "
                    "depth in it."
                )
            estimated[index] = metres
        return estimated

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
        scale = (new_w / width, new_h / height)
        mask = boxes_to_mask(
            boxes, (height, width), (out_h, out_w), scale, (left, top), (new_w, new_h),
            settings["box_tolerance"], name,
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


DeepSightImageProcessor.register_for_auto_class("AutoImageProcessor")


__all__ = ["DeepSightImageProcessor", "depth_channels"]
