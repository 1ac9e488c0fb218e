"""RGB vision-language baselines (paper Table 6) trained on depth rendered as a 3-channel image.

Real baselines are loaded from their checkpoints by train/sft.py (`--model_name_or_path
llava-hf/llava-1.5-7b-hf --image_mode gray`, see train/recipes/baselines/). This module builds the
tiny random LLaVA used by the tests, the CPU recipes and bench/bench_train.py, optionally with the same
vision / language sizes as a DeepSight config so that throughput is compared at identical size.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import (
    CLIPImageProcessorPil,
    CLIPVisionConfig,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
)

# The tiny defaults are those of `deepsight.tiny.build_tiny_deepsight`: a 32 px image in 8 px patches
# (16 image tokens), a 2-layer 64-wide ViT and a 2-layer 64-wide Llama, features from the second-to-last
# ViT layer, a 2-layer GELU projector, untied LM head.
TINY_VISION = dict(
    hidden_size=64,
    intermediate_size=128,
    projection_dim=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    image_size=32,
    patch_size=8,
)
TINY_TEXT = dict(
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
    tokenizer: Any = None,
    vision_config: dict[str, Any] | None = None,
    text_config: dict[str, Any] | None = None,
    projector_hidden_act: str = "gelu",
    vision_feature_layer: int | list[int] = -2,
    vision_feature_select_strategy: str = "default",
) -> tuple[LlavaForConditionalGeneration, LlavaProcessor]:
    """A random LLaVA (CLIP ViT + Llama) and its processor, deterministic from `seed`.

    `tokenizer` defaults to `deepsight.tiny.train_tiny_tokenizer()` (with `<image>` and a chat template);
    `vision_config` / `text_config` override the tiny sizes (keys of CLIPVisionConfig / LlamaConfig);
    `vision_feature_select_strategy`: "default" drops CLIP's class token, "full" keeps it as an image token.
    """
    if tokenizer is None:
        from deepsight.tiny import train_tiny_tokenizer

        tokenizer = train_tiny_tokenizer()
    image_token_id = tokenizer.convert_tokens_to_ids("<image>")
    if image_token_id is None or image_token_id == tokenizer.unk_token_id:
        raise ValueError("tokenizer: needs an '<image>' token for LLaVA")
    vision = {**TINY_VISION, **(vision_config or {})}
    text = {**TINY_TEXT, **(text_config or {})}
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(**vision),
        text_config=LlamaConfig(
            vocab_size=len(tokenizer),
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            **text,
        ),
        image_token_id=image_token_id,
        tie_word_embeddings=False,
        vision_feature_layer=vision_feature_layer,
        vision_feature_select_strategy=vision_feature_select_strategy,
        projector_hidden_act=projector_hidden_act,
    )
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config)
    model.eval()
    size = vision["image_size"]
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": size},
        crop_size={"height": size, "width": size},
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=vision["patch_size"],
        vision_feature_select_strategy=vision_feature_select_strategy,
        num_additional_image_tokens=1,  # CLIP's class token, dropped again by the "default" strategy
        chat_template=tokenizer.chat_template,
    )
    return model, processor
