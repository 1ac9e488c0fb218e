# Copyright 2026 The DeepSight authors. Licensed under the Apache License, Version 2.0.
"""DeepSight configurations.

* `DeepSightVisionConfig`: a CLIP ViT configuration whose input is a depth map (1 channel, or one per depth
  transform) plus the 1-channel Bbox Conv mask. Every CLIP field keeps its meaning, so a CLIP checkpoint's vision config
  converts field for field (see `DeepSightVisionConfig.from_clip_vision_config`).
* `DeepSightConfig`: the LLaVA-style vision-language model (vision tower + projector + any causal LM).
* `DeepSightDualEncoderConfig`: the stage-0 contrastive model (vision tower + frozen text encoder).

This file is copied next to the weights by ``save_pretrained``: it imports only transformers.
"""

from __future__ import annotations

from typing import Literal

from huggingface_hub.dataclasses import strict

from transformers import AutoConfig, CLIPVisionConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec


PROJECTOR_TYPES = ("mlp", "linear")
FEATURE_SELECT_STRATEGIES = ("default", "full")
TEXT_POOLINGS = ("auto", "pooler", "mean", "cls")
QUESTION_LAYOUTS = ("union", "per_option")


@strict
class DeepSightVisionConfig(CLIPVisionConfig):
    r"""
    Configuration of `DeepSightVisionModel`: CLIP's vision configuration with a depth input.

    The patch embedding is the paper's *Depth Conv* and a second convolution of the same kernel size and stride,
    the *Bbox Conv*, embeds the 1-channel binary object mask; their outputs are summed before CLS and position
    embeddings. ``num_channels`` is the depth map's channels: 1 in the paper (a grayscale depth image); one per
    transform when the image processor's ``depth_transform`` is a list (e.g. metric and relative depth, 2).
    All other fields are `CLIPVisionConfig`'s.

    Example:

    ```python
    >>> from modeling_deepsight import DeepSightVisionConfig, DeepSightVisionModel
    >>> config = DeepSightVisionConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
    ...                                num_attention_heads=4, image_size=32, patch_size=8)
    >>> model = DeepSightVisionModel(config)
    ```"""

    model_type = "deepsight_vision"
    base_config_key = "vision_config"

    num_channels: int = 1

    def validate_architecture(self):
        super().validate_architecture()
        if not 1 <= self.num_channels <= 3:
            raise ValueError(
                f"`num_channels` must be 1 to 3 (one per depth transform of the image processor); got "
                f"{self.num_channels}."
            )
        if self.image_size % self.patch_size != 0:
            raise ValueError(
                f"`image_size` ({self.image_size}) must be a multiple of `patch_size` ({self.patch_size})."
            )

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2

    @classmethod
    def from_clip_vision_config(cls, clip_vision_config: CLIPVisionConfig, **kwargs) -> "DeepSightVisionConfig":
        """The same ViT as `clip_vision_config` (every size, activation and epsilon), with a depth input."""
        fields = {
            name: getattr(clip_vision_config, name)
            for name in (
                "hidden_size",
                "intermediate_size",
                "projection_dim",
                "num_hidden_layers",
                "num_attention_heads",
                "image_size",
                "patch_size",
                "hidden_act",
                "layer_norm_eps",
                "attention_dropout",
                "initializer_range",
                "initializer_factor",
            )
        }
        fields.update(kwargs)
        return cls(**fields)


