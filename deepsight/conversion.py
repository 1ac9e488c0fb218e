"""Checkpoint conversion: DeepSight models built from CLIP, causal-LM and stage-0 checkpoints.

The depth tower is CLIP's vision transformer with a Depth Conv (one channel per depth transform) and a Bbox Conv in
place of the RGB patch embedding. `vision_model_from_clip` converts CLIP's weights so that, at initialisation, the
tower on a depth map with an all-ones mask computes exactly what CLIP computes on that map repeated to three channels
(Depth Conv = CLIP's RGB kernels summed over the colour channels, Bbox Conv = 0)::

    from deepsight.conversion import deepsight_from_pretrained_components
    model = deepsight_from_pretrained_components("openai/clip-vit-large-patch14-336", "lmsys/vicuna-7b-v1.5")

LLaVA-1.5 (CLIP ViT-L/14-336 + Vicuna-7B + a projector aligned on image-text pairs: the paper's components) is the
recommended start: `deepsight_from_llava` keeps its language model and projector and converts its CLIP tower the
same way, so the model starts where that LLaVA is, on depth::

    from deepsight.conversion import deepsight_from_llava, deepsight_processor_from_llava
    model = deepsight_from_llava("llava-hf/llava-1.5-7b-hf")
    processor = deepsight_processor_from_llava("llava-hf/llava-1.5-7b-hf", model.config)

The conversion lives here, not in ``modeling_deepsight/`` (the files a checkpoint carries for trust_remote_code):
a converted model is saved with `save_pretrained` and loads with `from_pretrained` like any other.
"""

from __future__ import annotations

import os

import torch
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoProcessor,
    CLIPModel,
    CLIPVisionModel,
    LlavaForConditionalGeneration,
)
from transformers.configuration_utils import PreTrainedConfig
from transformers.processing_utils import ProcessorMixin

from deepsight.checkpoints import load_pretrained
from deepsight.tiny import left_padding_copy
from modeling_deepsight import (
    DeepSightConfig,
    DeepSightDualEncoder,
    DeepSightDualEncoderConfig,
    DeepSightForConditionalGeneration,
    DeepSightImageProcessor,
    DeepSightProcessor,
    DeepSightVisionConfig,
    DeepSightVisionModel,
)
from modeling_deepsight.modeling_deepsight import DeepSightMultiModalProjector
from modeling_deepsight.processing_deepsight import DEFAULT_CHAT_TEMPLATE


def _load_clip_vision(clip_vision: str | os.PathLike | CLIPVisionModel | CLIPModel) -> CLIPVisionModel:
    """The vision half of a CLIP checkpoint: a `CLIPModel` or `CLIPVisionModel`, by name, path or instance."""
    if isinstance(clip_vision, CLIPModel):
        return clip_vision.vision_model
    if isinstance(clip_vision, CLIPVisionModel):
        return clip_vision
    if isinstance(clip_vision, (str, os.PathLike)):
        # A whole-CLIP checkpoint loads cleanly as CLIPModel (as CLIPVisionModel its text weights are "unexpected").
        if AutoConfig.from_pretrained(clip_vision).model_type == "clip":
            return load_pretrained(CLIPModel, clip_vision).vision_model
        return load_pretrained(CLIPVisionModel, clip_vision)
    raise ValueError(
        f"`clip_vision` must be a CLIP checkpoint name/path, a CLIPModel or a CLIPVisionModel; got {type(clip_vision)}."
    )


def depth_state_dict_from_clip_vision(clip_state: dict, depth_state: dict) -> dict:
    """CLIP vision weights -> DeepSight vision weights (Depth Conv = RGB kernels summed and shared by the depth
    channels, Bbox Conv = 0)."""
    converted = {}
    for key, target in depth_state.items():
        if key == "embeddings.bbox_embedding.weight":
            converted[key] = torch.zeros_like(target)
        elif key == "embeddings.patch_embedding.weight":
            num_channels = target.shape[1]
            gray_kernel = clip_state[key].sum(dim=1, keepdim=True)
            converted[key] = gray_kernel.repeat(1, num_channels, 1, 1) / num_channels
        else:
            converted[key] = clip_state[key]
    return converted


