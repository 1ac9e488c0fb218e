"""Tiny DeepSight models and tokenizers, built in-process in about a second (no Hub access needed).

Shared by the tests, the benches, the CPU training recipes and the quickstart::

    from deepsight.tiny import build_tiny_deepsight
    model, processor = build_tiny_deepsight()          # random weights, 32x32 depth, 16 image tokens
    inputs = processor(images=[depth], text=["<|user|>\\n<image>\\nHow far is the chair?"], return_tensors="pt")
    model.generate(**inputs, max_new_tokens=8)

Everything is deterministic from ``seed``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import CLIPTextConfig, PreTrainedTokenizerFast
from transformers.models.auto.configuration_auto import CONFIG_MAPPING

from modeling_deepsight import (
    DeepSightConfig,
    DeepSightDualEncoder,
    DeepSightDualEncoderConfig,
    DeepSightForConditionalGeneration,
    DeepSightImageProcessor,
    DeepSightProcessor,
    DeepSightVisionConfig,
    depth_channels,
)
from modeling_deepsight.processing_deepsight import DEFAULT_CHAT_TEMPLATE


IMAGE_TOKEN = "<image>"
# Order fixes the ids: <unk>=0, <pad>=1, <s>=2, </s>=3, <image>=4, then the chat role markers.
SPECIAL_TOKENS = ["<unk>", "<pad>", "<s>", "</s>", IMAGE_TOKEN, "<|system|>", "<|user|>", "<|assistant|>"]

_OBJECTS = (
    "chair table sofa bed lamp desk door window shelf cabinet monitor television pillow sink toilet bathtub "
    "counter refrigerator stove bookshelf dresser mirror curtain box bag person plant picture floor wall ceiling"
).split()
_SCENES = "bedroom kitchen bathroom living_room office classroom dining_room corridor library store".split()
_PHRASES = (
    "Which object is closer to the camera?",
    "How far is the {o} from the camera?",
    "Is the {o} closer than the {p}?",
    "What kind of room is this depth map taken in?",
    "Is it safe to walk straight ahead?",
    "The {o} is about {n}.{m} metres away, closer than the {p}.",
    "This is a {s} with a {o} and a {p}.",
    "Answer with the option's letter from the given choices directly.",
    "A. {o}\nB. {p}\nC. {s}\nD. none",
    "The answer is {l}. {o}.",
    "There is an obstacle {n} metres ahead: a {o}.",
    "Describe the region in the box.",
)


def synthetic_depth_map(height: int = 48, width: int = 64, seed: int = 0) -> np.ndarray:
    """A synthetic indoor depth map in float32 metres: floor-to-wall gradient, one box-shaped object, sensor noise.

    Returns the map; the object's box ``[x0, y0, x1, y1]`` is `synthetic_object_box` with the same arguments.
    """
    rng = np.random.default_rng(seed)
    rows = np.linspace(1.0, 0.0, height, dtype=np.float32)[:, None]
    depth = 1.0 + 4.0 * (1.0 - rows) * np.ones((1, width), dtype=np.float32)
    x0, y0, x1, y1 = synthetic_object_box(height, width, seed)
    depth[y0:y1, x0:x1] = rng.uniform(0.8, 2.0)
    depth += rng.normal(0.0, 0.01, size=depth.shape).astype(np.float32)
    return np.clip(depth, 0.3, 9.5).astype(np.float32)


def synthetic_object_box(height: int = 48, width: int = 64, seed: int = 0) -> list[int]:
    """The ``[x0, y0, x1, y1]`` box of the object in `synthetic_depth_map` (same arguments)."""
    rng = np.random.default_rng(seed + 1_000_003)
    top, left = int(rng.integers(0, height // 2)), int(rng.integers(0, width // 2))
    return [left, top, left + width // 3, top + height // 3]


def default_corpus() -> list[str]:
    """A few hundred depth-question sentences covering the project's prompts (objects, scenes, numbers, letters)."""
    lines = []
    for i, phrase in enumerate(_PHRASES * 6):
        o, p = _OBJECTS[i % len(_OBJECTS)], _OBJECTS[(3 * i + 7) % len(_OBJECTS)]
        s = _SCENES[i % len(_SCENES)].replace("_", " ")
        lines.append(phrase.format(o=o, p=p, s=s, n=i % 10, m=(7 * i) % 10, l="ABCD"[i % 4]))
    lines += [" ".join(_OBJECTS), " ".join(_SCENES).replace("_", " "), "0 1 2 3 4 5 6 7 8 9 10 metres metre m"]
    return lines


