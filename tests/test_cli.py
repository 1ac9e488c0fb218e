"""The `deepsight` command: one flag style, defaults in every help, `--version`, "not found: <path>"."""

import argparse
import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

import pytest

from deepsight import cli
from deepsight.cli import HelpFormatter, existing_path_or_hub_id, package_version
from deepsight.paths import looks_like_local_path

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONPATH": str(REPO)}

# Every `deepsight ...` command line whose help lists options with a default.
COMMANDS_WITH_DEFAULTS = [
    ["model", "demo"],
    ["model", "build"],
    ["data", "synthetic"],
    ["data", "benchmark"],
    ["data", "pairs"],
    ["data", "instructions"],
    ["train"],
    ["train", "encoder"],
    ["train", "align"],
    ["train", "sft"],
    ["eval", "benchmark"],
    ["eval", "zeroshot"],
    ["demo"],
    ["quickstart"],
]
# Command lines with no option that has a default to show (area menus, and commands of required options).
OTHER_COMMANDS = [[], ["model"], ["model", "info"], ["data"], ["data", "publish"], ["eval"], ["eval", "compare"],
                  ["eval", "card"]]


def run_help(argv: list[str], capsys) -> str:
    """`deepsight ARGV --help` in this process: it must succeed, whether the parser returns or exits."""
    try:
        code = cli.main([*argv, "--help"])
    except SystemExit as stop:
        code = stop.code
    assert code in (0, None), f"deepsight {' '.join(argv)} --help exited with {code}"
    return capsys.readouterr().out


def test_version_prints_the_package_version():
    result = subprocess.run([sys.executable, "-m", "deepsight.cli", "--version"], capture_output=True, text=True,
                            env=ENV, cwd=REPO, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"deepsight {package_version()}"


def test_version_falls_back_to_setup_cfg_when_the_package_is_not_installed(monkeypatch):
    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", not_installed)
    setup_cfg = (REPO / "setup.cfg").read_text()
    assert f"version = {package_version()}\n" in setup_cfg


@pytest.mark.parametrize("argv", COMMANDS_WITH_DEFAULTS, ids=" ".join)
def test_every_command_help_shows_its_defaults(argv, capsys):
    out = run_help(argv, capsys)
    assert "usage:" in out
    assert "(default:" in out


@pytest.mark.parametrize("argv", OTHER_COMMANDS, ids=lambda argv: " ".join(argv) or "deepsight")
def test_every_other_help_succeeds(argv, capsys):
    assert "usage:" in run_help(argv, capsys)


def test_options_use_dashes_everywhere_but_the_train_stages_fields(capsys):
    for argv in COMMANDS_WITH_DEFAULTS + OTHER_COMMANDS:
        if argv[:1] == ["train"] and len(argv) > 1:
            continue  # TRL's parser: every dataclass field, in both spellings
        options = [word for word in run_help(argv, capsys).split() if word.startswith("--")]
        assert not [option for option in options if "_" in option.split("=")[0]], argv


def test_help_formatter_shows_a_default_once_and_only_when_there_is_one():
    parser = argparse.ArgumentParser(prog="x", formatter_class=HelpFormatter)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--size", default="s", help="the size (default: %(default)s)")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available)")
    parser.add_argument("--flag", action="store_true", help="a switch")
    text = " ".join(parser.format_help().split())
    assert "--steps STEPS (default: 3)" in text
    assert text.count("(default: s)") == 1
    assert "(default: None)" not in text and "(default: False)" not in text


@pytest.mark.parametrize("spelling", ["dash", "underscore"])
def test_train_launcher_options_accept_dash_and_underscore_spellings(spelling):
    from train.cli import build_parser

    processes, config = ("--num-processes", "--accelerate-config")
    if spelling == "underscore":
        processes, config = ("--num_processes", "--accelerate_config")
    launcher, rest = build_parser().parse_known_args(
        ["sft", processes, "2", config, "zero2.yaml", "--max-steps", "3"]
    )
    assert (launcher.stage, launcher.num_processes, launcher.accelerate_config) == ("sft", 2, "zero2.yaml")
    assert rest == ["--max-steps", "3"]  # the stage's own fields go through untouched


