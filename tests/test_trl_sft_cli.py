"""The stock `trl sft` command line on a DeepSight folder and an instruction folder trains the model we train.

Run as a subprocess, unchanged: the regions reach the model as its Bbox-Conv mask (from the `<box>` tags in the
messages, the only place they survive TRL's column pruning), and the vision tower stays as the checkpoint had it
(the checkpoint declares it frozen). What the model receives is recorded by a `sitecustomize` on PYTHONPATH that
wraps `Trainer.training_step` (the CLI takes no callbacks); nothing else of the run is touched.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import datasets
import pytest
import torch
from safetensors.torch import load_file

REPO = Path(__file__).resolve().parents[1]
TRL = Path(sys.executable).with_name("trl")

RECORDER = textwrap.dedent(
    '''
    """Test shim: records, per training step, each image's Bbox-Conv mask as the model receives it."""
    import json
    import os

    import transformers.trainer

    _step = transformers.trainer.Trainer.training_step


    def _recording_step(self, model, inputs, *args, **kwargs):
        masks = inputs.get("bbox_mask")
        record = {"all_ones": [bool((m == 1).all()) for m in masks] if masks is not None else None}
        with open(os.environ["DEEPSIGHT_RECORD"], "a") as handle:
            handle.write(json.dumps(record) + "\\n")
        return _step(self, model, inputs, *args, **kwargs)


    transformers.trainer.Trainer.training_step = _recording_step
    '''
)


def tower_weights(folder: Path) -> dict[str, torch.Tensor]:
    state = {}
    for file in sorted(folder.glob("*.safetensors")):
        state.update({k: v for k, v in load_file(str(file)).items() if "vision_tower" in k})
    return state


@pytest.mark.skipif(not TRL.exists(), reason="the `trl` command line is not installed next to this Python")
def test_trl_sft_cli_trains_with_the_box_masks_and_leaves_the_vision_tower_frozen(tmp_path):
    from dataset_scripts.builders.instructions.builder import main as build_instructions
    from deepsight.tiny import build_tiny_deepsight

    data = tmp_path / "instructions"
    assert build_instructions(["--num-scenes", "3", "--seed", "4", "--width", "64", "--height", "48", "--no-progress",
                               "--rows-per-scene", "1", "--mc-per-scene", "1", "--output", str(data)]) == 0
    rows = datasets.load_dataset(str(data), split="train")
    boxed_images = sum(1 for row in rows for boxes in row["boxes"] if boxes)
    assert 0 < boxed_images < sum(len(row["boxes"]) for row in rows)  # rows with and without regions

    model, processor = build_tiny_deepsight(seed=0)
    start = tmp_path / "start"
    model.save_pretrained(start)
    processor.save_pretrained(start)

    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(RECORDER)
    record = tmp_path / "record.jsonl"
    output = tmp_path / "sft"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(shim), str(REPO)]), "DEEPSIGHT_RECORD": str(record),
           "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "WANDB_DISABLED": "true"}
    command = [
        str(TRL), "sft", "--model_name_or_path", str(start), "--dataset_name", str(data), "--trust_remote_code",
        "--output_dir", str(output), "--num_train_epochs", "1", "--per_device_train_batch_size", "1",
        "--learning_rate", "1e-2", "--bf16", "false", "--activation_checkpointing", "false",
        "--assistant_only_loss", "true", "--report_to", "none", "--save_strategy", "no", "--logging_steps", "1",
        "--dataloader_num_workers", "0", "--dataloader_pin_memory", "false",
    ]
    result = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]

    steps = [json.loads(line) for line in record.read_text().splitlines()]
    assert len(steps) == len(rows)  # one row a step, every row once
    masked = sum(not all_ones for step in steps for all_ones in step["all_ones"])
    assert masked == boxed_images  # every image with a region got its box mask, every other one all ones

    before, after = tower_weights(start), tower_weights(output)
    assert before and before.keys() == after.keys()
    assert all(torch.equal(before[key], after[key]) for key in before)  # the tower stayed frozen
    trained = load_file(str(next(output.glob("*.safetensors"))))
    initial = load_file(str(next(start.glob("*.safetensors"))))
    assert any(not torch.equal(trained[k], initial[k]) for k in initial if "vision_tower" not in k)  # it trained
