"""Tiny, offline fixtures for the evaluation tests and benches: a benchmark folder in the contract
schema, a byte-level BPE tokenizer trained in-process, and a random tiny LLaVA / CLIP saved to disk.

Nothing here downloads anything; every fixture is deterministic from its seed.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np

from dataset_scripts.benchmark_questions import TASKS
from deepsight.prompts import ANSWER_INSTRUCTION, OPTION_LETTERS

# A LLaVA-1.5-style chat template ("USER: <image>\n... ASSISTANT: answer</s>") for the tiny tokenizer.
TINY_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}USER: {% else %}ASSISTANT: {% endif %}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}<image>\n{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{% if message['role'] == 'assistant' %}</s>{% endif %}{{ '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT: {% endif %}"
)

_SCENES = ("bedroom", "kitchen", "office", "bathroom", "living room", "classroom")
_OBJECTS = ("chair", "table", "bed", "sofa", "lamp", "desk", "door", "sink", "shelf", "monitor")


def _depth_png_value(rng: np.random.Generator, height: int, width: int) -> dict[str, Any]:
    """A random 16-bit PNG in millimetres as a `datasets.Image` value (bytes, no path)."""
    from dataset_scripts.export import png_bytes_from_mm

    depth_mm = rng.integers(500, 8000, size=(height, width), dtype=np.uint16)
    return {"bytes": png_bytes_from_mm(depth_mm), "path": None}


def make_benchmark_rows(
    num_questions: int = 16,
    seed: int = 0,
    answer_indices: list[int] | None = None,
    size: tuple[int, int] = (24, 32),
    questions_per_image: int = 1,
) -> list[dict[str, Any]]:
    """Benchmark rows in the contract schema, tasks cycling over the four paper tasks.

    `answer_indices` fixes the correct option per question (so tests know the share of each letter);
    by default it is drawn from the seed. Consecutive groups of `questions_per_image` rows share one
    depth map, as the paper's templates ask several questions about each image. Scene and security
    questions name no region (`boxes` = []), the others one box.
    """
    rng = np.random.default_rng(seed)
    picker = random.Random(seed)
    height, width = size
    rows = []
    for i in range(num_questions):
        task = TASKS[i % len(TASKS)]
        if task == "scene_classification":
            options = picker.sample(_SCENES, 4)
            question = "What kind of room is shown in this depth image?"
        elif task == "recognition":
            options = picker.sample(_OBJECTS, 4)
            question = "What is the object in the marked region?"
        elif task == "distance_judgment":
            options = picker.sample(_OBJECTS, 2)
            question = f"Which object is closer to the camera, the {options[0]} or the {options[1]}?"
        else:
            options = ["safe", "unsafe"]
            question = "Is it safe to walk forward?"
        answer_index = answer_indices[i] if answer_indices is not None else picker.randrange(len(options))
        if not 0 <= answer_index < len(options):
            raise ValueError(f"answer_indices[{i}]: expected 0..{len(options) - 1} for task {task}, got {answer_index}")
        x0, y0 = int(rng.integers(0, width // 2)), int(rng.integers(0, height // 2))
        if i % questions_per_image == 0:
            depth = _depth_png_value(rng, height, width)
        boxes = [] if task in ("scene_classification", "security") else [[x0, y0, x0 + width // 3, y0 + height // 3]]
        rows.append(
            {
                "id": f"q{i:04d}",
                "task": task,
                "source": "synthetic",
                "depth": depth,
                "question": question,
                "options": list(options),
                "answer_index": answer_index,
                "answer": options[answer_index],
                "boxes": boxes,
                "scene": picker.choice(_SCENES),
            }
        )
    return rows


def write_benchmark_folder(output_dir: str | os.PathLike, rows: list[dict[str, Any]], split: str = "test") -> Path:
    """Write rows as `data/<split>-00000-of-00001.parquet` + a README.md card `load_dataset(folder)` reads."""
    import datasets

    from dataset_scripts.benchmark import FEATURES  # the benchmark's own schema, so fixtures cannot drift from it

    output_dir = Path(output_dir)
    (output_dir / "data").mkdir(parents=True, exist_ok=True)
    dataset = datasets.Dataset.from_list(rows, features=FEATURES)
    dataset.to_parquet(str(output_dir / "data" / f"{split}-00000-of-00001.parquet"))
    (output_dir / "README.md").write_text(
        "---\nconfigs:\n- config_name: default\n  data_files:\n"
        f"  - split: {split}\n    path: data/{split}-*.parquet\n---\n\n"
        "# Tiny Depth Template Benchmark (test fixture)\n\nRandom depth maps and synthetic questions.\n"
    )
    return output_dir


def tiny_corpus() -> list[str]:
    """Text the tiny tokenizer is trained on: every word the fixtures and prompts use."""
    lines = [ANSWER_INSTRUCTION, "USER: ASSISTANT: a depth photo of the {}."]
    lines += [f"{letter}. {word}" for letter in OPTION_LETTERS for word in _SCENES + _OBJECTS + ("safe", "unsafe")]
    lines += [
        "What kind of room is shown in this depth image?",
        "What is the object in the marked region?",
        "Which object is closer to the camera, the chair or the table?",
        "Is it safe to walk forward?",
    ]
    return lines * 4


def train_tiny_tokenizer(vocab_size: int = 400):
    """A byte-level BPE `PreTrainedTokenizerFast` with <pad>, <s>, </s>, <image> and the tiny chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<s>", "</s>", "<image>"]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tokenizer.train_from_iterator(tiny_corpus(), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token="<pad>", bos_token="<s>", eos_token="</s>", extra_special_tokens={"image_token": "<image>"}
    )
    fast.chat_template = TINY_CHAT_TEMPLATE
    return fast


