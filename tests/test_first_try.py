"""What a new user meets on the first try: the stage-0 recipe on pairs from `deepsight data pairs`, error bars of a
task at 0% / 100%, a mistyped path, and datasets that read well in viewers (a depth preview, one box type)."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import datasets
import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from dataset_scripts.builders import benchmark, pairs
from dataset_scripts.builders.instructions import builder as instructions
from dataset_scripts.export import PREVIEW_COLUMN, PREVIEW_LONG_SIDE, CardInfo, export_dataset, png_bytes_from_mm
from evaluation.depth_template_accuracy.depth_template_accuracy import wilson_interval
from evaluation.runner import plot_results
from train import encoder

pytestmark = pytest.mark.usefixtures("one_torch_thread")

RECIPES = Path(__file__).resolve().parents[1] / "train" / "recipes"
SMALL = ["--width", "64", "--height", "48", "--no-progress"]
FAST_STAGE_0 = [
    "--max_steps", "2", "--per_device_train_batch_size", "4", "--per_device_eval_batch_size", "4",
    "--eval_steps", "2", "--save_strategy", "no", "--report_to", "none",
]


def build_pairs(folder: Path, *options: str, num_scenes: int = 10) -> Path:
    argv = ["--source", "synthetic", "--num-scenes", str(num_scenes), "--output", str(folder), *SMALL, *options]
    assert pairs.main(argv) == 0
    return folder


# -- the held-out split the stage-0 recipe evaluates on ---------------------------------------------------


def test_pairs_test_fraction_holds_out_the_same_rows_by_id_hash_in_one_process_or_two(tmp_path, monkeypatch):
    alone = datasets.load_dataset(str(build_pairs(tmp_path / "alone", "--test-fraction", "0.3")))
    for index in range(2):
        build_pairs(tmp_path / "sharded", "--test-fraction", "0.3", "--shard-index", str(index), "--num-shards", "2")
    sharded = datasets.load_dataset(str(tmp_path / "sharded"))

    ids = {split: list(rows["id"]) for split, rows in alone.items()}
    assert set(ids) == {"train", "test"} and len(ids["test"]) >= 1
    assert len(ids["train"]) + len(ids["test"]) == 10 and not set(ids["train"]) & set(ids["test"])
    assert all(pairs.is_held_out(i, 0.3) for i in ids["test"])
    assert {split: list(rows["id"]) for split, rows in sharded.items()} == ids


def test_pairs_test_fraction_out_of_range_is_refused(tmp_path):
    with pytest.raises(SystemExit, match="--test-fraction must be in"):
        build_pairs(tmp_path / "p", "--test-fraction", "1.0")


def test_documented_stage_0_recipe_measures_zero_shot_accuracy_on_pairs_from_deepsight_data_pairs(tmp_path):
    folder = build_pairs(tmp_path / "pairs", "--test-fraction", "0.3")
    argv = ["--config", str(RECIPES / "cpu-tiny" / "encoder.yaml"), "--dataset_name", str(folder),
            "--output_dir", str(tmp_path / "encoder"), *FAST_STAGE_0]
    assert encoder.main(argv) == 0
    accuracies = json.loads((tmp_path / "encoder" / "zero_shot_scene_accuracy.json").read_text())
    assert [step for step, _ in accuracies] == [2]


def test_stage_0_recipe_on_pairs_without_a_test_split_trains_without_evaluation_and_says_so(tmp_path, caplog):
    folder = build_pairs(tmp_path / "pairs")
    argv = ["--config", str(RECIPES / "cpu-tiny" / "encoder.yaml"), "--dataset_name", str(folder),
            "--output_dir", str(tmp_path / "encoder"), *FAST_STAGE_0]
    with caplog.at_level(logging.WARNING, logger="train.encoder"):
        assert encoder.main(argv) == 0
    assert "has no 'test' split" in caplog.text and "--test-fraction" in caplog.text
    assert json.loads((tmp_path / "encoder" / "zero_shot_scene_accuracy.json").read_text()) == []


# -- error bars --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 5, 10, 13, 15, 40, 97, 300])
def test_wilson_interval_is_exactly_0_at_0_percent_and_1_at_100_percent(n):
    assert wilson_interval(0, n)[0] == 0.0 and wilson_interval(n, n)[1] == 1.0
    for correct in range(n + 1):
        low, high = wilson_interval(correct, n)
        assert low <= correct / n <= high


def test_results_plot_of_tasks_at_0_and_100_percent_draws_its_error_bars(tmp_path):
    tasks = {"scene": (0, 10), "recognition": (10, 10), "distance": (5, 10)}
    results = {
        "model": "tiny", "protocol": "generate", "average": 0.5,
        "tasks": {t: {"accuracy": c / n, "n": n, "ci95": wilson_interval(c, n)} for t, (c, n) in tasks.items()},
    }
    results["tasks"]["scene"]["ci95"][0] = 2.8e-17  # as a results.json written before the fix holds it
    assert plot_results(results, tmp_path / "results.png").stat().st_size > 0


# -- a mistyped path ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "module, argv",
    [
        (benchmark, ["--source", "sunrgbd", "--data-dir", "./no/such/sunrgbd", "--output", "out"]),
        (benchmark, ["--source", "nyu", "--data-dir", "nyu.mat", "--split-file", "./no/splits.mat", "--output", "o"]),
        (pairs, ["--source", "coco", "--coco-dir", "./no/such/coco", "--output", "out"]),
        (pairs, ["--source", "synthetic", "--scorer", "./no/such/encoder", "--output", "out"]),
        (pairs, ["--source", "coco", "--coco-dir", ".", "--estimator", "models/no/such/glpn", "--output", "out"]),
        (instructions, ["--source", "pairs", "--pairs-dir", "./no/such/pairs", "--output", "out"]),
    ],
    ids=["benchmark --data-dir", "benchmark --split-file", "pairs --coco-dir", "pairs --scorer", "pairs --estimator",
         "instructions --pairs-dir"],
)
def test_data_commands_say_not_found_for_a_mistyped_path(module, argv, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "nyu.mat").touch()
    with pytest.raises(SystemExit):
        module.main(argv)
    missing = next(value for value in argv if "no/such" in value or "no/splits" in value)
    assert f"not found: {missing}" in capsys.readouterr().err


@pytest.mark.parametrize("option", ["--dataset_name", "--model_name_or_path"])
def test_stage_0_says_not_found_for_a_mistyped_path(option, tmp_path):
    folder = build_pairs(tmp_path / "pairs", num_scenes=2)
    values = {"--dataset_name": str(folder), "--model_name_or_path": None}
    values[option] = "./no/such/folder"
    argv = ["--config", str(RECIPES / "cpu-tiny" / "encoder.yaml"), "--output_dir", str(tmp_path / "encoder"),
            "--dataset_name", values["--dataset_name"], *FAST_STAGE_0]
    if values["--model_name_or_path"]:
        argv += ["--tiny", "false", "--model_name_or_path", values["--model_name_or_path"]]
    with pytest.raises(FileNotFoundError, match="not found: ./no/such/folder"):
        encoder.main(argv)


# -- datasets that read well where people look at them ----------------------------------------------------


def assert_preview_column(folder: Path, split: str = "train", config: str | None = None) -> datasets.Dataset:
    """Read back through `load_dataset`: a small 8-bit RGB preview beside the 16-bit depth, int32 boxes."""
    rows = datasets.load_dataset(str(folder), config, split=split)
    assert rows.features[PREVIEW_COLUMN] == datasets.Image()
    preview = rows[0][PREVIEW_COLUMN]
    depth = rows[0]["depth"] if "depth" in rows.features else rows[0]["images"][0]
    assert preview.mode == "RGB" and max(preview.size) == min(PREVIEW_LONG_SIDE, max(depth.size))  # never enlarged
    assert np.asarray(preview).dtype == np.uint8 and len(np.unique(np.asarray(preview).reshape(-1, 3), axis=0)) > 8
    return rows


def test_pairs_have_int32_pixel_boxes_and_a_small_colour_preview_beside_the_lossless_depth(tmp_path):
    folder = build_pairs(tmp_path / "pairs", num_scenes=3)
    rows = assert_preview_column(folder)
    assert rows.features["boxes"] == datasets.List(datasets.List(datasets.Value("int32")))
    assert rows[0]["depth"].mode == "I;16" and rows[0]["depth"].size == (64, 48)
    assert "## Depth preview" in (folder / "README.md").read_text()


def test_benchmark_has_int32_pixel_boxes_and_a_small_colour_preview(tmp_path):
    argv = ["--source", "synthetic", "--num-scenes", "4", "--size", "160", "120", "--output", str(tmp_path / "b"),
            "--cache-dir", str(tmp_path / "cache")]
    assert benchmark.main(argv) == 0
    rows = assert_preview_column(tmp_path / "b", split="test")
    assert rows.features["boxes"] == datasets.List(datasets.List(datasets.Value("int32")))


def test_instructions_have_int32_pixel_boxes_matching_their_box_tags_and_a_preview(tmp_path):
    argv = ["--num-scenes", "3", "--seed", "4", "--width", "96", "--height", "72", "--no-progress",
            "--output", str(tmp_path / "instructions")]
    assert instructions.main(argv) == 0
    rows = assert_preview_column(tmp_path / "instructions")
    assert rows.features["boxes"] == datasets.List(datasets.List(datasets.List(datasets.Value("int32"))))
    boxed = [row for row in rows if any(row["boxes"])]
    assert boxed, "the offline generator writes rows about regions"
    for row in boxed:
        tags = "".join(block["text"] or "" for turn in row["messages"] for block in turn["content"])
        for box in (box for image_boxes in row["boxes"] for box in image_boxes):
            assert f"<box>[{', '.join(str(v) for v in box)}]</box>" in tags


def test_export_adds_the_preview_from_the_first_image_and_keeps_the_depth_bytes(tmp_path):
    depth_mm = (np.arange(48 * 300, dtype=np.uint16).reshape(48, 300) % 5000) + 500
    png = png_bytes_from_mm(depth_mm)
    features = datasets.Features({"id": datasets.Value("string"), "images": datasets.List(datasets.Image())})
    rows = datasets.Dataset.from_list([{"id": "a", "images": [{"bytes": png, "path": None}]}], features=features)
    export_dataset(rows, tmp_path / "out", CardInfo(pretty_name="instructions-like"))

    stored = pq.read_table(next((tmp_path / "out" / "data").glob("train-*.parquet"))).to_pylist()[0]
    assert stored["images"][0]["bytes"] == png  # the depth PNG is written as given, not re-encoded
    preview = Image.open(io.BytesIO(stored[PREVIEW_COLUMN]["bytes"]))
    assert preview.mode == "RGB" and preview.size == (128, 20)
