"""DeepSight behaves like transformers' own LLaVA where generic tooling relies on it (issue 23's defects).

Each test names one behaviour that transformers' pipelines, generation, TRL collators or tensor parallelism count on.
"""

from __future__ import annotations

import copy
import re

import numpy as np
import pytest
import torch
from transformers import (
    CLIPVisionConfig,
    DistilBertConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LogitsProcessor,
    LogitsProcessorList,
)

from deepsight.tiny import build_tiny_dual_encoder, tiny_vision_config
from modeling_deepsight import (
    DeepSightDualEncoder,
    DeepSightDualEncoderConfig,
    DeepSightImageProcessor,
    load_depth,
)


class _ForceToken(LogitsProcessor):
    """Makes `token_id` the only choice at every decoding step."""

    def __init__(self, token_id: int):
        self.token_id = token_id

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        forced = torch.full_like(scores, float("-inf"))
        forced[:, self.token_id] = 0.0
        return forced


# --------------------------------------------------------------------------------------------------
# <image> token ids without pixel_values
# --------------------------------------------------------------------------------------------------


@torch.no_grad()
def test_image_token_ids_without_pixel_values_are_embedded_as_ordinary_tokens(tiny_deepsight):
    model, processor = tiny_deepsight
    input_ids = processor(text=["How far is the wall?"], return_tensors="pt")["input_ids"]
    input_ids = torch.cat([input_ids, torch.full((1, 3), model.config.image_token_id)], dim=1)
    logits = model(input_ids=input_ids).logits

    embeds = model.get_input_embeddings()(input_ids)
    expected = model.lm_head(model.model.language_model(inputs_embeds=embeds).last_hidden_state)
    torch.testing.assert_close(logits, expected)


@torch.no_grad()
def test_generate_never_crashes_when_the_model_emits_the_image_token_id(tiny_deepsight, depth_maps):
    model, processor = tiny_deepsight
    image_token_id = model.config.image_token_id
    inputs = processor(images=[depth_maps[0]], text=["<image>\nHow far?"], return_tensors="pt")
    generated = model.generate(
        **inputs,
        max_new_tokens=3,
        do_sample=False,
        logits_processor=LogitsProcessorList([_ForceToken(image_token_id)]),
    )
    assert generated[0, inputs["input_ids"].shape[1] :].tolist() == [image_token_id] * 3


# --------------------------------------------------------------------------------------------------
# A batch that mixes text-only and image samples (the nested per-sample image lists)
# --------------------------------------------------------------------------------------------------


def test_image_processor_accepts_per_sample_lists_with_a_text_only_sample(tiny_deepsight, depth_maps):
    _, processor = tiny_deepsight
    nested = processor.image_processor([[], [depth_maps[0]], [depth_maps[1]]], boxes=[[[0, 0, 10, 10]], []])
    flat = processor.image_processor(depth_maps[:2], boxes=[[[0, 0, 10, 10]], []])
    assert torch.equal(nested["pixel_values"], flat["pixel_values"])
    assert torch.equal(nested["bbox_mask"], flat["bbox_mask"])
    with pytest.raises(ValueError, match="no depth map"):
        processor.image_processor([[], []])


def test_processor_reads_per_sample_lists_that_are_all_empty_as_text_only(tiny_deepsight):
    _, processor = tiny_deepsight
    texts = ["How far is the wall?", "Room?"]
    nested = processor(images=[[], []], text=texts, padding=True, return_tensors="pt")
    text_only = processor(text=texts, padding=True, return_tensors="pt")
    assert set(nested) == set(text_only) == {"input_ids", "attention_mask"}
    assert torch.equal(nested["input_ids"], text_only["input_ids"])


@torch.no_grad()
def test_a_batch_with_a_text_only_sample_gives_the_same_logits_per_row_as_each_row_alone(tiny_deepsight, depth_maps):
    model, processor = tiny_deepsight
    texts = ["How far is the wall from the camera?", "<image>\nHow far?", "<image>\nWhich object is nearer?"]
    images = [[], [depth_maps[0]], [depth_maps[1]]]
    batch = processor(images=images, text=texts, padding=True, padding_side="left", return_tensors="pt")
    assert batch["pixel_values"].shape[0] == 2
    batched_logits = model(**batch).logits

    for row, (text, row_images) in enumerate(zip(texts, images)):
        alone = processor(images=row_images or None, text=[text], return_tensors="pt")
        real = batch["attention_mask"][row].bool()
        assert int(real.sum()) == alone["input_ids"].shape[1]
        torch.testing.assert_close(batched_logits[row, real], model(**alone).logits[0], atol=1e-5, rtol=1e-4)


