"""A conversation's regions as `<box>` tags in its messages: written right after the image block they belong to.

The DeepSight processor reads such tags into the Bbox-Conv mask of the image before them (and drops them from the
text), so rows carrying their regions this way train through TRL's stock vision collator. Models that cannot read
tags (the RGB baselines) get the tags taken out again with `split_box_tags`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from modeling_deepsight.processing_deepsight import BOX_TAG_PATTERN, extract_box_tags, format_box_tag

# What `split_box_tags` puts in place of an image block to find which image a tag belongs to.
_IMAGE_SLOT = "\ue001"


def tag_boxes(messages: Sequence[dict[str, Any]], boxes: Sequence[Sequence[Sequence[float]]]) -> list[dict[str, Any]]:
    """`messages` with, right after the i-th image block, a text block holding `boxes[i]` as `<box>` tags.

    `boxes` has one list per image block, in reading order (`[]`: the whole image, no tag).
    """
    num_images = sum(
        block.get("type") == "image"
        for turn in messages
        if isinstance(turn["content"], list)
        for block in turn["content"]
    )
    if len(boxes) != num_images:
        raise ValueError(f"boxes: expected one box list per image block ({num_images}), got {len(boxes)}")
    image_boxes = iter(boxes)

    def with_tags(block: dict[str, Any]) -> list[dict[str, Any]]:
        if block.get("type") != "image":
            return [block]
        tags = "".join(format_box_tag(box) for box in next(image_boxes))
        return [block, {"type": "text", "text": tags}] if tags else [block]

    return _rewrite_blocks(messages, with_tags)


def _rewrite_blocks(
    messages: Sequence[dict[str, Any]], rewrite: Callable[[dict[str, Any]], list[dict[str, Any]]]
) -> list[dict[str, Any]]:
    """`messages` with each content block replaced by the blocks `rewrite` gives for it (in reading order)."""
    return [
        {**turn, "content": [new for block in turn["content"] for new in rewrite(block)]}
        if isinstance(turn["content"], list) else dict(turn)
        for turn in messages
    ]


def strip_box_tags(text: str) -> str:
    """`text` without its `<box>` tags: what a reader of the words (statistics, a tokenizer's corpus) should see."""
    return BOX_TAG_PATTERN.sub("", text)


def split_box_tags(messages: Sequence[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[list[list[float]]]]:
    """The messages without their `<box>` tags, and per image block the boxes its tags gave (`[]`: none).

    A tag belongs to the closest image block before it, as the DeepSight processor reads it; text blocks that held
    only tags are dropped.
    """
    flat = "".join(
        _IMAGE_SLOT if block.get("type") == "image" else block.get("text") or ""
        for turn in messages
        if isinstance(turn["content"], list)
        for block in turn["content"]
    )
    _, boxes = extract_box_tags(flat, _IMAGE_SLOT)

    def without_tags(block: dict[str, Any]) -> list[dict[str, Any]]:
        if block.get("type") != "text" or not block.get("text"):
            return [block]
        text = strip_box_tags(block["text"])
        return [{**block, "text": text}] if text else []

    return _rewrite_blocks(messages, without_tags), boxes
