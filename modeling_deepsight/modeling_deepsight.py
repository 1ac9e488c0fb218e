# Copyright 2026 The DeepSight authors. Licensed under the Apache License, Version 2.0.
"""DeepSight models: a depth-aware CLIP ViT, a LLaVA-style vision-language model and a stage-0 dual encoder.

The vision tower is transformers' CLIP ViT with one change, the patch embedding (paper §4):

    embeddings = DepthConv(depth) + BboxConv(mask)  ->  [CLS] + patches  + position embeddings  ->  CLIP encoder

A freshly built tower has a zero Bbox Conv (it ignores the mask until trained). Checkpoint conversion (a tower
converted from CLIP, a VLM assembled from a CLIP and a causal-LM checkpoint, a dual encoder from CLIP) lives outside
this file, in the repository's ``deepsight/conversion.py``: this file holds only the models.

The vision-language model follows `transformers.models.llava`: vision features from a configurable layer, an MLP
projector, and the projected features scattered into the ``<image>`` token positions of any causal LM.

This file is copied next to the weights by ``save_pretrained``: it imports only torch, transformers and its
sibling modules (relative imports).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from transformers import AutoModel, initialization as init
from transformers.activations import ACT2FN
from transformers.cache_utils import Cache
from transformers.conversion_mapping import register_checkpoint_conversion_mapping
from transformers.core_model_loading import WeightRenaming
from transformers.generation import GenerationMixin
from transformers.modeling_outputs import BaseModelOutputWithPast, BaseModelOutputWithPooling, ModelOutput
from transformers.modeling_utils import PreTrainedModel, slice_logits_to_keep
from transformers.models.clip.modeling_clip import (
    CLIPEncoder,
    CLIPPreTrainedModel,
    CLIPVisionEmbeddings,
    image_text_contrastive_loss,
)
from transformers.utils import logging, torch_compilable_check
from transformers.utils.generic import can_return_tuple, merge_with_config_defaults
from transformers.utils.output_capturing import capture_outputs, select_hidden_states

from .configuration_deepsight import DeepSightConfig, DeepSightDualEncoderConfig, DeepSightVisionConfig
from .pipeline_deepsight import custom_pipelines_entry


logger = logging.get_logger(__name__)


# --------------------------------------------------------------------------------------------------
# Input checks shared by every model (bad input -> ValueError naming the input)
# --------------------------------------------------------------------------------------------------


def check_depth_inputs(pixel_values: torch.Tensor, bbox_mask: torch.Tensor | None, num_channels: int = 1) -> None:
    """`pixel_values` must be [B, num_channels, H, W]; `bbox_mask`, when given, [B, 1, H, W]."""
    if not isinstance(pixel_values, torch.Tensor):
        raise ValueError(
            f"`pixel_values` must be a torch.Tensor of shape [B, {num_channels}, H, W]; got {type(pixel_values)}."
        )
    if pixel_values.ndim != 4 or pixel_values.shape[1] != num_channels:
        what = "one depth channel" if num_channels == 1 else f"{num_channels} depth channels"
        raise ValueError(
            f"`pixel_values` must have shape [batch, {num_channels}, height, width] ({what}, the vision config's "
            f"`num_channels`); got {tuple(pixel_values.shape)}. Use DeepSightImageProcessor to turn depth maps "
            "into model inputs, with one `depth_transform` per channel."
        )
    if bbox_mask is None:
        return
    expected = (pixel_values.shape[0], 1, *pixel_values.shape[2:])
    if not isinstance(bbox_mask, torch.Tensor):
        raise ValueError(f"`bbox_mask` must be a torch.Tensor of shape {expected}; got {type(bbox_mask)}.")
    if tuple(bbox_mask.shape) != expected:
        raise ValueError(
            f"`bbox_mask` must have shape {expected} (one mask channel, the size of `pixel_values` "
            f"{tuple(pixel_values.shape)}); got {tuple(bbox_mask.shape)}."
        )


# --------------------------------------------------------------------------------------------------
# Vision tower
# --------------------------------------------------------------------------------------------------


class DeepSightVisionEmbeddings(CLIPVisionEmbeddings):
    """CLIP's vision embeddings where the patch embedding reads depth and a Bbox Conv adds the object mask.

    ``patch_embedding`` is the paper's *Depth Conv* (``num_channels`` inputs, 1 in the paper; the name is CLIP's so that the conversion and
    `get_input_embeddings` stay CLIP's), ``bbox_embedding`` the *Bbox Conv*.
    """

    def __init__(self, config: DeepSightVisionConfig):
        super().__init__(config)
        self.bbox_embedding = nn.Conv2d(
            in_channels=1,
            out_channels=self.embed_dim,
            kernel_size=self.patch_size,
            stride=self.patch_size,
            bias=False,
        )

    def embed_bbox_mask(self, bbox_mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor:
        """Bbox Conv output, [B, D, h, w], or [1, D, 1, 1] for the default all-ones mask.

        A convolution of an all-ones input is the sum of each kernel, the same at every patch: computing it that
        way keeps the mask-free path as fast as CLIP's.
        """
        if bbox_mask is None:
            return self.bbox_embedding.weight.sum(dim=(1, 2, 3)).view(1, -1, 1, 1)
        return self.bbox_embedding(bbox_mask.to(dtype=dtype))

    def forward(
        self,
        pixel_values: torch.Tensor,
        bbox_mask: torch.Tensor | None = None,
        interpolate_pos_encoding: bool = False,
    ) -> torch.Tensor:
        batch_size, _, height, width = pixel_values.shape
        if not interpolate_pos_encoding and (height != self.image_size or width != self.image_size):
            raise ValueError(
                f"`pixel_values` are {height}x{width} but the vision tower expects {self.image_size}x"
                f"{self.image_size} (pass interpolate_pos_encoding=True to run at another size)."
            )
        target_dtype = self.patch_embedding.weight.dtype
        patch_embeds = self.patch_embedding(pixel_values.to(dtype=target_dtype))
        patch_embeds = patch_embeds + self.embed_bbox_mask(bbox_mask, target_dtype)
        patch_embeds = patch_embeds.flatten(2).transpose(1, 2)

        class_embeds = self.class_embedding.expand(batch_size, 1, -1)
        embeddings = torch.cat([class_embeds, patch_embeds], dim=1)
        if interpolate_pos_encoding:
            return embeddings + self.interpolate_pos_encoding(embeddings, height, width)
        return embeddings + self.position_embedding(self.position_ids)


class DeepSightVisionPreTrainedModel(CLIPPreTrainedModel):
    config: DeepSightVisionConfig
    config_class = DeepSightVisionConfig
    base_model_prefix = "deepsight_vision"
    input_modalities = ("image",)
    _no_split_modules = ["DeepSightVisionEmbeddings", "CLIPEncoderLayer"]

    @torch.no_grad()
    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, DeepSightVisionEmbeddings):
            # Zero Bbox Conv: a freshly built tower ignores the mask until training teaches it to use it.
            init.zeros_(module.bbox_embedding.weight)


class DeepSightVisionModel(DeepSightVisionPreTrainedModel):
    """The DeepSight depth encoder: CLIP's ViT (encoder and layer norms reused) on Depth Conv + Bbox Conv embeddings.

    ``forward(pixel_values [B, C, H, W], bbox_mask [B, 1, H, W] | None)`` (C = ``config.num_channels``) returns CLIP's
    `BaseModelOutputWithPooling` (``pooler_output`` = post-layernorm CLS). ``bbox_mask`` is 1 inside the object
    boxes and 0 elsewhere; ``None`` means all ones (the whole image is the region).
    """

    main_input_name = "pixel_values"
    _input_embed_layer = "patch_embedding"

    def __init__(self, config: DeepSightVisionConfig):
        super().__init__(config)
        embed_dim = config.hidden_size
        self.embeddings = DeepSightVisionEmbeddings(config)
        self.pre_layrnorm = nn.LayerNorm(embed_dim, eps=config.layer_norm_eps)
        self.encoder = CLIPEncoder(config)
        self.post_layernorm = nn.LayerNorm(embed_dim, eps=config.layer_norm_eps)
        self.post_init()

    @merge_with_config_defaults
    @capture_outputs(tie_last_hidden_states=False)
    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        bbox_mask: torch.Tensor | None = None,
        interpolate_pos_encoding: bool | None = False,
        **kwargs,
    ) -> BaseModelOutputWithPooling:
        check_depth_inputs(pixel_values, bbox_mask, self.config.num_channels)
        hidden_states = self.embeddings(pixel_values, bbox_mask, interpolate_pos_encoding=interpolate_pos_encoding)
        hidden_states = self.pre_layrnorm(hidden_states)
        encoder_outputs = self.encoder(inputs_embeds=hidden_states, **kwargs)
        last_hidden_state = encoder_outputs.last_hidden_state
        pooled_output = self.post_layernorm(last_hidden_state[:, 0, :])
        return BaseModelOutputWithPooling(last_hidden_state=last_hidden_state, pooler_output=pooled_output)


# --------------------------------------------------------------------------------------------------
# Vision-language model (LLaVA-style)
# --------------------------------------------------------------------------------------------------


@dataclass
class DeepSightModelOutputWithPast(BaseModelOutputWithPast):
    r"""
    image_hidden_states (`torch.FloatTensor`, *optional*):
        Projected image features, `(num_images, image_seq_length, hidden_size)`, when images were given.
    """

    image_hidden_states: torch.FloatTensor | None = None


@dataclass
class DeepSightCausalLMOutputWithPast(ModelOutput):
    r"""
    loss (`torch.FloatTensor` of shape `(1,)`, *optional*): next-token loss when `labels` are given.
    logits (`torch.FloatTensor`): `(batch_size, sequence_length, vocab_size)` scores.
    past_key_values (`Cache`, *optional*): the KV cache for the next decoding step.
    hidden_states, attentions: the language model's, when requested.
    image_hidden_states (`torch.FloatTensor`, *optional*): projected image features.
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    past_key_values: Cache | None = None
    hidden_states: tuple[torch.FloatTensor] | None = None
    attentions: tuple[torch.FloatTensor] | None = None
    image_hidden_states: torch.FloatTensor | None = None


