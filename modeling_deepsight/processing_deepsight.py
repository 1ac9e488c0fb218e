# Copyright 2026 The DeepSight authors. Licensed under the Apache License, Version 2.0.
"""DeepSight processor: depth image processor + tokenizer + chat template.

Regions of interest reach the Bbox Conv mask in one of two ways:

* ``boxes=`` on the call: per image, a list of ``[x0, y0, x1, y1]`` boxes in pixels of the original depth map;
* written in the text right after the image they belong to, ``<image><box>[x0, y0, x1, y1]</box>`` (several tags
  allowed, any whitespace inside the brackets). The processor removes the tags from the text and adds the boxes to
  the preceding ``<image>``'s boxes. Because the regions then live in the prompt, TRL's stock vision collator
  (``messages`` + ``images`` rows) trains with the right masks without a custom collator.

Both can be combined; an image's mask is the union of its boxes (no box = all ones).

This file is copied next to the weights by ``save_pretrained``: it imports only numpy, PIL, transformers and its
siblings.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import numpy as np
from PIL import Image

from transformers.feature_extraction_utils import BatchFeature
from transformers.processing_utils import ProcessorMixin

from .image_processing_deepsight import _make_list_of_depths


_NUMBER = r"\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*"  # a decimal number, so float() never fails
IMAGE_TOKEN = "<image>"
BOX_TAG_PATTERN = re.compile(rf"<box>\s*\[{_NUMBER},{_NUMBER},{_NUMBER},{_NUMBER}\]\s*</box>")
BOX_OPEN, BOX_CLOSE = "<box>", "</box>"

# A 16-bit depth PNG converted to 8 bits (transformers' `load_image`, PIL's convert("RGB") or convert("L")) clips
# every depth above 255 mm to 255; a real 8-bit gray depth image spreads over many levels.
SQUASHED_DEPTH_SATURATED_SHARE = 0.99

# A minimal chat template for TRL-style messages (content: str or a list of {"type": "image"|"text"} parts). The
# assistant turns sit in {% generation %} blocks so that TRL's `assistant_only_loss` can mask everything else.
DEFAULT_CHAT_TEMPLATE = (
    "{%- macro render(content) -%}"
    "{%- if content is string -%}{{ content }}"
    "{%- else -%}{%- for part in content -%}"
    "{%- if part['type'] == 'image' -%}{{ '<image>\n' }}"
    "{%- elif part['type'] == 'text' -%}{{ part['text'] }}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{%- endmacro -%}"
    "{%- for message in messages -%}"
    "{{ '<|' + message['role'] + '|>\n' }}"
    "{%- if message['role'] == 'assistant' -%}"
    "{% generation %}{{ render(message['content']) }}{{ eos_token }}{% endgeneration %}"
    "{%- else -%}{{ render(message['content']) }}{{ eos_token }}{%- endif -%}"
    "{{ '\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|assistant|>\n' }}{%- endif -%}"
)


def format_box_tag(box: list[float]) -> str:
    """``<box>[x0, y0, x1, y1]</box>`` for a box, the in-prompt form `DeepSightProcessor` parses."""
    if len(box) != 4:
        raise ValueError(f"A box is [x0, y0, x1, y1]; got {box!r}.")
    return BOX_OPEN + "[" + ", ".join(f"{float(v):g}" for v in box) + "]" + BOX_CLOSE


def is_squashed_depth_image(image: Any) -> bool:
    """True for a depth map destroyed by an 8-bit conversion, which the processor refuses rather than misreads.

    That is: a PIL image of mode ``L``, ``RGB`` or ``RGBA`` (8 bits; colour channels exactly equal) in which at
    least `SQUASHED_DEPTH_SATURATED_SHARE` of the non-zero pixels are 255. Only PIL images are checked: that is what
    the stock pipeline's `load_image` returns. Arrays and gray images with spread levels are never matched.
    """
    if not isinstance(image, Image.Image) or image.mode not in ("L", "RGB", "RGBA"):
        return False
    array = np.asarray(image)
    if array.ndim == 3:
        red, green, blue = array[..., 0], array[..., 1], array[..., 2]
        if not (np.array_equal(red, green) and np.array_equal(red, blue)):
            return False
        array = red
    valid = array[array > 0]
    return valid.size > 0 and float(np.mean(valid == 255)) >= SQUASHED_DEPTH_SATURATED_SHARE


def _flat_images(images: Any) -> list[Any]:
    """The images of a call in the processor's order (per-sample lists flattened)."""
    if not isinstance(images, (list, tuple)):
        return [images]
    return [image for item in images for image in (item if isinstance(item, (list, tuple)) else [item])]