# --------------------------------------------------------------------------------------------------
# get_image_features: the vision output passed through, as LLaVA's
# --------------------------------------------------------------------------------------------------


def _eager_copy(model):
    model = copy.deepcopy(model)
    model.set_attn_implementation("eager")  # SDPA does not return attention weights
    return model


@torch.no_grad()
def test_get_image_features_returns_the_towers_hidden_states_and_attentions_when_asked(tiny_deepsight, depth_maps):
    model, processor = tiny_deepsight
    model = _eager_copy(model)
    pixel_values = processor.image_processor(depth_maps[:2])["pixel_values"]
    vision_config = model.config.vision_config
    for owner in (model, model.model):
        outputs = owner.get_image_features(pixel_values, output_hidden_states=True, output_attentions=True)
        assert len(outputs.hidden_states) == vision_config.num_hidden_layers + 1
        assert all(hidden is not None for hidden in outputs.hidden_states)
        assert len(outputs.attentions) == vision_config.num_hidden_layers
        assert outputs.attentions[0].shape == (2, vision_config.num_attention_heads, 17, 17)
        assert outputs.last_hidden_state.shape == (2, 17, vision_config.hidden_size)
        assert outputs.pooler_output.shape == (2, model.config.image_seq_length, model.config.text_config.hidden_size)

    default = model.model.get_image_features(pixel_values)
    assert default.attentions is None
    torch.testing.assert_close(default.pooler_output, outputs.pooler_output)  # asking for more changes nothing


@torch.no_grad()
def test_get_image_features_gives_a_tuple_when_return_dict_is_false(tiny_deepsight, depth_maps):
    model, processor = tiny_deepsight
    pixel_values = processor.image_processor([depth_maps[0]])["pixel_values"]
    as_dict = model.get_image_features(pixel_values)
    as_tuple = model.get_image_features(pixel_values, return_dict=False)
    assert isinstance(as_tuple, tuple)
    torch.testing.assert_close(as_tuple[0], as_dict.last_hidden_state)
    torch.testing.assert_close(as_tuple[1], as_dict.pooler_output)

    no_dict_config = copy.deepcopy(model)
    no_dict_config.config.return_dict = False
    assert isinstance(no_dict_config.model.get_image_features(pixel_values), tuple)


# --------------------------------------------------------------------------------------------------
# Tensor parallelism
# --------------------------------------------------------------------------------------------------


def _parameter_names_matching(model: torch.nn.Module, rule: str) -> list[str]:
    pattern = re.compile(re.escape(rule).replace(r"\*", r"\d+") + r"\.")
    return [name for name, _ in model.named_parameters() if pattern.match(name)]


def test_tensor_parallel_plan_shards_the_lm_head_like_llava(tiny_deepsight):
    model, _ = tiny_deepsight
    plan = model.tp_plan
    assert model.supports_tp_plan
    assert plan["lm_head"] == "colwise_gather_output"
    assert plan["model.language_model.embed_tokens"] == "embedding_rowwise"
    assert all(_parameter_names_matching(model, rule) for rule in plan), "every rule names existing weights"

    llava_config = LlavaConfig(
        vision_config=CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                       num_attention_heads=2, image_size=32, patch_size=8),
        text_config=model.config.text_config.to_dict(),
        image_token_id=model.config.image_token_id,
    )
    llava = LlavaForConditionalGeneration(llava_config)
    assert plan == llava.tp_plan


# --------------------------------------------------------------------------------------------------
# Names and messages
# --------------------------------------------------------------------------------------------------


def test_image_processor_kwargs_typeddict_is_named_by_transformers_convention():
    assert DeepSightImageProcessor.valid_kwargs.__name__ == "DeepSightImageProcessorKwargs"


@torch.no_grad()
def test_image_token_mismatch_error_names_both_counts_in_llavas_wording(tiny_deepsight, depth_maps):
    model, processor = tiny_deepsight
    inputs = processor(images=[depth_maps[0]], text=["<image>\nHow far?"], return_tensors="pt")
    two_images = torch.cat([inputs["pixel_values"]] * 2)
    per_image = model.config.image_seq_length
    message = f"Image features and image tokens do not match, tokens: {per_image}, features: {2 * per_image}"
    with pytest.raises(ValueError, match=re.escape(message)):
        model(input_ids=inputs["input_ids"], pixel_values=two_images)


