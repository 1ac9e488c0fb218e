"""Stages 0/1/2 in-process on tiny models: recipes, reproducibility, outputs, freezing, LoRA, loss path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from tests.fixtures.smoke_data import make_instruction_rows, save_smoke_dataset

REPO = Path(__file__).resolve().parents[1]
RECIPES = REPO / "train" / "recipes"
# A handful of fp32 steps, no checkpoints unless a test asks for them.
FAST = [
    "--max_steps",
    "3",
    "--per_device_train_batch_size",
    "4",
    "--logging_steps",
    "1",
    "--save_strategy",
    "no",
    "--report_to",
    "none",
    "--dataloader_num_workers",
    "0",
    "--dataloader_pin_memory",
    "false",
]

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("train-data")
    return {
        "instructions": str(save_smoke_dataset(root / "instructions", "instructions", n_train=12, n_test=4)),
        "pairs": str(save_smoke_dataset(root / "pairs", "pairs", n_train=12, n_test=8)),
    }


def losses(output_dir: Path) -> list[tuple[int, float]]:
    history = json.loads((Path(output_dir) / "log_history.json").read_text())
    return [(entry["step"], entry["loss"]) for entry in history if "loss" in entry]


@pytest.fixture(scope="module")
def sft_run(data, tmp_path_factory):
    """Stage 2 from the cpu-tiny recipe through `deepsight train`, logging to TensorBoard."""
    from train.cli import main

    output_dir = tmp_path_factory.mktemp("sft") / "out"
    argv = [
        "sft",
        "--config",
        str(RECIPES / "cpu-tiny" / "sft.yaml"),
        "--dataset_name",
        data["instructions"],
        "--output_dir",
        str(output_dir),
        *FAST,
        "--report_to",
        "tensorboard",
        "--learning_rate",
        "1e-3",
        "--eval_strategy",
        "steps",
        "--eval_steps",
        "3",
        "--per_device_eval_batch_size",
        "4",
    ]
    assert main(argv) == 0
    return output_dir


def test_stage2_recipe_run_logs_to_tensorboard_and_writes_loss_curve_and_masking(sft_run):
    steps = losses(sft_run)
    assert [step for step, _ in steps] == [1, 2, 3]
    history = json.loads((sft_run / "log_history.json").read_text())
    assert any(entry.get("step") == 3 and "eval_loss" in entry for entry in history), "no evaluation logged"
    assert all(torch.isfinite(torch.tensor(loss)) for _, loss in steps)
    assert list(sft_run.rglob("events.out.tfevents.*")), "report_to tensorboard wrote no event file"
    png = sft_run / "loss_curve.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    masking = json.loads((sft_run / "label_masking.json").read_text())
    assert 0.0 < masking["masked_fraction"] < 1.0


def test_same_seed_gives_the_same_losses(sft_run, data, tmp_path):
    from train.cli import main

    argv = [
        "sft",
        "--config",
        str(RECIPES / "cpu-tiny" / "sft.yaml"),
        "--dataset_name",
        data["instructions"],
        "--output_dir",
        str(tmp_path / "again"),
        *FAST,
        "--learning_rate",
        "1e-3",
    ]
    assert main(argv) == 0
    first, second = losses(sft_run), losses(tmp_path / "again")
    assert [step for step, _ in first] == [step for step, _ in second]
    assert [loss for _, loss in first] == pytest.approx([loss for _, loss in second], rel=1e-6)
    assert first[0][1] != first[-1][1], "the loss did not move: the run trained nothing"


def test_stage2_checkpoint_is_a_complete_folder_that_loads_with_remote_code_in_a_fresh_process(sft_run):
    for name in (
        "config.json",
        "model.safetensors",
        "processor_config.json",
        "tokenizer.json",
        "modeling_deepsight.py",
        "configuration_deepsight.py",
        "processing_deepsight.py",
        "image_processing_deepsight.py",
    ):
        assert (sft_run / name).exists(), f"{name} missing from the stage-2 folder"
    script = (
        "import sys, numpy as np, torch\n"
        "from transformers import AutoModelForImageTextToText, AutoProcessor\n"
        "path = sys.argv[1]\n"
        "model = AutoModelForImageTextToText.from_pretrained(path, trust_remote_code=True)\n"
        "processor = AutoProcessor.from_pretrained(path, trust_remote_code=True)\n"
        "depth = (np.random.default_rng(0).random((24, 32)) * 3 + 0.5).astype(np.float32)\n"
        "inputs = processor(images=[depth], text=['<image>\\nWhat room is this?'], return_tensors='pt')\n"
        "out = model.generate(**inputs, max_new_tokens=3, do_sample=False)\n"
        "print(type(model).__module__, out.shape[1] - inputs['input_ids'].shape[1])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(sft_run)],
        capture_output=True,
        text=True,
        cwd=str(sft_run.parent),
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    module, new_tokens = result.stdout.split()[-2:]
    assert module.startswith("transformers_modules"), f"loaded from {module}, not from the folder's code"
    assert 1 <= int(new_tokens) <= 3


def test_train_parts_freeze_exactly_the_parts_left_out():
    from deepsight.tiny import build_tiny_deepsight
    from train.parameters import apply_train_parts, part_of

    model, _ = build_tiny_deepsight(seed=0)
    every_part = {"projector": {"projector"}, "llm": {"llm"}, "both": {"projector", "llm"},
                  "all": {"projector", "llm", "vision"}}
    for parts, trained in every_part.items():
        counts = apply_train_parts(model, parts)
        assert (counts["vision"]["trainable"] > 0) == (parts == "all")
        for name, parameter in model.named_parameters():
            assert parameter.requires_grad == (part_of(name) in trained), (parts, name)
        assert all(counts[p]["trainable"] == counts[p]["total"] > 0 for p in trained)
    with pytest.raises(ValueError, match="train_parts"):
        apply_train_parts(model, "vision")


def _tiny_trainer(data, tmp_path, **trainer_kwargs):
    """A DepthSFTTrainer around a tiny DeepSight, TRL's vision collator and the smoke instructions."""
    from deepsight.tiny import build_tiny_deepsight
    from trl import SFTConfig
    from train.loading import load_split
    from train.rows import vision_collator
    from train.trainer import DepthSFTTrainer

    model, processor = build_tiny_deepsight(seed=0)
    collator = vision_collator(processor)
    args = SFTConfig(
        output_dir=str(tmp_path),
        bf16=False,
        report_to="none",
        remove_unused_columns=False,
        assistant_only_loss=True,
        activation_checkpointing=False,
    )
    trainer = DepthSFTTrainer(
        model=model,
        args=args,
        data_collator=collator,
        processing_class=processor,
        train_dataset=load_split(data["instructions"], None, "train"),
        **trainer_kwargs,
    )
    return trainer, collator