def vision_model_from_clip(
    clip_vision: str | os.PathLike | CLIPVisionModel | CLIPModel, **config_kwargs
) -> DeepSightVisionModel:
    """Build the depth tower from a CLIP checkpoint (a `CLIPModel` or `CLIPVisionModel`, name, path or instance).

    The Depth Conv kernel is CLIP's RGB patch kernel summed over the three colour channels (and shared equally by
    the ``num_channels`` depth channels) and the Bbox Conv is zero, so on a depth map ``d`` with the default all-ones
    mask the output equals CLIP's on ``d.repeat(1, 3, 1, 1)``; with several channels, when they all hold ``d``.
    Every other weight is CLIP's, unchanged. ``config_kwargs`` override fields of the converted
    `DeepSightVisionConfig` that keep CLIP's weight shapes (e.g. ``attention_dropout``), and ``num_channels``.
    """
    clip = _load_clip_vision(clip_vision)
    config = DeepSightVisionConfig.from_clip_vision_config(clip.config, **config_kwargs)
    model = DeepSightVisionModel(config).to(clip.dtype)
    model.load_state_dict(depth_state_dict_from_clip_vision(clip.state_dict(), model.state_dict()))
    return model


def vision_model_from_checkpoint(name_or_path: str | os.PathLike, **config_kwargs) -> DeepSightVisionModel:
    """The depth tower from any checkpoint that holds one, by name or path.

    * a CLIP checkpoint (`CLIPModel` / `CLIPVisionModel`): converted with `vision_model_from_clip`;
    * a DeepSight vision tower, a stage-0 `DeepSightDualEncoder` (its ``vision_model``) or a DeepSight VLM (its
      ``vision_tower``): loaded as trained, so stage 1 starts from the stage-0 encoder. A ``num_channels`` in
      ``config_kwargs`` must then be the tower's own (its Depth Conv was trained for that many channels).
    """
    model_type = PreTrainedConfig.get_config_dict(name_or_path)[0].get("model_type")
    if model_type in ("clip", "clip_vision_model"):
        return vision_model_from_clip(name_or_path, **config_kwargs)
    num_channels = config_kwargs.pop("num_channels", None)
    if model_type == DeepSightVisionConfig.model_type:
        tower = load_pretrained(DeepSightVisionModel, name_or_path, **config_kwargs)
    elif model_type == DeepSightDualEncoderConfig.model_type:
        tower = load_pretrained(DeepSightDualEncoder, name_or_path).vision_model
    elif model_type == DeepSightConfig.model_type:
        tower = load_pretrained(DeepSightForConditionalGeneration, name_or_path).model.vision_tower
    else:
        raise ValueError(
            f"`{name_or_path}` is a {model_type!r} checkpoint; expected CLIP, a DeepSight vision tower, a DeepSight "
            "dual encoder or a DeepSight model."
        )
    if num_channels is not None and num_channels != tower.config.num_channels:
        raise ValueError(
            f"`{name_or_path}` holds a vision tower trained on {tower.config.num_channels} depth channel(s); "
            f"got num_channels={num_channels} (one per depth transform of the processor)."
        )
    return tower


def deepsight_from_pretrained_components(
    vision_model_name_or_path: str | os.PathLike,
    text_model_name_or_path: str | os.PathLike,
    image_token_id: int | None = None,
    text_model_kwargs: dict | None = None,
    vision_model_kwargs: dict | None = None,
    **config_kwargs,
) -> DeepSightForConditionalGeneration:
    """Build DeepSight from a CLIP checkpoint (vision) and a causal-LM checkpoint, by Hub name or local path.

    A CLIP vision tower is converted with `vision_model_from_clip` (CLIP-equivalent at init on depth repeated to
    RGB); the language model and its head are loaded unchanged and used as they are (the model is assembled around
    them, without a second copy in memory); the projector is freshly initialised (train it in stage 1). Returned in
    eval mode, like `from_pretrained`.

    Args:
        vision_model_name_or_path: a `CLIPModel` / `CLIPVisionModel` checkpoint (converted), or a stage-0
            `DeepSightDualEncoder` / `DeepSightVisionModel` folder (loaded as trained); see
            `vision_model_from_checkpoint`.
        text_model_name_or_path: any `AutoModelForCausalLM` checkpoint (Llama, Qwen2, SmolLM, ...).
        image_token_id: id of ``<image>`` in the tokenizer you will use. ``None`` appends one token to the
            LM's vocabulary (id = its current vocab size); ids beyond the vocabulary grow the embeddings.
            ``deepsight model build`` adds the token to the tokenizer and builds the matching processor.
        text_model_kwargs: extra `from_pretrained` arguments of the language model (``gguf_file``, ``dtype``...).
        vision_model_kwargs: vision config fields for a converted CLIP tower (e.g. ``num_channels=2`` for a
            processor with two depth transforms); a trained DeepSight tower keeps its own.
        **config_kwargs: other `DeepSightConfig` fields (``vision_feature_layer``, ``projector_depth``, ...).
    """
    vision_tower = vision_model_from_checkpoint(vision_model_name_or_path, **(vision_model_kwargs or {}))
    language_model = load_pretrained(AutoModelForCausalLM, text_model_name_or_path, **(text_model_kwargs or {}))
    vocab_size = language_model.config.vocab_size
    if image_token_id is None:
        image_token_id = vocab_size
    if image_token_id >= vocab_size:
        language_model.resize_token_embeddings(image_token_id + 1)
    config = DeepSightConfig(
        vision_config=vision_tower.config,
        text_config=language_model.config,
        image_token_id=image_token_id,
        **config_kwargs,
    )
    # Build the skeleton on the meta device and plug the loaded modules in: no second copy of the LM in memory.
    with torch.device("meta"):
        model = DeepSightForConditionalGeneration(config)
    model.model.vision_tower = vision_tower.to(language_model.dtype)
    model.model.language_model = language_model.base_model
    model.lm_head = language_model.get_output_embeddings()
    projector = DeepSightMultiModalProjector(config)
    projector.apply(model._init_weights)
    model.model.multi_modal_projector = projector.to(language_model.dtype)
    if config.tie_word_embeddings:
        model.tie_weights()
    model.generation_config = language_model.generation_config
    return model.eval()  # like from_pretrained (the loaded parts already are)


