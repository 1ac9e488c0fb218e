"""Depth rendered as an 8-bit RGB image, for the models that only read photos (the paper's baselines).

One renderer for training (`train.rows`, `image_mode="gray"|"colormap"`), evaluation
(`evaluation.adapters`, `evaluation.zeroshot`, `--depth-as`) and the pair builder's RGB caption scorers: a
baseline is scored on exactly the images it was trained on. The boxes DeepSight reads through its Bbox Conv
mask reach these models as outlines drawn on the image (`outline_boxes`, `box_prompt="outline"`), the usual
visual prompt of RGB models.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

DEPTH_AS_CHOICES = ("gray", "colormap")
DEPTH_COLORMAP = "turbo"  # keeps more depth levels distinguishable than 256 gray values
# What the brightest level stands for: the map's nearest valid depth ("range") or 0 m ("far").
DEPTH_SCALES = ("range", "far")
BOX_PROMPTS = ("outline", "none")
# Magenta: never a gray level, and not on turbo's blue-green-yellow-red path either.
BOX_OUTLINE_COLOR = (255, 0, 255)


def metres_to_rgb(metres: Any, mode: str = "gray", scale: str = "range") -> Image.Image:
    """Render an HxW map of metres (0 = invalid) as an RGB image; brighter (or warmer) = closer.

    ``scale="range"``: valid depth is min-max normalised per image over the valid pixels, the convention of 8-bit
    relative depth images. ``scale="far"``: 0 m is the brightest level and the map's farthest valid depth the
    darkest, so a level is a fixed fraction of that depth (the ``gray8`` encoding's convention). Invalid pixels
    are black. ``"gray"`` repeats one gray level on the three channels (valid pixels get 1..255, so the farthest
    point stays distinguishable from invalid), ``"colormap"`` maps the closeness through matplotlib's turbo
    colormap.
    """
    if mode not in DEPTH_AS_CHOICES:
        raise ValueError(f"mode (depth as an image): expected one of {DEPTH_AS_CHOICES}, got {mode!r}")
    if scale not in DEPTH_SCALES:
        raise ValueError(f"scale: expected one of {DEPTH_SCALES}, got {scale!r}")
    metres = np.asarray(metres, dtype=np.float32)
    if metres.ndim != 2:
        raise ValueError(f"depth: expected an HxW array of metres, got shape {metres.shape}")
    valid = metres > 0
    if mode == "gray" and scale == "far":
        # 255 - 254 * depth / far, the levels the pair scorer always used: 1 + round(254 * closeness) differs at ties
        far = float(metres[valid].max()) if valid.any() else 1.0
        levels = np.where(valid, np.clip(np.round(255.0 - 254.0 * metres / max(far, 1e-6)), 1, 255), 0)
        return _gray_image(levels.astype(np.uint8))
    closeness = np.zeros_like(metres)
    if valid.any():
        near = float(metres[valid].min()) if scale == "range" else 0.0
        far = float(metres[valid].max())
        closeness[valid] = 1.0 - (metres[valid] - near) / max(far - near, 1e-6)
    if mode == "gray":
        return _gray_image(np.where(valid, 1 + np.round(closeness * 254), 0).astype(np.uint8))
    from matplotlib import colormaps

    rgb = (colormaps[DEPTH_COLORMAP](closeness)[..., :3] * 255).round().astype(np.uint8)
    rgb[~valid] = 0
    return Image.fromarray(rgb, mode="RGB")


def _gray_image(levels: np.ndarray) -> Image.Image:
    """One uint8 gray level per pixel, repeated on the three channels of an RGB image."""
    return Image.fromarray(np.repeat(levels[..., None], 3, axis=-1), mode="RGB")


def outline_boxes(image: Image.Image, boxes: Any, width: int | None = None) -> Image.Image:
    """A copy of `image` with each ``[x0, y0, x1, y1]`` box (original pixels) outlined in `BOX_OUTLINE_COLOR`.

    `width` defaults to 2% of the image's longer side (at least 1 px), so the outline stays about a pixel wide
    after a baseline's processor shrinks the image to its input size. No boxes (``None`` / ``[]``, the whole
    image): the image itself, unchanged.
    """
    boxes = [box for box in (boxes or []) if box is not None and len(box)]
    if not boxes:
        return image
    width = width if width is not None else max(1, round(0.02 * max(image.size)))
    outlined = image.copy()
    draw = ImageDraw.Draw(outlined)
    for box in boxes:
        if len(box) != 4:
            raise ValueError(f"boxes: expected [x0, y0, x1, y1] boxes, got {list(box)!r}")
        # Every pixel the box touches (clipped to the image); PIL's rectangle includes its end pixel.
        x0, y0 = max(math.floor(box[0]), 0), max(math.floor(box[1]), 0)
        x1, y1 = min(math.ceil(box[2]), image.width), min(math.ceil(box[3]), image.height)
        draw.rectangle([x0, y0, max(x0, x1 - 1), max(y0, y1 - 1)], outline=BOX_OUTLINE_COLOR, width=width)
    return outlined


def rgb_model_image(metres: Any, mode: str, boxes: Any, box_prompt: str) -> Image.Image:
    """What a 3-channel model is shown of a depth map, in training and evaluation alike: `metres_to_rgb`, with the
    boxes outlined when `box_prompt` is ``"outline"``."""
    if box_prompt not in BOX_PROMPTS:
        raise ValueError(f"box_prompt: expected one of {BOX_PROMPTS}, got {box_prompt!r}")
    image = metres_to_rgb(metres, mode)
    return outline_boxes(image, boxes) if box_prompt == "outline" else image
