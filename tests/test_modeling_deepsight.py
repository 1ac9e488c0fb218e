"""DeepSight models: vision tower, LLaVA-style VLM, dual encoder (conversion: tests/test_conversion.py)."""

from __future__ import annotations

import copy

import pytest
import torch
from huggingface_hub.errors import StrictDataclassClassValidationError
from transformers import AutoModel, AutoModelForImageTextToText, AutoProcessor, BertConfig

from deepsight.tiny import build_tiny_deepsight, build_tiny_dual_encoder, tiny_vision_config
from modeling_deepsight import (
    DeepSightConfig,
    DeepSightDualEncoder,
    DeepSightDualEncoderConfig,
    DeepSightForConditionalGeneration,
    DeepSightModel,
    DeepSightVisionModel,
)


def _prompt_inputs(processor, depth_maps, texts, boxes=None, **kwargs):
    return processor(images=depth_maps, text=texts, boxes=boxes, return_tensors="pt", **kwargs)


def _with_random_bbox_conv(vision_model: DeepSightVisionModel, seed: int = 0) -> DeepSightVisionModel:
    model = copy.deepcopy(vision_model)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        weight = model.embeddings.bbox_embedding.weight
        weight.copy_(torch.randn(weight.shape, generator=generator) * 0.5)
    return model


# --------------------------------------------------------------------------------------------------
# Vision tower
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("num_channels", [0, 4])
def test_vision_config_refuses_a_channel_count_no_depth_transform_list_gives(num_channels):
    with pytest.raises((ValueError, StrictDataclassClassValidationError), match="`num_channels` must be 1 to 3"):
        tiny_vision_config(num_channels=num_channels)


@torch.no_grad()
def test_default_mask_equals_explicit_all_ones_mask_with_nonzero_bbox_conv():
    model = _with_random_bbox_conv(DeepSightVisionModel(tiny_vision_config()).eval())
    depth = torch.randn(2, 1, 32, 32)
    default = model(depth).last_hidden_state
    explicit = model(depth, bbox_mask=torch.ones_like(depth)).last_hidden_state
    torch.testing.assert_close(default, explicit, atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_bbox_conv_is_zero_at_init_so_the_mask_is_ignored_until_trained():
    model = DeepSightVisionModel(tiny_vision_config()).eval()
    assert torch.count_nonzero(model.embeddings.bbox_embedding.weight) == 0
    depth = torch.randn(1, 1, 32, 32)
    mask = torch.zeros_like(depth)
    mask[..., :8, :8] = 1
    torch.testing.assert_close(model(depth, bbox_mask=mask).last_hidden_state, model(depth).last_hidden_state)


@torch.no_grad()
def test_mask_changes_embeddings_exactly_at_patches_inside_the_box_and_keeps_shapes():
    model = _with_random_bbox_conv(DeepSightVisionModel(tiny_vision_config(image_size=32, patch_size=8)).eval())
    depth = torch.randn(1, 1, 32, 32)
    box_mask = torch.zeros_like(depth)
    box_mask[..., 8:16, 16:32] = 1  # patch rows 1, patch columns 2-3 of the 4x4 grid
    no_object = torch.zeros_like(depth)

    with_box = model.embeddings(depth, box_mask)
    without = model.embeddings(depth, no_object)
    assert with_box.shape == without.shape == (1, 1 + 16, 64)
    changed = (with_box - without).abs().amax(-1)[0, 1:].reshape(4, 4) > 1e-6
    expected = torch.zeros(4, 4, dtype=torch.bool)
    expected[1, 2:4] = True
    assert torch.equal(changed, expected)
    assert (with_box[0, 0] == without[0, 0]).all()  # CLS untouched

    outputs_box = model(depth, bbox_mask=box_mask)
    outputs_none = model(depth, bbox_mask=no_object)
    assert outputs_box.last_hidden_state.shape == outputs_none.last_hidden_state.shape == (1, 17, 64)
    assert not torch.allclose(outputs_box.pooler_output, outputs_none.pooler_output)


@pytest.mark.parametrize(
    "pixel_values, bbox_mask, message",
    [
        (torch.zeros(1, 32, 32), None, "pixel_values"),
        (torch.zeros(1, 3, 32, 32), None, "one depth channel"),
        (torch.zeros(1, 1, 32, 32), torch.zeros(1, 1, 16, 16), "bbox_mask"),
        (torch.zeros(1, 1, 64, 64), None, "expects 32x32"),
    ],
)
def test_vision_model_rejects_bad_shapes(pixel_values, bbox_mask, message):
    model = DeepSightVisionModel(tiny_vision_config())
    with pytest.raises(ValueError, match=message):
        model(pixel_values, bbox_mask=bbox_mask)


# --------------------------------------------------------------------------------------------------
# Vision-language model
# --------------------------------------------------------------------------------------------------


def test_config_derives_and_checks_image_seq_length():
    config = DeepSightConfig(vision_config=tiny_vision_config(image_size=32, patch_size=8).to_dict())
    assert config.image_seq_length == 16
    full = DeepSightConfig(vision_config=tiny_vision_config().to_dict(), vision_feature_select_strategy="full")
    assert full.image_seq_length == 17
    region = DeepSightConfig(vision_config=tiny_vision_config().to_dict(), region_token=True)
    assert region.image_seq_length == config.image_seq_length + 1
    with pytest.raises(ValueError, match="image_seq_length"):
        DeepSightConfig(vision_config=tiny_vision_config().to_dict(), image_seq_length=10)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"projector_type": "conv"}, "projector_type"),
        ({"vision_feature_select_strategy": "cls"}, "vision_feature_select_strategy"),
        ({"vision_feature_layer": 7}, "vision_feature_layer"),
        ({"projector_depth": 0}, "projector_depth"),
        ({"spatial_pool_stride": 3}, "spatial_pool_stride"),  # the tiny tower's grid is 4x4
    ],
)
def test_config_rejects_invalid_fields_naming_them(kwargs, message):
    # transformers' strict configs wrap the validator's ValueError (the message names the field)
    with pytest.raises((ValueError, StrictDataclassClassValidationError), match=message):
        DeepSightConfig(vision_config=tiny_vision_config().to_dict(), **kwargs)