def region_mean(patch_features: torch.Tensor, bbox_mask: torch.Tensor | None, patch_size: int) -> torch.Tensor:
    """[B, D]: the mean of `patch_features` [B, N, D] over the box mask [B, 1, H, W], each patch weighted by the
    share of its pixels inside the box (a mask without any box pixel, or none at all: every patch alike)."""
    if bbox_mask is None:
        return patch_features.mean(dim=1)
    share = nn.functional.avg_pool2d(bbox_mask.to(patch_features.dtype), patch_size).flatten(1)  # [B, N]
    if share.shape[1] != patch_features.shape[1]:
        raise ValueError(
            f"`bbox_mask` gives {share.shape[1]} patches of {patch_size} pixels but the vision tower gave "
            f"{patch_features.shape[1]} patch features."
        )
    empty = share.sum(dim=1, keepdim=True) == 0
    weights = torch.where(empty, torch.ones_like(share), share)
    weights = weights / weights.sum(dim=1, keepdim=True)
    return torch.einsum("bn,bnd->bd", weights, patch_features)


def pool_patch_grid(patch_features: torch.Tensor, stride: int) -> torch.Tensor:
    """[B, N / stride**2, D]: `patch_features` [B, N, D] (a square grid, row by row) average-pooled by `stride`."""
    if stride == 1:
        return patch_features
    batch, num_patches, dim = patch_features.shape
    side = int(round(num_patches**0.5))
    grid = patch_features.transpose(1, 2).reshape(batch, dim, side, side)
    return nn.functional.avg_pool2d(grid, stride).flatten(2).transpose(1, 2)


