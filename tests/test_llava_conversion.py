"""LLaVA weights as a starting point: the projector named as LLaVA's (older folders still load) and
`deepsight_from_llava` / `deepsight model build --from-llava`."""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import load_file, save_file
from transformers import AutoModelForImageTextToText, AutoProcessor, LlavaForConditionalGeneration, LlavaProcessor

from deepsight import model_cli
from deepsight.conversion import deepsight_from_llava, deepsight_processor_from_llava
from deepsight.tiny import build_tiny_deepsight, build_tiny_llava, synthetic_depth_map
from modeling_deepsight import DeepSightForConditionalGeneration
from tests.fixtures.fresh_process import run_without_repo

PROJECTOR = "model.multi_modal_projector."

# Runs in a fresh process with this repository hidden (after `HIDE_REPO`): the folder's own model file loads
# the weights.
REMOTE_LOGITS = """
    import json, os, sys
    import torch
    from transformers import AutoModelForImageTextToText
    model = AutoModelForImageTextToText.from_pretrained(sys.argv[2], trust_remote_code=True)
    with torch.no_grad():
        logits = model(**torch.load(os.path.join(sys.argv[3], "inputs.pt"))).logits
    torch.save(logits, os.path.join(sys.argv[3], "logits.pt"))
    print(json.dumps({"module": type(model).__module__}))
"""


def _image_prompt_ids(model, batch: int = 2) -> torch.Tensor:
    """[batch, T] ids: a few text tokens, the image tokens of one image, a few more text tokens."""
    image = torch.full((batch, model.config.image_seq_length), model.config.image_token_id)
    text = torch.randint(5, 40, (batch, 4), generator=torch.Generator().manual_seed(0))
    return torch.cat([text, image, text.flip(1)], dim=1)


def _depth_inputs(model, batch: int = 2) -> dict[str, torch.Tensor]:
    size = model.config.vision_config.image_size
    pixel_values = torch.randn(batch, 1, size, size, generator=torch.Generator().manual_seed(1))
    return {"input_ids": _image_prompt_ids(model, batch), "pixel_values": pixel_values}


def _to_old_projector_keys(folder, linears: int) -> None:
    """Rewrite a saved folder's projector keys as they were before LLaVA's names: `linear_k` -> `layers.{2(k-1)}`."""
    path = folder / "model.safetensors"
    state = load_file(path)
    renames = {f"{PROJECTOR}linear_{k}.": f"{PROJECTOR}layers.{2 * (k - 1)}." for k in range(1, linears + 1)}
    old = {}
    for key, tensor in state.items():
        for new_prefix, old_prefix in renames.items():
            key = key.replace(new_prefix, old_prefix)
        old[key] = tensor
    save_file(old, path, metadata={"format": "pt"})


def _saved_projector_keys(folder) -> list[str]:
    return sorted(key for key in load_file(folder / "model.safetensors") if key.startswith(PROJECTOR))


@pytest.mark.parametrize(
    "config_kwargs, names",
    [
        ({}, ["linear_1", "act", "linear_2"]),
        ({"projector_depth": 3}, ["linear_1", "act", "linear_2", "linear_3"]),
        ({"projector_type": "linear"}, ["linear_1"]),
    ],
)
def test_projector_modules_are_named_like_llavas(tiny_tokenizer, config_kwargs, names):
    model, _ = build_tiny_deepsight(tokenizer=tiny_tokenizer, **config_kwargs)
    projector = model.model.multi_modal_projector
    assert [name for name, _ in projector.named_children()] == names
    # parameters in creation order: one Linear after the other, as the nn.Sequential made them
    linears = [name for name in names if name.startswith("linear")]
    expected = [f"{linear}.{param}" for linear in linears for param in ("weight", "bias")]
    assert [name for name, _ in projector.named_parameters()] == expected


@torch.no_grad()
def test_projector_computes_linear_act_linear_in_order(tiny_tokenizer):
    model, _ = build_tiny_deepsight(tokenizer=tiny_tokenizer, projector_depth=3, projector_hidden_act="relu")
    projector = model.model.multi_modal_projector
    features = torch.randn(2, 5, projector.linear_1.in_features)
    expected = projector.linear_3(torch.relu(projector.linear_2(torch.relu(projector.linear_1(features)))))
    torch.testing.assert_close(projector(features), expected)


@torch.no_grad()
def test_a_folder_with_the_old_projector_keys_loads_with_equal_logits(tiny_tokenizer, tmp_path):
    model, _ = build_tiny_deepsight(tokenizer=tiny_tokenizer, projector_depth=3)
    model.save_pretrained(tmp_path)
    _to_old_projector_keys(tmp_path, linears=3)
    assert _saved_projector_keys(tmp_path) == [
        f"{PROJECTOR}layers.{index}.{param}" for index in (0, 2, 4) for param in ("bias", "weight")
    ]
    inputs = _depth_inputs(model)
    expected = model(**inputs).logits

    registered = DeepSightForConditionalGeneration.from_pretrained(tmp_path)
    torch.testing.assert_close(registered(**inputs).logits, expected)