def test_length_grouped_sampler_gets_the_length_column_as_a_list(data, tmp_path):
    from transformers.trainer_pt_utils import LengthGroupedSampler
    from train.stage import add_length_column

    trainer, _ = _tiny_trainer(data, tmp_path)
    trainer.args.train_sampling_strategy = "group_by_length"
    dataset = add_length_column(trainer.train_dataset, trainer.processing_class, trainer.args.length_column_name)
    sampler = trainer._get_train_sampler(dataset)
    assert isinstance(sampler, LengthGroupedSampler)
    # a list, not the lazy column the sampler would read one row at a time every epoch
    assert sampler.lengths == list(dataset[trainer.args.length_column_name]) and isinstance(sampler.lengths, list)
    assert sorted(sampler) == list(range(len(dataset)))


def test_length_grouped_sampler_reads_the_lengths_without_the_rows_transform(data, tmp_path):
    """The rows' transform decodes every depth map: reading the length column through it cost ~1.5 min a run."""
    from train.stage import add_length_column

    trainer, _ = _tiny_trainer(data, tmp_path)
    trainer.args.train_sampling_strategy = "group_by_length"
    dataset = add_length_column(trainer.train_dataset, trainer.processing_class, trainer.args.length_column_name)
    expected = list(dataset[trainer.args.length_column_name])

    def transform_that_must_not_run(batch):
        raise AssertionError("the length-grouped sampler formatted whole rows to read their lengths")

    sampler = trainer._get_train_sampler(dataset.with_transform(transform_that_must_not_run))
    assert sampler.lengths == expected


