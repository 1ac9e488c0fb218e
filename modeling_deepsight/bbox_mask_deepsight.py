# Copyright 2026 The DeepSight authors. Licensed under the Apache License, Version 2.0.
"""Regions -> the Bbox Conv's input: per-image box lists, rasterised as a binary mask on the processor's output grid.

Imported relatively by ``image_processing_deepsight.py``, so `save_pretrained` copies it next to the weights for
``trust_remote_code``; it may import only numpy and torch.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


# Boxes are pixels of the original map: on a map at least this many pixels a side, boxes whose coordinates all lie in
# [0, 1] are normalised coordinates passed by mistake (in pixels they would cover the corner pixel at most).
NORMALISED_BOX_MIN_SIDE = 8


def _is_number(obj: Any) -> bool:
    return isinstance(obj, (int, float, np.integer, np.floating)) and not isinstance(obj, bool)


def box_list_nesting(boxes: Any) -> int:
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
        return 1 + box_list_nesting(first) if not _is_number(first) else 1
    return 0


def make_list_of_boxes(boxes: Any, num_images: int, single_image: bool) -> list[Any]:
    """One entry (None or a sequence of boxes) per image.

    `boxes` holds one list of ``[x0, y0, x1, y1]`` boxes per image (``None`` / ``[]`` for an image without boxes).
    Only for a single image passed alone (not in a list) may its list of boxes be passed directly: a flat list of
    boxes given for a batch (a list of images, or a (B, H, W) array) is refused, since it cannot say which box
    belongs to which image.
    """
    if boxes is None:
        return [None] * num_images
    nesting = box_list_nesting(boxes)
    if single_image and nesting == 2:
        boxes = [boxes]
    elif nesting == 2:
        raise ValueError(
            f"`boxes` is a flat list of {len(boxes)} box(es) but `images` is a batch of {num_images} image(s); "
            "expected one list of [x0, y0, x1, y1] boxes per image, e.g. [[[x0, y0, x1, y1]], []] for two images "
            "(a flat list of boxes is read only for a single image passed alone, not in a list)."
        )
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


def boxes_to_mask(
    boxes: Any, original_size: tuple[int, int], output_size: tuple[int, int], scale: tuple[float, float],
    offset: tuple[int, int], content_size: tuple[int, int], tolerance: float, name: str,
) -> torch.Tensor:
    """`boxes` (original pixels) drawn on the output grid as a [1, H, W] union mask; no box: all ones."""
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
    if box_array.ndim == 1 and box_array.shape[0] == 4:
        raise ValueError(
            f"`boxes` for {name} is a single box {boxes!r} where a list of boxes is expected; wrap it: "
            "[[x0, y0, x1, y1]]."
        )
    if box_array.ndim != 2 or box_array.shape[1] != 4:
        raise ValueError(
            f"`boxes` for {name} must be a list of [x0, y0, x1, y1] boxes; got shape {box_array.shape}."
        )
    height, width = original_size
    _refuse_normalised_boxes(box_array, height, width, name)
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


def _refuse_normalised_boxes(box_array: np.ndarray, height: int, width: int, name: str) -> None:
    """Boxes of a map at least `NORMALISED_BOX_MIN_SIDE` pixels a side whose coordinates all lie in [0, 1]."""
    if min(height, width) >= NORMALISED_BOX_MIN_SIDE and np.all((box_array >= 0) & (box_array <= 1)):
        raise ValueError(
            f"`boxes` for {name} all lie in [0, 1] ({box_array.tolist()}) on a {width}x{height} depth map: they look "
            "like normalised coordinates. Boxes are [x0, y0, x1, y1] in pixels of the original map: multiply x by "
            f"the width ({width}) and y by the height ({height})."
        )


__all__ = ["NORMALISED_BOX_MIN_SIDE", "boxes_to_mask", "make_list_of_boxes"]