@strict
class DeepSightConfig(PreTrainedConfig):
    r"""
    Configuration of `DeepSightForConditionalGeneration` (LLaVA-style, depth instead of RGB).

    Args:
        vision_config (`DeepSightVisionConfig` or `dict`, *optional*):
            The depth vision tower (CLIP ViT-L/14-336 sizes by default, as LLaVA-1.5).
        text_config (`PreTrainedConfig` or `dict`, *optional*):
            Any causal LM's config (``model_type`` picks the class through `AutoConfig`: llama, qwen2, ...).
            Llama by default.
        image_token_id (`int`, *optional*, defaults to 32000):
            Id of the ``<image>`` placeholder token; the processor repeats it ``image_seq_length`` times per image.
        image_seq_length (`int`, *optional*):
            Image tokens per image. Derived from the vision config and the feature selection when not given
            (``(image_size / patch_size) ** 2``, plus one for the CLS token with ``"full"``, plus one with
            ``region_token``); a given value must agree with it.
        vision_feature_layer (`int` or `list[int]`, *optional*, defaults to -2):
            Hidden state(s) of the vision tower fed to the projector (a list is concatenated on features).
        vision_feature_select_strategy (`str`, *optional*, defaults to `"default"`):
            ``"default"`` drops the CLS token, ``"full"`` keeps it.
        region_token (`bool`, *optional*, defaults to `False`):
            Append one image token per image: the mean of the selected patch features over the Bbox-Conv mask
            (each patch weighted by the share of its pixels inside the box; the whole image without a box). The
            LLM then reads the marked region's features in one place instead of finding them among the patches.
        spatial_pool_stride (`int`, *optional*, defaults to 1):
            Average-pool the patch features on their grid with this stride before the projector (LLaVA-NeXT-Video's
            spatial pooling): ``stride ** 2`` times fewer image tokens, so a cheaper LLM step for a coarser
            picture. The region token, when asked, is still the mean of the unpooled patches over the box.
        projector_type (`str`, *optional*, defaults to `"mlp"`):
            ``"mlp"`` (LLaVA-1.5: Linear, act, Linear, ... with ``projector_depth`` linears) or ``"linear"``
            (LLaVA-1: one Linear).
        projector_depth (`int`, *optional*, defaults to 2):
            Number of Linear layers of the ``"mlp"`` projector.
        projector_hidden_act (`str`, *optional*, defaults to `"gelu"`):
            Activation between the projector's Linear layers.
        multimodal_projector_bias (`bool`, *optional*, defaults to `True`):
            Whether the projector's Linear layers have a bias.
        freeze_vision_tower (`bool`, *optional*, defaults to `True`):
            The model is built (and loaded) with its vision tower's parameters frozen (``requires_grad=False``):
            the paper trains the tower in stage 0 only (`DeepSightDualEncoder`), so any trainer that fine-tunes
            this checkpoint -- ours or ``trl sft`` -- leaves it as it is. Set False to fine-tune the tower too.
        question_layout (`str`, *optional*, defaults to `"union"`):
            How the checkpoint was trained to be asked a question about several boxes (Distance Judgment):
            ``"union"`` (the paper's: one depth image masked to all the boxes) or ``"per_option"`` (one depth copy
            per option, masked to that option's box). Stage 2 writes it from its training rows; the evaluator asks
            in it unless told otherwise.

    Example:

    ```python
    >>> from transformers import LlamaConfig
    >>> from modeling_deepsight import DeepSightConfig, DeepSightVisionConfig
    >>> config = DeepSightConfig(vision_config=DeepSightVisionConfig(), text_config=LlamaConfig())
    ```"""

    model_type = "deepsight"
    sub_configs_defaults = {
        "vision_config": SubConfigSpec(
            config_class=DeepSightVisionConfig,
            init_kwargs={
                "intermediate_size": 4096,
                "hidden_size": 1024,
                "patch_size": 14,
                "image_size": 336,
                "num_hidden_layers": 24,
                "num_attention_heads": 16,
                "projection_dim": 768,
            },
        ),
        "text_config": SubConfigSpec(config_class=AutoConfig, model_type="llama"),
    }

    vision_config: dict | PreTrainedConfig | None = None
    text_config: dict | PreTrainedConfig | None = None
    image_token_id: int = 32000
    image_seq_length: int | None = None
    vision_feature_layer: int | list[int] = -2
    vision_feature_select_strategy: Literal["default", "full"] = "default"
    region_token: bool = False
    spatial_pool_stride: int = 1
    projector_type: Literal["mlp", "linear"] = "mlp"
    projector_depth: int = 2
    projector_hidden_act: str = "gelu"
    multimodal_projector_bias: bool = True
    freeze_vision_tower: bool = True
    question_layout: Literal["union", "per_option"] = "union"
    tie_word_embeddings: bool = False

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        # The LM decides whether its head is tied to its embeddings (LLaVA's workaround, same reason).
        if not self.tie_word_embeddings and getattr(self.text_config, "tie_word_embeddings", False):
            self.tie_word_embeddings = True
        expected = self.expected_image_seq_length()
        if self.image_seq_length is None:
            self.image_seq_length = expected
        elif self.image_seq_length != expected:
            raise ValueError(
                f"`image_seq_length` is {self.image_seq_length} but the vision tower gives {expected} features per "
                f"image (image_size {self.vision_config.image_size}, patch_size {self.vision_config.patch_size}, "
                f"vision_feature_select_strategy {self.vision_feature_select_strategy!r}, region_token {self.region_token}, "
                f"spatial_pool_stride {self.spatial_pool_stride})."
            )

    def validate_architecture(self):
        if self.question_layout not in QUESTION_LAYOUTS:
            raise ValueError(f"`question_layout` must be one of {QUESTION_LAYOUTS}; got {self.question_layout!r}.")
        if self.projector_type not in PROJECTOR_TYPES:
            raise ValueError(f"`projector_type` must be one of {PROJECTOR_TYPES}; got {self.projector_type!r}.")
        if self.vision_feature_select_strategy not in FEATURE_SELECT_STRATEGIES:
            raise ValueError(
                f"`vision_feature_select_strategy` must be one of {FEATURE_SELECT_STRATEGIES}; got "
                f"{self.vision_feature_select_strategy!r}."
            )
        grid = self.vision_config.image_size // self.vision_config.patch_size
        if self.spatial_pool_stride < 1 or grid % self.spatial_pool_stride:
            raise ValueError(
                f"`spatial_pool_stride` must be >= 1 and divide the {grid}x{grid} patch grid; got {self.spatial_pool_stride}."
            )
        if self.projector_depth < 1:
            raise ValueError(f"`projector_depth` must be >= 1; got {self.projector_depth}.")
        num_layers = self.vision_config.num_hidden_layers
        layers = (
            [self.vision_feature_layer] if isinstance(self.vision_feature_layer, int) else self.vision_feature_layer
        )
        if not layers:
            raise ValueError("`vision_feature_layer` must name at least one vision layer.")
        for layer in layers:
            # hidden_states holds the embeddings output plus one entry per layer.
            if not -(num_layers + 1) <= layer <= num_layers:
                raise ValueError(
                    f"`vision_feature_layer` {layer} is out of range for a vision tower with {num_layers} layers "
                    f"(valid: {-(num_layers + 1)}..{num_layers})."
                )

    def expected_image_seq_length(self) -> int:
        """Image tokens the vision tower gives per image with this feature selection."""
        num_patches = (self.vision_config.image_size // self.vision_config.patch_size // self.spatial_pool_stride) ** 2
        return num_patches + (1 if self.vision_feature_select_strategy == "full" else 0) + int(self.region_token)


@strict
class DeepSightDualEncoderConfig(PreTrainedConfig):
    r"""
    Configuration of `DeepSightDualEncoder`, the stage-0 model: depth vision tower + frozen text encoder.

    Args:
        vision_config (`DeepSightVisionConfig` or `dict`, *optional*): the depth vision tower.
        text_config (`PreTrainedConfig` or `dict`, *optional*):
            Any `AutoModel` text encoder's config (CLIP text by default; BERT-like encoders work too).
        projection_dim (`int`, *optional*, defaults to 512): size of the shared embedding space.
        logit_scale_init_value (`float`, *optional*, defaults to 2.6592): initial log temperature (CLIP's).
        text_pooling (`str`, *optional*, defaults to `"auto"`):
            How a sentence embedding is read from the text encoder: ``"pooler"`` (its ``pooler_output``: CLIP's
            end-of-text token), ``"mean"`` (mean over the attention mask, sentence-transformers style),
            ``"cls"`` (first token). ``"auto"`` is ``"pooler"`` for CLIP text models and ``"mean"`` otherwise.
        freeze_text_encoder (`bool`, *optional*, defaults to `True`): keep the text encoder frozen (paper §5).
    """

    model_type = "deepsight_dual_encoder"
    sub_configs_defaults = {
        "vision_config": DeepSightVisionConfig,
        "text_config": SubConfigSpec(config_class=AutoConfig, model_type="clip_text_model"),
    }

    vision_config: dict | PreTrainedConfig | None = None
    text_config: dict | PreTrainedConfig | None = None
    projection_dim: int = 512
    logit_scale_init_value: float = 2.6592
    text_pooling: Literal["auto", "pooler", "mean", "cls"] = "auto"
    freeze_text_encoder: bool = True

    def validate_architecture(self):
        if self.text_pooling not in TEXT_POOLINGS:
            raise ValueError(f"`text_pooling` must be one of {TEXT_POOLINGS}; got {self.text_pooling!r}.")
        if self.projection_dim < 1:
            raise ValueError(f"`projection_dim` must be >= 1; got {self.projection_dim}.")

    @property
    def resolved_text_pooling(self) -> str:
        if self.text_pooling != "auto":
            return self.text_pooling
        return "pooler" if self.text_config.model_type in ("clip_text_model", "siglip_text_model") else "mean"


# `save_pretrained` copies this file and writes `auto_map` so a saved folder loads with trust_remote_code.
DeepSightVisionConfig.register_for_auto_class("AutoConfig")
DeepSightConfig.register_for_auto_class("AutoConfig")
DeepSightDualEncoderConfig.register_for_auto_class("AutoConfig")


__all__ = ["DeepSightVisionConfig", "DeepSightConfig", "DeepSightDualEncoderConfig"]