def test_model_loss_and_fused_loss_agree(data, tmp_path):
    trainer, collator = _tiny_trainer(data, tmp_path)
    batch = collator(make_instruction_rows(4, seed=9))
    with torch.no_grad():
        trainer.loss_implementation = "model"
        own = trainer.compute_loss(trainer.model, dict(batch))
        trainer.loss_implementation = "fused"
        fused = trainer.compute_loss(trainer.model, dict(batch))
    assert float(own) == pytest.approx(float(fused), rel=1e-5)
    with pytest.raises(ValueError, match="loss_implementation"):
        _tiny_trainer(data, tmp_path, loss_implementation="mine")


def test_row_normalized_loss_weighs_every_row_alike_whatever_its_answer_length(data, tmp_path):
    trainer, collator = _tiny_trainer(data, tmp_path, loss_normalization="rows")
    assert trainer.loss_is_scaled_for_ga is False  # a per-batch mean: the Trainer divides by accumulation itself
    rows = make_instruction_rows(4, seed=9)
    batch = collator(rows)
    answer_tokens = (batch["labels"] != -100).sum(dim=1)
    assert len(set(answer_tokens.tolist())) > 1  # rows of different answer lengths, or the test proves nothing
    with torch.no_grad():
        by_rows = trainer.compute_loss(trainer.model, dict(batch))
        trainer.loss_normalization = "tokens"
        by_tokens = trainer.compute_loss(trainer.model, dict(batch))
        one_at_a_time = [trainer.compute_loss(trainer.model, dict(collator([row]))) for row in rows]
    assert float(by_rows) == pytest.approx(float(torch.stack(one_at_a_time).mean()), rel=1e-4)
    token_weighted = (torch.stack(one_at_a_time) * answer_tokens).sum() / answer_tokens.sum()
    assert float(by_tokens) == pytest.approx(float(token_weighted), rel=1e-4)


def test_lora_run_saves_adapters_and_merged_weights(data, tmp_path):
    from modeling_deepsight import DeepSightForConditionalGeneration
    from deepsight.tiny import build_tiny_deepsight
    from train.sft import main

    common = [
        "--tiny",
        "deepsight",
        "--dataset_name",
        data["instructions"],
        *FAST,
        "--bf16",
        "false",
        "--activation_checkpointing",
        "false",
        "--use_peft",
        "true",
        "--lora_r",
        "4",
        "--lora_alpha",
        "8",
        "--learning_rate",
        "5e-3",
        "--seed",
        "0",
        "--max_steps",
        "2",
    ]
    assert main([*common, "--output_dir", str(tmp_path / "adapters")]) == 0
    adapter_config = json.loads((tmp_path / "adapters" / "adapter_config.json").read_text())
    assert "multi_modal_projector" in adapter_config["modules_to_save"]
    adapter = load_file(str(tmp_path / "adapters" / "adapter_model.safetensors"))
    assert any("lora_A" in key for key in adapter) and any("multi_modal_projector" in key for key in adapter)
    assert not any("vision_tower" in key for key in adapter)

    assert main([*common, "--output_dir", str(tmp_path / "merged"), "--save_merged", "true"]) == 0
    merged = DeepSightForConditionalGeneration.from_pretrained(tmp_path / "merged")
    initial, _ = build_tiny_deepsight(seed=0)
    merged_state, initial_state = merged.state_dict(), initial.state_dict()
    changed = {key for key in initial_state if not torch.equal(initial_state[key], merged_state[key])}
    assert any("language_model" in key and "q_proj" in key for key in changed), "LoRA was not merged"
    assert any("multi_modal_projector" in key for key in changed), "the projector did not train"
    assert not any("vision_tower" in key for key in changed), "the vision tower must stay frozen"


def test_stage2_model_card_describes_the_depth_model_and_its_quick_start_runs(sft_run, tmp_path):
    card = (sft_run / "README.md").read_text()
    assert "pipeline_tag: image-text-to-text" in card and "text-generation" not in card
    assert "| depth input | 1 channel (inverse), max depth 10 m" in card
    quick_start = card.split("```python\n", 1)[1].split("```", 1)[0]
    depth_png = tmp_path / "depth.png"
    Image.fromarray(np.full((480, 640), 2500, dtype=np.uint16)).save(depth_png)  # NYU-sized, 2.5 m, in mm
    quick_start = quick_start.replace('"depth.png"', repr(str(depth_png)))
    result = subprocess.run(
        [sys.executable, "-c", quick_start],
        capture_output=True,
        text=True,
        cwd=str(tmp_path),
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]