class DeepSightMultiModalProjector(nn.Module):
    """Vision features -> LM embeddings, named as LLaVA's so its weights load: ``linear_1, act, linear_2`` (LLaVA-1.5,
    the default), continued with ``linear_3``... (``act`` between each pair) for a deeper MLP, or ``linear_1`` alone
    for ``projector_type="linear"``."""

    def __init__(self, config: DeepSightConfig):
        super().__init__()
        num_feature_layers = 1 if isinstance(config.vision_feature_layer, int) else len(config.vision_feature_layer)
        in_features = config.vision_config.hidden_size * num_feature_layers
        out_features = config.text_config.hidden_size
        bias = config.multimodal_projector_bias
        self.num_linears = 1 if config.projector_type == "linear" else config.projector_depth
        self.linear_1 = nn.Linear(in_features, out_features, bias=bias)
        if self.num_linears > 1:
            self.act = ACT2FN[config.projector_hidden_act]
        for index in range(2, self.num_linears + 1):
            self.add_module(f"linear_{index}", nn.Linear(out_features, out_features, bias=bias))

    def forward(self, image_features: torch.Tensor) -> torch.Tensor:
        hidden_states = self.linear_1(image_features)
        for index in range(2, self.num_linears + 1):
            hidden_states = getattr(self, f"linear_{index}")(self.act(hidden_states))
        return hidden_states


