"""Stage-2 training throughput: DeepSight vs LLaVA of identical size, both under SFTTrainer and TRL's collator.

Both models are built at the same size (ViT, 2-layer GELU projector, Llama LM, vocabulary) with random
weights and trained by `train.trainer.DepthSFTTrainer` (an SFTTrainer) on the same smoke instruction rows with
TRL's vision collator with `assistant_only_loss` (train/rows.py: the box tags become DeepSight's box
mask; LLaVA gets depth as a gray 3-channel image, `ConversationRows`), vision frozen, projector + LLM
trained, fp32. Each trainer is driven a step at a time (its dataloader + collator, `training_step`, optimizer and scheduler step -- what `Trainer.train`
does per update) and the runs interleave step by step, so load from other jobs on this shared CPU hits all
of them alike; every figure is the median over the timed steps (the first step is a warm-up).

Same sequences, so that the ratio measures the implementations and not the data: every run reads the rows in
the dataset's order (``train_sampling_strategy="sequential"``; the default random sampler gave each trainer its
own order, hence batches of different lengths and a ratio that measured the data), both processors
render with the same chat template (the tokenizer's, DeepSight's default) and expand ``<image>`` to the same
(image_size / patch_size)^2 tokens (CLS dropped by the "default" feature strategy of both), and DeepSight's
boxes go to the box mask, not the text. The bench checks it: every step of the two runs must have the same
non-pad tokens, image tokens and padded length, or it stops with an error.

Reported, by wall clock and per CPU-second of the process (divided by the thread count; on a machine shared
with other jobs wall time also counts waits for a core, CPU time does not):
- samples/s and tokens/s (non-pad tokens) of each; ratio DeepSight / LLaVA (goal >= 1.0), also as the median
  of the per-round ratios (the two steps of a round ran back to back on the same batch, so a burst of load
  that lasts a round cancels out: on this machine a step takes 0.5 s idle and up to 10 s under load);
- DeepSight with TRL's fused LM head vs the model's own loss (same first-step loss, and the speed ratio)
  -- the measurement behind `loss_implementation: model` in the recipes (train/README.md);
- achieved FLOP/s (analytic count of the matmul work of one step: frozen ViT forward, projector and LLM
  forward + backward, attention, LM head) as a fraction of a plain fp32 matmul peak measured in this run.

    .venv/bin/python bench/bench_train.py [--steps 24] [--batch_size 8] [--threads 1]

On a loaded machine prefer --threads 1: two OpenMP threads on two busy cores wait for each other at every
op (a 0.5 s step then takes up to 10 s), which swamps the difference being measured.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from trl import SFTConfig  # noqa: E402

from deepsight.tiny import build_tiny_deepsight, build_tiny_llava, train_tiny_tokenizer  # noqa: E402
from tests.fixtures.smoke_data import make_instruction_rows  # noqa: E402
from train.parameters import apply_train_parts, part_of  # noqa: E402
from train.rows import ConversationRows, vision_collator  # noqa: E402
from train.trainer import DepthSFTTrainer  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=16, help="timed steps per run (one more warm-up step)")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--image_size", type=int, default=112)
    parser.add_argument("--patch_size", type=int, default=14)
    parser.add_argument("--hidden", type=int, default=256, help="ViT and LM width")
    parser.add_argument("--layers", type=int, default=4, help="ViT and LM depth")
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--vocab_size", type=int, default=32000, help="LM vocabulary (Llama's); rows resized")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default="outputs/bench/bench_train.json")
    return parser.parse_args(argv)


# --------------------------------------------------------------------------------------------------
# Models of identical size
# --------------------------------------------------------------------------------------------------


def build_models(args):
    tokenizer = train_tiny_tokenizer()
    deepsight, ds_processor = build_tiny_deepsight(
        tokenizer=tokenizer,
        image_size=args.image_size,
        patch_size=args.patch_size,
        vision_hidden_size=args.hidden,
        vision_layers=args.layers,
        text_hidden_size=args.hidden,
        text_layers=args.layers,
        num_attention_heads=args.heads,
        seed=args.seed,
    )
    llava, llava_processor = build_tiny_llava(
        seed=args.seed,
        tokenizer=tokenizer,
        vision_config=dict(
            hidden_size=args.hidden,
            intermediate_size=2 * args.hidden,
            projection_dim=args.hidden,
            num_hidden_layers=args.layers,
            num_attention_heads=args.heads,
            image_size=args.image_size,
            patch_size=args.patch_size,
        ),
        text_config=dict(
            hidden_size=args.hidden,
            intermediate_size=2 * args.hidden,
            num_hidden_layers=args.layers,
            num_attention_heads=args.heads,
            num_key_value_heads=max(1, args.heads // 2),
            max_position_embeddings=1024,
            tie_word_embeddings=False,
        ),
        vision_feature_layer=deepsight.config.vision_feature_layer,
    )
    for model in (deepsight, llava):
        model.resize_token_embeddings(args.vocab_size)
    return {"deepsight": (deepsight, ds_processor), "llava": (llava, llava_processor)}


def parameter_counts(model) -> dict[str, int]:
    """Matmul parameters per part (embedding lookups excluded: they cost no FLOPs)."""
    counts = {"vision": 0, "projector": 0, "llm": 0, "lm_head": 0}
    for name, parameter in model.named_parameters():
        if "embed_tokens" in name or "position_embedding" in name or parameter.dim() < 2:
            continue
        if "lm_head" in name:
            counts["lm_head"] += parameter.numel()
        else:
            counts[part_of(name)] += parameter.numel()
    return counts


def step_flops(model, batch: dict[str, torch.Tensor]) -> float:
    """Analytic FLOPs of one training step.

    Frozen ViT forward (2N per patch), projector / LLM / LM head forward + backward (6N per token), attention
    scores and values (4 S^2 d per layer forward, x3 with backward).
    """
    config = model.config
    counts = parameter_counts(model)
    n_images = batch["pixel_values"].shape[0]
    vision = config.vision_config
    patches = (vision.image_size // vision.patch_size) ** 2 + 1
    image_tokens = int((batch["input_ids"] == config.image_token_id).sum())
    text = config.get_text_config()
    seq = batch["input_ids"].shape[1]
    tokens = int(batch["attention_mask"].sum())
    flops = 2 * counts["vision"] * patches * n_images
    flops += 4 * vision.num_hidden_layers * patches**2 * vision.hidden_size * n_images
    flops += 6 * counts["projector"] * image_tokens
    flops += 6 * (counts["llm"] + counts["lm_head"]) * tokens
    flops += 12 * text.num_hidden_layers * seq * tokens * text.hidden_size
    return float(flops)


# --------------------------------------------------------------------------------------------------
# Timed SFTTrainer runs
# --------------------------------------------------------------------------------------------------


class TrainerStepper:
    """One SFTTrainer (our collator, our loss path) driven a step at a time, each step timed.

    A step is what `Trainer.train` does per update: fetch and collate a batch from the trainer's own
    dataloader, `training_step` (SFTTrainer's `compute_loss` + backward), optimizer and scheduler step.
    Driving the steps ourselves lets the runs interleave step by step, so a burst of load from other jobs
    on this shared machine hits every run alike.
    """

    def __init__(self, model, processor, dataset, args, loss_implementation: str, output_dir: str, collator=None):
        apply_train_parts(model, "both")
        self.model = model
        self.args = args
        config = SFTConfig(
            output_dir=output_dir,
            max_steps=10_000,
            per_device_train_batch_size=args.batch_size,
            learning_rate=1e-4,
            bf16=False,
            activation_checkpointing=False,
            report_to="none",
            save_strategy="no",
            remove_unused_columns=False,
            assistant_only_loss=True,
            dataloader_num_workers=0,
            dataloader_pin_memory=False,
            seed=args.seed,
            disable_tqdm=True,
            # The dataset's order for every run: the same batches, so the same token sequences, in all of them.
            train_sampling_strategy="sequential",
        )
        self.trainer = DepthSFTTrainer(
            model=model,
            args=config,
            data_collator=collator or vision_collator(processor),
            train_dataset=dataset,
            processing_class=processor,
            loss_implementation=loss_implementation,
        )
        self.trainer.create_optimizer_and_scheduler(num_training_steps=10_000)
        self.trainer.current_gradient_accumulation_steps = 1  # set by `Trainer.train` otherwise
        self.loader = self.trainer.get_train_dataloader()
        self.batches = iter(())
        self.records: list[dict[str, float]] = []

    def _next_batch(self):
        try:
            return next(self.batches)
        except StopIteration:
            self.batches = iter(self.loader)
            return next(self.batches)

    def step(self) -> None:
        self.model.train()
        wall, cpu = time.perf_counter(), time.process_time()
        batch = self._next_batch()
        loss = self.trainer.training_step(self.model, batch)
        self.trainer.optimizer.step()
        self.trainer.lr_scheduler.step()
        self.model.zero_grad(set_to_none=True)
        self.records.append(
            {
                "wall": time.perf_counter() - wall,
                "cpu": (time.process_time() - cpu) / self.args.threads,
                "tokens": int(batch["attention_mask"].sum()),
                "image_tokens": int((batch["input_ids"] == self.model.config.image_token_id).sum()),
                "padded_length": int(batch["input_ids"].shape[1]),
                "flops": step_flops(self.model, batch),
                "loss": float(loss),
            }
        )

    def summary(self) -> dict[str, float]:
        timed = self.records[1:]  # the first step is a warm-up
        result = {"first_loss": self.records[0]["loss"]}
        result["tokens_per_sample"] = statistics.mean(r["tokens"] for r in timed) / self.args.batch_size
        result["image_tokens_per_sample"] = statistics.mean(r["image_tokens"] for r in timed) / self.args.batch_size
        # The fastest step is the least disturbed by other jobs: the best estimate of the step's own cost.
        result["samples_per_s_best_step"] = self.args.batch_size / min(r["wall"] for r in timed)
        result["step_seconds"] = [round(r["wall"], 3) for r in timed]
        for clock, suffix in (("wall", "s"), ("cpu", "cpu_s")):
            seconds = statistics.median(r[clock] for r in timed)
            result[f"samples_per_{suffix}"] = self.args.batch_size / seconds
            result[f"tokens_per_{suffix}"] = statistics.median(r["tokens"] / r[clock] for r in timed)
            result[f"flops_per_{suffix}"] = statistics.median(r["flops"] / r[clock] for r in timed)
        return result


def check_same_sequences(runs: dict[str, TrainerStepper]) -> None:
    """Every step of every run must see sequences of the same lengths, or the ratios compare the data."""
    keys = ("tokens", "image_tokens", "padded_length")
    (first_name, first), *others = runs.items()
    reference = [tuple(r[k] for k in keys) for r in first.records]
    for name, stepper in others:
        steps = [tuple(r[k] for k in keys) for r in stepper.records]
        if steps != reference:
            mismatch = next(i for i, (a, b) in enumerate(zip(steps, reference)) if a != b)
            raise ValueError(
                f"{name} and {first_name} saw different sequences at step {mismatch} ({keys}: "
                f"{steps[mismatch]} vs {reference[mismatch]}); the throughput ratio would compare the data"
            )


def matmul_peak(threads: int, n: int = 1024, repeats: int = 5, inner: int = 8) -> tuple[float, float]:
    """Best fp32 FLOP/s of an n x n matmul on this machine, now: by wall clock, and per CPU-second / threads.
    `inner` products per sample keep each sample well above the CPU clock's tick."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.matmul(a, b)
    best, best_cpu = float("inf"), float("inf")
    for _ in range(repeats):
        start, cpu_start = time.perf_counter(), time.process_time()
        for _ in range(inner):
            torch.matmul(a, b)
        best = min(best, time.perf_counter() - start)
        best_cpu = min(best_cpu, (time.process_time() - cpu_start) / threads)
    return 2 * n**3 * inner / best, 2 * n**3 * inner / best_cpu


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    from datasets import Dataset

    models = build_models(args)
    rows = make_instruction_rows(args.batch_size * (args.steps + 1), seed=args.seed, height=120, width=160)
    dataset = Dataset.from_list(rows)
    runs = [("deepsight", "model"), ("llava", "model"), ("deepsight", "fused")]
    peaks = []
    with tempfile.TemporaryDirectory() as scratch:
        # The fused run gets its own copy of DeepSight: SFTTrainer patches the model's forward in place.
        steppers = {}
        for name, loss in runs:
            model, processor = models[name]
            if (name, loss) == ("deepsight", "fused"):
                model = copy.deepcopy(models["deepsight"][0])
            conversion = ConversationRows(processor)  # LLaVA: depth rendered as gray RGB, tags drawn as outlines
            rows_for_model = dataset.with_transform(conversion) if conversion.needed else dataset
            steppers[(name, loss)] = TrainerStepper(model, processor, rows_for_model, args, loss, scratch)
        for step_index in tqdm(range(args.steps + 1), desc="interleaved steps"):
            if step_index % 4 == 0:
                peaks.append(matmul_peak(args.threads))
            order = runs if step_index % 2 == 0 else runs[::-1]
            for run in order:
                steppers[run].step()

    check_same_sequences({f"{name}/{loss}": steppers[(name, loss)] for name, loss in runs})
    peak = statistics.median(p[0] for p in peaks)
    peak_cpu = statistics.median(p[1] for p in peaks)
    summary = {
        "config": vars(args),
        "matmul_peak_gflops": peak / 1e9,
        "matmul_peak_gflops_per_cpu_s": peak_cpu / 1e9,
        "runs": {f"{name}/{loss}": steppers[(name, loss)].summary() for name, loss in runs},
    }
    ds, llava, fused = (summary["runs"][k] for k in ("deepsight/model", "llava/model", "deepsight/fused"))
    for clock in ("s", "cpu_s", "s_best_step"):
        summary[f"ratio_deepsight_vs_llava_samples_per_{clock}"] = (
            ds[f"samples_per_{clock}"] / llava[f"samples_per_{clock}"]
        )
        summary[f"ratio_fused_vs_model_samples_per_{clock}"] = (
            fused[f"samples_per_{clock}"] / ds[f"samples_per_{clock}"]
        )
    paired = [
        llava_step["wall"] / ds_step["wall"]
        for ds_step, llava_step in zip(
            steppers[("deepsight", "model")].records[1:], steppers[("llava", "model")].records[1:]
        )
    ]
    summary["ratio_deepsight_vs_llava_paired_rounds"] = [round(r, 3) for r in paired]
    summary["ratio_deepsight_vs_llava_paired_median"] = statistics.median(paired)
    for clock in ("s", "cpu_s"):
        summary[f"ratio_deepsight_vs_llava_tokens_per_{clock}"] = (
            ds[f"tokens_per_{clock}"] / llava[f"tokens_per_{clock}"]
        )

    print(
        f"\nStage-2 training, batch {args.batch_size}, {args.steps} interleaved timed steps each (medians), "
        f"{args.threads} threads, fp32, vocab {args.vocab_size}"
    )
    print(f"{'':<18}{'--------- wall clock ---------':>40}{'----- per CPU-second/threads -----':>40}")
    print(
        f"{'run':<18}{'samples/s':>11}{'tokens/s':>10}{'GFLOP/s':>9}{'of peak':>10}"
        f"{'samples/s':>11}{'tokens/s':>10}{'GFLOP/s':>9}{'of peak':>10}{'loss@1':>9}"
    )
    for key, run in summary["runs"].items():
        wall_peak, cpu_peak = run["flops_per_s"] / peak, run["flops_per_cpu_s"] / peak_cpu
        print(
            f"{key:<18}{run['samples_per_s']:>11.2f}{run['tokens_per_s']:>10.0f}"
            f"{run['flops_per_s'] / 1e9:>9.2f}{wall_peak:>10.1%}"
            f"{run['samples_per_cpu_s']:>11.2f}{run['tokens_per_cpu_s']:>10.0f}"
            f"{run['flops_per_cpu_s'] / 1e9:>9.2f}{cpu_peak:>10.1%}{run['first_loss']:>9.4f}"
        )
    print(
        f"same sequences in every run (checked step by step): {ds['tokens_per_sample']:.1f} tokens/sample, "
        f"{ds['image_tokens_per_sample']:.0f} of them image tokens; same chat template, CLS dropped in both"
    )
    print(f"fp32 matmul peak (1024^3): {peak / 1e9:.1f} GFLOP/s wall, {peak_cpu / 1e9:.1f} per CPU-s/threads")
    best = ", ".join(f"{key} {run['samples_per_s_best_step']:.2f}" for key, run in summary["runs"].items())
    print(f"best step samples/s: {best}")
    for label, name in (
        ("DeepSight / LLaVA", "deepsight_vs_llava"),
        ("fused LM head / model loss", "fused_vs_model"),
    ):
        ratios = {
            clock: summary[f"ratio_{name}_samples_per_{clock}"] for clock in ("s", "s_best_step", "cpu_s")
        }
        print(
            f"{label} samples/s: {ratios['s']:.2f}x wall (median step), "
            f"{ratios['s_best_step']:.2f}x wall (best step), {ratios['cpu_s']:.2f}x CPU"
        )
    print(
        f"DeepSight / LLaVA tokens/s: {summary['ratio_deepsight_vs_llava_tokens_per_s']:.2f}x wall (median step), "
        f"{summary['ratio_deepsight_vs_llava_tokens_per_cpu_s']:.2f}x CPU"
    )
    quartiles = statistics.quantiles(paired, n=4) if len(paired) > 1 else [paired[0]] * 3
    print(
        f"DeepSight / LLaVA per-round ratio (same batch, back to back): median "
        f"{summary['ratio_deepsight_vs_llava_paired_median']:.2f}x, quartiles {quartiles[0]:.2f}-{quartiles[2]:.2f}"
    )
    print(f"first-step losses, fused vs model: {fused['first_loss']:.4f} vs {ds['first_loss']:.4f}")
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(summary, indent=2))
    print(f"written {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
