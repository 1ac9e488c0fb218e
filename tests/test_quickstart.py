"""`deepsight quickstart`: the smoke setting end to end, and the ablations' statistics.

The end-to-end test runs the real pipeline (data CLIs, `accelerate launch -m train.*`, `deepsight eval`)
on the `smoke` setting: a dozen scenes, two steps per stage. It checks artefacts, not accuracy.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from deepsight.tasks import TASKS
from quickstart.ablations import Row, paired_difference, unpaired_difference, wilson_interval

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """(output folder, console output of a second run over the finished folder)."""
    from quickstart.pipeline import main

    output = tmp_path_factory.mktemp("quickstart") / "run"
    assert main(["--setting", "smoke", "--output", str(output)]) == 0
    done_times = {path: path.stat().st_mtime for path in output.rglob(".done")}
    rerun = subprocess.run([sys.executable, "-m", "deepsight.cli", "quickstart", "--setting", "smoke",
                            "--output", str(output)], capture_output=True, text=True, cwd=REPO, timeout=300,
                           env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert rerun.returncode == 0, rerun.stdout[-2000:] + rerun.stderr[-2000:]
    return output, rerun.stdout, done_times


@pytest.mark.slow
def test_smoke_run_produces_a_model_that_loads_in_a_fresh_process(smoke_run):
    output, _, _ = smoke_run
    code = (
        "import sys, torch\n"
        "from transformers import AutoModelForImageTextToText, AutoProcessor\n"
        "model = AutoModelForImageTextToText.from_pretrained(sys.argv[1], trust_remote_code=True)\n"
        "processor = AutoProcessor.from_pretrained(sys.argv[1], trust_remote_code=True)\n"
        "print(type(model).__name__, type(processor).__name__, model.config.image_seq_length)\n"
    )
    loaded = subprocess.run([sys.executable, "-c", code, str(output / "model")], capture_output=True, text=True,
                            timeout=120, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    name, processor, image_tokens = loaded.stdout.split()[-3:]
    assert name == "DeepSightForConditionalGeneration" and processor == "DeepSightProcessor"
    assert int(image_tokens) == json.loads((output / "init" / "sizes.json").read_text())["image_tokens"]


@pytest.mark.slow
@pytest.mark.parametrize("folder", ["eval/likelihood", "eval/generate", "eval_sun_layout/likelihood"])
def test_smoke_run_writes_results_per_protocol(smoke_run, folder):
    output, _, _ = smoke_run
    results = json.loads((output / folder / "results.json").read_text())
    predictions = (output / folder / "predictions.jsonl").read_text().splitlines()
    assert results["n"] == len(predictions) > 0
    assert results["protocol"] == folder.split("/")[-1]
    assert set(results["tasks"]) <= set(TASKS) and results["tasks"]
    assert 0.0 <= results["average"] <= 1.0


@pytest.mark.slow
def test_smoke_run_asks_distance_without_names_on_the_same_questions_and_reports_it(smoke_run):
    from deepsight.prompts import UNNAMED_REGIONS

    import datasets

    output, _, _ = smoke_run
    unnamed = [json.loads(line) for line in (output / "eval_distance_unnamed" / "predictions.jsonl").read_text().splitlines()]
    benchmark = datasets.load_dataset(str(output / "data" / "benchmark"), split="test")
    rows = {row_id: (options, answer) for row_id, options, answer in
            zip(benchmark["id"], benchmark["options"], benchmark["answer_index"])}
    assert unnamed and all(r["task"] == "distance_judgment" for r in unnamed)
    for record in unnamed:
        options, answer = rows[record["id"]]
        assert record["answer_index"] == answer
        assert all(region in record["prompt"] for region in UNNAMED_REGIONS)
        assert not any(name in record["prompt"] for name in options)
    assert "asked again without the object names" in (output / "report.md").read_text()


@pytest.mark.slow
def test_smoke_run_gives_stage0_a_held_out_split_and_scores_it(smoke_run):
    import datasets

    output, _, _ = smoke_run
    pairs = datasets.load_dataset(str(output / "data" / "pairs"))
    assert set(pairs) == {"train", "test"}
    assert not set(pairs["train"]["id"]) & set(pairs["test"]["id"])
    curve = json.loads((output / "stage0" / "zero_shot_scene_accuracy.json").read_text())
    assert curve and all(0.0 <= accuracy <= 1.0 for _, accuracy in curve)


@pytest.mark.slow
def test_smoke_run_writes_a_report_with_the_results_and_targets(smoke_run):
    output, _, _ = smoke_run
    report = (output / "report.md").read_text()
    assert "| Distance Judgment |" in report and "Targets" in report
    assert "SUN RGB-D original layout" in report
    for artefact in ("stage0/vision_tower", "stage1/config.json", "data/benchmark/README.md",
                     "data/instructions/README.md", "model/model.safetensors", "model/label_masking.json"):
        assert (output / artefact).exists(), artefact
    assert not list((output / "model").glob("checkpoint-*")), "finished steps keep no optimizer checkpoints"
    card = (output / "model" / "README.md").read_text()
    assert "pipeline_tag: image-text-to-text" in card and "trust_remote_code=True" in card
    # the quickstart model is trained and evaluated in the per-option region layout, which its card entries name
    assert "Avg. accuracy over tasks (likelihood, per_option)" in card
    assert "Avg. accuracy over tasks (generate, per_option)" in card


@pytest.mark.slow
def test_rerun_skips_every_finished_step(smoke_run):
    output, console, done_times = smoke_run
    assert "starting" not in console.replace("--resume", "")
    assert console.count("done already") == len(done_times)
    assert {path: path.stat().st_mtime for path in output.rglob(".done")} == done_times


@pytest.mark.slow
def test_ablations_on_a_finished_run_train_every_variant_and_report_each_ablation(smoke_run, tmp_path):
    """`--ablations` over a finished run (a copy: the other tests read the original) adds only its own steps."""
    import shutil

    from quickstart.pipeline import main

    output = tmp_path / "run"
    shutil.copytree(smoke_run[0], output)
    assert main(["--setting", "smoke", "--output", str(output), "--ablations"]) == 0
    rows = json.loads((output / "ablations" / "ablations.json").read_text())
    ablations = {row["ablation"].split(" (")[0] for row in rows}
    assert ablations == {"Bbox Conv at inference", "Stage 2 trains", "Stage-0 sample ratio", "3-channel baseline",
                         "3-channel baseline, both towers random"}
    for ablation in ablations:  # exactly one reference per ablation and metric; every other row has a difference
        for metric in {row["metric"] for row in rows if row["ablation"].startswith(ablation + " (")}:
            same = [row for row in rows if row["ablation"].startswith(ablation + " (") and row["metric"] == metric]
            assert sum("difference" not in row for row in same) == 1 and len(same) >= 2
    variants = {row["variant"] for row in rows}
    assert {"DeepSight without stage 0", "tiny LLaVA, gray RGB + box outlines", "projector", "llm"} <= variants
    llava_config = json.loads((output / "ablations" / "llava_sft_eval" / "run_config.json").read_text())
    assert llava_config["box_prompt"] == "outline"  # the baseline is scored on the outlines it was trained on
    assert "## Ablations" in (output / "report.md").read_text()
    assert not (smoke_run[0] / "ablations").exists()


def test_wilson_interval_contains_the_proportion_and_narrows_with_n():
    low, high = wilson_interval(30, 40)
    assert low < 0.75 < high
    wide, narrow = wilson_interval(3, 4), wilson_interval(300, 400)
    assert narrow[1] - narrow[0] < wide[1] - wide[0]
    with pytest.raises(ValueError, match="n"):
        wilson_interval(0, 0)


def test_paired_difference_is_zero_for_identical_answers_and_signed_otherwise():
    answers = [True, False, True, True]
    assert paired_difference(answers, answers)[:1] == (0.0,)
    mean, low, high = paired_difference([True] * 50 + [False] * 50, [False] * 100)
    assert mean == pytest.approx(0.5) and 0 < low < mean < high
    with pytest.raises(ValueError, match="equally long"):
        paired_difference([True], [True, False])


def test_unpaired_difference_uses_both_sample_sizes():
    mean, low, high = unpaired_difference([True] * 8 + [False] * 2, [True] * 5 + [False] * 5)
    assert mean == pytest.approx(0.3) and low < 0.3 < high


def test_ablation_row_marks_the_reference_and_reports_a_difference():
    reference = Row("a", "ref", "all", [True, False, True, False])
    other = Row("a", "other", "all", [True, True, True, False], reference=reference.correct)
    assert reference.cells()[5] == "reference"
    assert other.as_dict()["difference"]["mean"] == pytest.approx(0.25)


def test_default_run_trains_with_the_quickstart_recipes_as_written(tmp_path, monkeypatch):
    """`make quickstart` adds nothing to train/recipes/quickstart/*.yaml but stage 0's tower for stage 1; smoke shrinks."""
    import yaml

    from quickstart.pipeline import Pipeline
    from quickstart.settings import RECIPES, SETTINGS

    monkeypatch.chdir(tmp_path)
    Pipeline(output=Path("outputs/quickstart"), setting=SETTINGS["default"]).training_steps()
    for stage in ("encoder", "align", "sft"):
        written = yaml.safe_load((tmp_path / "outputs/quickstart/recipes" / f"{stage}.yaml").read_text())
        recipe = yaml.safe_load((RECIPES / f"{stage}.yaml").read_text())
        if stage == "align":
            recipe["vision_tower"] = "outputs/quickstart/stage0/vision_tower"
        assert written == recipe
    Pipeline(output=Path("smoke"), setting=SETTINGS["smoke"], seed=3).training_steps()
    sft = yaml.safe_load((tmp_path / "smoke/recipes/sft.yaml").read_text())
    assert (sft["max_steps"], sft["per_device_train_batch_size"], sft["seed"]) == (2, 4, 3)
    assert sft["learning_rate"] == yaml.safe_load((RECIPES / "sft.yaml").read_text())["learning_rate"]