_LEGACY_PROJECTOR_KEY = re.compile(r"(multi_modal_projector\.)layers\.(\d+)\.")


def linear_index_of_legacy_layer(index: int) -> int:
    """The ``nn.Sequential`` projector held Linear number k at ``layers.{2(k-1)}`` (activations between)."""
    return index // 2 + 1


def with_llava_projector_keys(state_dict: dict[str, Any]) -> dict[str, Any]:
    """`state_dict` with old projector keys (``layers.{2(k-1)}``) renamed to LLaVA's (``linear_k``)."""
    return {
        _LEGACY_PROJECTOR_KEY.sub(lambda m: f"{m[1]}linear_{linear_index_of_legacy_layer(int(m[2]))}.", key): value
        for key, value in state_dict.items()
    }


class ProjectorLinearRename(WeightRenaming):
    """Projector keys of folders saved when it was an ``nn.Sequential`` <-> LLaVA's names: Linear number k sat at
    ``layers.{2(k-1)}`` (the activations between hold no weights), it is ``linear_k`` now. One renaming for any depth,
    reversed on save as transformers does for every renamed checkpoint."""

    __slots__ = ("to_linear",)

    def __init__(self, source_patterns, target_patterns, to_linear: bool = True):
        self.to_linear = to_linear
        super().__init__(source_patterns=source_patterns, target_patterns=target_patterns)

    def rename_source_key(self, source_key: str) -> tuple[str, str | None]:
        matched = self._scoped_match(source_key)
        if matched is None:
            return source_key, None
        prefix_dot, key_to_match, match_object = matched
        self._was_used = True
        group_name = next(name for name, value in match_object.groupdict().items() if value is not None)
        index = int(match_object.group(self.compiled_sources.groupindex[group_name] + 1))
        index = linear_index_of_legacy_layer(index) if self.to_linear else 2 * (index - 1)
        renamed = key_to_match.replace(match_object.group(0), self.target_patterns[0].replace(r"\1", str(index)), 1)
        return (prefix_dot or "") + renamed, self.source_patterns[int(group_name[1:])]

    def reverse_transform(self) -> "ProjectorLinearRename":
        return self.copy(self._original_target_patterns, self._original_source_patterns, to_linear=not self.to_linear)


LEGACY_PROJECTOR_RENAMING = ProjectorLinearRename(
    source_patterns=r"multi_modal_projector\.layers\.(\d+)\.", target_patterns=r"multi_modal_projector.linear_\1."
)


class DeepSightPreTrainedModel(PreTrainedModel):
    config: DeepSightConfig
    config_class = DeepSightConfig
    base_model_prefix = "model"
    input_modalities = ("image", "text")
    supports_gradient_checkpointing = True
    _no_split_modules = ["DeepSightVisionEmbeddings", "CLIPEncoderLayer"]
    _skip_keys_device_placement = ["past_key_values"]
    _supports_flash_attn = True
    _supports_sdpa = True
    _supports_flex_attn = True
    _supports_attention_backend = True
    # LEGACY_PROJECTOR_RENAMING as PEFT reads it (regex -> replacement, so one entry per Linear) when it loads an
    # adapter folder whose trained projector (`modules_to_save`) has the old names.
    _checkpoint_conversion_mapping = {
        rf"multi_modal_projector\.layers\.{2 * (k - 1)}\.": f"multi_modal_projector.linear_{k}." for k in range(1, 33)
    }

    def freeze_declared_parts(self) -> None:
        """Freeze the vision tower when the config says so (`DeepSightConfig.freeze_vision_tower`): the checkpoint,
        not the trainer, decides that the tower stays as stage 0 left it."""
        if self.config.freeze_vision_tower:
            for module in self.modules():
                if isinstance(module, DeepSightVisionModel):
                    module.requires_grad_(False)

    @staticmethod
    def _finalize_model_loading(model, load_config, loading_info):
        # from_pretrained puts every loaded weight in a new trainable Parameter: freeze again what the config freezes.
        loading_info = PreTrainedModel._finalize_model_loading(model, load_config, loading_info)
        if isinstance(model, DeepSightPreTrainedModel):
            model.freeze_declared_parts()
        return loading_info

    def load_state_dict(self, state_dict, *args, **kwargs):
        # Checkpoints keep the original projector keys on disk (the renaming is reversed on save); plain torch loads
        # of them, such as the Trainer's resume from a checkpoint, must rename them as from_pretrained does.
        return super().load_state_dict(with_llava_projector_keys(state_dict), *args, **kwargs)

    def save_pretrained(self, save_directory, *args, **kwargs):
        # register_for_auto_class keeps one Auto class per model class; a DeepSight folder must answer both
        # AutoModel (the backbone, as LLaVA's) and AutoModelForImageTextToText, so write both entries.
        module = DeepSightModel.__module__.split(".")[-1]
        self.config.auto_map = {
            **(getattr(self.config, "auto_map", None) or {}),
            "AutoModel": f"{module}.DeepSightModel",
            "AutoModelForImageTextToText": f"{module}.DeepSightForConditionalGeneration",
        }
        # `transformers.pipeline` builds the pipeline the config names (its file travels as a relative import of
        # this one); replaced, not merged: a saved pipeline's own registry task would make the task ambiguous.
        self.config.custom_pipelines = custom_pipelines_entry()
        return super().save_pretrained(save_directory, *args, **kwargs)


