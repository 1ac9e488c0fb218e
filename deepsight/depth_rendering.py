"""Depth rendered as an 8-bit RGB image, for the models that only read photos (the paper's baselines).

One renderer for training (`train.collators`, `image_mode="gray"|"colormap"`) and evaluation
(`evaluation.adapters`, `evaluation.zeroshot`, `--depth-as`): a baseline is scored on exactly the images it was
trained on. The boxes DeepSight reads through its Bbox Conv mask reach these models as outlines drawn on the
image (`outline_boxes`, `box_prompt="outline"`), the usual visual prompt of RGB models.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

DEPTH_AS_CHOICES = ("gray", "colormap")
DEPTH_COLORMAP = "turbo"  # keeps more depth levels distinguishable than 256 gray values
BOX_PROMPTS = ("outline", "none")
# Magenta: never a gray level, and not on turbo's blue-green-yellow-red path either.
BOX_OUTLINE_COLOR = (255, 0, 255)


def metres_to_rgb(metres: Any, mode: str = "gray") -> Image.Image:
    """Render an HxW map of metres (0 = invalid) as an RGB image; brighter (or warmer) = closer.

    Valid depth is min-max normalised per image over the valid pixels, the convention of 8-bit relative depth
    images; invalid pixels are black. ``"gray"`` repeats one gray level on the three channels (valid pixels get
    1..255, so the farthest point stays distinguishable from invalid), ``"colormap"`` maps the closeness through
    matplotlib's turbo colormap.
    """
    if mode not in DEPTH_AS_CHOICES:
        raise ValueError(f"mode (depth as an image): expected one of {DEPTH_AS_CHOICES}, got {mode!r}")
    metres = np.asarray(metres, dtype=np.float32)
    if metres.ndim != 2:
        raise ValueError(f"depth: expected an HxW array of metres, got shape {metres.shape}")
    valid = metres > 0
    closeness = np.zeros_like(metres)
    if valid.any():
        near, far = float(metres[valid].min()), float(metres[valid].max())
        closeness[valid] = 1.0 - (metres[valid] - near) / max(far - near, 1e-6)
    if mode == "gray":
        levels = np.where(valid, 1 + np.round(closeness * 254), 0).astype(np.uint8)
        return Image.fromarray(np.repeat(levels[..., None], 3, axis=-1), mode="RGB")
    from matplotlib import colormaps

    rgb = (colormaps[DEPTH_COLORMAP](closeness)[..., :3] * 255).round().astype(np.uint8)
    rgb[~valid] = 0
    return Image.fromarray(rgb, mode="RGB")


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
