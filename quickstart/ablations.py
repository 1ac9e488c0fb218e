"""`deepsight quickstart --ablations`: the paper's ablations at the quickstart's scale.

Every ablation trains or evaluates through the same scripts as the main run (`accelerate launch -m
train.*`, `deepsight eval ...`), in `OUTPUT/ablations/<name>/` with `.done` markers, so a re-run skips
what is finished. All rows are scored on the same questions as the main run, so differences are paired:
each row gives its accuracy with a 95% Wilson interval and, against the reference row, the difference
with a 95% interval from the per-question paired differences (normal approximation).

1. Bbox Conv at inference (paper §6.4: 63.17 vs 58.46 on Distance Judgment): the main model on the
   benchmark, and on a copy whose boxes are all empty (the mask is then all ones).
2. Stage 2 trains the projector only / the LLM only / both (paper Table 5), from the same stage-1 model
   with equal, shorter budgets (`Setting.ablation_sft_steps`).
3. Stage 0 sample ratio 0 / 0.1 / 0.3 (paper Fig. 5): zero-shot scene accuracy of the depth encoder on
   the held-out scenes through `deepsight eval zeroshot`, equal budgets (`Setting.ablation_encoder_steps`).
4. A baseline without Bbox Conv that sees the depth as a 3-channel gray image with the question's boxes
   outlined on it (the visual prompt RGB models get; Distance Judgment in the same per-option region layout,
   one outlined copy per option): a tiny LLaVA with the quickstart's tokenizer and sizes, trained stage 1 +
   stage 2 with the ablation budgets (its vision tower stays random: there is no depth-pretrained 3-channel
   tower at this scale), against DeepSight trained with the same stage-2 budget -- and, like for like, against
   DeepSight trained from its random tower too (stage 1 + 2 without stage 0). The same baseline is also trained
   and scored under every other region protocol (boxes as pixel / 0-1000 coordinates in the text, the background
   masked out, cropped to the boxes, no boxes; docs/CONTRACTS.md "Region protocols").
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import datasets
from transformers import AutoTokenizer

from dataset_scripts.export import CardInfo, export_dataset
from deepsight.checkpoints import load_pretrained
from deepsight.depth_rendering import REGION_PROTOCOLS
from deepsight.tasks import TASK_SHORT_TITLES, TASKS
from evaluation.depth_template_accuracy.depth_template_accuracy import wilson_interval
from evaluation.zeroshot import DualEncoderModel, run_zeroshot
from modeling_deepsight import DeepSightDualEncoder, DeepSightImageProcessor
from quickstart.models import build_tiny_llava_baseline
from quickstart.steps import Step, accelerate_command, deepsight_command, remove_checkpoints, run_step

Z95 = 1.959963984540054


# -- statistics --------------------------------------------------------------------------------------

def unpaired_difference(ours: list[bool], reference: list[bool]) -> tuple[float, float, float]:
    """(difference, low, high): 95% normal interval of the difference of two independent proportions."""
    if not ours or not reference:
        raise ValueError(f"unpaired difference needs two non-empty lists; got {len(ours)} and {len(reference)}")
    p, q = sum(ours) / len(ours), sum(reference) / len(reference)
    half = Z95 * math.sqrt(p * (1 - p) / len(ours) + q * (1 - q) / len(reference))
    return p - q, p - q - half, p - q + half


def paired_difference(ours: list[bool], reference: list[bool]) -> tuple[float, float, float]:
    """(mean difference, low, high): 95% normal interval of the per-question differences ours - reference."""
    if len(ours) != len(reference) or not ours:
        raise ValueError(f"paired difference needs two equally long, non-empty lists; got {len(ours)} and {len(reference)}")
    differences = [float(a) - float(b) for a, b in zip(ours, reference)]
    n = len(differences)
    mean = sum(differences) / n
    variance = sum((d - mean) ** 2 for d in differences) / max(n - 1, 1)
    half = Z95 * math.sqrt(variance / n)
    return mean, mean - half, mean + half


def read_correct(predictions: Path) -> dict[str, tuple[str, bool]]:
    """question id -> (task, correct) from an evaluation's predictions.jsonl."""
    records = {}
    for line in predictions.read_text().splitlines():
        if line.strip():
            record = json.loads(line)
            records[record["id"]] = (record["task"], bool(record["correct"]))
    if not records:
        raise ValueError(f"{predictions}: no predictions")
    return records


