"""What stages 1 and 2 hand TRL's vision collator, and what its batches hold.

Training batches come from TRL's own `DataCollatorForVisionLanguageModeling` with ``assistant_only_loss``: the
processor's chat template marks the assistant turns with ``{% generation %}``, so labels are the answers (their
end-of-turn token included) and everything else -- system and user turns, image tokens, padding -- is ``-100``.

An instruction row (docs/CONTRACTS.md "Instruction row") already is what that collator takes: ``messages`` whose
regions are ``<box>`` tags right after their image block (the DeepSight processor turns them into the Bbox-Conv mask)
and ``images``. `ConversationRows` converts rows, as a `Dataset.with_transform`, only where a stage needs it:

- stage 1 turns pairs rows into one-turn conversations (``row_to_conversation``);
- ``depth_encoding`` given: the depth is decoded to metres here (the collator passes the processor no encoding);
- ``image_mode="gray"`` / ``"colormap"`` (RGB baselines, the paper's Table 6): the depth is rendered as a 3-channel
  8-bit image (brighter / warmer = closer), the tags taken out of the text and the tagged boxes shown by the region
  protocol ``box_prompt`` (`deepsight.depth_rendering.REGION_PROTOCOLS`; ``"outline"``: drawn on the image).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from PIL import Image
from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

from deepsight.box_tags import split_box_tags
from deepsight.depth_rendering import REGION_PROTOCOLS, TEXT_PROTOCOLS, region_text, rgb_model_image
from modeling_deepsight import load_depth
from modeling_deepsight.processing_deepsight import BOX_TAG_PATTERN

IGNORE_INDEX = -100
IMAGE_MODES = ("auto", "depth", "gray", "colormap")


def depth_to_rgb(
    depth: Any, mode: str = "gray", depth_encoding: str | None = None, boxes: Any = None, box_prompt: str = "none"
) -> Image.Image:
    """Decode a depth map in any encoding (`load_depth`) and render it as an 8-bit RGB image for RGB
    vision-language models: brighter (``"gray"``) or warmer (``"colormap"``) = closer, invalid pixels black;
    the `boxes` shown on it by region protocol `box_prompt` (outlined, background masked, cropped to; others: none).

    The rendering is `deepsight.depth_rendering.rgb_model_image`, the one the evaluation harness uses.
    """
    metres, _ = load_depth(depth, encoding=depth_encoding)
    return rgb_model_image(metres, mode, boxes, box_prompt)


def resolve_image_mode(processor: Any, image_mode: str = "auto") -> str:
    """``"depth"`` for a DeepSight processor, ``"gray"`` for any other processor under ``"auto"``."""
    if image_mode not in IMAGE_MODES:
        raise ValueError(f"image_mode: expected one of {IMAGE_MODES}, got {image_mode!r}")
    if image_mode != "auto":
        return image_mode
    return "depth" if type(processor).__name__.startswith("DeepSight") else "gray"


def image_token_id(processor: Any) -> int:
    token_id = getattr(processor, "image_token_id", None)
    if token_id is None:
        token_id = processor.tokenizer.convert_tokens_to_ids(getattr(processor, "image_token", None) or "<image>")
    return token_id


def training_chat_template(processor: Any) -> str | None:
    """The processor's chat template with the BOS the tokenizer adds to an encoded text, when it lacks one.

    TRL's collator tokenises the rendered conversation with ``add_special_tokens=False`` (a template is expected to
    render its own BOS); a template that leaves the BOS to the tokenizer would train without the BOS that every
    prompt at inference (`processor(text=...)`) starts with. None: the template is used as it is.
    """
    tokenizer = processor.tokenizer
    template = processor.chat_template
    bos = tokenizer.bos_token
    if bos is None or not isinstance(template, str) or "bos_token" in template:
        return None
    if tokenizer("")["input_ids"][:1] != [tokenizer.bos_token_id]:
        return None
    return "{{ bos_token }}" + template


def vision_collator(processor: Any, max_length: int | None = None, pad_to_multiple_of: int | None = None):
    """TRL's vision collator, loss on assistant tokens only, padding on the right whatever the processor saved."""
    return DataCollatorForVisionLanguageModeling(
        processor=processor,
        max_length=max_length,
        pad_to_multiple_of=pad_to_multiple_of,
        assistant_only_loss=True,
        chat_template=training_chat_template(processor),
    )


def _drop_none_keys(messages: list[dict]) -> list[dict]:
    """Arrow stores a list of mixed content blocks with every key, so ``{"type": "image"}`` comes back as
    ``{"type": "image", "text": None}``; chat templates test ``"text" in block``, so drop the Nones."""
    return [
        {
            **turn,
            "content": [{k: v for k, v in block.items() if v is not None} for block in turn["content"]]
            if isinstance(turn["content"], list)
            else turn["content"],
        }
        for turn in messages
    ]


def _boxes_in_question(messages: list[dict], boxes: list, protocol: str, width: int, height: int) -> list[dict]:
    """`messages` with the boxes written into the first user text block (the question) by `region_text`."""
    written, result = False, []
    for turn in messages:
        content = turn["content"]
        if not written and turn.get("role") == "user" and isinstance(content, list):
            blocks = []
            for block in content:
                if not written and block.get("type") == "text":
                    block, written = {**block, "text": region_text(block["text"], boxes, protocol, width, height)}, True
                blocks.append(block)
            turn = {**turn, "content": blocks}
        result.append(turn)
    return result