def deepsight_config_from_llava(
    llava_config: PreTrainedConfig, vision_config: DeepSightVisionConfig, **config_kwargs
) -> DeepSightConfig:
    """The `DeepSightConfig` of a `LlavaConfig`: its LM, image token, feature selection and projector (Linear, act,
    Linear). ``image_seq_length`` follows from the tower (LLaVA's config field is not read by its model)."""
    from_llava = {
        "vision_config": vision_config,
        "text_config": llava_config.text_config,
        "image_token_id": llava_config.image_token_id,
        "vision_feature_layer": llava_config.vision_feature_layer,
        "vision_feature_select_strategy": llava_config.vision_feature_select_strategy,
        "projector_type": "mlp",
        "projector_depth": 2,
        "projector_hidden_act": llava_config.projector_hidden_act,
        "multimodal_projector_bias": llava_config.multimodal_projector_bias,
        "tie_word_embeddings": llava_config.tie_word_embeddings,
    }
    return DeepSightConfig(**{**from_llava, **config_kwargs})


def deepsight_from_llava(
    llava: str | os.PathLike | LlavaForConditionalGeneration,
    llava_model_kwargs: dict | None = None,
    vision_model_kwargs: dict | None = None,
    **config_kwargs,
) -> DeepSightForConditionalGeneration:
    """Build DeepSight from a `LlavaForConditionalGeneration` checkpoint (Hub name, local path or instance).

    Its language model, LM head and projector are used as they are (the projector's module names are LLaVA's);
    its CLIP tower is converted with `vision_model_from_clip` (Depth Conv = RGB kernels summed, Bbox Conv = 0). So at
    initialisation DeepSight on a depth map with the all-ones mask gives that LLaVA's logits on the same pixel tensor
    repeated to three channels. Returned in eval mode, like `from_pretrained`.

    Args:
        llava: e.g. ``"llava-hf/llava-1.5-7b-hf"`` (CLIP ViT-L/14-336 + Vicuna-7B + aligned projector).
        llava_model_kwargs: extra `from_pretrained` arguments of the LLaVA (``dtype``...).
        vision_model_kwargs: vision config fields of the converted tower (``num_channels=2`` for a processor
            with two depth transforms).
        **config_kwargs: other `DeepSightConfig` fields that keep LLaVA's weight shapes (``region_token``,
            ``spatial_pool_stride``...).
    """
    if not isinstance(llava, LlavaForConditionalGeneration):
        llava = load_pretrained(LlavaForConditionalGeneration, llava, **(llava_model_kwargs or {}))
    vision_tower = vision_model_from_clip(llava.model.vision_tower, **(vision_model_kwargs or {}))
    config = deepsight_config_from_llava(llava.config, vision_tower.config, **config_kwargs)
    # The skeleton on the meta device, LLaVA's modules plugged in: no second copy of the LM in memory.
    with torch.device("meta"):
        model = DeepSightForConditionalGeneration(config)
    model.model.vision_tower = vision_tower.to(llava.dtype)
    model.model.language_model = llava.model.language_model
    model.model.multi_modal_projector.load_state_dict(llava.model.multi_modal_projector.state_dict(), assign=True)
    model.lm_head = llava.lm_head
    if config.tie_word_embeddings:
        model.tie_weights()
    model.generation_config = llava.generation_config
    return model.eval()