@dataclass
class Row:
    ablation: str
    variant: str
    metric: str
    correct: list[bool]  # per question (or per sample), aligned with the reference row's
    reference: list[bool] | None = None
    note: str = ""
    paired: bool = True  # False when only counts are known (the zero-shot evaluation keeps no per-sample record)

    def difference(self) -> tuple[float, float, float]:
        assert self.reference is not None
        return (paired_difference if self.paired else unpaired_difference)(self.correct, self.reference)

    def cells(self) -> list[str]:
        n = len(self.correct)
        accuracy = sum(self.correct) / n
        low, high = wilson_interval(sum(self.correct), n)
        cells = [self.ablation, self.variant, self.metric, str(n), f"{100 * accuracy:.1f} [{100 * low:.1f}–{100 * high:.1f}]"]
        if self.reference is None:
            cells.append("reference")
        else:
            mean, dlow, dhigh = self.difference()
            cells.append(f"{100 * mean:+.1f} [{100 * dlow:+.1f}, {100 * dhigh:+.1f}]")
        return [*cells, self.note]

    def as_dict(self) -> dict[str, Any]:
        n = len(self.correct)
        result = {"ablation": self.ablation, "variant": self.variant, "metric": self.metric, "n": n,
                  "accuracy": sum(self.correct) / n, "ci95": wilson_interval(sum(self.correct), n), "note": self.note}
        if self.reference is not None:
            mean, low, high = self.difference()
            result["difference"] = {"mean": mean, "ci95": [low, high], "paired": self.paired}
        return result


def markdown(rows: list[Row]) -> str:
    header = ["ablation", "variant", "metric", "n", "accuracy % [95% CI]", "difference vs reference (points) [95% CI]", "note"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row.cells()) + " |" for row in rows]
    return "\n".join(lines)


def task_rows(ablation: str, variants: dict[str, Path], reference: str, notes: dict[str, str] | None = None,
              tasks: tuple[str, ...] = TASKS) -> list[Row]:
    """Rows per task and over all questions, for evaluations (predictions.jsonl) of the same questions."""
    predictions = {name: read_correct(path) for name, path in variants.items()}
    ids = sorted(predictions[reference])
    for name, records in predictions.items():
        if sorted(records) != ids:
            raise ValueError(f"ablation {ablation!r}: variant {name!r} was scored on other questions than {reference!r}")
    rows = []
    for metric in ("all questions (micro)", *tasks):
        selected = [i for i in ids if metric.startswith("all") or predictions[reference][i][0] == metric]
        if not selected:
            continue
        base = [predictions[reference][i][1] for i in selected]
        for name in variants:
            correct = [predictions[name][i][1] for i in selected]
            rows.append(Row(ablation, name, TASK_SHORT_TITLES.get(metric, metric), correct,
                            None if name == reference else base, (notes or {}).get(name, "")))
    return rows


# -- steps -------------------------------------------------------------------------------------------