def build_tiny_llava(output_dir: str | os.PathLike, seed: int = 0, image_size: int = 28, hidden_size: int = 32, num_layers: int = 2):
    """Save a random tiny `LlavaForConditionalGeneration` + `LlavaProcessor` (safetensors) and return the folder."""
    import torch
    from transformers import (
        CLIPImageProcessorPil,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    torch.manual_seed(seed)
    tokenizer = train_tiny_tokenizer()
    patch_size = 14
    vision_config = CLIPVisionConfig(
        hidden_size=hidden_size, intermediate_size=2 * hidden_size, num_hidden_layers=1, num_attention_heads=2,
        image_size=image_size, patch_size=patch_size,
    )
    text_config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers, num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    )
    config = LlavaConfig(
        vision_config=vision_config, text_config=text_config,
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"), vision_feature_layer=-1,
        vision_feature_select_strategy="default",
    )
    model = LlavaForConditionalGeneration(config).eval()
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
    )
    processor = LlavaProcessor(
        image_processor=image_processor, tokenizer=tokenizer, patch_size=patch_size,
        vision_feature_select_strategy="default", num_additional_image_tokens=1, chat_template=TINY_CHAT_TEMPLATE,
    )
    output_dir = Path(output_dir)
    model.save_pretrained(output_dir)
    processor.save_pretrained(output_dir)
    return output_dir


QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}{{ '\\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}{% endfor %}{% endif %}"
    "</s>{{ '\\n' }}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant{{ '\\n' }}{% endif %}"
)


def build_tiny_qwen2_vl(seed: int = 0):
    """A random tiny `Qwen2VLForConditionalGeneration` and an image-only processor for it (in memory).

    Qwen2-VL is the multimodal-RoPE family (per-batch rope offsets), the case where the harness scores
    prompt + option rows in one pass instead of reusing a KV cache. Its stock processor also builds a
    video processor, which needs torchvision (not installed here), so the processor used here keeps
    Qwen2-VL's `__call__` and drops the video part.
    """
    import torch
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLProcessor
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
    from transformers.processing_utils import ProcessorMixin

    class ImageOnlyQwen2VLProcessor(Qwen2VLProcessor):
        def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
            self.image_token, self.video_token = "<|image_pad|>", "<|video_pad|>"
            self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
            self.video_token_id = tokenizer.convert_tokens_to_ids(self.video_token)
            ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)

    tokenizer = train_tiny_tokenizer()
    vision_tokens = ["<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]
    tokenizer.add_special_tokens({"additional_special_tokens": vision_tokens})
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in vision_tokens}
    config = Qwen2VLConfig(
        text_config=dict(
            vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
            num_key_value_heads=2, max_position_embeddings=512,
            rope_parameters={"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 10000.0},
            pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id,
        ),
        vision_config=dict(depth=1, embed_dim=32, hidden_size=32, num_heads=2, patch_size=14, spatial_merge_size=2, temporal_patch_size=2),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
    )
    torch.manual_seed(seed)
    model = Qwen2VLForConditionalGeneration(config).eval()
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    image_processor = Qwen2VLImageProcessorPil(
        min_pixels=28 * 28 * 4, max_pixels=56 * 56, patch_size=14, merge_size=2, temporal_patch_size=2
    )
    return model, ImageOnlyQwen2VLProcessor(image_processor=image_processor, tokenizer=tokenizer, chat_template=QWEN_CHAT_TEMPLATE)


class ImageRecordingProcessor:
    """Wraps a processor and keeps the images of each call (`calls`): what a model was actually shown."""

    def __init__(self, processor):
        self._processor = processor
        self.calls: list[list[np.ndarray]] = []

    def __getattr__(self, name: str):
        return getattr(self._processor, name)

    def __call__(self, *args, **kwargs):
        self.calls.append([np.asarray(image) for image in kwargs.get("images") or []])
        return self._processor(*args, **kwargs)


def outlined_pixels(image: np.ndarray) -> np.ndarray:
    """HxW bool: the pixels of an RGB image in the box outline colour (`deepsight.depth_rendering`)."""
    from deepsight.depth_rendering import BOX_OUTLINE_COLOR

    return (np.asarray(image)[..., :3] == np.array(BOX_OUTLINE_COLOR)).all(axis=-1)


def box_border(shape: tuple[int, int], box: list[float], width: int = 1) -> np.ndarray:
    """HxW bool: the `width`-pixel border inside the pixels an ``[x0, y0, x1, y1]`` box touches."""
    x0, y0, x1, y1 = int(np.floor(box[0])), int(np.floor(box[1])), int(np.ceil(box[2])), int(np.ceil(box[3]))
    inside = np.zeros(shape, dtype=bool)
    inside[y0:y1, x0:x1] = True
    core = np.zeros(shape, dtype=bool)
    core[y0 + width : y1 - width, x0 + width : x1 - width] = True
    return inside & ~core