def deepsight_processor_from_llava(
    llava_processor: str | os.PathLike | ProcessorMixin, config: DeepSightConfig, **image_processor_kwargs
) -> DeepSightProcessor:
    """A `DeepSightProcessor` for a model made by `deepsight_from_llava`: the LLaVA processor's tokenizer, image token
    and chat template, and a `DeepSightImageProcessor` of the tower's image size (``image_processor_kwargs``:
    ``depth_transform``...)."""
    if not isinstance(llava_processor, ProcessorMixin):
        llava_processor = AutoProcessor.from_pretrained(llava_processor)
    tokenizer = llava_processor.tokenizer
    image_token = getattr(llava_processor, "image_token", None) or "<image>"
    if tokenizer.convert_tokens_to_ids(image_token) != config.image_token_id:
        raise ValueError(
            f"The LLaVA processor's image token {image_token!r} has id {tokenizer.convert_tokens_to_ids(image_token)} "
            f"but the model's `image_token_id` is {config.image_token_id}: processor and model are not one checkpoint."
        )
    if tokenizer.pad_token is None:  # batched training pads; as `deepsight model build` does for any LM
        tokenizer.pad_token = tokenizer.eos_token
    image_processor = DeepSightImageProcessor(size=config.vision_config.image_size, **image_processor_kwargs)
    return DeepSightProcessor(
        image_processor=image_processor,
        tokenizer=left_padding_copy(tokenizer),  # as LLaVA-hf saves it: batched generate
        image_token=image_token,
        image_seq_length=config.image_seq_length,
        chat_template=llava_processor.chat_template or tokenizer.chat_template or DEFAULT_CHAT_TEMPLATE,
    )


def dual_encoder_from_clip(clip_name_or_path: str | os.PathLike | CLIPModel, **config_kwargs) -> DeepSightDualEncoder:
    """Whole-CLIP start: depth tower converted from CLIP's vision model, CLIP's text model and both projections.

    At initialisation the image embedding of a depth map (all-ones mask) equals CLIP's image embedding of that map
    repeated to RGB, so stage 0 starts from CLIP's aligned space.
    """
    clip = (
        clip_name_or_path if isinstance(clip_name_or_path, CLIPModel) else load_pretrained(CLIPModel, clip_name_or_path)
    )
    vision = vision_model_from_clip(clip.vision_model)
    config_kwargs.setdefault("logit_scale_init_value", float(clip.logit_scale.detach()))
    config = DeepSightDualEncoderConfig(
        vision_config=vision.config,
        text_config=clip.text_model.config,
        projection_dim=clip.config.projection_dim,
        **config_kwargs,
    )
    model = DeepSightDualEncoder(config).to(clip.dtype)
    model.vision_model.load_state_dict(vision.state_dict())
    model.text_model.load_state_dict(clip.text_model.state_dict())
    model.visual_projection.load_state_dict(clip.visual_projection.state_dict())
    model.text_projection.load_state_dict(clip.text_projection.state_dict())
    return model


def dual_encoder_from_vision_text(
    vision_model_name_or_path: str | os.PathLike,
    text_model_name_or_path: str | os.PathLike,
    projection_dim: int = 512,
    **config_kwargs,
) -> DeepSightDualEncoder:
    """Depth tower from a CLIP (vision) checkpoint + any `AutoModel` text encoder; projections start fresh."""
    vision = vision_model_from_checkpoint(vision_model_name_or_path)
    text_model = load_pretrained(AutoModel, text_model_name_or_path)
    config = DeepSightDualEncoderConfig(
        vision_config=vision.config,
        text_config=text_model.config,
        projection_dim=projection_dim,
        **config_kwargs,
    )
    model = DeepSightDualEncoder(config)
    model.vision_model.load_state_dict(vision.state_dict())
    model.text_model.load_state_dict(text_model.state_dict())
    return model


__all__ = [
    "deepsight_config_from_llava",
    "deepsight_from_llava",
    "deepsight_from_pretrained_components",
    "deepsight_processor_from_llava",
    "depth_state_dict_from_clip_vision",
    "dual_encoder_from_clip",
    "dual_encoder_from_vision_text",
    "vision_model_from_checkpoint",
    "vision_model_from_clip",
]
