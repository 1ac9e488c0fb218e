# Copyright 2026 The DeepSight authors. Licensed under the Apache License, Version 2.0.
"""DeepSight's pipeline: transformers' image-text-to-text pipeline that hands depth maps to the processor as given.

The stock `ImageTextToTextPipeline` opens ``images=`` with `transformers.image_utils.load_image`, which converts
every image to 8-bit RGB: a 16-bit millimetre PNG comes out 255 everywhere and its depth is lost. Its chat path
(``{"type": "image", "url": path}``) does not load anything: `apply_chat_template` passes the path on to the
processor, which reads depth itself. `DeepSightPipeline` does the same for ``images=``: a path, a PIL image of any
mode, a numpy array, a torch tensor or a ``.npy`` file reaches `DeepSightProcessor` untouched, so the model gets
exactly what ``processor(images=..., text=...)`` gives. It also takes ``boxes=`` (one list of ``[x0, y0, x1, y1]``
per image, as the processor does; with several chats, in the order of their images), or per input a ``"boxes"``
key next to ``"images"`` and ``"text"``. Outputs, generation arguments and lazy iteration over datasets and
generators are the stock pipeline's.

How `transformers.pipeline` finds it:

* a saved DeepSight folder's ``config.json`` names this class under ``custom_pipelines`` for the task
  ``"image-text-to-text"`` (written by `DeepSightPreTrainedModel.save_pretrained`, which also copies this file), so
  ``pipeline(model=folder, trust_remote_code=True)`` and ``pipeline("image-text-to-text", model=folder,
  trust_remote_code=True)`` build it;
* ``import modeling_deepsight`` registers it as the task ``"depth-text-to-text"`` (`PIPELINE_TASK`), which needs no
  remote code: ``pipeline("depth-text-to-text", model=folder)``. The task name is DeepSight's own because
  transformers' pipeline registry is global per task: registering ``"image-text-to-text"`` would replace the stock
  pipeline for every other model.

This file is copied next to the weights by ``save_pretrained``: it imports only transformers.
"""

from __future__ import annotations

from typing import Any

from transformers.pipelines.base import Pipeline
from transformers.pipelines.image_text_to_text import ImageTextToTextPipeline
from transformers.utils.chat_template_utils import Chat


PIPELINE_TASK = "depth-text-to-text"
# The task a saved folder's `custom_pipelines` answers: the one its model card and the Hub advertise.
HUB_PIPELINE_TASK = "image-text-to-text"


def custom_pipelines_entry() -> dict[str, dict[str, Any]]:
    """The ``custom_pipelines`` value of a saved DeepSight config (the names the Hub loader resolves)."""
    module = DeepSightPipeline.__module__.split(".")[-1]
    return {
        HUB_PIPELINE_TASK: {
            "impl": f"{module}.{DeepSightPipeline.__name__}",
            "pt": ["AutoModelForImageTextToText"],
            "type": "multimodal",
        }
    }


def _is_batch_of_chats(value: Any) -> bool:
    """A list of conversations (each a list of ``{"role", "content"}`` messages), as the stock pipeline reads it."""
    return isinstance(value, (list, tuple)) and len(value) > 0 and isinstance(value[0], (list, tuple))


def _count_chat_images(messages: list[dict[str, Any]]) -> int:
    """Image parts of a conversation (``"image"`` and OpenAI-style ``"image_url"`` parts, as the processor reads)."""
    return sum(
        1
        for message in messages
        if not isinstance(message.get("content"), str)
        for part in message.get("content") or []
        if isinstance(part, dict) and part.get("type") in ("image", "image_url")
    )


class _ChatWithBoxes(Chat):
    """A conversation and the boxes of its images, so that each chat of a batch keeps its own."""

    def __init__(self, messages: list[dict[str, Any]], boxes: list[Any]):
        super().__init__(messages)
        self.boxes = boxes