def test_baseline_llava_fine_tunes_on_depth_rendered_as_gray(data, tmp_path):
    from train.sft import main

    recipe = RECIPES / "baselines" / "cpu-tiny-llava.yaml"
    assert (
        main(
            [
                "--config",
                str(recipe),
                "--dataset_name",
                data["instructions"],
                "--output_dir",
                str(tmp_path / "llava"),
                *FAST,
            ]
        )
        == 0
    )
    assert json.loads((tmp_path / "llava" / "config.json").read_text())["model_type"] == "llava"
    assert "A llava vision-language baseline trained on depth maps" in (tmp_path / "llava" / "README.md").read_text()
    assert all(torch.isfinite(torch.tensor(loss)) for _, loss in losses(tmp_path / "llava"))


def test_stage_chain_encoder_then_align_with_its_tower_then_sft_from_the_align_folder(data, tmp_path):
    from train import align, encoder, sft

    enc_dir = tmp_path / "encoder"
    assert (
        encoder.main(
            [
                "--config",
                str(RECIPES / "cpu-tiny" / "encoder.yaml"),
                "--dataset_name",
                data["pairs"],
                "--output_dir",
                str(enc_dir),
                *FAST,
                "--eval_strategy",
                "steps",
                "--eval_steps",
                "3",
                "--learning_rate",
                "1e-3",
            ]
        )
        == 0
    )
    accuracies = json.loads((enc_dir / "zero_shot_scene_accuracy.json").read_text())
    assert [step for step, _ in accuracies] == [3] and 0.0 <= accuracies[0][1] <= 1.0
    # The stage-0 folder is what `deepsight eval zeroshot` loads (AutoModel + AutoProcessor, remote code).
    from evaluation.zeroshot import DualEncoderModel

    assert type(DualEncoderModel.from_pretrained(str(enc_dir)).processor).__name__ == "DeepSightProcessor"
    # A saved dual encoder is a starting point too (e.g. to continue stage 0 on new data).
    assert (
        encoder.main(
            [
                "--config",
                str(RECIPES / "cpu-tiny" / "encoder.yaml"),
                "--tiny",
                "false",
                "--model_name_or_path",
                str(enc_dir),
                "--dataset_name",
                data["pairs"],
                "--output_dir",
                str(tmp_path / "encoder-continued"),
                *FAST,
                "--max_steps",
                "1",
            ]
        )
        == 0
    )
    tower = load_file(str(enc_dir / "vision_tower" / "model.safetensors"))
    assert any("bbox" in key.lower() for key in tower), "the Bbox Conv is missing from the saved tower"

    align_dir = tmp_path / "align"
    assert (
        align.main(
            [
                "--config",
                str(RECIPES / "cpu-tiny" / "align.yaml"),
                "--dataset_name",
                data["pairs"],
                "--output_dir",
                str(align_dir),
                "--vision_tower",
                str(enc_dir / "vision_tower"),
                "--region_ratio",  # half the pairs asked about one object's box
                "0.5",
                *FAST,
                "--max_steps",
                "1",
            ]
        )
        == 0
    )
    aligned = load_file(str(align_dir / "model.safetensors"))
    tower_keys = {key: value for key, value in aligned.items() if ".vision_tower." in key}
    assert len(tower_keys) == len(tower)
    for key, value in tower_keys.items():
        assert torch.equal(value, tower[key.split(".vision_tower.", 1)[1]]), key

    # Stage 2 starts from the stage-1 folder (loaded through the Auto classes with the folder's own code).
    sft_dir = tmp_path / "sft"
    assert (
        sft.main(
            [
                "--config",
                str(RECIPES / "cpu-tiny" / "sft.yaml"),
                "--tiny",
                "none",
                "--model_name_or_path",
                str(align_dir),
                "--dataset_name",
                data["instructions"],
                "--output_dir",
                str(sft_dir),
                *FAST,
                "--max_steps",
                "1",
            ]
        )
        == 0
    )
    assert load_file(str(sft_dir / "model.safetensors")).keys() == aligned.keys()


