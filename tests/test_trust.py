"""Safe by default (issue 25, point 1): our loaders run no code from a model folder unless asked, and read
safetensors weights only.

A "planted" folder is a saved DeepSight folder whose module files (the ones its `auto_map` names) write a marker
file when imported, and in the hostile variant then raise. Each untrusted load runs in a fresh process, where
nothing has registered the installed classes yet: the state a user's `deepsight eval ...` starts from.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from deepsight.checkpoints import checked_source, load_checkpoint, load_pretrained, refuse_pickle_weights
from deepsight.tiny import build_tiny_dual_encoder

REPO = Path(__file__).resolve().parents[1]
INSTALLED_MODULE = "modeling_deepsight.modeling_deepsight"
PLANTED = "\nimport pathlib as _planted\n_planted.Path({marker!r}).open('a').write(__name__ + '\\n')\n"
HOSTILE = "raise RuntimeError('the folder\\'s planted code ran')\n"


def plant(folder: Path, marker: Path, hostile: bool) -> Path:
    """Append the marker (and, `hostile`, a raise) to every module file of the saved folder."""
    for module in folder.glob("*.py"):
        module.write_text(module.read_text() + PLANTED.format(marker=str(marker)) + (HOSTILE if hostile else ""))
    return folder


def pickle_only(folder: Path) -> Path:
    """The folder's safetensors weights rewritten as the pickle `pytorch_model.bin` transformers 4 wrote."""
    weights = folder / "model.safetensors"
    torch.save(load_file(str(weights)), folder / "pytorch_model.bin")
    weights.unlink()
    return folder


@pytest.fixture(scope="module")
def dual_dir(tiny_tokenizer, tmp_path_factory):
    model, processor = build_tiny_dual_encoder(tokenizer=tiny_tokenizer)
    folder = tmp_path_factory.mktemp("dual")
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture
def planted(tiny_deepsight_dir, dual_dir, tmp_path):
    """(folders by name, marker file): hostile DeepSight and dual-encoder folders, and a marker-only DeepSight one;
    a test's own copies, so a marker is that test's."""
    root = tmp_path / "planted"
    marker = root / "planted-code-ran.txt"
    folders = {
        "deepsight": plant(shutil.copytree(tiny_deepsight_dir, root / "deepsight"), marker, hostile=True),
        "dual": plant(shutil.copytree(dual_dir, root / "dual"), marker, hostile=True),
        "deepsight_marker_only": plant(shutil.copytree(tiny_deepsight_dir, root / "marker_only"), marker, False),
    }
    return folders, marker


def run_fresh(script: str, folder: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules"))
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), str(folder)], cwd=REPO, env=env, capture_output=True,
        text=True, timeout=300,
    )


# Each loader, as a user's process starts it: `sys.argv[1]` is the folder; prints the loaded model's module.
UNTRUSTED_LOADERS = {
    "load_checkpoint": ("deepsight", """
        import sys
        from deepsight.checkpoints import load_checkpoint
        model, _ = load_checkpoint(sys.argv[1])
        print(type(model).__module__)
    """),
    "eval adapter": ("deepsight", """
        import sys
        from evaluation.adapters import VisionLanguageModel
        print(type(VisionLanguageModel.from_pretrained(sys.argv[1]).model).__module__)
    """),
    "demo loader": ("deepsight", """
        import sys
        from spaces_demo.responder import load_responder
        print(type(load_responder(sys.argv[1], device="cpu").model).__module__)
    """),
    "zero-shot encoder": ("dual", """
        import sys
        from evaluation.zeroshot import DualEncoderModel
        print(type(DualEncoderModel.from_pretrained(sys.argv[1]).model).__module__)
    """),
    "pairs scorer": ("dual", """
        import sys
        from dataset_scripts.builders.pairs import DualEncoderScorer
        print(type(DualEncoderScorer(sys.argv[1], device="cpu").model).__module__)
    """),
}


