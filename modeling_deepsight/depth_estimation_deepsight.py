# Copyright 2026 The DeepSight authors. Licensed under the Apache License, Version 2.0.
"""RGB photo -> metric depth in metres with any transformers ``AutoModelForDepthEstimation`` checkpoint.

The one home of "estimator -> metres": the image processor (a photo where a depth map is expected), the dataset
builders (COCO photos converted to depth, as in the paper) and the demo all go through `MetricDepthEstimator`.
This file may import only numpy, PIL, torch and transformers: `save_pretrained` copies it next to the weights for
``trust_remote_code``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from transformers import AutoImageProcessor, AutoModelForDepthEstimation
from transformers.utils import logging


logger = logging.get_logger(__name__)

# Metric (metres, not disparity) checkpoints by architecture; any other AutoModelForDepthEstimation id or folder works.
DEFAULT_DEPTH_ESTIMATOR = "depth-anything/Depth-Anything-V2-Metric-Indoor-Small-hf"
KNOWN_DEPTH_ESTIMATORS = {
    "depth-anything": DEFAULT_DEPTH_ESTIMATOR,
    "glpn": "vinvino02/glpn-nyu",  # the paper's
    "dpt": "facebook/dpt-dinov2-small-nyu",
    "zoedepth": "Intel/zoedepth-nyu-kitti",
    "depth-pro": "apple/DepthPro-hf",
}


def resolve_depth_estimator(name_or_path: str | os.PathLike) -> str:
    """A short name of `KNOWN_DEPTH_ESTIMATORS` -> its Hub id; a Hub id or a local folder as given."""
    name = os.fspath(name_or_path) if isinstance(name_or_path, (str, os.PathLike)) else None
    if not isinstance(name, str) or not name.strip():
        raise ValueError(
            f"`depth_estimator` must be a Hub id or a local folder of an AutoModelForDepthEstimation checkpoint, or "
            f"one of {sorted(KNOWN_DEPTH_ESTIMATORS)}; got {name_or_path!r}."
        )
    return KNOWN_DEPTH_ESTIMATORS.get(name, name)


def _as_rgb_image(image: Any) -> Image.Image:
    """A PIL image or an H x W x 3(+alpha) uint8 array as an RGB PIL image."""
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[-1] not in (3, 4) or array.dtype != np.uint8:
        raise ValueError(
            f"A photo for depth estimation must be a PIL image or an H x W x 3 uint8 array; got {array.dtype} "
            f"with shape {array.shape}."
        )
    return Image.fromarray(array[..., :3])


class MetricDepthEstimator:
    """A depth-estimation model (GLPN, DPT, ZoeDepth, Depth Anything, Depth Pro, ...) loaded once by Hub id or path.

    Weights are read from safetensors only and the checkpoint's own code never runs (no ``trust_remote_code``).
    ``estimator(images)`` returns one float32 H x W map in metres per photo, at the photo's size; ``0`` marks a
    pixel without a valid estimate.

    Args:
        name_or_path: a Hub id, a local folder, or a short name of `KNOWN_DEPTH_ESTIMATORS`.
        device: where the model runs (default: ``"cpu"``).
        batch_size: photos of one size sent to the model together.
    """

    def __init__(self, name_or_path: str | os.PathLike, device: str | torch.device = "cpu", batch_size: int = 8):
        if batch_size < 1:
            raise ValueError(f"`batch_size` must be >= 1; got {batch_size}.")
        self.name = resolve_depth_estimator(name_or_path)
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.processor = AutoImageProcessor.from_pretrained(self.name, trust_remote_code=False)
        self.model = AutoModelForDepthEstimation.from_pretrained(
            self.name, use_safetensors=True, trust_remote_code=False
        ).to(self.device).eval()
        if getattr(self.model.config, "depth_estimation_type", "metric") == "relative":
            logger.warning(
                f"{self.name} predicts relative depth (disparity), not metres: distances read from its maps are "
                "meaningless. Use a metric checkpoint (e.g. a Depth-Anything-V2-Metric-*-hf)."
            )

    def __call__(self, images: Sequence[Any]) -> list[np.ndarray]:
        images = [_as_rgb_image(image) for image in images]
        # Processors like GLPN's keep each photo's own size (rounded to 32), so only photos of one size can share
        # a tensor: batch within each size group, return in the caller's order.
        groups: dict[tuple[int, int], list[int]] = {}
        for index, image in enumerate(images):
            groups.setdefault((image.height, image.width), []).append(index)
        depths: list[np.ndarray | None] = [None] * len(images)
        for size, indices in groups.items():
            for start in range(0, len(indices), self.batch_size):
                chunk = indices[start : start + self.batch_size]
                for index, depth in zip(chunk, self._predict_same_size([images[i] for i in chunk], size)):
                    depths[index] = depth
        return depths

    def _predict_same_size(self, images: list[Image.Image], size: tuple[int, int]) -> list[np.ndarray]:
        inputs = self.processor(images=images, return_tensors="pt").to(self.device)
        with torch.inference_mode():
            outputs = self.model(**inputs)
        sizes = [size] * len(images)
        post_process = self.processor.post_process_depth_estimation
        # ZoeDepth pads its input and needs the source sizes to cut the padding away again
        extra = {"source_sizes": sizes} if "source_sizes" in post_process.__code__.co_varnames else {}
        processed = post_process(outputs, target_sizes=sizes, **extra)
        return [_to_metres(result["predicted_depth"]) for result in processed]


def _to_metres(predicted: torch.Tensor) -> np.ndarray:
    """A predicted map as float32 metres; bicubic overshoot below zero and non-finite values become 0 (invalid)."""
    depth = predicted.float().cpu().numpy()
    return np.where(np.isfinite(depth) & (depth > 0), depth, 0.0).astype(np.float32)


__all__ = [
    "DEFAULT_DEPTH_ESTIMATOR",
    "KNOWN_DEPTH_ESTIMATORS",
    "MetricDepthEstimator",
    "resolve_depth_estimator",
]