def test_bad_arguments_are_rejected_with_the_field_named(data, tmp_path):
    from train import encoder, sft

    with pytest.raises(ValueError, match="--use_peft with --train_parts projector"):
        sft.main(
            [
                "--tiny",
                "deepsight",
                "--dataset_name",
                data["instructions"],
                "--output_dir",
                str(tmp_path),
                "--use_peft",
                "true",
                "--train_parts",
                "projector",
                "--bf16",
                "false",
            ]
        )
    with pytest.raises(ValueError, match="--loss_normalization rows: needs --loss_implementation model"):
        sft.main(
            ["--tiny", "deepsight", "--dataset_name", data["instructions"], "--output_dir", str(tmp_path),
             "--loss_normalization", "rows", "--loss_implementation", "fused", "--bf16", "false"]
        )
    with pytest.raises(ValueError, match="--model_name_or_path"):
        sft.main(["--dataset_name", data["instructions"], "--output_dir", str(tmp_path), "--bf16", "false"])
    with pytest.raises(ValueError, match="--sample_ratio"):
        encoder.main(
            [
                "--tiny",
                "true",
                "--dataset_name",
                data["pairs"],
                "--output_dir",
                str(tmp_path),
                "--sample_ratio",
                "2",
            ]
        )


def test_card_names_the_base_model_and_the_start_folder_where_trl_would_say_none(tmp_path):
    """TRL's card takes `config._name_or_path` as the base model only when it is not a folder ("a fine-tuned version
    of None" after a local stage); ours follows the start folder's own card to its Hub base model and names both."""
    from huggingface_hub import ModelCard, ModelCardData

    from deepsight.tiny import build_tiny_deepsight
    from train.model_card import base_model_of, deepsight_model_card

    start = tmp_path / "align"
    start.mkdir()
    metadata = ModelCardData(base_model="llava-hf/llava-1.5-7b-hf")
    ModelCard.from_template(metadata, template_str="---\n{{ card_data }}\n---\n").save(start / "README.md")
    assert base_model_of(str(start)) == ("llava-hf/llava-1.5-7b-hf", str(start))
    assert base_model_of("llava-hf/llava-1.5-7b-hf") == ("llava-hf/llava-1.5-7b-hf", None)
    bare = tmp_path / "bare"
    bare.mkdir()
    assert base_model_of(str(bare)) == (None, str(bare))

    model, processor = build_tiny_deepsight(seed=0)
    card = deepsight_model_card(
        model, processor.image_processor, model_id=str(tmp_path / "sft"), base_model="llava-hf/llava-1.5-7b-hf",
        dataset_name="user/depth-instructions", tags=[], trainer_name="SFT", train_parts="the projector trained",
        start_checkpoint=str(start),
    )
    assert card.data.base_model == "llava-hf/llava-1.5-7b-hf" and card.data.datasets == "user/depth-instructions"
    assert f"from [llava-hf/llava-1.5-7b-hf](https://huggingface.co/llava-hf/llava-1.5-7b-hf) (through `{start}`)" in (
        card.text)
    assert "None" not in card.text.split("## Quick start")[0]


def test_the_checkpoint_declares_its_vision_tower_frozen_whoever_loads_it(tmp_path):
    """Frozen when built and after from_pretrained (which makes every loaded weight a new trainable Parameter), also
    through the Auto classes; `freeze_vision_tower=False` trains it; stage 0 trains its tower."""
    from transformers import AutoModelForImageTextToText

    from deepsight.tiny import build_tiny_deepsight, build_tiny_dual_encoder
    from modeling_deepsight import DeepSightForConditionalGeneration

    def tower_trainable(model) -> set[bool]:
        return {p.requires_grad for name, p in model.named_parameters() if "vision_tower" in name}

    model, _ = build_tiny_deepsight(seed=0)
    assert tower_trainable(model) == {False} and model.config.freeze_vision_tower
    assert all(p.requires_grad for n, p in model.named_parameters() if "vision_tower" not in n)
    model.save_pretrained(tmp_path / "frozen")
    assert tower_trainable(DeepSightForConditionalGeneration.from_pretrained(tmp_path / "frozen")) == {False}
    remote = AutoModelForImageTextToText.from_pretrained(tmp_path / "frozen", trust_remote_code=True)
    assert tower_trainable(remote) == {False}

    trainable, _ = build_tiny_deepsight(seed=0, freeze_vision_tower=False)
    assert tower_trainable(trainable) == {True}
    trainable.save_pretrained(tmp_path / "trainable")
    assert tower_trainable(DeepSightForConditionalGeneration.from_pretrained(tmp_path / "trainable")) == {True}
    encoder, _ = build_tiny_dual_encoder(seed=0)
    assert all(p.requires_grad for n, p in encoder.named_parameters() if "vision" in n)