@torch.no_grad()
def test_the_saved_projector_keys_load_through_torchs_load_state_dict_as_the_trainers_resume_does(tiny_tokenizer, tmp_path):
    model, _ = build_tiny_deepsight(tokenizer=tiny_tokenizer, projector_depth=3)
    model.save_pretrained(tmp_path)
    saved = load_file(tmp_path / "model.safetensors")
    assert any(".layers." in key for key in saved)  # the original layout on disk
    fresh, _ = build_tiny_deepsight(tokenizer=tiny_tokenizer, projector_depth=3, seed=1)
    result = fresh.load_state_dict(saved, strict=False)
    assert not result.missing_keys and not result.unexpected_keys
    inputs = _depth_inputs(model)
    torch.testing.assert_close(fresh(**inputs).logits, model(**inputs).logits)


@pytest.mark.slow
@torch.no_grad()
def test_a_folder_with_the_old_projector_keys_loads_with_trust_remote_code_without_the_repo(tiny_tokenizer, tmp_path):
    model, _ = build_tiny_deepsight(tokenizer=tiny_tokenizer)
    model.save_pretrained(tmp_path / "model")
    _to_old_projector_keys(tmp_path / "model", linears=2)
    torch.save(_depth_inputs(model), tmp_path / "inputs.pt")
    report = run_without_repo(REMOTE_LOGITS, [str(tmp_path / "model"), str(tmp_path)], tmp_path, timeout=600)
    assert report["module"].startswith("transformers_modules.")  # the folder's copy of the model file
    logits = torch.load(tmp_path / "logits.pt")
    torch.testing.assert_close(logits, model(**_depth_inputs(model)).logits)


def test_save_pretrained_writes_the_registered_original_layout_by_default(tiny_tokenizer, tmp_path):
    # transformers' save_original_format=True: folders keep loading with code from before the rename
    model, _ = build_tiny_deepsight(tokenizer=tiny_tokenizer)
    model.save_pretrained(tmp_path)
    assert _saved_projector_keys(tmp_path) == [
        f"{PROJECTOR}layers.{index}.{param}" for index in (0, 2) for param in ("bias", "weight")
    ]


@torch.no_grad()
def test_a_folder_with_llavas_projector_keys_loads_with_equal_logits(tiny_tokenizer, tmp_path):
    model, _ = build_tiny_deepsight(tokenizer=tiny_tokenizer)
    model.save_pretrained(tmp_path, save_original_format=False)
    assert _saved_projector_keys(tmp_path) == [
        f"{PROJECTOR}linear_{k}.{param}" for k in (1, 2) for param in ("bias", "weight")
    ]
    inputs = _depth_inputs(model)
    loaded = DeepSightForConditionalGeneration.from_pretrained(tmp_path)
    torch.testing.assert_close(loaded(**inputs).logits, model(**inputs).logits)


@torch.no_grad()
def test_an_adapter_folder_with_the_old_projector_keys_restores_the_trained_projector(tiny_tokenizer, tmp_path):
    def base():
        return build_tiny_deepsight(tokenizer=tiny_tokenizer)[0]

    lora = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], modules_to_save=["multi_modal_projector"])
    trained = get_peft_model(base(), lora)
    projector = trained.base_model.model.model.multi_modal_projector.modules_to_save["default"]
    for parameter in projector.parameters():
        parameter.add_(1.0)  # stand-in for stage-2 training of the projector
    trained.save_pretrained(tmp_path)
    adapter_path = tmp_path / "adapter_model.safetensors"
    adapter = load_file(adapter_path)
    old = {key.replace("multi_modal_projector.linear_1.", "multi_modal_projector.layers.0.")
           .replace("multi_modal_projector.linear_2.", "multi_modal_projector.layers.2."): value
           for key, value in adapter.items()}
    assert any(".multi_modal_projector.layers.2.weight" in key for key in old)
    save_file(old, adapter_path, metadata={"format": "pt"})

    loaded = PeftModel.from_pretrained(base(), tmp_path)
    restored = loaded.base_model.model.model.multi_modal_projector.modules_to_save["default"]
    for (name, expected), (_, got) in zip(projector.state_dict().items(), restored.state_dict().items()):
        torch.testing.assert_close(got, expected, msg=name)


# --------------------------------------------------------------------------------------------------
# DeepSight from a LLaVA checkpoint
# --------------------------------------------------------------------------------------------------


def _save_tiny_llava(tokenizer, folder, **llava_kwargs) -> tuple[LlavaForConditionalGeneration, LlavaProcessor]:
    # Equal statistics per channel: the LLaVA's own image preprocessing is then the same on each colour channel.
    llava, processor = build_tiny_llava(
        tokenizer=tokenizer, image_mean=(0.5, 0.5, 0.5), image_std=(0.5, 0.5, 0.5), **llava_kwargs
    )
    llava.save_pretrained(folder)
    processor.save_pretrained(folder)
    return llava, processor