def _chats_with_boxes(chats: list[list[dict[str, Any]]], boxes: list[Any]) -> list[_ChatWithBoxes]:
    """Split `boxes` (one list per image, all chats in order) into each chat's share."""
    counts = [_count_chat_images(chat) for chat in chats]
    if len(boxes) != sum(counts):
        raise ValueError(
            f"`boxes` has {len(boxes)} box lists but the {len(chats)} chats hold {sum(counts)} images; expected one "
            "list of [x0, y0, x1, y1] boxes per image, in the order of the chats' images."
        )
    starts = [sum(counts[:index]) for index in range(len(counts))]
    return [_ChatWithBoxes(chat, list(boxes[start : start + n])) for chat, start, n in zip(chats, starts, counts)]


class DeepSightPipeline(ImageTextToTextPipeline):
    """`ImageTextToTextPipeline` for DeepSight: depth maps reach the processor untouched, ``boxes=`` is accepted.

    Example:

    ```python
    >>> from transformers import pipeline

    >>> pipe = pipeline(model="path/to/deepsight", trust_remote_code=True)
    >>> pipe(images="depth.png", text="<image>\\nHow far is the chair?", boxes=[[[40, 60, 120, 200]]])
    [{'input_text': '<image>\\nHow far is the chair?', 'generated_text': '...'}]
    ```

    ``images=`` takes a path (16-bit millimetre or SUN PNG, 8-bit gray PNG, ``.npy`` in metres), a PIL image
    (``I;16``, ``I``, ``F``, ``L``), a numpy array or a torch tensor, or a list of them; chat messages take the
    same in their image parts (``{"type": "image", "url": path}`` or ``{"type": "image", "image": array}``).
    """

    def __call__(self, images: Any = None, text: Any = None, boxes: Any = None, **kwargs: Any) -> Any:
        chats = text if text is not None else images
        if boxes is not None and _is_batch_of_chats(chats) and not (images is not None and text is not None):
            # Pipeline.__call__ directly: the stock __call__ would read the wrapped chats as plain text prompts
            return Pipeline.__call__(self, _chats_with_boxes(chats, boxes), **kwargs)
        if boxes is not None:
            kwargs["boxes"] = boxes
        return super().__call__(images=images, text=text, **kwargs)

    def _sanitize_parameters(self, boxes: Any = None, **kwargs: Any):
        preprocess_params, forward_params, postprocess_params = super()._sanitize_parameters(**kwargs)
        if boxes is not None:
            preprocess_params["boxes"] = boxes
        return preprocess_params, forward_params, postprocess_params

    def preprocess(self, inputs=None, timeout=None, continue_final_message=None, boxes=None, **processing_kwargs):
        if isinstance(inputs, Chat):
            boxes = inputs.boxes if isinstance(inputs, _ChatWithBoxes) else boxes
            if boxes is not None:  # plain keyword arguments go to the chat template, the processor's go here
                processor_kwargs = processing_kwargs.get("processor_kwargs") or {}
                processing_kwargs["processor_kwargs"] = {**processor_kwargs, "boxes": boxes}
            return super().preprocess(
                inputs, timeout=timeout, continue_final_message=continue_final_message, **processing_kwargs
            )
        if not isinstance(inputs, dict):  # text only
            if boxes is not None:
                raise ValueError("`boxes` were given without `images`; pass the depth maps they belong to.")
            return super().preprocess(inputs, timeout=timeout, **processing_kwargs)

        # The depth maps go to the processor as given: the stock `load_images` would convert them to 8-bit RGB.
        images, text = inputs["images"], inputs["text"]
        boxes = inputs.get("boxes", boxes)
        processor_kwargs = processing_kwargs.pop("processor_kwargs", None)
        if processor_kwargs is None:
            processor_kwargs = processing_kwargs
        if isinstance(text, (list, tuple)) and len(text) > 1:
            processor_kwargs.setdefault("padding", True)
        model_inputs = self.processor(
            images=images, text=text, boxes=boxes, return_tensors="pt", **processor_kwargs
        ).to(dtype=self.dtype)
        model_inputs["text"] = text
        return model_inputs


__all__ = ["DeepSightPipeline", "PIPELINE_TASK", "custom_pipelines_entry"]