@pytest.mark.slow
@pytest.mark.parametrize("loader", sorted(UNTRUSTED_LOADERS))
def test_without_trust_no_code_from_the_folder_runs_and_the_model_is_our_class(loader, planted, tmp_path):
    folders, marker = planted
    folder_name, script = UNTRUSTED_LOADERS[loader]
    result = run_fresh(script, folders[folder_name], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert not marker.exists(), f"{loader} ran the folder's code: {marker.read_text()}"
    assert result.stdout.split()[-1] == INSTALLED_MODULE


@pytest.mark.slow
def test_with_trust_remote_code_the_folders_own_code_is_used(planted, tmp_path):
    folders, marker = planted
    script = """
        import sys
        from evaluation.adapters import VisionLanguageModel
        print(type(VisionLanguageModel.from_pretrained(sys.argv[1], trust_remote_code=True).model).__module__)
    """
    result = run_fresh(script, folders["deepsight_marker_only"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split()[-1].startswith("transformers_modules.")
    assert "modeling_deepsight" in marker.read_text()


def test_a_folder_that_needs_its_own_code_is_refused_without_trust(planted, tmp_path):
    """A model type transformers does not know: only its own code could load it, and that needs the opt-in."""
    from evaluation.adapters import VisionLanguageModel

    folders, marker = planted
    folder = shutil.copytree(folders["deepsight"], tmp_path / "unknown_type")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "model_type": "planted_model"}))
    with pytest.raises(ValueError, match="trust_remote_code=True"):
        VisionLanguageModel.from_pretrained(str(folder))
    assert not marker.exists()


