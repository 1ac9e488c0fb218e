"""The one checkpoint loader (deepsight/checkpoints.py): full, merged and LoRA adapter folders; mistyped paths."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from deepsight.checkpoints import is_adapter_folder, load_checkpoint
from deepsight.paths import resolve_local_or_hub as resolve_source

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing.*:FutureWarning")  # raised inside peft
LORA_TARGETS = r".*language_model.*\.(q_proj|v_proj)"


def _same_weights(model_a, model_b) -> bool:
    state_a, state_b = model_a.state_dict(), model_b.state_dict()
    return state_a.keys() == state_b.keys() and all(torch.equal(state_a[key], state_b[key]) for key in state_a)


@pytest.fixture(scope="module")
def adapter_dir(tiny_deepsight_dir, tmp_path_factory):
    """A LoRA adapter (random, non-zero weights, as after training) saved alone on the tiny DeepSight folder."""
    from peft import LoraConfig, get_peft_model

    from modeling_deepsight import DeepSightForConditionalGeneration

    torch.manual_seed(0)
    base = DeepSightForConditionalGeneration.from_pretrained(tiny_deepsight_dir)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=LORA_TARGETS, init_lora_weights=False)
    folder = tmp_path_factory.mktemp("adapter")
    get_peft_model(base, lora).save_pretrained(folder)  # records base_model_name_or_path = the base folder
    return folder


def test_a_full_checkpoint_loads_with_its_weights_and_processor(tiny_deepsight, tiny_deepsight_dir):
    model, processor = load_checkpoint(tiny_deepsight_dir)
    assert type(model).__module__ == "modeling_deepsight.modeling_deepsight"
    assert type(processor).__name__ == "DeepSightProcessor"
    assert _same_weights(model, tiny_deepsight[0])

    trusted, trusted_processor = load_checkpoint(str(tiny_deepsight_dir), trust_remote_code=True, dtype="float32")
    assert type(trusted_processor).__name__ == "DeepSightProcessor" and trusted.dtype == torch.float32
    assert _same_weights(trusted, tiny_deepsight[0])


def test_trust_remote_code_keeps_the_folders_own_code_in_a_fresh_process(tiny_deepsight_dir):
    """The loader registers this repository's classes only without trust_remote_code: with it (evaluation), a
    fresh process runs the folder's copy of the modeling files, as `from_pretrained` alone would."""
    script = (
        "import sys; from deepsight.checkpoints import load_checkpoint; "
        "remote, _ = load_checkpoint(sys.argv[1], trust_remote_code=True); "
        "local, _ = load_checkpoint(sys.argv[1]); "
        "print(type(remote).__module__, type(local).__module__)"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(tiny_deepsight_dir)], cwd=REPO, capture_output=True, text=True,
        timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    remote, local = result.stdout.split()[-2:]
    assert remote.startswith("transformers_modules") and local == "modeling_deepsight.modeling_deepsight"


def test_an_adapter_folder_loads_its_base_and_applies_the_adapter_merged_or_not(tiny_deepsight_dir, adapter_dir):
    assert is_adapter_folder(adapter_dir) and not is_adapter_folder(tiny_deepsight_dir)
    base, _ = load_checkpoint(tiny_deepsight_dir)
    merged, processor = load_checkpoint(adapter_dir)
    assert type(merged).__name__ == "DeepSightForConditionalGeneration"
    assert type(processor).__name__ == "DeepSightProcessor"  # the base's: the adapter folder holds none
    assert not _same_weights(merged, base), "the adapter was not applied"

    unmerged, _ = load_checkpoint(adapter_dir, merge_adapter=False)
    assert type(unmerged).__name__ == "PeftModel"
    inputs = {"input_ids": torch.tensor([[10, 11, 12, 13]]), "attention_mask": torch.ones(1, 4, dtype=torch.long)}
    with torch.no_grad():
        assert torch.allclose(merged(**inputs).logits, unmerged(**inputs).logits, atol=1e-5)


def test_an_adapter_folders_own_processor_wins_over_its_bases(adapter_dir, tmp_path):
    shutil.copytree(adapter_dir, tmp_path, dirs_exist_ok=True)
    _, processor = load_checkpoint(adapter_dir)
    processor.chat_template = "{{ 'the run template' }}"
    processor.save_pretrained(tmp_path)
    _, own = load_checkpoint(tmp_path)
    assert own.chat_template == "{{ 'the run template' }}"


def test_a_merged_lora_checkpoint_loads_as_a_full_one(adapter_dir, tmp_path):
    merged, processor = load_checkpoint(adapter_dir)
    merged.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    reloaded, _ = load_checkpoint(tmp_path)
    assert _same_weights(reloaded, merged)


def test_an_adapter_naming_no_base_is_refused(tmp_path):
    (tmp_path / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA"}))
    with pytest.raises(ValueError, match="base_model_name_or_path"):
        load_checkpoint(tmp_path)


@pytest.mark.parametrize("typo", ["./typo", "/no/such/folder", "~/no-such-folder", "outputs/no/such-model"])
def test_a_mistyped_local_path_says_not_found_instead_of_asking_the_hub(typo):
    with pytest.raises(FileNotFoundError, match=f"^not found: {typo}$"):
        load_checkpoint(typo)


def test_existing_folders_and_hub_ids_pass_through(tiny_deepsight_dir, monkeypatch, tmp_path):
    assert resolve_source(tiny_deepsight_dir) == str(tiny_deepsight_dir)
    assert resolve_source("llava-hf/llava-1.5-7b-hf") == "llava-hf/llava-1.5-7b-hf"  # owner/name: the Hub's
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "model").mkdir()
    assert resolve_source("~/model") == str(tmp_path / "model")


def test_training_evaluation_and_the_demo_all_load_through_it():
    """Each caller's loading goes through `load_checkpoint`: a mistyped folder says so in each of them."""
    from types import SimpleNamespace

    from trl import ModelConfig

    from evaluation.adapters import VisionLanguageModel
    from evaluation.zeroshot import DualEncoderModel
    from spaces_demo.responder import load_responder
    from train.arguments import DeepSightTrainingArguments
    from train.loading import load_model_and_processor

    model_args = ModelConfig(model_name_or_path="./typo")
    loaders = [
        lambda: VisionLanguageModel.from_pretrained("./typo"),
        lambda: DualEncoderModel.from_pretrained("./typo"),
        lambda: load_responder("./typo", device="cpu"),
        lambda: load_model_and_processor(DeepSightTrainingArguments(), model_args, SimpleNamespace(seed=0)),
    ]
    for load in loaders:
        with pytest.raises(FileNotFoundError, match="^not found: ./typo$"):
            load()