def refuse_squashed_depth(images: Any, depth_encoding: Any = None) -> None:
    """ValueError naming the first image that `is_squashed_depth_image` matches, saying what to call instead.

    An image whose encoding the caller declares (``depth_encoding``) is taken as declared and not checked.
    """
    flat = _flat_images(images)
    declared = depth_encoding if isinstance(depth_encoding, (list, tuple)) else [depth_encoding] * len(flat)
    for index, (image, encoding) in enumerate(zip(flat, declared)):
        if encoding is None and is_squashed_depth_image(image):
            raise ValueError(
                f"`images[{index}]` is an 8-bit {image.mode} image whose non-zero pixels are (nearly) all 255: a "
                "16-bit depth map converted to 8 bits (transformers' ImageTextToTextPipeline and `load_image` do "
                "that, as does PIL's convert('RGB')), every depth above 255 mm clipped, so the depth is lost. Give "
                "the depth file itself: to the processor, the path or the image as opened (PIL 'I;16'); through "
                "`transformers.pipeline`, DeepSight's pipeline (pipeline(model=<folder>, trust_remote_code=True), "
                "or pipeline('depth-text-to-text', model=<folder>) after `import modeling_deepsight`) or chat "
                "messages ({'type': 'image', 'url': <path>}). A genuine 8-bit gray depth image passes with "
                "depth_encoding='gray8'."
            )


def _find_image_and_box_tags(text: str, image_token: str) -> Iterator[re.Match]:
    """The image placeholders and well-formed box tags of `text`, in reading order.

    The one box-tag parser: `extract_box_tags` reads the boxes with it (before the images are processed) and
    `DeepSightProcessor.get_text_with_replacements` drops the tags with it. A match's ``"image"`` group is set for a
    placeholder; a box tag's four numbers are its groups 3 to 6.
    """
    return re.finditer(f"(?P<image>{re.escape(image_token)})|(?P<box>{BOX_TAG_PATTERN.pattern})", text)


def extract_box_tags(text: str, image_token: str, sample_index: int = 0) -> tuple[str, list[list[list[float]]]]:
    """Remove ``<box>[...]</box>`` tags from `text`; return the clean text and, per ``<image>`` in it, its boxes.

    A tag belongs to the closest ``<image>`` before it. A tag before any image, or a malformed tag, is a ValueError.
    """
    boxes_per_image: list[list[list[float]]] = []
    clean_pieces, last, tag_before_any_image = [], 0, False
    for match in _find_image_and_box_tags(text, image_token):
        if match.group("image") is not None:
            boxes_per_image.append([])
            continue
        if boxes_per_image:
            boxes_per_image[-1].append([float(value) for value in match.groups()[2:6]])
        else:
            tag_before_any_image = True
        clean_pieces.append(text[last : match.start()])
        last = match.end()
    clean = "".join(clean_pieces) + text[last:]
    for index, piece in enumerate(clean.split(image_token)):  # the first error in reading order
        if BOX_OPEN in piece or BOX_CLOSE in piece:
            raise ValueError(
                f"`text[{sample_index}]` has a malformed box tag; expected '<box>[x0, y0, x1, y1]</box>' "
                f"(four numbers): {text.split(image_token)[index]!r}"
            )
        if index == 0 and tag_before_any_image:
            raise ValueError(
                f"`text[{sample_index}]` has a <box> tag before any {image_token}; write each box after the "
                "image it belongs to."
            )
    return clean, boxes_per_image