def train_tiny_tokenizer(corpus: Iterable[str] | None = None, vocab_size: int = 512) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer in-process (well under a second).

    Args:
        corpus: training sentences; `default_corpus()` when None.
        vocab_size: target vocabulary size (byte-level: 256 bytes + merges + the special tokens).

    Returns:
        A `PreTrainedTokenizerFast` with ``<s>`` (bos, prepended), ``</s>`` (eos), ``<pad>``, ``<unk>``, ``<image>``
        (``tokenizer.image_token`` / ``image_token_id``), the role markers ``<|system|>``, ``<|user|>``,
        ``<|assistant|>`` and DeepSight's default chat template. Any byte sequence encodes (no unknown tokens).
    """
    if vocab_size < 256 + len(SPECIAL_TOKENS):
        raise ValueError(f"`vocab_size` must be at least {256 + len(SPECIAL_TOKENS)} for a byte-level BPE.")
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(list(corpus) if corpus is not None else default_corpus(), trainer=trainer)
    bos_id = tokenizer.token_to_id("<s>")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos_id)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        extra_special_tokens={"image_token": IMAGE_TOKEN},
        additional_special_tokens=SPECIAL_TOKENS[5:],
        chat_template=DEFAULT_CHAT_TEMPLATE,
        model_max_length=2048,
    )


def _special_token_ids(tokenizer: PreTrainedTokenizerFast) -> dict[str, int]:
    """The tokenizer's bos / eos / pad ids, as the config and generation-config fields of the same names."""
    return {
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }


def tiny_text_config(
    tokenizer: PreTrainedTokenizerFast,
    text_model_type: str = "llama",
    hidden_size: int = 64,
    num_hidden_layers: int = 2,
    num_attention_heads: int = 4,
    max_position_embeddings: int = 1024,
):
    """A tiny causal-LM config of any `AutoConfig` model type with the usual decoder fields (llama, qwen2, mistral...)."""
    if text_model_type not in CONFIG_MAPPING:
        raise ValueError(f"`text_model_type` {text_model_type!r} is not a transformers model type.")
    return CONFIG_MAPPING[text_model_type](
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=num_attention_heads,
        num_key_value_heads=max(1, num_attention_heads // 2),
        max_position_embeddings=max_position_embeddings,
        tie_word_embeddings=False,
        **_special_token_ids(tokenizer),
    )


def tiny_vision_config(
    image_size: int = 32, patch_size: int = 8, hidden_size: int = 64, num_hidden_layers: int = 2,
    num_attention_heads: int = 4, num_channels: int = 1,
) -> DeepSightVisionConfig:
    """A tiny depth ViT config (``(image_size / patch_size) ** 2`` patches, `num_channels` depth channels)."""
    return DeepSightVisionConfig(
        num_channels=num_channels,
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        projection_dim=hidden_size,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=num_attention_heads,
        image_size=image_size,
        patch_size=patch_size,
    )


def build_processor(tokenizer: PreTrainedTokenizerFast, config: DeepSightConfig, **image_processor_kwargs) -> DeepSightProcessor:
    """The processor matching `config` (image size, image tokens per image) around `tokenizer`."""
    image_processor = DeepSightImageProcessor(size=config.vision_config.image_size, **image_processor_kwargs)
    return DeepSightProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        image_seq_length=config.image_seq_length,
        chat_template=tokenizer.chat_template or DEFAULT_CHAT_TEMPLATE,
    )


