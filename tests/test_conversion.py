"""Checkpoint conversion (deepsight/conversion.py): DeepSight models from CLIP, causal-LM and stage-0 checkpoints."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModel, BertConfig, BertModel, CLIPModel, LlamaForCausalLM

from deepsight.conversion import (
    deepsight_from_pretrained_components,
    depth_state_dict_from_clip_vision,
    dual_encoder_from_clip,
    dual_encoder_from_vision_text,
    vision_model_from_checkpoint,
    vision_model_from_clip,
)
from deepsight.tiny import tiny_vision_config
from modeling_deepsight import DeepSightDualEncoder, DeepSightVisionConfig, DeepSightVisionModel


@torch.no_grad()
def test_vision_model_from_clip_equals_clip_on_depth_repeated_to_rgb(tiny_clip_dir):
    deepsight = vision_model_from_clip(tiny_clip_dir).eval()
    clip = CLIPModel.from_pretrained(tiny_clip_dir).vision_model.eval()
    depth = torch.randn(3, 1, 32, 32, generator=torch.Generator().manual_seed(0))

    ours = deepsight(depth, output_hidden_states=True)
    reference = clip(depth.repeat(1, 3, 1, 1), output_hidden_states=True)

    torch.testing.assert_close(ours.last_hidden_state, reference.last_hidden_state, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours.pooler_output, reference.pooler_output, atol=1e-5, rtol=1e-5)
    for mine, theirs in zip(ours.hidden_states, reference.hidden_states):
        torch.testing.assert_close(mine, theirs, atol=1e-5, rtol=1e-5)
    # the same holds with an explicit all-ones mask (the paper's "no box")
    explicit = deepsight(depth, bbox_mask=torch.ones_like(depth))
    torch.testing.assert_close(explicit.last_hidden_state, reference.last_hidden_state, atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_vision_model_from_clip_reads_a_clip_vision_checkpoint_folder(tiny_clip_dir, tmp_path):
    CLIPModel.from_pretrained(tiny_clip_dir).vision_model.save_pretrained(tmp_path)
    from_vision_only = vision_model_from_clip(tmp_path)
    from_whole_clip = vision_model_from_clip(tiny_clip_dir)
    for (name, a), (_, b) in zip(from_vision_only.state_dict().items(), from_whole_clip.state_dict().items()):
        torch.testing.assert_close(a, b, msg=name)
    assert from_vision_only.config.num_channels == 1
    assert from_vision_only.embeddings.patch_embedding.weight.shape[1] == 1


@torch.no_grad()
def test_two_channel_tower_from_clip_equals_clip_when_both_channels_hold_the_depth(tiny_clip_dir):
    two = vision_model_from_clip(tiny_clip_dir, num_channels=2).eval()
    assert two.config.num_channels == 2 and two.embeddings.patch_embedding.weight.shape[1] == 2
    clip = CLIPModel.from_pretrained(tiny_clip_dir).vision_model.eval()
    depth = torch.randn(2, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    reference = clip(depth.repeat(1, 3, 1, 1)).last_hidden_state
    torch.testing.assert_close(two(depth.repeat(1, 2, 1, 1)).last_hidden_state, reference, atol=1e-5, rtol=1e-5)
    # the channels are read apart: a second channel that differs changes the output
    other = torch.cat([depth, torch.randn_like(depth)], dim=1)
    assert not torch.allclose(two(other).last_hidden_state, reference, atol=1e-3)
    with pytest.raises(ValueError, match=r"\[batch, 2, height, width\] \(2 depth channels"):
        two(depth)


@torch.no_grad()
def test_deepsight_from_pretrained_components_loads_clip_vision_and_causal_lm(
    tiny_clip_dir, tiny_llama_dir, tiny_tokenizer
):
    image_token_id = tiny_tokenizer.convert_tokens_to_ids("<image>")
    model = deepsight_from_pretrained_components(
        tiny_clip_dir, tiny_llama_dir, image_token_id=image_token_id, projector_depth=3
    ).eval()
    assert model.config.projector_depth == 3 and model.config.image_token_id == image_token_id
    assert not any(t.is_meta for t in [*model.parameters(), *model.buffers()])
    assert not model.training and not any(m.training for m in model.modules())
    projector = model.model.multi_modal_projector
    projector_weights = [m.weight for m in projector.modules() if isinstance(m, torch.nn.Linear)]
    assert all(0 < float(w.std()) < 0.1 for w in projector_weights)

    depth = torch.randn(1, 1, 32, 32)
    clip_vision = CLIPModel.from_pretrained(tiny_clip_dir).vision_model.eval()
    torch.testing.assert_close(
        model.model.vision_tower(depth).last_hidden_state,
        clip_vision(depth.repeat(1, 3, 1, 1)).last_hidden_state,
        atol=1e-5,
        rtol=1e-5,
    )
    language_model = LlamaForCausalLM.from_pretrained(tiny_llama_dir).eval()
    text = tiny_tokenizer(["a chair and a table"], return_tensors="pt")
    torch.testing.assert_close(model(**text).logits, language_model(**text).logits)


@torch.no_grad()
def test_deepsight_from_pretrained_components_starts_from_a_trained_stage0_dual_encoder(
    tiny_clip_dir, tiny_llama_dir, tmp_path
):
    dual = dual_encoder_from_clip(tiny_clip_dir)
    with torch.no_grad():  # stand-in for stage-0 training: the tower must come back as saved, not reconverted
        dual.vision_model.embeddings.bbox_embedding.weight.normal_()
    dual.save_pretrained(tmp_path / "stage0")
    model = deepsight_from_pretrained_components(tmp_path / "stage0", tiny_llama_dir)
    for name, tensor in dual.vision_model.state_dict().items():
        torch.testing.assert_close(model.model.vision_tower.state_dict()[name], tensor, msg=name)
    with pytest.raises(ValueError, match="expected CLIP"):
        vision_model_from_checkpoint(tiny_llama_dir)


@torch.no_grad()
def test_deepsight_from_pretrained_components_appends_an_image_token_when_none_is_given(tiny_clip_dir, tiny_llama_dir):
    model = deepsight_from_pretrained_components(tiny_clip_dir, tiny_llama_dir)
    vocab = LlamaForCausalLM.from_pretrained(tiny_llama_dir).config.vocab_size
    assert model.config.image_token_id == vocab
    assert model.get_input_embeddings().weight.shape[0] == vocab + 1
    assert model.lm_head.weight.shape[0] == vocab + 1


@torch.no_grad()
def test_dual_encoder_from_clip_equals_clip_on_depth_repeated_to_rgb(tiny_clip_dir):
    dual = dual_encoder_from_clip(tiny_clip_dir).eval()
    clip = CLIPModel.from_pretrained(tiny_clip_dir).eval()
    depth = torch.randn(3, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    input_ids = torch.randint(3, 99, (3, 7), generator=torch.Generator().manual_seed(2))
    ours = dual(pixel_values=depth, input_ids=input_ids, return_loss=True)
    reference = clip(pixel_values=depth.repeat(1, 3, 1, 1), input_ids=input_ids, return_loss=True)
    torch.testing.assert_close(ours.logits_per_image, reference.logits_per_image, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours.loss, reference.loss, atol=1e-5, rtol=1e-5)
    assert ours.logits_per_text.shape == (3, 3)


@torch.no_grad()
def test_dual_encoder_from_vision_text_and_save_load(tiny_clip_dir, tiny_llama_dir, tmp_path):
    BertModel(BertConfig(vocab_size=99, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=4)).save_pretrained(tmp_path / "bert")
    model = dual_encoder_from_vision_text(tiny_clip_dir, tmp_path / "bert", projection_dim=8).eval()
    assert model.config.text_config.model_type == "bert" and model.config.projection_dim == 8
    model.save_pretrained(tmp_path / "dual")
    reloaded = AutoModel.from_pretrained(tmp_path / "dual").eval()
    assert isinstance(reloaded, DeepSightDualEncoder)
    depth, ids = torch.randn(2, 1, 32, 32), torch.randint(3, 99, (2, 5))
    torch.testing.assert_close(
        reloaded(pixel_values=depth, input_ids=ids).logits_per_image,
        model(pixel_values=depth, input_ids=ids).logits_per_image,
    )



def test_depth_state_dict_from_clip_vision_sums_rgb_kernels_shares_them_and_zeroes_the_bbox_conv(tiny_clip_dir):
    clip_vision = CLIPModel.from_pretrained(tiny_clip_dir).vision_model
    config = DeepSightVisionConfig.from_clip_vision_config(clip_vision.config, num_channels=2)
    clip_state, depth_state = clip_vision.state_dict(), DeepSightVisionModel(config).state_dict()
    converted = depth_state_dict_from_clip_vision(clip_state, depth_state)
    assert converted.keys() == depth_state.keys()
    kernel = converted["embeddings.patch_embedding.weight"]
    assert kernel.shape[1] == 2
    torch.testing.assert_close(kernel.sum(dim=1), clip_state["embeddings.patch_embedding.weight"].sum(dim=1))
    torch.testing.assert_close(kernel[:, 0], kernel[:, 1])
    assert not converted["embeddings.bbox_embedding.weight"].any()


def test_vision_model_from_checkpoint_refuses_another_channel_count_for_a_trained_tower(tmp_path):
    DeepSightVisionModel(tiny_vision_config()).save_pretrained(tmp_path / "tower")
    assert vision_model_from_checkpoint(tmp_path / "tower", num_channels=1).config.num_channels == 1
    with pytest.raises(ValueError, match=r"trained on 1 depth channel\(s\); got num_channels=2"):
        vision_model_from_checkpoint(tmp_path / "tower", num_channels=2)