class DeepSightModel(DeepSightPreTrainedModel):
    """Depth vision tower + projector + language model backbone (no LM head); returns ``last_hidden_state``."""

    def __init__(self, config: DeepSightConfig):
        super().__init__(config)
        self.vision_tower = DeepSightVisionModel._from_config(config.vision_config)
        self.multi_modal_projector = DeepSightMultiModalProjector(config)
        self.language_model = AutoModel.from_config(config.text_config)
        self.post_init()
        self.freeze_declared_parts()

    def get_input_embeddings(self) -> nn.Module:
        return self.language_model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.language_model.set_input_embeddings(value)

    @merge_with_config_defaults
    @can_return_tuple
    @select_hidden_states("vision_feature_layer")
    def get_image_features(
        self,
        pixel_values: torch.Tensor,
        bbox_mask: torch.Tensor | None = None,
        vision_feature_layer: int | list[int] | None = None,
        vision_feature_select_strategy: str | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPooling | tuple:
        """The vision tower's output (``last_hidden_state``, and ``hidden_states`` / ``attentions`` when asked) with
        the projected image features as ``pooler_output``, [num_images, image_seq_length, text hidden size].

        As LLaVA's: only the hidden states the projector reads are captured unless all are asked for (the others
        are None), and ``return_dict=False`` gives a tuple.
        """
        image_outputs = self.vision_tower(pixel_values, bbox_mask=bbox_mask, return_dict=True, **kwargs)
        layers = [vision_feature_layer] if isinstance(vision_feature_layer, int) else list(vision_feature_layer)
        selected_features = torch.cat([image_outputs.hidden_states[layer] for layer in layers], dim=-1)
        patch_features = selected_features[:, 1:]
        pooled = pool_patch_grid(patch_features, self.config.spatial_pool_stride)
        # "default" drops CLS
        if vision_feature_select_strategy == "default":
            selected_features = pooled
        else:
            selected_features = torch.cat([selected_features[:, :1], pooled], dim=1)
        if self.config.region_token:
            region = region_mean(patch_features, bbox_mask, self.config.vision_config.patch_size)
            selected_features = torch.cat([selected_features, region.unsqueeze(1)], dim=1)
        image_outputs.pooler_output = self.multi_modal_projector(selected_features)
        return image_outputs

    def get_placeholder_mask(self, input_ids: torch.LongTensor | None, inputs_embeds: torch.Tensor) -> torch.Tensor:
        """Boolean [B, T] mask of the image placeholder positions (from ids, or by embedding when only embeds)."""
        if input_ids is not None:
            return input_ids == self.config.image_token_id
        image_embedding = self.get_input_embeddings()(
            torch.tensor(self.config.image_token_id, dtype=torch.long, device=inputs_embeds.device)
        )
        return (inputs_embeds == image_embedding).all(-1)

    def merge_image_features(
        self, inputs_embeds: torch.Tensor, image_features: torch.Tensor, placeholder_mask: torch.Tensor
    ) -> torch.Tensor:
        """Scatter the image features, in order, into the placeholder positions (LLaVA's merge)."""
        n_tokens = placeholder_mask.sum()
        num_images, per_image = image_features.shape[:2]
        # LLaVA's compile-friendly check; the message is built only when it fails
        torch_compilable_check(
            n_tokens == num_images * per_image,
            lambda: (
                f"Image features and image tokens do not match, tokens: {int(n_tokens)}, features: "
                f"{num_images * per_image} ({num_images} image(s) of {per_image}; image token id "
                f"{self.config.image_token_id}). Each <image> must be expanded to image_seq_length="
                f"{self.config.image_seq_length} tokens (DeepSightProcessor does it), one <image> per image."
            ),
        )
        image_features = image_features.to(inputs_embeds.device, inputs_embeds.dtype)
        return inputs_embeds.masked_scatter(placeholder_mask.unsqueeze(-1), image_features)

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        pixel_values: torch.FloatTensor | None = None,
        bbox_mask: torch.FloatTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        past_key_values: Cache | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        vision_feature_layer: int | list[int] | None = None,
        vision_feature_select_strategy: str | None = None,
        **kwargs,
    ) -> DeepSightModelOutputWithPast:
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("Pass exactly one of `input_ids` or `inputs_embeds`.")
        if inputs_embeds is None:
            inputs_embeds = self.get_input_embeddings()(input_ids)
        if bbox_mask is not None and pixel_values is None:
            raise ValueError("`bbox_mask` was given without `pixel_values`; pass the depth maps it belongs to.")

        image_features = None
        if pixel_values is not None:
            image_features = self.get_image_features(
                pixel_values,
                bbox_mask=bbox_mask,
                vision_feature_layer=vision_feature_layer,
                vision_feature_select_strategy=vision_feature_select_strategy,
                return_dict=True,
            ).pooler_output
            placeholder_mask = self.get_placeholder_mask(input_ids, inputs_embeds)
            inputs_embeds = self.merge_image_features(inputs_embeds, image_features, placeholder_mask)
        # Without pixel_values, image-token ids are ordinary tokens (LLaVA's behaviour): a decode step after the
        # prefill consumed the images may emit that id.

        outputs = self.language_model(
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=past_key_values,
            inputs_embeds=inputs_embeds,
            **kwargs,
        )
        return DeepSightModelOutputWithPast(
            last_hidden_state=outputs.last_hidden_state,
            past_key_values=outputs.past_key_values,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            image_hidden_states=image_features,
        )