class ConversationRows:
    """Rows -> the ``messages`` + ``images`` rows TRL's vision collator takes (see the module docstring).

    Used as ``dataset.with_transform(ConversationRows(...))``: it receives and returns column batches, replacing
    ``messages`` and ``images``. Batches without the columns it converts (a column read alone) pass through.
    """

    def __init__(
        self,
        processor: Any,
        image_mode: str = "auto",
        depth_encoding: str | None = None,
        row_to_conversation: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        box_prompt: str = "outline",
    ) -> None:
        if box_prompt not in REGION_PROTOCOLS:
            raise ValueError(f"box_prompt (region protocol): expected one of {REGION_PROTOCOLS}, got {box_prompt!r}")
        self.image_mode = resolve_image_mode(processor, image_mode)
        self.depth_encoding = depth_encoding
        self.row_to_conversation = row_to_conversation
        self.box_prompt = box_prompt

    @property
    def needed(self) -> bool:
        """False when rows already are what the collator takes (DeepSight on instruction rows, encoding detected)."""
        return self.image_mode != "depth" or self.depth_encoding is not None or self.row_to_conversation is not None

    def convert(self, row: dict[str, Any]) -> dict[str, Any]:
        if self.row_to_conversation is not None:
            row = self.row_to_conversation(row)
        messages = row.get("messages")
        if not isinstance(messages, list) or not messages:
            raise ValueError(f"row {row.get('id')!r}: `messages` must be a non-empty list of turns, got {messages!r}")
        if not any(turn.get("role") == "assistant" for turn in messages):
            raise ValueError(f"row {row.get('id')!r}: no assistant turn, so nothing to train on")
        messages = _drop_none_keys(messages)
        images = list(row.get("images") or [])
        if self.image_mode == "depth":
            if self.depth_encoding is not None:
                images = [self._metres(image, row.get("id")) for image in images]
            return {"messages": messages, "images": images}
        messages, boxes = split_box_tags(messages)
        if len(boxes) != len(images):
            raise ValueError(
                f"row {row.get('id')!r}: {len(boxes)} image blocks in `messages` but {len(images)} entries in `images`"
            )
        rendered = [
            depth_to_rgb(image, self.image_mode, self.depth_encoding, image_boxes, self.box_prompt)
            for image, image_boxes in zip(images, boxes)
        ]
        if self.box_prompt in TEXT_PROTOCOLS and rendered:
            messages = _boxes_in_question(messages, [box for image_boxes in boxes for box in image_boxes],
                                          self.box_prompt, *rendered[0].size)
        return {"messages": messages, "images": rendered}

    def _metres(self, image: Any, row_id: Any) -> np.ndarray:
        return load_depth(image, encoding=self.depth_encoding, name=f"depth of row {row_id!r}")[0]

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        source = ("depth", "caption") if self.row_to_conversation is not None else ("messages",)
        if not all(column in batch for column in source):
            return batch
        rows = [dict(zip(batch, values)) for values in zip(*batch.values())]
        converted = [self.convert(row) for row in rows]
        # the other columns stay (the Trainer reads the length column through the transform too); TRL ignores them
        messages, images = [row["messages"] for row in converted], [row["images"] for row in converted]
        return {**batch, "messages": messages, "images": images}


def estimated_lengths(processor: Any, rows: list[dict[str, Any]]) -> list[int]:
    """Tokens each (converted) row will have in a batch, from its text alone (no image is decoded).

    Each image placeholder counts as the processor's `image_seq_length` tokens (1 when it has none); box tags
    count nothing (the processor drops them). What length-grouped sampling needs: rows of similar length batched
    together waste less padding.
    """
    if not rows:
        return []
    template = training_chat_template(processor)
    texts = [
        BOX_TAG_PATTERN.sub("", processor.apply_chat_template(_drop_none_keys(row["messages"]), tokenize=False,
                                                              chat_template=template))
        for row in rows
    ]
    image_token = getattr(processor, "image_token", None) or "<image>"
    per_image = int(getattr(processor, "image_seq_length", 1) or 1)
    token_ids = processor.tokenizer(texts, add_special_tokens=False)["input_ids"]  # as the collator encodes
    return [len(ids) + text.count(image_token) * (per_image - 1) for ids, text in zip(token_ids, texts)]


def label_statistics(batch: dict[str, torch.Tensor], image_token_id: int | None = None) -> dict[str, float]:
    """Fractions of the real (non-pad) tokens: out of the loss, image tokens, in the loss."""
    real = batch["attention_mask"].bool()
    masked = (batch["labels"] == IGNORE_INDEX) & real
    n_real = int(real.sum())
    stats = {
        "tokens": float(n_real),
        "masked_fraction": float(masked.sum()) / max(n_real, 1),
        "trained_fraction": float((~masked & real).sum()) / max(n_real, 1),
        "padding_fraction": float((~real).sum()) / real.numel(),
    }
    if image_token_id is not None:
        stats["image_token_fraction"] = float(((batch["input_ids"] == image_token_id) & real).sum()) / max(
            n_real, 1
        )
    return stats
