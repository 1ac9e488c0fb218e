"""Questions/s of the benchmark protocols on the same model and questions, in this process.

Three ways to answer the same multiple-choice questions, interleaved round by round through the real
harness (`evaluation.runner.run_benchmark`: dataset decoding, prompts, parsing, the metric and the
predictions file included; the report files, a fixed cost, are left out):

- `likelihood`   batched; the image part of the prompt is encoded once per depth map (the questions
                 about it share it), the rest once per question, then all options in one more pass
                 over the KV cache (`--batch-size` questions per batch); with `--score letter` (each
                 option's letter alone, MMLU-style) that last pass is not needed: the prompt's own
                 next-token distribution scores the letters;
- `generate`     batched greedy generation (left padding), `--max-new-tokens` tokens;
- `naive loop`   one question at a time, greedy generation, the way lmms-eval-style harnesses run.

A random model never emits EOS, so both generate rows run to `--max-new-tokens`; a trained model stops
after its answer ('B. table</s>', ~4-5 tokens), hence a second naive row at `--short-tokens` as the
naive loop's most favourable case. The benchmark asks `--questions-per-image` questions about each
depth map (4 by default: one per task, as the paper's templates do; 1 is the worst case for likelihood).
The goal: likelihood >= 5x the naive loop. The last line says how much of the likelihood run is spent in
the model's forward passes, and so how far the ratio could go if everything around them cost nothing.

Measured on this 2-core CPU (2026-12-05, idle machine; likelihood / naive 16-token loop, `sum` scoring and
`--score letter`): with both cores (`--threads 2`) 5.3x / 6.7x at batch 16, 5.1-5.3x / 6.1-6.2x at batch 48,
4.9x / 6.0x at batch 32, 4.9x / 5.9x at batch 8 (run-to-run spread about 0.3x); with one thread 3.4x / 4.0x
at batch 16 and 4.0x / 4.8x at batch 48. The naive loop does not get faster with a second thread (~30 q/s
either way: one question's decoding steps are too small to split), the batched passes do. 70-85% of the
likelihood run is model forward passes; the rest is decoding the depth PNGs, image preprocessing and
tokenizing.

    .venv/bin/python bench/bench_eval.py [--model llava|deepsight] [--questions 48] [--batch-size 16] \
        [--max-new-tokens 16] [--short-tokens 5] [--questions-per-image 4] [--image-size 112] \
        [--hidden-size 256] [--layers 4] [--rounds 3] [--threads N]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from deepsight.tiny import build_tiny_deepsight  # noqa: E402
from evaluation.adapters import VisionLanguageModel  # noqa: E402
from evaluation.runner import RunSettings, load_benchmark, run_benchmark  # noqa: E402
from tests.fixtures.evaluation import make_benchmark_rows, save_tiny_llava, write_benchmark_folder  # noqa: E402


DEEPSIGHT_IMAGE_SIZE = 64  # 8-pixel patches: 64 image tokens, as many as the LLaVA default


def build_model(kind: str, folder: Path, image_size: int = 112, hidden_size: int = 256, layers: int = 4) -> VisionLanguageModel:
    """A small random VLM saved to `folder` and loaded back the way the CLI loads checkpoints."""
    if kind == "llava":
        # 112 px / 14 px patches = 64 image tokens (224 px: 256, as CLIP ViT-L/14 gives DeepSight-7B),
        # a `layers`-layer `hidden_size`-wide Llama (4 x 256 by default: small, compute-bound on a CPU).
        save_tiny_llava(folder, image_size=image_size, hidden_size=hidden_size, num_layers=layers)
    else:
        model, processor = build_tiny_deepsight(
            image_size=DEEPSIGHT_IMAGE_SIZE, patch_size=8, vision_hidden_size=128, text_hidden_size=256, text_layers=4
        )
        model.save_pretrained(folder)
        processor.save_pretrained(folder)
    return VisionLanguageModel.from_pretrained(str(folder))


def timed_run(model, dataset, settings: RunSettings) -> float:
    with tempfile.TemporaryDirectory() as output:
        start = time.perf_counter()
        run_benchmark(model, dataset, output, settings, progress=False, write_report=False)
        return time.perf_counter() - start


@contextlib.contextmanager
def forward_time(model: VisionLanguageModel):
    """Seconds spent inside the model's forward passes while the block runs (a one-item list, filled in).

    What is left of a run once the forwards are taken out is the harness's own overhead (decoding, prompts,
    tokenizing, the predictions file): the share the forwards take bounds what removing overhead can gain.
    """
    spent, forward = [0.0], model.model.forward
    own_attribute = vars(model.model).get("forward")  # e.g. a hook's wrapper, put back afterwards

    def timed_forward(*args, **kwargs):
        start = time.perf_counter()
        try:
            return forward(*args, **kwargs)
        finally:
            spent[0] += time.perf_counter() - start

    model.model.forward = timed_forward
    try:
        yield spent
    finally:
        if own_attribute is None:
            del model.model.forward  # back to the class's method
        else:
            model.model.forward = own_attribute


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=("llava", "deepsight"), default="llava")
    parser.add_argument("--questions", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--short-tokens", type=int, default=5)
    parser.add_argument("--questions-per-image", type=int, default=4)
    parser.add_argument("--image-size", type=int, default=112, help="llava: image side in pixels (14-pixel patches)")
    parser.add_argument("--hidden-size", type=int, default=256, help="llava: width of the language model")
    parser.add_argument("--layers", type=int, default=4, help="llava: layers of the language model")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: torch's own, all cores, as `deepsight eval` runs)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    args.threads = torch.get_num_threads()
    torch.manual_seed(0)

    with tempfile.TemporaryDirectory() as workdir:
        workdir = Path(workdir)
        model = build_model(args.model, workdir / "model", args.image_size, args.hidden_size, args.layers)
        dataset = load_benchmark(str(write_benchmark_folder(workdir / "benchmark", make_benchmark_rows(args.questions, seed=0, questions_per_image=args.questions_per_image))))
        contenders = {
            "likelihood (batched, shared prefix)": RunSettings(protocol="likelihood", batch_size=args.batch_size),
            "likelihood, letters only (--score letter)": RunSettings(
                protocol="likelihood", batch_size=args.batch_size, score="letter"
            ),
            f"generate (batched, {args.max_new_tokens} tok)": RunSettings(
                protocol="generate", batch_size=args.batch_size, max_new_tokens=args.max_new_tokens
            ),
            f"naive loop (1 at a time, {args.max_new_tokens} tok)": RunSettings(
                protocol="generate", batch_size=1, max_new_tokens=args.max_new_tokens
            ),
            f"naive loop (1 at a time, {args.short_tokens} tok)": RunSettings(
                protocol="generate", batch_size=1, max_new_tokens=args.short_tokens
            ),
        }
        timed_run(model, dataset.select(range(min(4, args.questions))), contenders["likelihood (batched, shared prefix)"])  # warm-up
        times: dict[str, list[float]] = {name: [] for name in contenders}
        likelihood_forward_share = []
        for _ in range(args.rounds):
            for name, settings in contenders.items():
                if settings.protocol == "likelihood":
                    with forward_time(model) as spent:
                        times[name].append(timed_run(model, dataset, settings))
                    likelihood_forward_share.append(spent[0] / times[name][-1])
                else:
                    times[name].append(timed_run(model, dataset, settings))

    rate = {name: args.questions / statistics.median(values) for name, values in times.items()}
    naive = rate[f"naive loop (1 at a time, {args.max_new_tokens} tok)"]
    naive_short = rate[f"naive loop (1 at a time, {args.short_tokens} tok)"]
    image_size = args.image_size if args.model == "llava" else DEEPSIGHT_IMAGE_SIZE
    parameters = sum(p.numel() for p in model.model.parameters())
    print(f"\nmodel: random {args.model} ({parameters / 1e6:.1f}M parameters, {image_size} px), {args.questions} questions ({args.questions_per_image} per depth map), "
          f"batch {args.batch_size}, {args.threads} thread(s), median of {args.rounds} rounds\n")
    print(f"| protocol | questions/s | vs naive ({args.max_new_tokens} tok) | vs naive ({args.short_tokens} tok) |")
    print("|---|---:|---:|---:|")
    for name, value in rate.items():
        print(f"| {name} | {value:.2f} | {value / naive:.1f}x | {value / naive_short:.1f}x |")
    ratio = rate["likelihood (batched, shared prefix)"] / naive
    print(f"\nlikelihood / naive loop = {ratio:.1f}x (goal >= 5x): {'met' if ratio >= 5 else 'NOT met'}")
    letters = rate["likelihood, letters only (--score letter)"] / naive
    print(f"likelihood scoring letters only / naive loop = {letters:.1f}x (goal >= 5x): {'met' if letters >= 5 else 'NOT met'}")
    share = statistics.median(likelihood_forward_share)
    print(f"likelihood: {100 * share:.0f}% of its time is inside model forward passes; with no harness overhead at all "
          f"it would reach at most {ratio / share:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