def build_tiny_deepsight(
    tokenizer: PreTrainedTokenizerFast | None = None,
    image_size: int = 32,
    patch_size: int = 8,
    vision_hidden_size: int = 64,
    vision_layers: int = 2,
    text_hidden_size: int = 64,
    text_layers: int = 2,
    num_attention_heads: int = 4,
    text_model_type: str = "llama",
    seed: int = 0,
    depth_transform: str | Sequence[str] = "inverse",
    **config_kwargs,
) -> tuple[DeepSightForConditionalGeneration, DeepSightProcessor]:
    """A randomly initialised DeepSight and its processor, in eval mode, deterministic from `seed`.

    Defaults: 32x32 depth, 8-pixel patches (16 image tokens), 2-layer 64-wide ViT and LM, Llama LM.
    ``text_model_type`` is any causal-LM model type (``"llama"``, ``"qwen2"``, ``"mistral"``...);
    ``depth_transform`` is the image processor's (a list: one depth channel each, and the tower reads that many);
    ``config_kwargs`` go to `DeepSightConfig` (``vision_feature_layer``, ``projector_type``...).
    """
    tokenizer = tokenizer if tokenizer is not None else train_tiny_tokenizer()
    num_channels = len(depth_channels(depth_transform))
    config = DeepSightConfig(
        vision_config=tiny_vision_config(
            image_size, patch_size, vision_hidden_size, vision_layers, num_attention_heads, num_channels
        ),
        text_config=tiny_text_config(tokenizer, text_model_type, text_hidden_size, text_layers, num_attention_heads),
        image_token_id=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        **config_kwargs,
    )
    torch.manual_seed(seed)
    model = DeepSightForConditionalGeneration(config).eval()
    model.generation_config.update(**_special_token_ids(tokenizer))
    return model, build_processor(tokenizer, config, depth_transform=depth_transform)


def build_tiny_dual_encoder(
    image_size: int = 32,
    patch_size: int = 8,
    vision_hidden_size: int = 64,
    vision_layers: int = 2,
    text_hidden_size: int = 64,
    text_layers: int = 2,
    num_attention_heads: int = 4,
    projection_dim: int = 32,
    tokenizer: PreTrainedTokenizerFast | None = None,
    seed: int = 0,
    **config_kwargs,
) -> tuple[DeepSightDualEncoder, DeepSightProcessor]:
    """A randomly initialised stage-0 dual encoder (depth ViT + tiny CLIP text encoder) and a processor for it.

    The processor is in caption mode (``image_seq_length=0``) around the tiny BPE tokenizer (the CLIP text model's
    vocabulary is sized to it): ``processor(images=depths, text=captions, boxes=..., padding=True)`` pairs the
    i-th caption with the i-th depth map and returns ``pixel_values``, ``bbox_mask``, ``input_ids`` and
    ``attention_mask`` for `DeepSightDualEncoder.forward`.
    """
    tokenizer = tokenizer if tokenizer is not None else train_tiny_tokenizer()
    text_config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=text_hidden_size,
        intermediate_size=2 * text_hidden_size,
        projection_dim=projection_dim,
        num_hidden_layers=text_layers,
        num_attention_heads=num_attention_heads,
        max_position_embeddings=128,
        **_special_token_ids(tokenizer),
    )
    # CLIP's pooler reads the end-of-text token, which real CLIP tokenizers append and the tiny BPE does not:
    # pooled at position 0 every caption would embed alike. Mean pooling reads the whole caption.
    config_kwargs.setdefault("text_pooling", "mean")
    config = DeepSightDualEncoderConfig(
        vision_config=tiny_vision_config(image_size, patch_size, vision_hidden_size, vision_layers, num_attention_heads),
        text_config=text_config,
        projection_dim=projection_dim,
        **config_kwargs,
    )
    torch.manual_seed(seed)
    model = DeepSightDualEncoder(config).eval()
    image_processor = DeepSightImageProcessor(size=image_size)
    processor = DeepSightProcessor(image_processor=image_processor, tokenizer=tokenizer, image_seq_length=0)
    return model, processor


__all__ = [
    "IMAGE_TOKEN",
    "SPECIAL_TOKENS",
    "default_corpus",
    "synthetic_depth_map",
    "synthetic_object_box",
    "train_tiny_tokenizer",
    "tiny_text_config",
    "tiny_vision_config",
    "build_processor",
    "build_tiny_deepsight",
    "build_tiny_dual_encoder",
]
