"""The per-option region layout: a multiple-choice question asked with one copy of the depth map per option.

Each copy's Bbox-Conv mask keeps that option's box alone, and the user turn puts each option next to its own
image (`deepsight.prompts.region_choice_content`). The instruction data (training rows), the evaluation
harness and the demo all build it here, so a model is asked in exactly the layout it learned.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from deepsight.prompts import region_choice_content


@dataclass(frozen=True)
class RegionLayout:
    """A question in the region layout: the user turn's content blocks and, per depth copy, its boxes."""

    content: list[dict[str, Any]]
    boxes: list[list[list[float]]]  # one entry per image block: the option's box, or [] (the whole map)

    def images(self, depth: Any) -> list[Any]:
        """The depth map once per image block of `content`."""
        return [depth] * len(self.boxes)


def region_boxes(boxes: Sequence[Sequence[float]], count: int) -> list[list[list[float]]]:
    """Per copy of the depth map, the boxes its mask keeps: option i's box alone.

    A question without boxes keeps the layout with every copy unmasked (the Bbox Conv ablation's rows).
    """
    if not boxes:
        return [[] for _ in range(count)]
    if len(boxes) != count:
        raise ValueError(f"regions: {count} images for {len(boxes)} boxes; expected one image per box")
    return [[_region_box(box, index)] for index, box in enumerate(boxes)]


def _region_box(box: Any, index: int) -> list[float]:
    """`boxes[index]` as four finite floats ``[x0, y0, x1, y1]``, or a ValueError naming it."""
    try:
        values = [float(v) for v in box]
    except (TypeError, ValueError) as error:
        raise ValueError(f"regions: `boxes[{index}]` must be [x0, y0, x1, y1] numbers; got {box!r}") from error
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        raise ValueError(f"regions: `boxes[{index}]` must be four finite numbers [x0, y0, x1, y1]; got {box!r}")
    return values


def region_layout(question: str, options: list[str], boxes: Sequence[Sequence[float]]) -> RegionLayout:
    """`question` with its `options` in the region layout, option i's copy masked to `boxes[i]`."""
    return RegionLayout(region_choice_content(question, options), region_boxes(boxes, len(options)))


def layout_of_content(content: list[dict[str, Any]], boxes: Sequence[Sequence[float]]) -> RegionLayout:
    """The layout of an already written user turn (e.g. the demo's): one box per image block it holds."""
    count = sum(block.get("type") == "image" for block in content)
    if count != len(boxes):
        raise ValueError(f"regions: {count} images for {len(boxes)} boxes; expected one image per box")
    return RegionLayout(list(content), region_boxes(boxes, count))