class Ablations:
    def __init__(self, pipeline):
        self.pipeline = pipeline
        self.setting = pipeline.setting
        self.folder = pipeline.output / "ablations"
        self.benchmark = self.folder / "benchmark"

    def run_step(self, step: Step, action=None) -> None:
        run_step(step, self.pipeline.log_file, action)

    def evaluate(
        self, model: Path, name: str, benchmark: Path | None = None, region_protocol: str | None = None
    ) -> Path:
        """Likelihood evaluation of `model` (the main protocol), a 3-channel model's boxes shown by
        `region_protocol` (default: the harness's, outline); returns its predictions.jsonl."""
        output = self.folder / name
        protocol = ["--region-protocol", region_protocol] if region_protocol else []
        self.run_step(Step(f"ablation eval: {name}", output, [deepsight_command(
            "eval", "benchmark", "--model", str(model), "--benchmark", str(benchmark or self.benchmark),
            "--output", str(output), "--protocol", "likelihood", *self.pipeline.region_flags(), *protocol)]))
        return output / "predictions.jsonl"

    # The questions every ablation is scored on
    def write_benchmarks(self) -> None:
        """ablations/benchmark: the first `ablation_questions_per_task` test questions of each task (in the
        benchmark's order, no selection by outcome); ablations/benchmark_without_boxes: the same with every
        `boxes` empty, so the Bbox Conv mask is all ones."""
        builder = datasets.load_dataset_builder(str(self.pipeline.data / "benchmark"))
        loaded = datasets.load_dataset(builder.name, data_files=builder.config.data_files, features=builder.info.features)
        per_task = self.setting.ablation_questions_per_task

        def subset(ds):
            seen: dict[str, int] = {}
            keep = []
            for index, task in enumerate(ds["task"]):
                seen[task] = seen.get(task, 0) + 1
                if seen[task] <= per_task:
                    keep.append(index)
            return ds.select(keep)

        subsets = datasets.DatasetDict({split: subset(ds) for split, ds in loaded.items()})
        card = CardInfo(pretty_name="Depth Template Benchmark, ablation subset",
                        description=f"The first {per_task} questions per task of `{self.pipeline.data / 'benchmark'}`.",
                        license="other")
        export_dataset(subsets, self.benchmark, card, config_name=builder.config.name)
        boxless = datasets.DatasetDict({split: ds.map(lambda row: {"boxes": []}, desc="empty boxes")
                                        for split, ds in subsets.items()})
        card = CardInfo(pretty_name="Depth Template Benchmark without boxes (ablation)",
                        description="The ablation subset with every `boxes` emptied: the model sees an all-ones "
                                    "Bbox Conv mask, i.e. no region hint (the Bbox Conv ablation).",
                        license="other")
        export_dataset(boxless, self.folder / "benchmark_without_boxes", card, config_name=builder.config.name)

    # 1. Bbox Conv at inference
    def bbox_conv(self) -> list[Row]:
        model = self.pipeline.output / "model"
        variants = {"boxes in the mask (DeepSight)": self.evaluate(model, "bbox_conv_on"),
                    "all-ones mask (no Bbox Conv hint)": self.evaluate(model, "bbox_conv_off",
                                                                        self.folder / "benchmark_without_boxes")}
        return task_rows("Bbox Conv at inference", variants, reference="boxes in the mask (DeepSight)",
                         tasks=("recognition", "distance_judgment"))

    # 2. What stage 2 trains
    def train_sft(self, name: str, model: Path, train_parts: str, steps: int, **overrides) -> Path:
        s, p = self.setting, self.pipeline
        output = self.folder / name
        fields = dict(model_name_or_path=str(model), dataset_name=str(p.data / "instructions"),
                      output_dir=str(output), max_steps=steps, per_device_train_batch_size=s.batch_size,
                      train_parts=train_parts)
        recipe = p.recipe("sft", saved_as=name, **{**fields, **overrides})
        self.run_step(Step(f"ablation train: {name}", output, [accelerate_command(
            "train.sft", s.num_processes, "--config", str(recipe), "--resume_from_checkpoint", "true",
            threads=s.threads_per_process)], after=lambda: remove_checkpoints(output)))
        return output

    def train_parts(self) -> list[Row]:
        steps = self.setting.ablation_sft_steps
        variants = {}
        for parts in ("both", "projector", "llm"):
            model = self.train_sft(f"sft_{parts}", self.pipeline.output / "stage1", parts, steps)
            variants[parts] = self.evaluate(model, f"sft_{parts}_eval")
        return task_rows(f"Stage 2 trains ({steps} steps each)", variants, reference="both")

    # 3. Stage-0 sample ratio
    def train_encoder(self, name: str, sample_ratio: float, steps: int) -> Path:
        s, p = self.setting, self.pipeline
        output = self.folder / name
        recipe = p.recipe("encoder", saved_as=name, model_name_or_path=str(p.output / "init" / "dual_encoder"),
                          dataset_name=str(p.data / "pairs"), output_dir=str(output), max_steps=steps,
                          per_device_train_batch_size=s.encoder_batch_size, sample_ratio=sample_ratio,
                          eval_strategy="no")
        self.run_step(Step(f"ablation train: {name}", output, [accelerate_command(
            "train.encoder", s.num_processes, "--config", str(recipe), "--resume_from_checkpoint", "true",
            threads=s.threads_per_process)], after=lambda: remove_checkpoints(output)))
        return output

    def zeroshot(self, model: Path, name: str) -> list[bool]:
        output = self.folder / name
        self.run_step(Step(f"ablation zero-shot: {name}", output), lambda: zero_shot_scene_accuracy(
            model, self.pipeline.data / "pairs", output))
        return per_sample_correct(output / "zeroshot.json")

    def sample_ratio(self) -> list[Row]:
        steps = self.setting.ablation_encoder_steps
        results = {}
        for ratio in (0.0, 0.1, 0.3):
            encoder = self.train_encoder(f"encoder_ratio_{ratio}", ratio, steps)
            results[ratio] = self.zeroshot(encoder, f"encoder_ratio_{ratio}_zeroshot")
        return [Row(f"Stage-0 sample ratio ({steps} steps each)", f"sample_ratio {ratio}",
                    "zero-shot scene (held-out scenes)", correct, None if ratio == 0.1 else results[0.1],
                    paired=False)
                for ratio, correct in results.items()]

    # 4. A 3-channel baseline without Bbox Conv
    def build_baseline(self) -> None:
        build_tiny_llava_baseline(self.pipeline.output / "init" / "model", self.folder / "llava_init",
                                  self.setting, self.pipeline.seed)

    def train_align(self, name: str, model: Path, **overrides) -> Path:
        """Stage 1 of an ablation model on the pairs, with the main run's budget."""
        s, p = self.setting, self.pipeline
        output = self.folder / name
        recipe = p.recipe("align", saved_as=name, model_name_or_path=str(model), dataset_name=str(p.data / "pairs"),
                          output_dir=str(output), max_steps=s.align_steps, per_device_train_batch_size=s.batch_size,
                          **overrides)
        self.run_step(Step(f"ablation train: {name}", output, [accelerate_command(
            "train.align", s.num_processes, "--config", str(recipe), "--resume_from_checkpoint", "true",
            threads=s.threads_per_process)], after=lambda: remove_checkpoints(output)))
        return output

    def baseline(self) -> list[Row]:
        s, p = self.setting, self.pipeline
        steps = s.ablation_sft_steps
        self.run_step(Step("ablation model: tiny LLaVA baseline", self.folder / "llava_init"), self.build_baseline)
        llava_align = self.train_align("llava_align", self.folder / "llava_init", image_mode="gray")
        llava = self.train_sft("llava_sft", llava_align, "both", steps, image_mode="gray")
        deepsight = self.folder / "sft_both"
        if not (deepsight / ".done").exists():
            deepsight = self.train_sft("sft_both", p.output / "stage1", "both", steps)
        # The LLaVA's vision tower starts random (no depth-pretrained 3-channel tower exists at this scale), so
        # DeepSight is also trained from its random tower, without stage 0: that pair differs only in what the
        # tower reads (metric depth + Bbox-Conv mask vs a gray image with the boxes outlined).
        random_align = self.train_align("no_stage0_align", p.output / "init" / "model")
        random_tower = self.train_sft("no_stage0_sft", random_align, "both", steps)
        llava_predictions = self.evaluate(llava, "llava_sft_eval")
        return [
            *task_rows(f"3-channel baseline ({steps} stage-2 steps each)",
                       {"DeepSight (depth + Bbox Conv)": self.evaluate(deepsight, "sft_both_eval"),
                        "tiny LLaVA, gray RGB + box outlines": llava_predictions,
                        **self.baseline_protocols(llava_align, steps)},
                       reference="DeepSight (depth + Bbox Conv)"),
            *task_rows(f"3-channel baseline, both towers random ({steps} stage-2 steps each)",
                       {"DeepSight without stage 0": self.evaluate(random_tower, "no_stage0_sft_eval"),
                        "tiny LLaVA, gray RGB + box outlines": llava_predictions},
                       reference="DeepSight without stage 0"),
        ]

    def baseline_protocols(self, llava_align: Path, steps: int) -> dict[str, Path]:
        """The 3-channel baseline trained and scored under each other region protocol (docs/CONTRACTS.md, "Region
        protocols"; outline is `llava_sft`): variant name -> predictions.jsonl."""
        variants = {}
        for protocol in REGION_PROTOCOLS:
            if protocol != "outline":
                name = f"llava_sft_{protocol.replace('-', '_')}"
                model = self.train_sft(name, llava_align, "both", steps, image_mode="gray", box_prompt=protocol)
                predictions = self.evaluate(model, f"{name}_eval", region_protocol=protocol)
                variants[f"tiny LLaVA, gray RGB + {protocol}"] = predictions
        return variants


