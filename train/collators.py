"""Collators that turn depth conversation rows into training batches, with loss on assistant tokens only.

A row is a TRL conversational example (docs/CONTRACTS.md, "Instruction row"): ``messages`` with
``{"type": "image"}`` blocks, ``images`` (the depth maps) and ``boxes`` (per image; ``[]`` = whole image).

`DepthConversationCollator` renders each conversation with the processor's chat template, tokenizes it
through the processor (which expands every ``<image>`` into the model's image tokens) and labels only
the assistant turns: for assistant turn ``i`` the tokens between ``render(messages[:i], generation
prompt)`` and ``render(messages[:i + 1])`` are the answer (its end-of-turn token included, so the model
learns to stop). Everything else -- system and user turns, image tokens, padding -- is ``-100``.
Measuring the turn boundaries by re-tokenizing prefixes works with any chat template (no
``{% generation %}`` markers needed), which is what lets the same collator serve DeepSight and the
LLaVA / Qwen2.5-VL baselines.

Depth reaches the model in one of two forms (``image_mode``):
- ``"depth"``: the raw depth map and its boxes go to the DeepSight processor (metric depth + Bbox mask);
- ``"gray"`` / ``"colormap"``: the depth is rendered as a 3-channel 8-bit image (brighter / warmer =
  closer) for RGB vision-language models, as the paper did for its Table 6 baselines; the row's boxes are
  drawn on it as outlines (``box_prompt="outline"``; ``"none"``: no box information at all).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import groupby
from typing import Any

import torch
from PIL import Image

from deepsight.depth_rendering import BOX_PROMPTS, rgb_model_image
from modeling_deepsight import load_depth

IGNORE_INDEX = -100
IMAGE_MODES = ("auto", "depth", "gray", "colormap")


# --------------------------------------------------------------------------------------------------
# Depth as an RGB image (baselines)
# --------------------------------------------------------------------------------------------------


def depth_to_rgb(
    depth: Any, mode: str = "gray", depth_encoding: str | None = None, boxes: Any = None, box_prompt: str = "none"
) -> Image.Image:
    """Decode a depth map in any encoding (`load_depth`) and render it as an 8-bit RGB image for RGB
    vision-language models: brighter (``"gray"``) or warmer (``"colormap"``) = closer, invalid pixels black;
    with ``box_prompt="outline"`` the `boxes` are outlined.

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


# --------------------------------------------------------------------------------------------------
# The collator
# --------------------------------------------------------------------------------------------------


def _check_messages(messages: Any, example_id: Any) -> list[dict]:
    if not isinstance(messages, Sequence) or not messages:
        raise ValueError(
            f"example {example_id!r}: `messages` must be a non-empty list of turns, got {messages!r}"
        )
    for turn in messages:
        if not isinstance(turn, dict) or "role" not in turn or "content" not in turn:
            raise ValueError(f"example {example_id!r}: each turn needs 'role' and 'content', got {turn!r}")
    if not any(turn["role"] == "assistant" for turn in messages):
        raise ValueError(f"example {example_id!r}: no assistant turn, so nothing to train on")
    return list(messages)


def _drop_none_blocks(messages: list[dict]) -> list[dict]:
    """Arrow stores a list of mixed content blocks with every key, so ``{"type": "image"}`` comes back as
    ``{"type": "image", "text": None}``; chat templates test ``"text" in block``, so drop the Nones."""
    cleaned = []
    for turn in messages:
        content = turn["content"]
        if isinstance(content, list):
            content = [{k: v for k, v in block.items() if v is not None} for block in content]
        cleaned.append({"role": turn["role"], "content": content})
    return cleaned


def _count_image_blocks(messages: list[dict]) -> int:
    return sum(
        1
        for turn in messages
        if isinstance(turn["content"], list)
        for block in turn["content"]
        if block.get("type") == "image"
    )


