"""The model card (README.md) that stages 1 and 2 write next to the weights, in place of TRL's.

TRL's card is written for text-only chat models (its quick start is a ``text-generation`` pipeline on a
question); a DeepSight checkpoint needs a depth map, boxes and ``trust_remote_code``. The card keeps TRL's
metadata (tags, base model, dataset, framework versions) and says what the checkpoint reads and how to call it.
`deepsight eval card` later adds the benchmark results to the same README.
"""

from __future__ import annotations

import os
from importlib.metadata import version
from typing import Any

from huggingface_hub import ModelCard, ModelCardData


TEMPLATE = """---
{{ card_data }}
---

# {{ model_name }}

{{ description }} Trained{% if base_model %} from [{{ base_model }}](https://huggingface.co/{{ base_model }}){% if start_checkpoint %} (through `{{ start_checkpoint }}`){% endif %}{% elif start_checkpoint %} from `{{ start_checkpoint }}`{% endif %}{% if dataset_name %} on `{{ dataset_name }}`{% endif %} with TRL's {{ trainer_name }} trainer ({{ train_parts }}).

## Quick start

```python
from transformers import AutoModelForImageTextToText, AutoProcessor

model = AutoModelForImageTextToText.from_pretrained("{{ model_id }}", trust_remote_code=True)
processor = AutoProcessor.from_pretrained("{{ model_id }}", trust_remote_code=True)
messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "{{ question }}"}]}]
inputs = processor(images={{ image_argument }}, text=processor.apply_chat_template(messages, add_generation_prompt=True),
{%- if is_deepsight %}
                   boxes=[[[40, 60, 120, 200], [200, 80, 260, 150]]],  # optional: [x0, y0, x1, y1] per region
{%- endif %}
                   return_tensors="pt")
print(processor.decode(model.generate(**inputs, max_new_tokens=32)[0], skip_special_tokens=True))
```
{%- if is_deepsight %}

With `transformers.pipeline`, the folder's own pipeline class (`pipeline_deepsight.py`) hands the depth file to the
processor as it is (the stock image-text-to-text pipeline would convert it to 8-bit RGB):

```python
from transformers import pipeline

pipe = pipeline("image-text-to-text", model="{{ model_id }}", trust_remote_code=True)
messages = [{"role": "user", "content": [{"type": "image", "url": "depth.png"}, {"type": "text", "text": "{{ question }}"}]}]
print(pipe(text=messages, boxes=[[[40, 60, 120, 200]]], max_new_tokens=32, return_full_text=False)[0]["generated_text"])
```
{%- endif %}

{{ input_note }}

## Model

| part | |
|---|---|
{%- for name, value in architecture %}
| {{ name }} | {{ value }} |
{%- endfor %}

### Framework versions

- TRL: {{ trl_version }}
- Transformers: {{ transformers_version }}
- PyTorch: {{ pytorch_version }}
- Datasets: {{ datasets_version }}

## Citations

DeepSight: *Bridging Depth Maps and Language with a Depth-Driven Multimodal Model*. TRL:

```bibtex
{% raw %}@software{vonwerra2020trl,
  title  = {{TRL: Transformers Reinforcement Learning}},
  author = {von Werra, Leandro and Belkada, Younes and Tunstall, Lewis and Beeching, Edward and Thrush, Tristan and Lambert, Nathan and Huang, Shengyi and Rasul, Kashif and Gallouédec, Quentin},
  url    = {https://github.com/huggingface/trl},
  year   = {2020}
}{% endraw %}
```
"""