@torch.no_grad()
def test_batched_left_padded_forward_equals_one_by_one(tiny_deepsight, depth_maps):
    model, processor = tiny_deepsight
    texts = ["<|user|>\n<image>\nHow far is the chair from the camera?<|assistant|>\n", "<image>\nRoom?"]
    boxes = [[[4, 2, 30, 30]], []]
    batch = _prompt_inputs(processor, depth_maps[:2], texts, boxes, padding=True, padding_side="left")
    assert (batch["attention_mask"][1] == 0).any(), "the second prompt must be padded"
    batched_logits = model(**batch).logits[:, -1]
    for i in range(2):
        single = _prompt_inputs(processor, [depth_maps[i]], [texts[i]], [boxes[i]])
        torch.testing.assert_close(model(**single).logits[0, -1], batched_logits[i], atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_batched_generation_with_left_padding_equals_one_by_one(tiny_deepsight, depth_maps):
    model, processor = tiny_deepsight
    texts = ["<image>\nIs the path ahead clear of obstacles?", "<image>\nRoom?"]
    batch = _prompt_inputs(processor, depth_maps[:2], texts, padding=True, padding_side="left")
    batched = model.generate(**batch, max_new_tokens=6, do_sample=False)[:, batch["input_ids"].shape[1] :]
    for i in range(2):
        single = _prompt_inputs(processor, [depth_maps[i]], [texts[i]])
        alone = model.generate(**single, max_new_tokens=6, do_sample=False)[0, single["input_ids"].shape[1] :]
        # a sequence that ends early is padded in the batch
        assert batched[i, : len(alone)].tolist() == alone.tolist()
        assert set(batched[i, len(alone) :].tolist()) <= {processor.tokenizer.pad_token_id}


@torch.no_grad()
def test_generate_with_kv_cache_equals_generate_without(tiny_deepsight, depth_maps):
    model, processor = tiny_deepsight
    inputs = _prompt_inputs(processor, [depth_maps[0]], ["<image>\nHow far?"], [[[0, 0, 20, 20]]])
    cached = model.generate(**inputs, max_new_tokens=8, do_sample=False, use_cache=True)
    uncached = model.generate(**inputs, max_new_tokens=8, do_sample=False, use_cache=False)
    assert cached.tolist() == uncached.tolist()


@torch.no_grad()
def test_generation_uses_the_bbox_mask(tiny_deepsight, depth_maps):
    model, processor = tiny_deepsight
    model = copy.deepcopy(model)
    _randomised = _with_random_bbox_conv(model.model.vision_tower)
    model.model.vision_tower.load_state_dict(_randomised.state_dict())
    whole = _prompt_inputs(processor, [depth_maps[0]], ["<image>\nWhat is this?"])
    boxed = _prompt_inputs(processor, [depth_maps[0]], ["<image>\nWhat is this?"], [[[0, 0, 16, 16]]])
    logits_whole = model(**whole).logits[0, -1]
    logits_boxed = model(**boxed).logits[0, -1]
    assert not torch.allclose(logits_whole, logits_boxed)


@torch.no_grad()
def test_save_and_load_round_trip_keeps_outputs(tiny_deepsight, tiny_deepsight_dir, depth_maps):
    model, processor = tiny_deepsight
    inputs = _prompt_inputs(processor, [depth_maps[0]], ["<image>\nHow far?"], [[[0, 0, 30, 20]]])
    reloaded = DeepSightForConditionalGeneration.from_pretrained(tiny_deepsight_dir).eval()
    torch.testing.assert_close(reloaded(**inputs).logits, model(**inputs).logits)
    via_auto = AutoModelForImageTextToText.from_pretrained(tiny_deepsight_dir).eval()
    assert isinstance(via_auto, DeepSightForConditionalGeneration)
    torch.testing.assert_close(via_auto(**inputs).logits, model(**inputs).logits)
    backbone = AutoModel.from_pretrained(tiny_deepsight_dir).eval()
    assert isinstance(backbone, DeepSightModel)
    torch.testing.assert_close(backbone(**inputs).last_hidden_state, model.model(**inputs).last_hidden_state)
    assert sorted(p.name for p in tiny_deepsight_dir.glob("*.bin")) == []
    assert (tiny_deepsight_dir / "model.safetensors").exists()


@torch.no_grad()
def test_image_feature_and_token_count_mismatch_raises(tiny_deepsight, depth_maps):
    model, processor = tiny_deepsight
    inputs = _prompt_inputs(processor, [depth_maps[0]], ["<image>\nHow far?"])
    two_images = torch.cat([inputs["pixel_values"]] * 2)
    with pytest.raises(ValueError, match="Image features and image tokens do not match"):
        model(input_ids=inputs["input_ids"], pixel_values=two_images)
    with pytest.raises(ValueError, match="bbox_mask"):
        model(input_ids=inputs["input_ids"], pixel_values=inputs["pixel_values"], bbox_mask=torch.ones(1, 1, 8, 8))
    with pytest.raises(ValueError, match="one depth channel"):
        model(input_ids=inputs["input_ids"], pixel_values=inputs["pixel_values"].repeat(1, 3, 1, 1))


@torch.no_grad()
def test_two_channel_deepsight_reads_metric_and_relative_depth_through_its_saved_processor(
    tiny_tokenizer, depth_maps, tmp_path
):
    model, processor = build_tiny_deepsight(tokenizer=tiny_tokenizer, depth_transform=("inverse", "relative"))
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    reloaded = AutoModelForImageTextToText.from_pretrained(tmp_path, trust_remote_code=True).eval()
    reloaded_processor = AutoProcessor.from_pretrained(tmp_path, trust_remote_code=True)
    assert reloaded.config.vision_config.num_channels == reloaded_processor.image_processor.num_channels == 2

    inputs = _prompt_inputs(reloaded_processor, depth_maps[:1], ["<image>\nWhich is nearer?"], [[[4, 2, 30, 30]]])
    assert inputs["pixel_values"].shape[1] == 2
    torch.testing.assert_close(reloaded(**inputs).logits, model(**inputs).logits)
    # the same map four times as deep changes only the metric channel, and the model sees the difference
    deeper = _prompt_inputs(reloaded_processor, [depth_maps[0] * 4], ["<image>\nWhich is nearer?"], [[[4, 2, 30, 30]]])
    relative = slice(1, 2)
    torch.testing.assert_close(deeper["pixel_values"][:, relative], inputs["pixel_values"][:, relative])
    assert not torch.allclose(deeper["pixel_values"][:, :1], inputs["pixel_values"][:, :1])
    assert not torch.allclose(reloaded(**deeper).logits, reloaded(**inputs).logits)


def test_hf_layout_trl_fused_head_and_gradient_checkpointing(tiny_deepsight, depth_maps):
    model, processor = tiny_deepsight
    model = copy.deepcopy(model).train()
    model.requires_grad_(True)  # the tower too, as with train_parts "all" (the config freezes it by default)
    inputs = _prompt_inputs(processor, depth_maps[:2], ["<image>\nHow far?", "<image>\nRoom?"], padding=True)
    labels = inputs["input_ids"].masked_fill(inputs["attention_mask"] == 0, -100)

    assert model.base_model_prefix == "model" and model.supports_gradient_checkpointing and model._supports_sdpa
    backbone = getattr(model, model.base_model_prefix)
    assert isinstance(backbone, DeepSightModel)
    assert hasattr(backbone, "vision_tower") and hasattr(backbone, "multi_modal_projector")
    assert hasattr(backbone, "language_model")
    # TRL's fused LM head: backbone(...).last_hidden_state projected by get_output_embeddings() == the model's logits
    hidden = backbone(**inputs).last_hidden_state
    torch.testing.assert_close(model.get_output_embeddings()(hidden), model(**inputs).logits)

    model.activation_checkpointing_enable()
    assert model.is_activation_checkpointing
    loss = model(**inputs, labels=labels).loss
    loss.backward()
    assert torch.isfinite(loss)
    assert model.model.multi_modal_projector.linear_1.weight.grad is not None
    assert model.model.vision_tower.embeddings.bbox_embedding.weight.grad is not None


@pytest.mark.parametrize(
    "config_kwargs, linear_layers",
    [
        ({}, 2),
        ({"projector_type": "linear"}, 1),
        ({"projector_depth": 3, "projector_hidden_act": "relu"}, 3),
        ({"vision_feature_layer": [-2, -1]}, 2),
        ({"vision_feature_select_strategy": "full"}, 2),
        ({"region_token": True}, 2),
    ],
)
@torch.no_grad()
def test_projector_and_feature_selection_are_configurable(tiny_tokenizer, depth_maps, config_kwargs, linear_layers):
    model, processor = build_tiny_deepsight(tokenizer=tiny_tokenizer, **config_kwargs)
    linears = [m for m in model.model.multi_modal_projector.modules() if isinstance(m, torch.nn.Linear)]
    assert len(linears) == linear_layers
    layers = config_kwargs.get("vision_feature_layer", -2)
    assert linears[0].in_features == 64 * (len(layers) if isinstance(layers, list) else 1)
    inputs = _prompt_inputs(processor, [depth_maps[0]], ["<image>\nHow far?"])
    outputs = model(**inputs)
    assert outputs.image_hidden_states.shape == (1, model.config.image_seq_length, 64)
    assert outputs.logits.shape[:2] == inputs["input_ids"].shape


@torch.no_grad()
def test_region_token_is_the_patch_features_mean_over_the_box(tiny_tokenizer, depth_maps):
    # a linear projector commutes with the mean: its outputs (pooler_output) show the selected features' layout
    model, processor = build_tiny_deepsight(tokenizer=tiny_tokenizer, region_token=True, projector_type="linear")
    model.model.vision_tower = _with_random_bbox_conv(model.model.vision_tower)
    patch = model.config.vision_config.patch_size
    inputs = processor(images=[depth_maps[0]] * 2, text=["<image>", "<image>"], return_tensors="pt")
    bbox_mask = torch.zeros_like(inputs["pixel_values"])
    bbox_mask[0, :, :patch, : 2 * patch] = 1  # image 0: exactly the first two patches
    bbox_mask[1, :, : patch // 2, :patch] = 1  # image 1: a quarter of the first patch only
    features = model.model.get_image_features(inputs["pixel_values"], bbox_mask=bbox_mask).pooler_output
    patches, region = features[:, :-1], features[:, -1]
    assert features.shape[1] == model.config.image_seq_length
    torch.testing.assert_close(region[0], patches[0, :2].mean(dim=0))
    torch.testing.assert_close(region[1], patches[1, 0])  # a box inside one patch: that patch's features

    unmasked = model.model.get_image_features(inputs["pixel_values"]).pooler_output
    torch.testing.assert_close(unmasked[:, -1], unmasked[:, :-1].mean(dim=1))  # no box: the whole image
    empty = model.model.get_image_features(inputs["pixel_values"], bbox_mask=torch.zeros_like(bbox_mask))
    torch.testing.assert_close(empty.pooler_output[:, -1], empty.pooler_output[:, :-1].mean(dim=1))


@torch.no_grad()
def test_spatial_pool_stride_averages_each_block_of_patches_into_one_image_token(tiny_tokenizer, depth_maps):
    # a linear projector commutes with averaging: its outputs (pooler_output) show the pooling
    pooled_model, processor = build_tiny_deepsight(
        tokenizer=tiny_tokenizer, spatial_pool_stride=2, projector_type="linear"
    )
    grid = pooled_model.config.vision_config.image_size // pooled_model.config.vision_config.patch_size
    assert pooled_model.config.image_seq_length == processor.image_seq_length == (grid // 2) ** 2
    inputs = processor(images=[depth_maps[0]], text=["<image>"], boxes=[[[0, 0, 20, 20]]], return_tensors="pt")
    pooled = pooled_model.model.get_image_features(inputs["pixel_values"], inputs["bbox_mask"]).pooler_output
    full_config = pooled_model.config.to_dict() | {"spatial_pool_stride": 1, "image_seq_length": None}
    unpooled_model = DeepSightForConditionalGeneration(DeepSightConfig(**full_config)).eval()
    unpooled_model.load_state_dict(pooled_model.state_dict())
    patches = unpooled_model.model.get_image_features(inputs["pixel_values"], inputs["bbox_mask"]).pooler_output
    patches = patches.reshape(grid, grid, -1)
    top_left = patches[:2, :2].reshape(4, -1).mean(dim=0)  # the first pooled token covers the first 2x2 block
    bottom_right = patches[-2:, -2:].reshape(4, -1).mean(dim=0)
    torch.testing.assert_close(pooled[0, 0], top_left)
    torch.testing.assert_close(pooled[0, -1], bottom_right)

    prompt = _prompt_inputs(processor, [depth_maps[0]], ["<image>\nHow far?"])
    generated = pooled_model.generate(**prompt, max_new_tokens=2, do_sample=False)
    assert generated.shape == (1, prompt["input_ids"].shape[1] + 2)


@pytest.mark.parametrize("text_model_type", ["qwen2", "mistral"])
@torch.no_grad()
def test_any_causal_lm_works_as_the_language_model(tiny_tokenizer, depth_maps, text_model_type):
    model, processor = build_tiny_deepsight(tokenizer=tiny_tokenizer, text_model_type=text_model_type)
    assert model.config.text_config.model_type == text_model_type
    inputs = _prompt_inputs(processor, [depth_maps[0]], ["<image>\nHow far?"])
    generated = model.generate(**inputs, max_new_tokens=3, do_sample=False)
    assert generated.shape == (1, inputs["input_ids"].shape[1] + 3)


# --------------------------------------------------------------------------------------------------
# Dual encoder (stage 0)
# --------------------------------------------------------------------------------------------------


def test_dual_encoder_trains_the_vision_side_with_the_text_encoder_frozen(tiny_tokenizer, depth_maps):
    model, processor = build_tiny_dual_encoder(tokenizer=tiny_tokenizer)
    model.train()
    inputs = processor(
        images=depth_maps, text=["a chair", "a table near the wall", "a bed"], padding=True, return_tensors="pt"
    )
    outputs = model(**inputs, return_loss=True)
    outputs.loss.backward()
    assert outputs.logits_per_image.shape == (3, 3)
    assert all(not p.requires_grad for p in model.text_model.parameters())
    assert model.vision_model.embeddings.patch_embedding.weight.grad is not None
    assert model.logit_scale.grad is not None and model.text_projection.weight.grad is not None


@torch.no_grad()
def test_dual_encoder_mean_pools_bert_like_text_encoders_over_the_attention_mask(tiny_tokenizer):
    text_config = BertConfig(
        vocab_size=len(tiny_tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=64,
    )
    config = DeepSightDualEncoderConfig(vision_config=tiny_vision_config().to_dict(), text_config=text_config,
                                        projection_dim=16)
    assert config.resolved_text_pooling == "mean"
    model = DeepSightDualEncoder(config).eval()
    single = tiny_tokenizer(["a chair"], return_tensors="pt")
    padded = tiny_tokenizer(["a chair", "a much longer caption about a table"], padding=True, return_tensors="pt")
    assert (padded["attention_mask"][0] == 0).any()
    torch.testing.assert_close(
        model.get_text_features(**single).pooler_output[0],
        model.get_text_features(**padded).pooler_output[0],
        atol=1e-5,
        rtol=1e-5,
    )
    hidden = model.text_model(**single).last_hidden_state
    torch.testing.assert_close(
        model.get_text_features(**single).pooler_output, model.text_projection(hidden.mean(dim=1))
    )
    # BERT tokenizers also return token_type_ids: accepted and passed on
    with_types = model.get_text_features(**single, token_type_ids=torch.zeros_like(single["input_ids"]))
    torch.testing.assert_close(with_types.pooler_output, model.get_text_features(**single).pooler_output)
    outputs = model(pixel_values=torch.randn(1, 1, 32, 32), token_type_ids=torch.zeros_like(single["input_ids"]),
                    **single)
    assert outputs.logits_per_image.shape == (1, 1)