class DeepSightForConditionalGeneration(DeepSightPreTrainedModel, GenerationMixin):
    """DeepSight: answer questions about depth maps (and object regions in them).

    ``forward(input_ids, pixel_values, bbox_mask, attention_mask, labels, ...)`` and ``generate(**processor_outputs)``
    work like `LlavaForConditionalGeneration`; ``bbox_mask`` goes next to ``pixel_values`` (both are only used on the
    first step of a cached generation).
    """

    _tied_weights_keys = {"lm_head.weight": "model.language_model.embed_tokens.weight"}
    # The language model's own plan shards its embedding by vocabulary; the tied head must follow (LLaVA's plan).
    _tp_plan = {"lm_head": "colwise_gather_output"}

    def __init__(self, config: DeepSightConfig):
        super().__init__(config)
        self.model = DeepSightModel(config)
        self.lm_head = nn.Linear(config.text_config.hidden_size, config.text_config.vocab_size, bias=False)
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.model.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Module:
        return self.lm_head

    def set_output_embeddings(self, new_embeddings: nn.Module) -> None:
        self.lm_head = new_embeddings

    def get_image_features(self, pixel_values: torch.Tensor, bbox_mask: torch.Tensor | None = None, **kwargs):
        return self.model.get_image_features(pixel_values, bbox_mask=bbox_mask, **kwargs)

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        pixel_values: torch.FloatTensor | None = None,
        bbox_mask: torch.FloatTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        past_key_values: Cache | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        vision_feature_layer: int | list[int] | None = None,
        vision_feature_select_strategy: str | None = None,
        labels: torch.LongTensor | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        **kwargs,
    ) -> DeepSightCausalLMOutputWithPast:
        r"""
        labels (`torch.LongTensor` of shape `(batch_size, sequence_length)`, *optional*):
            Next-token targets (shifted inside the loss); ``-100`` is ignored.

        Example:

        ```python
        >>> from transformers import AutoModelForImageTextToText, AutoProcessor
        >>> model = AutoModelForImageTextToText.from_pretrained("path/to/deepsight", trust_remote_code=True)
        >>> processor = AutoProcessor.from_pretrained("path/to/deepsight", trust_remote_code=True)
        >>> inputs = processor(images=[depth_metres], text=["<image>\nHow far is the chair?"], boxes=[[[10, 20, 60, 90]]],
        ...                    return_tensors="pt")
        >>> answer = processor.batch_decode(model.generate(**inputs, max_new_tokens=20), skip_special_tokens=True)
        ```"""
        outputs = self.model(
            input_ids=input_ids,
            pixel_values=pixel_values,
            bbox_mask=bbox_mask,
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=past_key_values,
            inputs_embeds=inputs_embeds,
            vision_feature_layer=vision_feature_layer,
            vision_feature_select_strategy=vision_feature_select_strategy,
            **kwargs,
        )
        hidden_states = slice_logits_to_keep(outputs.last_hidden_state, logits_to_keep)
        logits = self.lm_head(hidden_states)

        loss = None
        if labels is not None:
            loss = self.loss_function(
                logits=logits, labels=labels, vocab_size=self.config.text_config.vocab_size, **kwargs
            )
        return DeepSightCausalLMOutputWithPast(
            loss=loss,
            logits=logits,
            past_key_values=outputs.past_key_values,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            image_hidden_states=outputs.image_hidden_states,
        )

    def prepare_inputs_for_generation(self, *args, **kwargs):
        model_inputs = super().prepare_inputs_for_generation(*args, **kwargs)
        # generate() drops pixel_values after the prefill of a cached generation; the mask belongs to them.
        if model_inputs.get("pixel_values") is None:
            model_inputs.pop("bbox_mask", None)
        return model_inputs