class DepthConversationCollator:
    """Batch depth conversations for a vision-language model, loss on assistant tokens only.

    Args:
        processor: a DeepSight processor, or any `ProcessorMixin` of an image-text-to-text model.
        image_mode: ``"auto"``, ``"depth"``, ``"gray"`` or ``"colormap"`` (see the module docstring).
        max_length: longest sequence kept; longer ones are cut at the end. Cutting into image tokens is an
            error (the model would see features without their placeholders).
        depth_encoding: passed to the depth decoder; ``None`` detects it (16-bit PNG rows are millimetres).
        row_to_conversation: optional converter applied to each row first (stage 1 turns pairs rows into
            one-turn conversations this way, without rewriting the dataset's images).
        box_prompt: how the 3-channel image modes show a row's boxes: ``"outline"`` drawn on the image (what the
            prompts' "outlined region" promises) or ``"none"``. The depth mode always passes them to the processor.
    """

    def __init__(
        self,
        processor: Any,
        image_mode: str = "auto",
        max_length: int | None = None,
        depth_encoding: str | None = None,
        row_to_conversation: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        box_prompt: str = "outline",
    ) -> None:
        tokenizer = getattr(processor, "tokenizer", None)
        if tokenizer is None:
            raise ValueError(
                f"processor: expected a multimodal processor with a `tokenizer`, got {type(processor)}"
            )
        if (
            getattr(processor, "chat_template", None) is None
            and getattr(tokenizer, "chat_template", None) is None
        ):
            raise ValueError("processor: has no chat template; conversations cannot be rendered")
        if box_prompt not in BOX_PROMPTS:
            raise ValueError(f"box_prompt: expected one of {BOX_PROMPTS}, got {box_prompt!r}")
        if max_length is not None and max_length <= 0:
            raise ValueError(f"max_length: expected a positive int or None, got {max_length}")
        self.processor = processor
        self.tokenizer = tokenizer
        self.image_mode = resolve_image_mode(processor, image_mode)
        self.max_length = max_length
        self.depth_encoding = depth_encoding
        self.row_to_conversation = row_to_conversation
        self.box_prompt = box_prompt
        self.image_token = getattr(processor, "image_token", None) or "<image>"
        self.image_token_id = getattr(processor, "image_token_id", None)
        if self.image_token_id is None:
            self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
        self.pad_token_id = (
            tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        )
        if self.pad_token_id is None:
            raise ValueError("processor.tokenizer: has neither a pad nor an eos token to pad with")

    # -- rendering and tokenization ------------------------------------------------------------------

    def _render(self, messages: list[dict], add_generation_prompt: bool) -> str:
        return self.processor.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=add_generation_prompt
        )

    def _images_for_model(self, images: list[Any], boxes: list[list[Any]]) -> list[Any]:
        if self.image_mode == "depth":
            return list(images)
        return [
            depth_to_rgb(image, self.image_mode, self.depth_encoding, image_boxes, self.box_prompt)
            for image, image_boxes in zip(images, boxes)
        ]

    def _encode(self, text: str, images: list[Any], boxes: list[Any]) -> dict[str, torch.Tensor]:
        """Tokenize one text through the processor, with the images its placeholders refer to."""
        kwargs: dict[str, Any] = {"text": [text], "return_tensors": "pt"}
        if images:
            kwargs["images"] = images
            if self.image_mode == "depth":
                kwargs["boxes"] = boxes
                if self.depth_encoding is not None:
                    kwargs["depth_encoding"] = self.depth_encoding
        return self.processor(**kwargs)

    def _num_tokens(self, text: str, images: list[Any], boxes: list[Any], per_image: int | None = None) -> int:
        """Tokens of `text` (a rendering prefix) as the processor encodes it with its images. With `per_image`
        (see `_tokens_per_image`) from the text alone: no image is processed again."""
        n = text.count(self.image_token)
        if per_image is not None:  # special tokens added as the processor adds them
            return self._expanded_length(text, len(self.tokenizer(text)["input_ids"]), per_image)
        return int(self._encode(text, images[:n], boxes[:n])["input_ids"].shape[-1])

    def _expanded_length(self, text: str, num_text_tokens: int, per_image: int) -> int:
        """Tokens of `text` once each image placeholder became `per_image` image tokens."""
        return num_text_tokens + text.count(self.image_token) * (per_image - 1)

    def _tokens_per_image(self, full_text: str, input_ids: torch.Tensor, num_images: int) -> int | None:
        """The tokens each image placeholder became in `input_ids` (the encoding of `full_text`), when every image
        became one run of the same length and the text alone then gives the encoded length; else None.

        The image token is a special token, so the text around it tokenises alike whether it is expanded or
        not; checking that on the full text makes the shortcut exact for its prefixes, whatever the processor.
        """
        runs = [len(list(run)) for is_image, run in groupby((input_ids == self.image_token_id).tolist()) if is_image]
        if num_images == 0 or len(runs) != num_images or len(set(runs)) != 1:
            return None
        per_image = runs[0]
        encoded_alike = self._num_tokens(full_text, [], [], per_image) == int(input_ids.shape[0])
        return per_image if encoded_alike else None

    def estimated_length(self, example: dict[str, Any]) -> int:
        """Tokens `encode_example` will give this row, from its text alone (no image is decoded).

        Each image placeholder counts as the processor's `image_seq_length` tokens (1 when it has none). It is
        what length-grouped sampling needs: rows of similar length batched together waste less padding.
        """
        return self.estimated_lengths([example])[0]

    def estimated_lengths(self, examples: list[dict[str, Any]]) -> list[int]:
        """`estimated_length` of each row, tokenized in one call (the fast tokenizer's batch path)."""
        texts = []
        for example in examples:
            if self.row_to_conversation is not None:
                example = self.row_to_conversation(example)
            messages = _drop_none_blocks(_check_messages(example.get("messages"), example.get("id")))
            texts.append(self._render(messages, add_generation_prompt=False))
        if not texts:
            return []
        per_image = int(getattr(self.processor, "image_seq_length", 1) or 1)
        token_ids = self.tokenizer(texts)["input_ids"]  # special tokens added as the processor adds them
        return [self._expanded_length(text, len(ids), per_image) for ids, text in zip(token_ids, texts)]

    def _end_of_answer(self, input_ids: torch.Tensor, start: int, end: int) -> int:
        """End the answer at its end-of-turn token: a newline the template adds is not answer."""
        eos_positions = (input_ids[start:end] == self.tokenizer.eos_token_id).nonzero()
        return start + int(eos_positions[-1]) + 1 if eos_positions.numel() else end

    def encode_example(self, example: dict[str, Any]) -> dict[str, torch.Tensor]:
        """input_ids, labels (assistant tokens only) and the vision tensors of one conversation."""
        if self.row_to_conversation is not None:
            example = self.row_to_conversation(example)
        example_id = example.get("id")
        messages = _drop_none_blocks(_check_messages(example.get("messages"), example_id))
        raw_images = list(example.get("images") or [])
        if _count_image_blocks(messages) != len(raw_images):
            raise ValueError(
                f"example {example_id!r}: {_count_image_blocks(messages)} image blocks in `messages` but "
                f"{len(raw_images)} entries in `images`"
            )
        boxes = example.get("boxes")
        boxes = [list(b or []) for b in boxes] if boxes is not None else [[] for _ in raw_images]
        if len(boxes) != len(raw_images):
            raise ValueError(
                f"example {example_id!r}: `boxes` must hold one list per image, got {len(boxes)}"
            )
        images = self._images_for_model(raw_images, boxes)

        full_text = self._render(messages, add_generation_prompt=False)
        encoding = self._encode(full_text, images, boxes)
        input_ids = encoding["input_ids"][0]
        labels = torch.full_like(input_ids, IGNORE_INDEX)
        # A conversation usually ends on an assistant turn, whose rendering through that turn is the full text:
        # its length is already known, which saves one processor call (images included) per example.
        known_lengths = (
            {full_text: int(input_ids.shape[0])} if full_text.count(self.image_token) == len(images) else {}
        )
        per_image = self._tokens_per_image(full_text, input_ids, len(images))
        for index, turn in enumerate(messages):
            if turn["role"] != "assistant":
                continue
            prompt_text = self._render(messages[:index], add_generation_prompt=True)
            through_text = self._render(messages[: index + 1], add_generation_prompt=False)
            if not (full_text.startswith(through_text) and through_text.startswith(prompt_text)):
                raise ValueError(
                    "the chat template is not prefix-stable (rendering a conversation prefix does not give a "
                    "prefix of the full rendering), so assistant tokens cannot be located; example "
                    f"{example_id!r}"
                )
            start = self._num_tokens(prompt_text, images, boxes, per_image)
            through_length = known_lengths.get(through_text)
            if through_length is None:
                through_length = self._num_tokens(through_text, images, boxes, per_image)
            end = self._end_of_answer(input_ids, start, through_length)
            labels[start:end] = input_ids[start:end]
        labels[input_ids == self.image_token_id] = IGNORE_INDEX

        # Per-token tensors come back as [1, L]; 1-D lets `pad` tell them from per-image ones.
        length = input_ids.shape[0]
        features = {
            key: value[0] if value.dim() == 2 and tuple(value.shape) == (1, length) else value
            for key, value in encoding.items()
        }
        features["labels"] = labels
        return self._truncate(features, example_id)

    def _truncate(self, features: dict[str, torch.Tensor], example_id: Any) -> dict[str, torch.Tensor]:
        input_ids = features["input_ids"]
        if self.max_length is None or input_ids.shape[0] <= self.max_length:
            return features
        image_positions = (input_ids == self.image_token_id).nonzero()
        if image_positions.numel() and int(image_positions.max()) >= self.max_length:
            raise ValueError(
                f"example {example_id!r}: max_length={self.max_length} would cut image tokens (last at "
                f"position {int(image_positions.max())}); raise max_length or set it to None"
            )
        length = input_ids.shape[0]
        return {
            key: value[: self.max_length] if value.dim() == 1 and value.shape[0] == length else value
            for key, value in features.items()
        }

    # -- batching ------------------------------------------------------------------------------------

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        if not examples:
            raise ValueError("examples: expected at least one example to collate")
        encoded = [self.encode_example(example) for example in examples]
        return self.pad(encoded)

    def pad(self, encoded: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """Right-pad the per-token tensors; concatenate the per-image tensors along the image axis."""
        longest = max(item["input_ids"].shape[0] for item in encoded)
        pad_values = {"input_ids": self.pad_token_id, "labels": IGNORE_INDEX}
        batch: dict[str, torch.Tensor] = {}
        for key in encoded[0]:
            values = [item[key] for item in encoded]
            if values[0].dim() == 1:
                fill = pad_values.get(key, 0)
                batch[key] = torch.stack(
                    [torch.nn.functional.pad(v, (0, longest - v.shape[0]), value=fill) for v in values]
                )
            else:
                batch[key] = torch.cat(values, dim=0)
        return batch


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
