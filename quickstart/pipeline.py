"""`deepsight quickstart`: the whole DeepSight pipeline end to end on one CPU.

1. renders a synthetic indoor world (train / held-out / test scenes from disjoint seeds) and builds the
   Depth Template Benchmark (test), the depth-text-bbox pairs (train, plus a held-out `test` split on which
   stage 0 measures zero-shot scene accuracy while it trains) and the Depth Instruction Dataset (train);
   unseen scenes are also written in the SUN RGB-D original layout and read back through the `sunrgbd`
   benchmark builder, the generalisation check;
2. builds the initial models (a word-level tokenizer trained on the training text, a tiny DeepSight
   and a stage-0 dual encoder sharing its vision config) and trains stage 0 / 1 / 2 with the
   `train/recipes/quickstart/` recipes through `accelerate launch` — the same scripts the GPU recipes use;
3. evaluates the stage-2 model on the test benchmark with both protocols (likelihood and generate);
4. writes `outputs/quickstart/report.md`, results, plots, and the model folder `outputs/quickstart/model`.

Every step writes its outputs into its own folder and a `.done` marker last: re-running skips finished
steps, and an interrupted training step resumes from its last checkpoint.

    deepsight quickstart                      # the main job (~15 min on 2 cores)
    deepsight quickstart --ablations          # + the paper's ablations at this scale
    deepsight quickstart --setting smoke      # seconds: every artefact, tiny sizes (used by the tests)
"""

from __future__ import annotations

import argparse
import shutil
import time
from collections import Counter
from pathlib import Path

import datasets
import yaml

from dataset_scripts.builders.pairs import pairs_card
from dataset_scripts.export import export_dataset
from deepsight.cli import HelpFormatter
from quickstart.ablations import run_ablations
from quickstart.models import build_initial_models
from quickstart.report import write_report
from quickstart.settings import HELDOUT_SEED_OFFSET, RECIPES, SETTINGS, SUN_LAYOUT_SEED_OFFSET, Setting
from quickstart.steps import (
    Step,
    accelerate_command,
    deepsight_command,
    log,
    remove_checkpoints,
    run_step,
    run_steps_concurrently,
)