class DeepSightProcessor(ProcessorMixin):
    r"""
    Builds DeepSight inputs: ``input_ids``, ``attention_mask`` (tokenizer), ``pixel_values``, ``bbox_mask``
    (`DeepSightImageProcessor`).

    Each ``<image>`` in the text is expanded to ``image_seq_length`` image tokens (one per vision feature, see
    `DeepSightConfig.image_seq_length`); the i-th ``<image>`` of the batch (in reading order) is the i-th image.

    Args:
        image_processor (`DeepSightImageProcessor`): decodes and normalises the depth maps, draws the box masks.
        tokenizer (`PreTrainedTokenizerBase`): must know ``image_token`` as a single (special) token.
        chat_template (`str`, *optional*): Jinja template for `apply_chat_template` (a minimal one by default).
        image_token (`str`, *optional*, defaults to `"<image>"`): the placeholder written in prompts.
        image_seq_length (`int`, *optional*, defaults to 576): image tokens per image. ``0`` is the *caption mode*
            of the stage-0 dual encoder: images and texts are paired by position and never placed in the text
            (an ``<image>`` in a caption is then an error).

    Call: ``processor(images=None, text=None, boxes=None, depth_encoding=None, **kwargs)``; ``boxes`` is per
    image, ``depth_encoding`` one encoding or one per image (``None`` = detect), other keyword arguments go to the
    tokenizer (``padding``, ``padding_side``, ``return_tensors``...) or the image processor (its settings). A depth
    map squashed to 8 bits by the stock image-text-to-text pipeline is refused (`is_squashed_depth_image`).
    """

    def __init__(
        self,
        image_processor=None,
        tokenizer=None,
        chat_template: str | None = None,
        image_token: str = IMAGE_TOKEN,
        image_seq_length: int = 576,
        **kwargs,
    ):
        if tokenizer is None:
            raise ValueError("DeepSightProcessor needs a `tokenizer`.")
        self.image_token = getattr(tokenizer, "image_token", None) or image_token
        token_ids = tokenizer.encode(self.image_token, add_special_tokens=False)
        if len(token_ids) != 1:
            raise ValueError(
                f"The tokenizer splits the image token {self.image_token!r} into {len(token_ids)} tokens; add it as a "
                "special token first (tokenizer.add_special_tokens({'additional_special_tokens': ['<image>']}))."
            )
        self.image_token_id = token_ids[0]
        if int(image_seq_length) < 0:
            raise ValueError(f"`image_seq_length` must be >= 0 (0 = caption mode); got {image_seq_length}.")
        self.image_seq_length = int(image_seq_length)
        if chat_template is None:
            chat_template = getattr(tokenizer, "chat_template", None) or DEFAULT_CHAT_TEMPLATE
        super().__init__(image_processor, tokenizer, chat_template=chat_template)

    def replace_image_token(self, image_inputs: dict, image_idx: int, **kwargs) -> str:
        return self.image_token * self.image_seq_length

    def _process_images(self, images: Any, **kwargs) -> tuple[BatchFeature, list[str]]:
        # The mixin counts images with `make_flat_list_of_images`, which rejects metric float depth maps; the image
        # processor already knows how many images it made.
        processed = self.image_processor(images, **kwargs)
        if self.caption_mode:
            return processed, []
        num_images = len(processed["pixel_values"])
        return processed, [self.replace_image_token(processed, index) for index in range(num_images)]

    def get_text_with_replacements(
        self,
        text: list[str],
        images_replacements: list[str] = [],  # noqa: B006 - the mixin's signature
        videos_replacements: list[str] = [],  # noqa: B006
        audio_replacements: list[str] = [],  # noqa: B006
    ) -> tuple[list[str], list[list[dict[str, Any]]]]:
        """Expand each ``<image>`` and drop each ``<box>[...]</box>`` tag (its box went to the mask) in one pass.

        Both edits are reported in the offsets the mixin uses to realign `assistant_masks`, so TRL's
        ``assistant_only_loss`` stays aligned when prompts carry box tags.
        """
        replacements = iter(images_replacements)
        expanded_texts, batch_offsets = [], []
        for sample in text:
            pieces, offsets, last, gained = [], [], 0, 0
            for match in _find_image_and_box_tags(sample, self.image_token):
                is_image = match.group("image") is not None
                if is_image and not images_replacements:
                    continue  # no images processed (caption mode): leave the text as it is
                replacement = next(replacements) if is_image else ""
                start, end = match.span()
                pieces.append(sample[last:start])
                offsets.append({
                    "type": "image" if is_image else "box",
                    "span": (start, end),
                    "new_span": (start + gained, start + gained + len(replacement)),
                    "text": match.group(),
                    "replacement": replacement,
                })
                pieces.append(replacement)
                gained += len(replacement) - (end - start)
                last = end
            pieces.append(sample[last:])
            expanded_texts.append("".join(pieces))
            batch_offsets.append(offsets)
        return expanded_texts, batch_offsets

    @property
    def unused_input_names(self) -> list[str]:
        # The image processor reports the depth encodings it assumed and where each map came from (read or estimated
        # from a photo); the model does not take them.
        return ["depth_encoding", "depth_source", "estimated_depth"]

    def __call__(
        self,
        images: Any = None,
        text: str | list[str] | None = None,
        boxes: Any = None,
        depth_encoding: str | list[str | None] | None = None,
        **kwargs: Any,
    ) -> BatchFeature:
        """Tokenise `text` (expanding ``<image>``), preprocess `images` with their boxes; see the class docstring."""
        if isinstance(images, (list, tuple)) and images and all(isinstance(i, (list, tuple)) and not i for i in images):
            images = None  # per-sample image lists that are all empty: a batch of text only
        if text is not None:
            texts = [text] if isinstance(text, str) else list(text)
            if not all(isinstance(sample, str) for sample in texts):
                raise ValueError("`text` must be a string or a list of strings.")
            boxes = self._boxes_with_tags(texts, images, boxes)
            text = texts
        if boxes is not None and images is None:
            raise ValueError("`boxes` were given without `images`; pass the depth maps they belong to.")
        if images is not None:
            refuse_squashed_depth(images, depth_encoding)
            kwargs["boxes"] = boxes
            kwargs["depth_encoding"] = depth_encoding
        return super().__call__(images=images, text=text, **kwargs)

    @property
    def caption_mode(self) -> bool:
        """True for the dual encoder's processor: captions are paired with images, not prompts holding them."""
        return self.image_seq_length == 0

    def validate_inputs(self, images=None, text=None, videos=None, audio=None, **kwargs):
        if self.caption_mode:
            if text is not None and any(self.image_token in sample for sample in text):
                raise ValueError(
                    f"This processor is in caption mode (image_seq_length=0, the dual encoder's): captions must not "
                    f"contain {self.image_token}."
                )
            if text is not None and images is not None and len(text) != self._count_images(images):
                raise ValueError(
                    f"Caption mode pairs texts and images by position: got {len(text)} texts and "
                    f"{self._count_images(images)} images."
                )
        elif text is not None and images is not None:
            num_placeholders = sum(sample.count(self.image_token) for sample in text)
            num_images = self._count_images(images)
            if num_placeholders != num_images:
                raise ValueError(  # transformers' wording first, as every multimodal processor words it
                    f"The total number of {self.image_token} tokens in the prompts should be the same as the number "
                    f"of images passed: `text` has {num_placeholders} {self.image_token} placeholder(s) but "
                    f"{num_images} image(s) were given; write one {self.image_token} per image, in the order of `images`."
                )
        elif text is not None and any(self.image_token in sample for sample in text):
            raise ValueError(
                f"`text` has {sum(s.count(self.image_token) for s in text)} {self.image_token} placeholder(s) but no "
                "`images` were given."
            )
        if images is None and text is None:
            raise ValueError("DeepSightProcessor needs `text`, `images` or both.")

    def _boxes_with_tags(self, texts: list[str], images: Any, boxes: Any) -> Any:
        """Per-image boxes: `boxes` plus the in-text tags of each image (the tags themselves stay in the text until
        `get_text_with_replacements` drops them)."""
        tagged = []
        for index, sample in enumerate(texts):
            tagged.extend(extract_box_tags(sample, self.image_token, sample_index=index)[1])
        if not any(tagged):
            return boxes
        if images is None:
            raise ValueError("`text` has <box> tags but no `images` were given.")
        num_images = self._count_images(images)
        if len(tagged) != num_images:
            return boxes  # validate_inputs reports the placeholder / image mismatch with the full message
        if boxes is None:
            return tagged
        if len(boxes) != num_images:
            raise ValueError(
                f"`boxes` has {len(boxes)} box lists but {num_images} images were given; expected one list per image."
            )
        return [list(given or []) + extra for given, extra in zip(boxes, tagged)]

    @staticmethod
    def _count_images(images: Any) -> int:
        if isinstance(images, (list, tuple)):
            return sum(len(item) if isinstance(item, (list, tuple)) else 1 for item in images)
        if hasattr(images, "ndim"):  # an array: the image processor's rule (it refuses channel-first colour, saying so)
            return len(_make_list_of_depths(images)[0])
        return 1

    @property
    def model_input_names(self) -> list[str]:
        return ["input_ids", "attention_mask", "pixel_values", "bbox_mask"]


DeepSightProcessor.register_for_auto_class("AutoProcessor")


__all__ = ["DeepSightProcessor", "extract_box_tags", "format_box_tag", "is_squashed_depth_image"]