# ------------------------------------------------------------------------------------------------
# Safetensors only
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pickle_folders(tiny_deepsight_dir, dual_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("pickles")
    adapter = root / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(
        json.dumps({"peft_type": "LORA", "base_model_name_or_path": str(tiny_deepsight_dir)})
    )
    torch.save({}, adapter / "adapter_model.bin")
    return {
        "deepsight": pickle_only(shutil.copytree(tiny_deepsight_dir, root / "deepsight")),
        "dual": pickle_only(shutil.copytree(dual_dir, root / "dual")),
        "adapter": adapter,
    }


def _train_loader(folder: str):
    from types import SimpleNamespace

    from trl import ModelConfig

    from train.arguments import DeepSightTrainingArguments
    from train.loading import load_model_and_processor

    model_args = ModelConfig(model_name_or_path=folder)
    return load_model_and_processor(DeepSightTrainingArguments(), model_args, SimpleNamespace(seed=0))


def _loaders():
    from modeling_deepsight import DeepSightForConditionalGeneration

    from dataset_scripts.builders.pairs import DualEncoderScorer
    from evaluation.adapters import VisionLanguageModel
    from evaluation.zeroshot import DualEncoderModel
    from spaces_demo.responder import load_responder

    return {
        "load_checkpoint": ("deepsight", load_checkpoint),
        "load_checkpoint, adapter": ("adapter", load_checkpoint),
        "load_pretrained": ("deepsight", lambda path: load_pretrained(DeepSightForConditionalGeneration, path)),
        "eval adapter": ("deepsight", VisionLanguageModel.from_pretrained),
        "demo loader": ("deepsight", lambda path: load_responder(path, device="cpu")),
        "training": ("deepsight", _train_loader),
        "zero-shot encoder": ("dual", DualEncoderModel.from_pretrained),
        "pairs scorer": ("dual", lambda path: DualEncoderScorer(path, device="cpu")),
    }


@pytest.mark.parametrize(
    "loader",
    ["load_checkpoint", "load_checkpoint, adapter", "load_pretrained", "eval adapter", "demo loader", "training",
     "zero-shot encoder", "pairs scorer"],
)
def test_a_pickle_only_folder_is_refused_with_how_to_convert_it(loader, pickle_folders):
    folder_name, load = _loaders()[loader]
    folder = pickle_folders[folder_name]
    with pytest.raises(ValueError, match=rf"^{folder}: weights only as pickle files \(.*\.bin\).*save_pretrained"):
        load(str(folder))


def test_a_trainer_output_with_training_args_bin_beside_safetensors_is_not_refused(tiny_deepsight_dir, tmp_path):
    folder = shutil.copytree(tiny_deepsight_dir, tmp_path / "run")
    torch.save({}, folder / "training_args.bin")
    refuse_pickle_weights(folder)
    assert checked_source(str(folder)) == str(folder)


# ------------------------------------------------------------------------------------------------
# The CLI flags
# ------------------------------------------------------------------------------------------------


def _parsers(folder: str, output: str):
    from dataset_scripts.builders import pairs
    from deepsight import model_cli
    from evaluation import cli as eval_cli
    from spaces_demo import cli as demo_cli

    return {
        "eval benchmark": (eval_cli.build_parser(),
                           ["benchmark", "--model", folder, "--benchmark", folder, "--output", output]),
        "eval zeroshot": (eval_cli.build_parser(), ["zeroshot", "--model", folder, "--benchmark", folder]),
        "data pairs": (pairs.build_parser(), ["--source", "synthetic", "--output", output]),
        "demo": (demo_cli.build_parser(), ["--model", folder]),
        "model build": (model_cli.build_parser(),
                        ["build", "--vision", folder, "--text", folder, "--output", output]),
    }


@pytest.mark.parametrize("command", ["eval benchmark", "eval zeroshot", "data pairs", "demo", "model build"])
def test_every_cli_that_loads_a_model_takes_trust_remote_code_off_by_default(command, tiny_deepsight_dir, tmp_path):
    parser, argv = _parsers(str(tiny_deepsight_dir), str(tmp_path / "out"))[command]
    assert parser.parse_args(argv).trust_remote_code is False
    assert parser.parse_args([*argv, "--trust-remote-code"]).trust_remote_code is True


class _Loaded(Exception):
    """Stops a command once it has asked for its model."""


def _capture(calls: list):
    def load(*args, **kwargs):
        calls.append(kwargs)
        raise _Loaded

    return load


def test_the_cli_flags_reach_the_loaders(tiny_deepsight_dir, tiny_clip_dir, tiny_llama_dir, tmp_path, monkeypatch):
    from dataset_scripts.builders import pairs
    from deepsight import conversion, model_cli
    from evaluation import cli as eval_cli
    from evaluation import zeroshot
    from spaces_demo import cli as demo_cli
    from spaces_demo import responder

    folder, calls = str(tiny_deepsight_dir), []
    monkeypatch.setattr(eval_cli.VisionLanguageModel, "from_pretrained", _capture(calls))
    monkeypatch.setattr(zeroshot.DualEncoderModel, "from_pretrained", _capture(calls))
    monkeypatch.setattr(pairs, "DualEncoderScorer", _capture(calls))
    monkeypatch.setattr(responder, "load_responder", _capture(calls))
    monkeypatch.setattr(conversion, "deepsight_from_pretrained_components",
                        lambda *args, text_model_kwargs, **kwargs: _capture(calls)(**text_model_kwargs))
    commands = [
        (eval_cli.main, ["benchmark", "--model", folder, "--benchmark", folder, "--output", str(tmp_path)]),
        (eval_cli.main, ["zeroshot", "--model", folder, "--benchmark", folder]),
        (pairs.main, ["--source", "synthetic", "--scorer", folder, "--output", str(tmp_path / "pairs")]),
        (demo_cli.main, ["--model", folder]),
        (model_cli.main, ["build", "--vision", str(tiny_clip_dir), "--text", str(tiny_llama_dir),
                          "--output", str(tmp_path / "built")]),
    ]
    for flag in ([], ["--trust-remote-code"]):
        for main, argv in commands:
            with pytest.raises(_Loaded):
                main([*argv, *flag])
    assert [call["trust_remote_code"] for call in calls] == [False] * len(commands) + [True] * len(commands)