class Pipeline:
    """The quickstart's steps over one output folder; see the module docstring."""

    def __init__(self, output: Path, setting: Setting, seed: int = 0):
        self.output = output
        self.setting = setting
        self.seed = seed
        self.log_file = output / "quickstart.log"
        self.data = output / "data"
        self.timings: dict[str, float] = {}

    # -- data ------------------------------------------------------------------------------------
    def data_steps(self) -> list[Step]:
        s = self.setting
        # The longest step first: with two at a time the others run beside it.
        return [
            Step("depth instructions (train scenes)", self.data / "instructions", [deepsight_command(
                "data", "instructions", "--source", "synthetic", "--num-scenes", str(s.train_scenes),
                "--seed", str(self.seed), "--output", str(self.data / "instructions"),
                "--rows-per-scene", str(s.rows_per_scene), "--mc-skills", ",".join(s.mc_skills),
                "--mc-per-scene", str(s.mc_per_scene), "--balance-names", ",".join(s.balance_names),
                *(["--distance-regions"] if s.distance_regions else []),
                *(["--unnamed-distance", {True: "twin"}.get(s.unnamed_distance, s.unnamed_distance)]
                  if s.distance_regions and s.unnamed_distance else []),
                *(["--mix", s.mix] if s.mix else []))]),
            Step("benchmark (test scenes)", self.data / "benchmark", [deepsight_command(
                "data", "benchmark", "--source", "synthetic", "--split", "test", "--seed", str(self.seed + 1),
                "--num-scenes", str(s.test_scenes), "--output", str(self.data / "benchmark"),
                "--cache-dir", str(self.data / "cache"))]),
            Step("depth-text-bbox pairs (train scenes)", self.data / "pairs_train", [deepsight_command(
                "data", "pairs", "--source", "synthetic", "--num-scenes", str(s.pairs_scenes),
                "--seed", str(self.seed), "--output", str(self.data / "pairs_train"))]),
            # Held-out scenes from their own seed (neither training nor the benchmark's test scenes).
            Step("depth-text-bbox pairs (held-out scenes)", self.data / "pairs_heldout", [deepsight_command(
                "data", "pairs", "--source", "synthetic", "--num-scenes", str(s.heldout_scenes),
                "--seed", str(self.seed + HELDOUT_SEED_OFFSET), "--output", str(self.data / "pairs_heldout"))]),
        ]

    def merge_pairs(self) -> None:
        """data/pairs = the train pairs as `train` + the held-out pairs as `test` (stage 0 evaluates on it)."""
        splits = datasets.DatasetDict({
            "train": datasets.load_dataset(str(self.data / "pairs_train"), split="train"),
            "test": datasets.load_dataset(str(self.data / "pairs_heldout"), split="train"),
        })
        card = pairs_card(splits["train"], Counter(), source="synthetic", estimator=None, scorer="label-overlap")
        export_dataset(splits, self.data / "pairs", card)

    # -- models ----------------------------------------------------------------------------------
    def build_initial_models(self) -> None:
        build_initial_models(self.output / "init", self.data, self.setting, self.seed)

    def sun_layout_steps(self) -> list[Step]:
        """Unseen scenes written in the SUN RGB-D original layout, read back through the `sunrgbd` benchmark
        builder (bit-rotated depth PNGs, annotation2Dfinal polygons): the generalisation check."""
        s, scenes, benchmark = self.setting, self.data / "sun_layout_scenes", self.data / "benchmark_sun_layout"
        return [Step("SUN-layout benchmark (unseen scenes)", benchmark, [
            deepsight_command("data", "synthetic", "--num-scenes", str(s.sun_layout_scenes), "--seed",
                              str(self.seed + SUN_LAYOUT_SEED_OFFSET), "--split", "test", "--format", "sunrgbd",
                              "--output", str(scenes)),
            deepsight_command("data", "benchmark", "--source", "sunrgbd", "--data-dir", str(scenes),
                              "--output", str(benchmark), "--cache-dir", str(self.data / "cache")),
        ])]

    def run(self, ablations: bool = False) -> None:
        started = time.time()
        self.output.mkdir(parents=True, exist_ok=True)
        data_steps = self.data_steps() + (self.sun_layout_steps() if self.setting.sun_layout_scenes else [])
        run_steps_concurrently(data_steps, self.log_file, self.setting.data_workers)
        run_step(Step("pairs: train + held-out splits", self.data / "pairs"), self.log_file, self.merge_pairs)
        run_step(Step("initial models", self.output / "init"), self.log_file, self.build_initial_models)
        for step in self.training_steps():
            run_step(step, self.log_file)
        evaluations = self.evaluation_steps()
        if self.setting.sun_layout_scenes:
            evaluations += self.evaluation_steps(name="eval_sun_layout", benchmark=self.data / "benchmark_sun_layout",
                                                 protocols=("likelihood",))
        if self.setting.distance_regions:
            evaluations.append(self.unnamed_distance_step())
        # single-threaded processes that only read the model: two at a time use both cores
        run_steps_concurrently(evaluations, self.log_file, self.setting.data_workers)
        if ablations:
            # each costs more than the default run's budget allows (~50 s CPU and 4x the evaluation)
            run_steps_concurrently(self.order_and_layout_steps(), self.log_file, self.setting.data_workers)
            run_ablations(self)
        report = write_report(self, wall_seconds=time.time() - started)
        log(f"report: {report}")

    def recipe(self, name: str, saved_as: str | None = None, **overrides) -> Path:
        """The quickstart recipe `name` with this run's seed, paths and budgets, written next to its outputs.

        `overrides` are what a run derives (paths, the setting's budgets, an ablation's variant); a None value
        keeps the recipe's.
        """
        recipe = yaml.safe_load((RECIPES / f"{name}.yaml").read_text())
        recipe.update({"seed": self.seed, **{key: value for key, value in overrides.items() if value is not None}})
        path = self.output / "recipes" / f"{saved_as or name}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(recipe, sort_keys=False))
        return path

    def training_steps(self) -> list[Step]:
        s, init, out = self.setting, self.output / "init", self.output
        resume = ["--resume_from_checkpoint", "true"]
        encoder = self.recipe(
            "encoder", model_name_or_path=str(init / "dual_encoder"), dataset_name=str(self.data / "pairs"),
            output_dir=str(out / "stage0"), max_steps=s.encoder_steps, per_device_train_batch_size=s.encoder_batch_size,
            eval_steps=s.encoder_eval_steps)
        align = self.recipe(
            "align", model_name_or_path=str(init / "model"), vision_tower=str(out / "stage0" / "vision_tower"), dataset_name=str(self.data / "pairs"),
            output_dir=str(out / "stage1"), max_steps=s.align_steps, per_device_train_batch_size=s.batch_size)
        sft = self.recipe(
            "sft", model_name_or_path=str(out / "stage1"), dataset_name=str(self.data / "instructions"), output_dir=str(out / "model"), max_steps=s.sft_steps,
            per_device_train_batch_size=s.batch_size)
        return [
            Step("stage 0: depth encoder", out / "stage0",
                 [accelerate_command("train.encoder", s.num_processes, "--config", str(encoder), *resume, threads=s.threads_per_process)],
                 after=lambda: remove_checkpoints(out / "stage0")),
            Step("stage 1: alignment", out / "stage1",
                 [accelerate_command("train.align", s.num_processes, "--config", str(align), *resume, threads=s.threads_per_process)],
                 after=lambda: remove_checkpoints(out / "stage1")),
            Step("stage 2: instruction tuning", out / "model",
                 [accelerate_command("train.sft", s.num_processes, "--config", str(sft), *resume, threads=s.threads_per_process)],
                 after=lambda: remove_checkpoints(out / "model")),
        ]

    def region_flags(self) -> list[str]:
        """How evaluation asks Distance Judgment: in the layout the instruction rows were written in."""
        return ["--distance-regions"] if self.setting.distance_regions else []

    def eval_command(self, model: Path, benchmark: Path, output: Path, protocol: str, *extra: str,
                     layout: list[str] | None = None) -> list[str]:
        """`deepsight eval benchmark` with the run's question limit and Distance layout (or the `layout` flags)."""
        limit = ["--limit", str(self.setting.eval_limit)] if self.setting.eval_limit else []
        layout = self.region_flags() if layout is None else layout
        return deepsight_command("eval", "benchmark", "--model", str(model), "--benchmark", str(benchmark),
                                 "--output", str(output), "--protocol", protocol, *limit, *layout, *extra)

    def distance_union_step(self) -> Step:
        """The test split's Distance Judgment questions asked in the paper's one-image layout (`--layout union`),
        not the per-option one the model was trained in: what an evaluator ignoring the checkpoint's layout gets."""
        folder = self.output / "eval_distance_union"
        return Step("eval: Distance Judgment in the one-image layout", folder, [self.eval_command(
            self.output / "model", self.data / "benchmark", folder, "likelihood",
            "--tasks", "distance_judgment", layout=["--layout", "union"])])

    def order_and_layout_steps(self) -> list[Step]:
        """Consistency over option orders, and Distance in the one-image layout when trained per option."""
        return [self.consistency_step(), *([self.distance_union_step()] if self.setting.distance_regions else [])]

    def consistency_step(self) -> Step:
        """The test split asked in 4 option orders per question (`--permutations 4`; 2-option tasks in both):
        consistency and accuracy per answer position (likelihood)."""
        folder = self.output / "eval_consistency"
        return Step("eval: consistency over option orders", folder, [self.eval_command(
            self.output / "model", self.data / "benchmark", folder, "likelihood", "--permutations", "4")])

    def unnamed_distance_step(self) -> Step:
        """The test split's Distance Judgment questions asked without object names (likelihood): the same regions
        and answers, with nothing but the depths to tell them -- does the model compare depths?"""
        folder = self.output / "eval_distance_unnamed"
        return Step("eval: Distance Judgment without names", folder, [self.eval_command(
            self.output / "model", self.data / "benchmark", folder, "likelihood",
            "--tasks", "distance_judgment", "--unnamed-distance")])

    def evaluation_steps(self, model: Path | None = None, name: str = "eval", benchmark: Path | None = None,
                         protocols: tuple[str, ...] = ("likelihood", "generate")) -> list[Step]:
        model, benchmark = model or self.output / "model", benchmark or self.data / "benchmark"
        return [
            Step(f"{name}: {protocol}", self.output / name / protocol,
                 [self.eval_command(model, benchmark, self.output / name / protocol, protocol)])
            for protocol in protocols
        ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="deepsight quickstart", description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter
    )
    parser.add_argument("--output", default="outputs/quickstart", help="everything goes here")
    parser.add_argument("--setting", choices=sorted(SETTINGS), default="default")
    parser.add_argument("--ablations", action="store_true", help="also run the paper's ablations (report.md)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fresh", action="store_true", help="delete --output first instead of resuming")
    args = parser.parse_args(argv)
    output = Path(args.output)
    if args.fresh and output.exists():
        shutil.rmtree(output)
    Pipeline(output=output, setting=SETTINGS[args.setting], seed=args.seed).run(ablations=args.ablations)
    return 0