def zero_shot_scene_accuracy(model: Path, pairs: Path, output: Path) -> None:
    """`evaluation.zeroshot.run_zeroshot` (what `deepsight eval zeroshot` runs) on the held-out pairs split.

    Called in-process because that CLI loads the processor with AutoProcessor, and a train.encoder output
    folder holds a tokenizer whose config names DeepSightProcessor without the processor's module file.
    """
    processor = SimpleNamespace(image_processor=DeepSightImageProcessor.from_pretrained(model),
                                tokenizer=AutoTokenizer.from_pretrained(model))
    encoder = DualEncoderModel(load_pretrained(DeepSightDualEncoder, model).eval(), processor, name=str(model))
    run_zeroshot(encoder, str(pairs), dataset="auto", split="test", output_dir=output)


def per_sample_correct(path: Path) -> list[bool]:
    """Correct / wrong per sample from `deepsight eval zeroshot`'s zeroshot.json (counts only: in no order)."""
    results = json.loads(path.read_text())
    n, correct = int(results["n"]), round(results["top1"] * results["n"])
    return [True] * correct + [False] * (n - correct)


def run_ablations(pipeline) -> Path:
    """Run every ablation (skipping finished steps); write OUTPUT/ablations/ablations.md and .json."""
    ablations = Ablations(pipeline)
    ablations.run_step(Step("ablation data: benchmark subsets", ablations.folder / "data"), ablations.write_benchmarks)
    rows = [*ablations.bbox_conv(), *ablations.train_parts(), *ablations.sample_ratio(), *ablations.baseline()]
    ablations.folder.mkdir(parents=True, exist_ok=True)
    (ablations.folder / "ablations.json").write_text(json.dumps([row.as_dict() for row in rows], indent=1))
    text = (f"Likelihood protocol on the first {pipeline.setting.ablation_questions_per_task} test questions of "
            "each task (zero-shot rows: the held-out pairs scenes). Differences are paired per question against "
            "the row marked `reference` (zero-shot rows: unpaired, counts only).\n\n" + markdown(rows))
    path = ablations.folder / "ablations.md"
    path.write_text(text + "\n")
    return path