# --------------------------------------------------------------------------------------------------
# Stage-0 dual encoder
# --------------------------------------------------------------------------------------------------


@dataclass
class DeepSightDualEncoderOutput(ModelOutput):
    r"""
    loss (`torch.FloatTensor`, *optional*): CLIP's symmetric contrastive loss, when `return_loss`.
    logits_per_image (`torch.FloatTensor` `(n_images, n_texts)`): scaled cosine similarities.
    logits_per_text (`torch.FloatTensor` `(n_texts, n_images)`): the transpose.
    image_embeds, text_embeds (`torch.FloatTensor`): L2-normalised projected embeddings.
    """

    loss: torch.FloatTensor | None = None
    logits_per_image: torch.FloatTensor | None = None
    logits_per_text: torch.FloatTensor | None = None
    image_embeds: torch.FloatTensor | None = None
    text_embeds: torch.FloatTensor | None = None


class DeepSightDualEncoder(PreTrainedModel):
    """Stage 0 (paper §5): train the depth tower against a frozen text encoder with CLIP's contrastive loss.

    ``vision_model`` is a `DeepSightVisionModel`, ``text_model`` any `AutoModel` text encoder (CLIP text by default,
    BERT-like encoders allowed); ``visual_projection`` / ``text_projection`` map both to ``projection_dim`` and a
    learnable ``logit_scale`` sets the temperature. The trained ``vision_model`` is what
    `DeepSightForConditionalGeneration` uses as its ``vision_tower`` (same class, same weights names).
    """

    config: DeepSightDualEncoderConfig
    config_class = DeepSightDualEncoderConfig
    base_model_prefix = "deepsight_dual_encoder"
    main_input_name = "pixel_values"
    input_modalities = ("image", "text")
    supports_gradient_checkpointing = True
    _no_split_modules = ["DeepSightVisionEmbeddings", "CLIPEncoderLayer"]
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_attention_backend = True

    def __init__(self, config: DeepSightDualEncoderConfig):
        super().__init__(config)
        self.vision_model = DeepSightVisionModel._from_config(config.vision_config)
        self.text_model = AutoModel.from_config(config.text_config)
        self.visual_projection = nn.Linear(config.vision_config.hidden_size, config.projection_dim, bias=False)
        self.text_projection = nn.Linear(config.text_config.hidden_size, config.projection_dim, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(config.logit_scale_init_value))
        self.post_init()
        if config.freeze_text_encoder:
            self.text_model.requires_grad_(False)

    @torch.no_grad()
    def _init_weights(self, module):
        super()._init_weights(module)
        if module is self:
            init.constant_(module.logit_scale, self.config.logit_scale_init_value)
            init.normal_(module.visual_projection.weight, std=self.config.vision_config.hidden_size**-0.5)
            init.normal_(module.text_projection.weight, std=self.config.text_config.hidden_size**-0.5)

    @can_return_tuple
    def get_image_features(
        self, pixel_values: torch.Tensor, bbox_mask: torch.Tensor | None = None, **kwargs
    ) -> BaseModelOutputWithPooling:
        """The vision tower's output, its ``pooler_output`` replaced by the projected (not normalised) CLS embeddings.

        As `CLIPModel`: ``kwargs`` (``output_hidden_states``, ``output_attentions``) go to the tower.
        """
        vision_outputs = self.vision_model(pixel_values=pixel_values, bbox_mask=bbox_mask, return_dict=True, **kwargs)
        vision_outputs.pooler_output = self.visual_projection(vision_outputs.pooler_output)
        return vision_outputs

    @can_return_tuple
    def get_text_features(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPooling:
        """The text encoder's output, its ``pooler_output`` replaced by the projected (not normalised) embeddings.

        Pooled as ``config.text_pooling``; ``token_type_ids`` (BERT-like tokenizers return them) are passed on when
        given, ``kwargs`` (``output_hidden_states``, ``output_attentions``) go to the encoder, as in `CLIPModel`.
        """
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        extra = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        text_outputs = self.text_model(
            input_ids=input_ids, attention_mask=attention_mask, return_dict=True, **extra, **kwargs
        )
        text_embeds = self.text_projection(self._pool_text(text_outputs, attention_mask))
        if not hasattr(text_outputs, "pooler_output"):  # encoders without a pooler return a plain `BaseModelOutput`
            text_outputs = BaseModelOutputWithPooling(**text_outputs)
        text_outputs.pooler_output = text_embeds
        return text_outputs

    def _pool_text(self, outputs: ModelOutput, attention_mask: torch.Tensor) -> torch.Tensor:
        pooling = self.config.resolved_text_pooling
        if pooling == "pooler":
            if getattr(outputs, "pooler_output", None) is None:
                raise ValueError(
                    f"text_pooling='pooler' but {type(self.text_model).__name__} returns no pooler_output; "
                    "use text_pooling='mean' or 'cls'."
                )
            return outputs.pooler_output
        hidden = outputs.last_hidden_state
        if pooling == "cls":
            return hidden[:, 0]
        weights = attention_mask.to(hidden.dtype).unsqueeze(-1)
        return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)

    @can_return_tuple
    def forward(
        self,
        pixel_values: torch.FloatTensor,
        bbox_mask: torch.FloatTensor | None = None,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        return_loss: bool = True,
        token_type_ids: torch.Tensor | None = None,
        **kwargs,
    ) -> DeepSightDualEncoderOutput:
        if input_ids is None:
            raise ValueError("`input_ids` (the captions) are required by the dual encoder.")
        # return_dict=True: the getters would otherwise follow `config.return_dict` and hand back tuples
        image_embeds = self.get_image_features(pixel_values, bbox_mask, return_dict=True).pooler_output
        text_embeds = self.get_text_features(input_ids, attention_mask, token_type_ids, return_dict=True).pooler_output
        image_embeds = image_embeds / image_embeds.norm(p=2, dim=-1, keepdim=True)
        text_embeds = text_embeds / text_embeds.norm(p=2, dim=-1, keepdim=True)
        logits_per_text = text_embeds @ image_embeds.t() * self.logit_scale.exp()
        logits_per_image = logits_per_text.t()
        loss = image_text_contrastive_loss(logits_per_text) if return_loss else None
        return DeepSightDualEncoderOutput(
            loss=loss,
            logits_per_image=logits_per_image,
            logits_per_text=logits_per_text,
            image_embeds=image_embeds,
            text_embeds=text_embeds,
        )


# `save_pretrained` copies this file (and its relative imports) and writes `auto_map` for trust_remote_code.
DeepSightVisionModel.register_for_auto_class("AutoModel")
DeepSightModel.register_for_auto_class("AutoModel")
DeepSightForConditionalGeneration.register_for_auto_class("AutoModelForImageTextToText")
DeepSightDualEncoder.register_for_auto_class("AutoModel")

# from_pretrained renames the projector keys of older folders for every `deepsight` model, as transformers does for
# its own models (overwrite: this file is imported again under another name when loaded with trust_remote_code).
register_checkpoint_conversion_mapping(DeepSightConfig.model_type, [LEGACY_PROJECTOR_RENAMING], overwrite=True)


__all__ = [
    "DeepSightVisionModel",
    "DeepSightVisionPreTrainedModel",
    "DeepSightPreTrainedModel",
    "DeepSightModel",
    "DeepSightForConditionalGeneration",
    "DeepSightDualEncoder",
    "DeepSightMultiModalProjector",
    "DeepSightModelOutputWithPast",
    "DeepSightCausalLMOutputWithPast",
    "DeepSightDualEncoderOutput",
]
