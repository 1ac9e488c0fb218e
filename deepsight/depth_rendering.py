"""Depth rendered as an 8-bit RGB image, for the models that only read photos (the paper's baselines).

One renderer for training (`train.rows`, `image_mode="gray"|"colormap"`), evaluation
(`evaluation.adapters`, `evaluation.zeroshot`, `--depth-as`) and the pair builder's RGB caption scorers: a
baseline is scored on exactly the images it was trained on. The boxes DeepSight reads through its Bbox Conv
mask reach these models as outlines drawn on the image by default (`outline_boxes`, `box_prompt="outline"`), the
usual visual prompt of RGB models. `region_prompt` renders them under every region protocol (`REGION_PROTOCOLS`, the
table in docs/CONTRACTS.md): a pure function of (depth metres, boxes, question text) -> (image, text).
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from deepsight.prompts import OPTION_LETTERS

DEPTH_AS_CHOICES = ("gray", "colormap")
DEPTH_COLORMAP = "turbo"  # keeps more depth levels distinguishable than 256 gray values
# What the brightest level stands for: the map's nearest valid depth ("range") or 0 m ("far").
DEPTH_SCALES = ("range", "far")
# How a model without a mask channel is shown a question's boxes (docs/CONTRACTS.md, "Region protocols").
REGION_PROTOCOLS = ("outline", "text-pixels", "text-1000", "masked", "crop", "none")
# The protocols that put the boxes in the question's text rather than on the image.
TEXT_PROTOCOLS = ("text-pixels", "text-1000")
# Context kept around the boxes' union by `crop`, as a fraction of the union's width / height on each side.
CROP_MARGIN = 0.25
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
    boxes = _given_boxes(boxes)
    if not boxes:
        return image
    width = width if width is not None else max(1, round(0.02 * max(image.size)))
    outlined = image.copy()
    draw = ImageDraw.Draw(outlined)
    for box in boxes:
        # Every pixel the box touches (clipped to the image); PIL's rectangle includes its end pixel.
        x0, y0 = max(math.floor(box[0]), 0), max(math.floor(box[1]), 0)
        x1, y1 = min(math.ceil(box[2]), image.width), min(math.ceil(box[3]), image.height)
        draw.rectangle([x0, y0, max(x0, x1 - 1), max(y0, y1 - 1)], outline=BOX_OUTLINE_COLOR, width=width)
    return outlined


def _given_boxes(boxes: Any) -> list[list[float]]:
    """The ``[x0, y0, x1, y1]`` boxes of `boxes` (``None`` / ``[]`` entries and no boxes at all: none)."""
    given = [list(box) for box in (boxes or []) if box is not None and len(box)]
    for box in given:
        if len(box) != 4:
            raise ValueError(f"boxes: expected [x0, y0, x1, y1] boxes, got {box!r}")
    return given


def _pixel_box(box: list[float], width: int, height: int) -> tuple[int, int, int, int]:
    """The pixels `box` touches, as a half-open ``(x0, y0, x1, y1)`` clipped to the image."""
    x0, y0 = min(max(math.floor(box[0]), 0), width), min(max(math.floor(box[1]), 0), height)
    x1, y1 = min(max(math.ceil(box[2]), x0), width), min(max(math.ceil(box[3]), y0), height)
    return x0, y0, x1, y1


def mask_outside_boxes(image: Image.Image, boxes: Any) -> Image.Image:
    """A copy of `image` with every pixel outside the union of `boxes` black (``masked``); no boxes: unchanged."""
    boxes = _given_boxes(boxes)
    if not boxes:
        return image
    pixels = np.asarray(image)
    inside = np.zeros(pixels.shape[:2], dtype=bool)
    for box in boxes:
        x0, y0, x1, y1 = _pixel_box(box, image.width, image.height)
        inside[y0:y1, x0:x1] = True
    return Image.fromarray(np.where(inside[..., None], pixels, 0).astype(np.uint8), mode=image.mode)


def crop_window(boxes: Any, width: int, height: int, margin: float = CROP_MARGIN) -> tuple[int, int, int, int]:
    """The pixels ``crop`` keeps: the union of `boxes` grown by `margin` of its width / height on each side,
    clipped to the image, as a half-open ``(x0, y0, x1, y1)``; no boxes: the whole image."""
    boxes = _given_boxes(boxes)
    if not boxes:
        return 0, 0, width, height
    if margin < 0:
        raise ValueError(f"margin: expected a fraction >= 0 of the boxes' size, got {margin!r}")
    x0, y0 = min(box[0] for box in boxes), min(box[1] for box in boxes)
    x1, y1 = max(box[2] for box in boxes), max(box[3] for box in boxes)
    grow_x, grow_y = margin * (x1 - x0), margin * (y1 - y0)
    return _pixel_box([x0 - grow_x, y0 - grow_y, x1 + grow_x, y1 + grow_y], width, height)


def crop_to_boxes(
    image: Image.Image, boxes: Any, margin: float = CROP_MARGIN, size: tuple[int, int] | None = None
) -> tuple[Image.Image, list[list[float]]]:
    """``crop``: `image` cropped to `crop_window`, and the boxes in the crop's pixels.

    `size` (width, height): the crop resized to it (bilinear, as image processors resize) and the boxes scaled
    with it; None leaves the resizing to the model's processor, as for any image.
    """
    boxes = _given_boxes(boxes)
    x0, y0, x1, y1 = crop_window(boxes, image.width, image.height, margin)
    if x1 <= x0 or y1 <= y0:  # boxes wholly outside the image: nothing of them to show, keep the image
        x0, y0, x1, y1 = 0, 0, image.width, image.height
    cropped = image.crop((x0, y0, x1, y1))
    shifted = [[box[0] - x0, box[1] - y0, box[2] - x0, box[3] - y0] for box in boxes]
    if size is None:
        return cropped, shifted
    sx, sy = size[0] / cropped.width, size[1] / cropped.height
    scaled = [[box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy] for box in shifted]
    return cropped.resize(size, Image.Resampling.BILINEAR), scaled


def format_box_text(box: Any, protocol: str, width: int, height: int) -> str:
    """One box as the question's text gives it under a text protocol (the one formatter of box coordinates).

    ``text-pixels``: ``[x0, y0, x1, y1]`` in the depth map's pixels, rounded (halves up) and clipped to the image.
    ``text-1000``: ``(x0,y0),(x1,y1)`` as ints from 0 to 1000, each coordinate divided by the image's width or
    height, times 1000, rounded (halves up) and clipped: the grounding convention of Qwen-VL and Qwen2-VL
    (``<|box_start|>(x0,y0),(x1,y1)<|box_end|>``) without their special tokens.
    """
    if protocol not in TEXT_PROTOCOLS:
        raise ValueError(f"protocol (boxes as text): expected one of {TEXT_PROTOCOLS}, got {protocol!r}")
    if box is None or len(box) != 4:
        raise ValueError(f"box: expected [x0, y0, x1, y1], got {box!r}")
    limits = (width, height, width, height)
    if protocol == "text-pixels":
        x0, y0, x1, y1 = (min(max(_round_half_up(value), 0), limit) for value, limit in zip(box, limits))
        return f"[{x0}, {y0}, {x1}, {y1}]"
    x0, y0, x1, y1 = (min(max(_round_half_up(1000 * value / limit), 0), 1000) for value, limit in zip(box, limits))
    return f"({x0},{y0}),({x1},{y1})"


def _round_half_up(value: float) -> int:
    """The nearest int, halves up (Python's `round` sends halves to the even neighbour: 2.5 -> 2)."""
    return math.floor(value + 0.5)


_OPTION_LINE = re.compile(rf"^([{OPTION_LETTERS}])\. .*$")


def boxes_in_text(text: str, boxes: Any, protocol: str, width: int, height: int) -> str:
    """`text` with the boxes written in: after each option line when there is one box per option (Distance
    Judgment: 'A. chair [12, 30, 80, 140]'), else on a line after the question's first line ('Region: ...')."""
    boxes = _given_boxes(boxes)
    if not boxes:
        return text
    written = [format_box_text(box, protocol, width, height) for box in boxes]
    lines = text.split("\n")
    option_lines = [i for i, line in enumerate(lines) if _OPTION_LINE.match(line)]
    if len(option_lines) == len(written):
        for i, box_text in zip(option_lines, written):
            lines[i] = f"{lines[i]} {box_text}"
        return "\n".join(lines)
    label = "Region" if len(written) == 1 else "Regions"
    return "\n".join([lines[0], f"{label}: {'; '.join(written)}", *lines[1:]])


def region_text(text: str, boxes: Any, protocol: str, width: int, height: int) -> str:
    """The question's text under a region protocol: the boxes written in for the text protocols, else `text`."""
    if protocol not in REGION_PROTOCOLS:
        raise ValueError(f"region protocol: expected one of {REGION_PROTOCOLS}, got {protocol!r}")
    return boxes_in_text(text, boxes, protocol, width, height) if protocol in TEXT_PROTOCOLS else text


def rgb_model_image(metres: Any, mode: str, boxes: Any, box_prompt: str, scale: str = "range") -> Image.Image:
    """What a 3-channel model is shown of a depth map under region protocol `box_prompt`, in training and
    evaluation alike: `metres_to_rgb`, the boxes outlined (``outline``), the rest blacked out (``masked``) or
    cropped to (``crop``); the text protocols and ``none`` leave the image as it is."""
    if box_prompt not in REGION_PROTOCOLS:
        raise ValueError(f"region protocol: expected one of {REGION_PROTOCOLS}, got {box_prompt!r}")
    image = metres_to_rgb(metres, mode, scale)
    if box_prompt == "outline":
        return outline_boxes(image, boxes)
    if box_prompt == "masked":
        return mask_outside_boxes(image, boxes)
    if box_prompt == "crop":
        return crop_to_boxes(image, boxes)[0]
    return image


def region_prompt(
    metres: Any, boxes: Any, text: str, protocol: str, mode: str = "gray", scale: str = "range"
) -> tuple[Image.Image, str]:
    """What a model without a mask channel is shown of a question under a region protocol: (image, text).

    A pure function of the depth (HxW metres), the question's boxes (depth-map pixels) and its text, for training
    (`train.rows`), our harness (`evaluation.adapters`) and other harnesses (an lmms-eval task's `doc_to_visual`
    / `doc_to_text`) alike.
    """
    image = rgb_model_image(metres, mode, boxes, protocol, scale)
    height, width = np.asarray(metres).shape[:2]
    return image, region_text(text, boxes, protocol, width, height)