def _architecture(config: Any, image_processor: Any) -> list[tuple[str, str]]:
    vision, text = config.vision_config, config.text_config
    rows = [
        ("vision tower", f"{vision.model_type}: {vision.num_hidden_layers} layers x {vision.hidden_size}, "
                         f"{vision.image_size} px input, {vision.patch_size} px patches"),
        ("language model", f"{text.model_type}: {text.num_hidden_layers} layers x {text.hidden_size}, "
                           f"vocabulary {text.vocab_size}"),
        ("image tokens per image", str(getattr(config, "image_seq_length", "?"))),
    ]
    if image_processor is not None and hasattr(image_processor, "depth_transform"):
        channels = image_processor.depth_transform
        channels = [channels] if isinstance(channels, str) else list(channels)
        count = "1 channel" if len(channels) == 1 else f"{len(channels)} channels"
        rows.insert(1, ("depth input", f"{count} ({', '.join(channels)}), max depth "
                                       f"{image_processor.max_depth:g} m, and the Bbox Conv's box mask"))
    return rows


def base_model_of(name_or_path: str) -> tuple[str | None, str | None]:
    """(the Hub base model, the local checkpoint trained from) for a model's `_name_or_path`.

    A Hub id is the base model itself. A local folder is not a Hub id (TRL's card then says "a fine-tuned version of
    None"): its own card's `base_model` is, when an earlier stage wrote one, and the folder is named as the start.
    """
    if not name_or_path:
        return None, None
    if not os.path.isdir(name_or_path):
        return name_or_path, None
    card = os.path.join(name_or_path, "README.md")
    base_model = ModelCard.load(card).data.base_model if os.path.isfile(card) else None
    if isinstance(base_model, list):
        base_model = base_model[0] if base_model else None
    return base_model, name_or_path


def deepsight_model_card(
    model: Any,
    image_processor: Any,
    model_id: str,
    base_model: str | None,
    dataset_name: str | None,
    tags: list[str],
    trainer_name: str,
    train_parts: str,
    start_checkpoint: str | None = None,
) -> ModelCard:
    """The card of a checkpoint trained by `train.sft` / `train.align` (DeepSight or a 3-channel baseline)."""
    config = model.config
    is_deepsight = config.model_type == "deepsight"
    if is_deepsight:
        description = (
            "A DeepSight depth-aware vision-language model: a CLIP ViT reads the depth map through its Depth Conv, "
            "a Bbox Conv adds the mask of the question's object boxes, and an MLP projector feeds the patch "
            "features to the language model."
        )
        image_argument = '"depth.png"'
        input_note = (
            "Depth maps: 16-bit PNG in millimetres, SUN RGB-D PNG, 8-bit gray (brighter = closer), `.npy`, or "
            "arrays in metres. Boxes are `[x0, y0, x1, y1]` in pixels of the depth map; without boxes the whole "
            "map is the region. The processor's settings (size, depth transform, max depth) are saved with it."
        )
    else:
        description = f"A {config.model_type} vision-language baseline trained on depth maps rendered as images."
        image_argument = "depth_image  # a PIL image: the depth map rendered as the training did"
        input_note = "This baseline reads depth rendered as a 3-channel image (`train.sft --image_mode`)."
    card_data = ModelCardData(
        base_model=base_model,
        datasets=dataset_name if dataset_name and not os.path.isdir(dataset_name) else None,
        library_name="transformers",
        pipeline_tag="image-text-to-text",
        tags=sorted({"deepsight", "depth", *tags}) if is_deepsight else sorted({"depth", *tags}),
    )
    return ModelCard.from_template(
        card_data,
        template_str=TEMPLATE,
        model_name=os.path.basename(os.path.normpath(model_id)),
        model_id=model_id,
        description=description,
        base_model=base_model,
        start_checkpoint=start_checkpoint,
        dataset_name=dataset_name,
        trainer_name=trainer_name,
        train_parts=train_parts,
        question="Which is farther, the chair or the lamp?",
        image_argument=image_argument,
        is_deepsight=is_deepsight,
        input_note=input_note,
        architecture=_architecture(config, image_processor) if hasattr(config, "vision_config") else [],
        trl_version=version("trl"),
        transformers_version=version("transformers"),
        pytorch_version=version("torch"),
        datasets_version=version("datasets"),
    )