def test_processor_placeholder_and_image_count_mismatch_uses_transformers_wording(tiny_deepsight, depth_maps):
    _, processor = tiny_deepsight
    message = "The total number of <image> tokens in the prompts should be the same as the number of images passed"
    with pytest.raises(ValueError, match=re.escape(message) + r".*2 <image> placeholder\(s\) but 1 image"):
        processor(images=[depth_maps[0]], text=["<image> and <image>: which is nearer?"], return_tensors="pt")


def test_a_four_channel_array_is_reported_with_its_real_channel_count():
    rgba = np.dstack([np.full((20, 30), value, np.uint8) for value in (10, 90, 200, 255)])
    with pytest.raises(ValueError, match="has 4 colour channels"):
        load_depth(rgba)


# --------------------------------------------------------------------------------------------------
# The stage-0 dual encoder's feature getters: the tower outputs with projected features, as CLIPModel's
# --------------------------------------------------------------------------------------------------


@torch.no_grad()
def test_dual_encoders_feature_getters_return_the_tower_outputs_with_the_projected_features(tiny_tokenizer, depth_maps):
    """The dual encoder's feature getters return the tower outputs with the projected features, hidden states and
    attentions when asked, a tuple with return_dict=False."""
    dual, processor = build_tiny_dual_encoder(tokenizer=tiny_tokenizer)
    dual = _eager_copy(dual)
    batch = processor(images=depth_maps[:2], text=["a chair", "a long table by the wall"], padding=True,
                      return_tensors="pt")
    image_kwargs = {"pixel_values": batch["pixel_values"], "bbox_mask": batch["bbox_mask"]}
    text_kwargs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    towers = ((dual.get_image_features, image_kwargs, dual.config.vision_config),
              (dual.get_text_features, text_kwargs, dual.config.text_config))
    for get_features, inputs, tower_config in towers:
        outputs = get_features(**inputs, output_hidden_states=True, output_attentions=True)
        assert outputs.pooler_output.shape == (2, dual.config.projection_dim)
        assert outputs.last_hidden_state.shape[-1] == tower_config.hidden_size
        assert len(outputs.hidden_states) == tower_config.num_hidden_layers + 1
        assert len(outputs.attentions) == tower_config.num_hidden_layers

        default = get_features(**inputs)
        assert default.hidden_states is None and default.attentions is None
        torch.testing.assert_close(default.pooler_output, outputs.pooler_output)  # asking for more changes nothing

        as_tuple = get_features(**inputs, return_dict=False)
        assert isinstance(as_tuple, tuple)
        torch.testing.assert_close(as_tuple[0], default.last_hidden_state)
        torch.testing.assert_close(as_tuple[1], default.pooler_output)

    # the projected, not normalised, features: what `forward` normalises into its embeddings
    image_features = dual.get_image_features(**image_kwargs).pooler_output
    tower_pooled = dual.vision_model(**image_kwargs).pooler_output
    torch.testing.assert_close(image_features, dual.visual_projection(tower_pooled))
    outputs = dual(**image_kwargs, **text_kwargs)
    torch.testing.assert_close(outputs.image_embeds, torch.nn.functional.normalize(image_features, dim=-1))
    text_features = dual.get_text_features(**text_kwargs).pooler_output
    torch.testing.assert_close(outputs.text_embeds, torch.nn.functional.normalize(text_features, dim=-1))

    # a config asking for tuples makes the getters return tuples, and `forward` still reads their features
    dual.config.return_dict = False
    assert isinstance(dual.get_text_features(**text_kwargs), tuple)
    loss = dual(**image_kwargs, **text_kwargs)[0]
    torch.testing.assert_close(loss, dual(**image_kwargs, **text_kwargs, return_dict=True).loss)


@torch.no_grad()
def test_dual_encoders_text_features_of_an_encoder_without_a_pooler_come_in_a_pooling_output():
    text_config = DistilBertConfig(vocab_size=100, dim=32, hidden_dim=64, n_layers=2, n_heads=4,
                                   max_position_embeddings=64)
    config = DeepSightDualEncoderConfig(vision_config=tiny_vision_config().to_dict(), text_config=text_config,
                                        projection_dim=16)
    dual = DeepSightDualEncoder(config).eval()
    input_ids = torch.randint(0, 100, (2, 7))
    outputs = dual.get_text_features(input_ids, output_hidden_states=True)
    hidden = dual.text_model(input_ids).last_hidden_state
    torch.testing.assert_close(outputs.pooler_output, dual.text_projection(hidden.mean(dim=1)))  # mean pooling
    assert len(outputs.hidden_states) == text_config.n_layers + 1
    as_tuple = dual.get_text_features(input_ids, return_dict=False)
    torch.testing.assert_close(as_tuple[1], outputs.pooler_output)