@pytest.mark.parametrize(
    "llava_kwargs",
    [{}, {"vision_feature_layer": [-2, -1], "vision_feature_select_strategy": "full", "projector_hidden_act": "relu"}],
    ids=["llava-1.5", "two-layers-full"],
)
@torch.no_grad()
def test_deepsight_from_llava_equals_that_llava_on_the_depth_repeated_to_three_channels(
    tiny_tokenizer, tmp_path, llava_kwargs
):
    llava, _ = _save_tiny_llava(tiny_tokenizer, tmp_path, **llava_kwargs)
    model = deepsight_from_llava(tmp_path)

    assert not model.training and not any(t.is_meta for t in [*model.parameters(), *model.buffers()])
    for field in ("image_token_id", "vision_feature_layer", "vision_feature_select_strategy", "projector_hidden_act"):
        assert getattr(model.config, field) == getattr(llava.config, field), field
    inputs = _depth_inputs(model)
    ours = model(**inputs)
    theirs = llava(input_ids=inputs["input_ids"], pixel_values=inputs["pixel_values"].repeat(1, 3, 1, 1))
    torch.testing.assert_close(ours.logits, theirs.logits, atol=1e-5, rtol=1e-5)
    # LLaVA returns its image features flattened over the images
    torch.testing.assert_close(ours.image_hidden_states.flatten(0, 1), theirs.image_hidden_states, atol=1e-5, rtol=1e-5)
    projector = model.model.multi_modal_projector
    for name, tensor in llava.model.multi_modal_projector.state_dict().items():
        torch.testing.assert_close(projector.state_dict()[name], tensor, msg=name)
    assert all(parameter.requires_grad for parameter in projector.parameters())  # trainable, as any loaded weight


@torch.no_grad()
def test_deepsight_processor_from_llava_keeps_its_tokenizer_and_chat_template(tiny_tokenizer, tmp_path):
    llava, llava_processor = _save_tiny_llava(tiny_tokenizer, tmp_path)
    model = deepsight_from_llava(llava)
    processor = deepsight_processor_from_llava(tmp_path, model.config)
    assert processor.chat_template == llava_processor.chat_template
    assert processor.tokenizer.get_vocab() == tiny_tokenizer.get_vocab()
    assert processor.image_processor.size == {"height": 32, "width": 32}

    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "How far?"}]}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
    inputs = processor(images=[synthetic_depth_map()], text=[prompt], return_tensors="pt")
    assert int((inputs["input_ids"] == model.config.image_token_id).sum()) == model.config.image_seq_length
    assert model(**inputs).logits.shape[:2] == inputs["input_ids"].shape


@torch.no_grad()
def test_model_build_from_llava_saves_a_deepsight_that_reloads_equal(tiny_tokenizer, tmp_path, capsys):
    llava, _ = _save_tiny_llava(tiny_tokenizer, tmp_path / "llava")
    argv = ["build", "--from-llava", str(tmp_path / "llava"), "--output", str(tmp_path / "out"),
            "--depth-transform", "inverse", "relative"]
    assert model_cli.main(argv) == 0
    assert "DeepSight checkpoint" in capsys.readouterr().out

    model = AutoModelForImageTextToText.from_pretrained(tmp_path / "out")
    processor = AutoProcessor.from_pretrained(tmp_path / "out")
    assert isinstance(model, DeepSightForConditionalGeneration)
    assert model.config.vision_config.num_channels == 2
    assert processor.image_processor.depth_transform == ["inverse", "relative"]
    inputs = _depth_inputs(model)
    theirs = llava(input_ids=inputs["input_ids"], pixel_values=inputs["pixel_values"].repeat(1, 3, 1, 1))
    # both channels holding the same map: the kernel is shared equally by them
    ours = model(input_ids=inputs["input_ids"], pixel_values=inputs["pixel_values"].repeat(1, 2, 1, 1))
    torch.testing.assert_close(ours.logits, theirs.logits, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "extra, message",
    [
        ([], "give --from-llava LLAVA, or both --vision"),
        (["--from-llava", "{llava}", "--vision", "{llava}"], "replaces --vision and --text"),
        (["--from-llava", "{llava}", "--projector-depth", "3"], "--projector-depth do not apply to --from-llava"),
    ],
    ids=["no-source", "both-sources", "projector-option"],
)
def test_model_build_refuses_a_mix_of_llava_and_component_options(tmp_path, capsys, extra, message):
    argv = ["build", "--output", str(tmp_path / "out"), *[word.format(llava=tmp_path) for word in extra]]
    with pytest.raises(SystemExit) as stop:
        model_cli.main(argv)
    assert stop.value.code == 2
    assert message in capsys.readouterr().err
