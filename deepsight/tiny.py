"""Tiny models and tokenizers, built in-process in about a second (no Hub access needed): DeepSight, its stage-0
dual encoder, and the RGB baselines it is compared with (LLaVA, Qwen2-VL).

Shared by the tests, the benches, the CPU training recipes and the quickstart::

    from deepsight.tiny import build_tiny_deepsight
    model, processor = build_tiny_deepsight()          # random weights, 32x32 depth, 16 image tokens
    inputs = processor(images=[depth], text=["<|user|>\\n<image>\\nHow far is the chair?"], return_tensors="pt")
    model.generate(**inputs, max_new_tokens=8)

Everything is deterministic from ``seed``.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence

from typing import Any

import numpy as np
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (
    CLIPImageProcessorPil,
    CLIPTextConfig,
    CLIPVisionConfig,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
    PreTrainedTokenizerFast,
    Qwen2VLConfig,
    Qwen2VLForConditionalGeneration,
    Qwen2VLProcessor,
)
from transformers.models.auto.configuration_auto import CONFIG_MAPPING
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
from transformers.processing_utils import ProcessorMixin

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
# The tokenizer roles a special token takes by its name; any other special token but <image> is an extra one.
_TOKEN_ROLES = {"unk_token": "<unk>", "pad_token": "<pad>", "bos_token": "<s>", "eos_token": "</s>"}

# A LLaVA-1.5-style chat template ("USER: <image>\n... ASSISTANT: answer</s>").
LLAVA_CHAT_TEMPLATE = (
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
# Qwen2-VL's turn layout with its vision markers around one image pad token per image.
QWEN2_VL_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}{{ '\\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}{% endfor %}{% endif %}"
    "</s>{{ '\\n' }}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant{{ '\\n' }}{% endif %}"
)
QWEN2_VL_VISION_TOKENS = ["<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]

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


def train_tiny_tokenizer(
    corpus: Iterable[str] | None = None,
    vocab_size: int = 512,
    special_tokens: Sequence[str] = SPECIAL_TOKENS,
    chat_template: str = DEFAULT_CHAT_TEMPLATE,
    prepend_bos: bool = True,
    model_max_length: int | None = 2048,
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer in-process (well under a second).

    Args:
        corpus: training sentences; `default_corpus()` when None.
        vocab_size: target vocabulary size (byte-level: 256 bytes + merges + the special tokens).
        special_tokens: the first ids, in this order; ``<unk>``, ``<pad>``, ``<s>``, ``</s>`` take those roles,
            ``<image>`` is ``tokenizer.image_token``, any other is an additional special token.
        chat_template: DeepSight's by default; `LLAVA_CHAT_TEMPLATE` for a LLaVA-1.5-style one.
        prepend_bos: ``<s>`` before every encoded text.
        model_max_length: None leaves the transformers default.

    Returns:
        A `PreTrainedTokenizerFast`; by default with ``<s>`` (bos, prepended), ``</s>`` (eos), ``<pad>``, ``<unk>``,
        ``<image>`` (``tokenizer.image_token`` / ``image_token_id``), the role markers ``<|system|>``, ``<|user|>``,
        ``<|assistant|>`` and DeepSight's default chat template. Any byte sequence encodes (no unknown tokens).
    """
    if vocab_size < 256 + len(special_tokens):
        raise ValueError(f"`vocab_size` must be at least {256 + len(special_tokens)} for a byte-level BPE.")
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(list(corpus) if corpus is not None else default_corpus(), trainer=trainer)
    if prepend_bos:
        bos_id = tokenizer.token_to_id("<s>")
        tokenizer.post_processor = processors.TemplateProcessing(
            single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos_id)]
        )
    roles = {role: token for role, token in _TOKEN_ROLES.items() if token in special_tokens}
    extra = [token for token in special_tokens if token not in roles.values() and token != IMAGE_TOKEN]
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        **roles,
        extra_special_tokens={"image_token": IMAGE_TOKEN},
        **({"additional_special_tokens": extra} if extra else {}),
        chat_template=chat_template,
        **({"model_max_length": model_max_length} if model_max_length is not None else {}),
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


def left_padding_copy(tokenizer: PreTrainedTokenizerFast) -> PreTrainedTokenizerFast:
    """A copy of `tokenizer` that pads on the left, as LLaVA-hf processors are saved: batched `generate` then
    continues every row from its own last token. The caller's tokenizer is left as it is (a text encoder
    sharing it pools right-padded captions); training collators pad right themselves."""
    tokenizer = copy.deepcopy(tokenizer)
    tokenizer.padding_side = "left"
    tokenizer.init_kwargs["padding_side"] = "left"  # `save_pretrained` writes only attributes named in init_kwargs
    return tokenizer


def build_processor(tokenizer: PreTrainedTokenizerFast, config: DeepSightConfig, **image_processor_kwargs) -> DeepSightProcessor:
    """The processor matching `config` (image size, image tokens per image) around a left-padding copy of
    `tokenizer` (for batched generation)."""
    image_processor = DeepSightImageProcessor(size=config.vision_config.image_size, **image_processor_kwargs)
    return DeepSightProcessor(
        image_processor=image_processor,
        tokenizer=left_padding_copy(tokenizer),
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
    num_channels: int = 1,
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
        vision_config=tiny_vision_config(
            image_size, patch_size, vision_hidden_size, vision_layers, num_attention_heads, num_channels
        ),
        text_config=text_config,
        projection_dim=projection_dim,
        **config_kwargs,
    )
    torch.manual_seed(seed)
    model = DeepSightDualEncoder(config).eval()
    image_processor = DeepSightImageProcessor(size=image_size)
    processor = DeepSightProcessor(image_processor=image_processor, tokenizer=tokenizer, image_seq_length=0)
    return model, processor


