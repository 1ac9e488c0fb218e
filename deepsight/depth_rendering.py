"""Depth rendered as an 8-bit RGB image, for the models that only read photos (the paper's baselines).

One renderer for training (`train.collators`, `image_mode="gray"|"colormap"`) and evaluation
(`evaluation.adapters`, `evaluation.zeroshot`, `--depth-as`): a baseline is scored on exactly the images it was
trained on.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

DEPTH_AS_CHOICES = ("gray", "colormap")
DEPTH_COLORMAP = "turbo"  # keeps more depth levels distinguishable than 256 gray values


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