@pytest.mark.parametrize("flag", ["--max-steps", "--max_steps"])
def test_train_stage_fields_accept_dash_and_underscore_spellings(flag, tmp_path):
    from train.sft import make_parser

    parsed = make_parser().parse_args_into_dataclasses([flag, "3", "--bf16", "false", "--output-dir", str(tmp_path)])
    training_args = next(part for part in parsed if type(part).__name__ == "SFTConfig")
    assert training_args.max_steps == 3


def test_train_launcher_defaults_and_help_show_only_the_dash_spellings():
    from train.cli import build_parser

    launcher, _ = build_parser().parse_known_args(["align"])
    assert (launcher.num_processes, launcher.accelerate_config) == (1, None)
    help_text = build_parser().format_help()
    assert "--num-processes" in help_text and "--accelerate-config" in help_text
    assert "--num_processes" not in help_text and "--accelerate_config" not in help_text


@pytest.mark.parametrize("value", ["org/model", "Qwen/Qwen2.5-VL-3B-Instruct"])
def test_a_hub_id_is_not_a_local_path(value):
    assert not looks_like_local_path(value)
    assert existing_path_or_hub_id(value) == value


@pytest.mark.parametrize("value", ["./typo", "/no/such/folder", "~/no-such-folder", "outputs/x/model", "typo"])
def test_a_missing_local_path_is_not_found(value):
    assert looks_like_local_path(value)
    with pytest.raises(argparse.ArgumentTypeError, match=f"^not found: {value}$"):
        existing_path_or_hub_id(value)


def test_an_existing_folder_passes_as_given(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "model").mkdir()
    assert existing_path_or_hub_id("model") == "model"
    assert existing_path_or_hub_id(str(tmp_path / "model")) == str(tmp_path / "model")


@pytest.mark.parametrize(
    "argv",
    [
        ["eval", "benchmark", "--model", "./typo", "--benchmark", "{folder}", "--output", "{folder}/out"],
        ["eval", "benchmark", "--model", "{folder}", "--benchmark", "./typo", "--output", "{folder}/out"],
        ["eval", "zeroshot", "--model", "./typo", "--benchmark", "{folder}"],
        ["demo", "--model", "./typo"],
        ["model", "info", "./typo"],
        ["model", "build", "--vision", "./typo", "--text", "{folder}", "--output", "{folder}/out"],
        ["eval", "compare", "./typo"],
    ],
    ids=lambda argv: " ".join(argv[:2]),
)
def test_a_mistyped_local_path_says_not_found_before_any_hub_call(argv, tmp_path, capsys):
    argv = [word.format(folder=tmp_path) for word in argv]
    with pytest.raises(SystemExit) as stop:
        cli.main(argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "not found: ./typo" in err
    assert "huggingface" not in err.lower() and "repo id" not in err.lower()


def test_eval_benchmark_with_a_mistyped_model_fails_in_a_fresh_process(tmp_path):
    command = [sys.executable, "-m", "deepsight.cli", "eval", "benchmark", "--model", "./typo",
               "--benchmark", str(tmp_path), "--output", str(tmp_path / "out")]
    result = subprocess.run(command, capture_output=True, text=True, env=ENV, cwd=tmp_path, timeout=300)
    assert result.returncode != 0
    assert "not found: ./typo" in result.stderr
    assert "huggingface" not in result.stderr.lower() and "Traceback" not in result.stderr


def test_top_level_help_imports_no_area_and_no_torch():
    script = (
        "import sys\n"
        "from deepsight.cli import main\n"
        "assert main(['--help']) == 0\n"
        "heavy = [name for name in ('torch', 'transformers', 'gradio', 'evaluation', 'train') if name in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=ENV, cwd=REPO,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert "COMMAND" in result.stdout


def test_a_bare_name_is_a_hub_id_only_while_the_hub_can_be_reached(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    assert not looks_like_local_path("gpt2")  # a canonical Hub name
    assert existing_path_or_hub_id("gpt2") == "gpt2"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert looks_like_local_path("gpt2")  # offline nothing else can answer to it: a mistyped folder
    with pytest.raises(argparse.ArgumentTypeError, match="^not found: gpt2$"):
        existing_path_or_hub_id("gpt2")
