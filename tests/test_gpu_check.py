"""bench/gpu_check.py, the GPU readiness script, run as a user runs it on a machine without CUDA: it falls back to
the tiny model in fp32 and prints one JSON line of positive figures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "bench" / "gpu_check.py"
# No CUDA device visible, whatever the machine: the script must pick the tiny size by itself.
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""}
TOP_LEVEL_KEYS = {
    "device", "size", "dtype", "attn_implementation", "vision", "text", "parameters", "batch_size",
    "sequence_tokens", "steps", "memory_measure", "generation", "lora", "full_ft_zero3", "seconds",
}
GENERATION_FIGURES = ("deepsight_tokens_per_s", "llava_tokens_per_s", "ratio", "peak_memory_gib")
LORA_FIGURES = ("steps_per_s", "samples_per_s", "trainable_parameters", "loss_first", "loss_last", "peak_memory_gib")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """The script's stdout lines and the figures it wrote to --output, from one run without flags for the size."""
    output = tmp_path_factory.mktemp("gpu_check") / "figures.json"
    command = [sys.executable, str(SCRIPT), "--steps", "2", "--new-tokens", "4", "--batch-size", "2",
               "--output", str(output)]
    result = subprocess.run(command, capture_output=True, text=True, env=ENV, cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.strip().splitlines(), json.loads(output.read_text())


def is_positive_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


def test_stdout_is_one_json_line_equal_to_the_output_file(run):
    lines, written = run
    assert len(lines) == 1
    assert json.loads(lines[0]) == written


def test_without_cuda_runs_the_tiny_model_in_fp32_with_sdpa(run):
    _, figures = run
    assert set(figures) == TOP_LEVEL_KEYS
    assert (figures["device"], figures["size"], figures["dtype"]) == ("cpu", "tiny", "float32")
    assert figures["attn_implementation"] == "sdpa"
    assert figures["vision"]["image_tokens"] == 16
    assert (figures["batch_size"], figures["steps"], figures["generation"]["new_tokens"]) == (2, 2, 4)


def test_generation_and_lora_figures_are_positive_numbers(run):
    _, figures = run
    for key in GENERATION_FIGURES:
        assert is_positive_number(figures["generation"][key]), (key, figures["generation"][key])
    for key in LORA_FIGURES:
        assert is_positive_number(figures["lora"][key]), (key, figures["lora"][key])
    assert all(is_positive_number(count) for count in figures["parameters"].values())
    assert is_positive_number(figures["seconds"])


def test_lora_trains_fewer_parameters_than_the_model_holds(run):
    _, figures = run
    assert figures["lora"]["trainable_parameters"] < figures["parameters"]["deepsight"]


def test_full_fine_tuning_without_cuda_is_skipped_with_a_reason(run):
    _, figures = run
    assert set(figures["full_ft_zero3"]) == {"skipped"}
    assert figures["full_ft_zero3"]["skipped"] in ("DeepSpeed is not installed", "ZeRO-3 needs CUDA GPUs")