# The tiny LLaVA's defaults are those of `build_tiny_deepsight`: a 32 px image in 8 px patches (16 image tokens),
# a 2-layer 64-wide ViT and a 2-layer 64-wide Llama, untied LM head.
TINY_LLAVA_VISION = dict(
    hidden_size=64,
    intermediate_size=128,
    projection_dim=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    image_size=32,
    patch_size=8,
)
TINY_LLAVA_TEXT = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=1024,
    tie_word_embeddings=False,
)


def build_tiny_llava(
    seed: int = 0,
    tokenizer: PreTrainedTokenizerFast | None = None,
    vision_config: dict[str, Any] | None = None,
    text_config: dict[str, Any] | None = None,
    projector_hidden_act: str = "gelu",
    vision_feature_layer: int | list[int] = -2,
    vision_feature_select_strategy: str = "default",
    image_mean: Sequence[float] = (0.5, 0.5, 0.5),
    image_std: Sequence[float] = (0.5, 0.5, 0.5),
) -> tuple[LlavaForConditionalGeneration, LlavaProcessor]:
    """A random LLaVA (CLIP ViT + Llama) and its processor, in eval mode, deterministic from `seed`.

    The RGB baseline DeepSight is compared with (paper Table 6) at tiny size: depth reaches it as a 3-channel image.
    `tokenizer` defaults to `train_tiny_tokenizer()` (it needs `<image>`; its chat template becomes the
    processor's); `vision_config` / `text_config` override the tiny sizes (keys of CLIPVisionConfig /
    LlamaConfig); `vision_feature_select_strategy`: "default" drops CLIP's class token, "full" keeps it.
    """
    tokenizer = tokenizer if tokenizer is not None else train_tiny_tokenizer()
    image_token_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    if image_token_id is None or image_token_id == tokenizer.unk_token_id:
        raise ValueError("tokenizer: needs an '<image>' token for LLaVA")
    vision = {**TINY_LLAVA_VISION, **(vision_config or {})}
    text = {**TINY_LLAVA_TEXT, **(text_config or {})}
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(**vision),
        text_config=LlamaConfig(vocab_size=len(tokenizer), **_special_token_ids(tokenizer), **text),
        image_token_id=image_token_id,
        tie_word_embeddings=False,
        vision_feature_layer=vision_feature_layer,
        vision_feature_select_strategy=vision_feature_select_strategy,
        projector_hidden_act=projector_hidden_act,
    )
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config).eval()
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    size = vision["image_size"]
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": size},
        crop_size={"height": size, "width": size},
        image_mean=list(image_mean),
        image_std=list(image_std),
    )
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=left_padding_copy(tokenizer),
        patch_size=vision["patch_size"],
        vision_feature_select_strategy=vision_feature_select_strategy,
        num_additional_image_tokens=1,  # CLIP's class token, dropped again by the "default" strategy
        chat_template=tokenizer.chat_template,
    )
    return model, processor


class ImageOnlyQwen2VLProcessor(Qwen2VLProcessor):
    """Qwen2-VL's processor without its video processor (which needs torchvision): images and text only."""

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        self.image_token, self.video_token = "<|image_pad|>", "<|video_pad|>"
        self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
        self.video_token_id = tokenizer.convert_tokens_to_ids(self.video_token)
        ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)


def build_tiny_qwen2_vl(
    seed: int = 0, tokenizer: PreTrainedTokenizerFast | None = None
) -> tuple[Qwen2VLForConditionalGeneration, ImageOnlyQwen2VLProcessor]:
    """A random tiny `Qwen2VLForConditionalGeneration` and an image-only processor for it, in eval mode.

    Qwen2-VL is the multimodal-RoPE family (per-batch rope offsets). `tokenizer` (default `train_tiny_tokenizer()`)
    gets Qwen2-VL's vision tokens added in place; it needs ``</s>``, which ends each turn of the chat template.
    """
    tokenizer = tokenizer if tokenizer is not None else train_tiny_tokenizer()
    tokenizer.add_special_tokens({"additional_special_tokens": QWEN2_VL_VISION_TOKENS})
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in QWEN2_VL_VISION_TOKENS}
    config = Qwen2VLConfig(
        text_config=dict(
            vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
            num_key_value_heads=2, max_position_embeddings=512,
            rope_parameters={"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 10000.0},
            pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id,
        ),
        vision_config=dict(depth=1, embed_dim=32, hidden_size=32, num_heads=2, patch_size=14, spatial_merge_size=2,
                           temporal_patch_size=2),
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
    processor = ImageOnlyQwen2VLProcessor(
        image_processor=image_processor, tokenizer=tokenizer, chat_template=QWEN2_VL_CHAT_TEMPLATE
    )
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
    "left_padding_copy",
    "build_tiny_deepsight",
    "build_tiny_dual_encoder",
    "LLAVA_CHAT_TEMPLATE",
    "QWEN2_VL_CHAT_TEMPLATE",
    "build_tiny_llava",
    "build_tiny_qwen2_vl",
]
