"""DeepSight vs transformers' CLIP / LLaVA of identical size, side by side in one process.

1. Vision encoder forward: `DeepSightVisionModel` (Depth Conv + Bbox Conv on a 1-channel depth map) vs
   `CLIPVisionModel` (RGB) with the same ViT. Rows: with a box mask, and with the default all-ones mask.
   Ratio = DeepSight time / CLIP time; goal <= 1.05.
2. Greedy generation: `DeepSightForConditionalGeneration` vs `LlavaForConditionalGeneration` with the same ViT,
   projector and Llama, the same left-padded batch and exactly ``--new-tokens`` new tokens each (min = max).
   Ratio = DeepSight tokens/s / LLaVA tokens/s; goal >= 0.95.

Both sides run back to back in every round (ABBA order); the times shown are medians over rounds and the ratio is
the median of the per-round ratios, which cancels most of the shared CPU's load drift. Random weights, deterministic from ``--seed``.

    .venv/bin/python bench/bench_model.py [--rounds 7] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from transformers import (  # noqa: E402
    CLIPVisionConfig,
    CLIPVisionModel,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
)

from modeling_deepsight import (  # noqa: E402
    DeepSightConfig,
    DeepSightForConditionalGeneration,
    DeepSightVisionConfig,
    DeepSightVisionModel,
)


def vit_kwargs(args, image_size: int | None = None) -> dict:
    return dict(
        hidden_size=args.vit_hidden, intermediate_size=4 * args.vit_hidden, num_hidden_layers=args.vit_layers,
        num_attention_heads=args.vit_hidden // 64, image_size=image_size or args.image_size,
        patch_size=args.patch_size, projection_dim=args.vit_hidden,
    )


def llama_config(args) -> LlamaConfig:
    return LlamaConfig(
        vocab_size=args.vocab, hidden_size=args.lm_hidden, intermediate_size=4 * args.lm_hidden,
        num_hidden_layers=args.lm_layers, num_attention_heads=args.lm_hidden // 64,
        num_key_value_heads=args.lm_hidden // 64, max_position_embeddings=2048, bos_token_id=1, eos_token_id=2,
        pad_token_id=0, tie_word_embeddings=False,
    )


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleaved(fns: dict[str, callable], rounds: int, desc: str) -> dict[str, list[float]]:
    """Seconds of each fn per round; every round runs all of them back to back."""
    for fn in fns.values():
        fn()  # warm-up
    times: dict[str, list[float]] = {name: [] for name in fns}
    names = list(fns)
    for round_index in tqdm(range(rounds), desc=desc, leave=False):
        # ABBA order: a load change on the shared CPU does not always hit the same side first
        for name in names if round_index % 2 == 0 else reversed(names):
            times[name].append(_timed(fns[name]))
    return times


def paired_ratio(ours: list[float], reference: list[float]) -> float:
    """Median over rounds of ours / reference, each pair timed back to back (robust to the shared CPU's drift)."""
    return statistics.median(a / b for a, b in zip(ours, reference))


@torch.inference_mode()
def bench_vision(args) -> list[tuple]:
    torch.manual_seed(args.seed)
    size = args.vision_image_size
    clip = CLIPVisionModel(CLIPVisionConfig(**vit_kwargs(args, size))).eval()
    deepsight = DeepSightVisionModel(DeepSightVisionConfig(**vit_kwargs(args, size))).eval()
    rgb = torch.randn(args.batch, 3, size, size)
    depth = torch.randn(args.batch, 1, size, size)
    mask = torch.zeros_like(depth)
    mask[..., size // 4 : size // 2, size // 3 :] = 1
    times = interleaved(
        {
            "clip": lambda: clip(rgb),
            "deepsight_mask": lambda: deepsight(depth, bbox_mask=mask),
            "deepsight_default": lambda: deepsight(depth),
        },
        args.rounds,
        "vision forward",
    )
    med = {name: statistics.median(values) for name, values in times.items()}
    return [
        ("vision forward, box mask", med["clip"], med["deepsight_mask"],
         paired_ratio(times["deepsight_mask"], times["clip"]), "<= 1.05 (time)"),
        ("vision forward, no mask", med["clip"], med["deepsight_default"],
         paired_ratio(times["deepsight_default"], times["clip"]), "<= 1.05 (time)"),
    ]


@torch.inference_mode()
def bench_generation(args) -> list[tuple]:
    num_patches = (args.image_size // args.patch_size) ** 2
    image_token_id = args.vocab - 1
    torch.manual_seed(args.seed)
    llava = LlavaForConditionalGeneration(
        LlavaConfig(vision_config=CLIPVisionConfig(**vit_kwargs(args)), text_config=llama_config(args),
                    image_token_id=image_token_id, image_seq_length=num_patches)
    ).eval()
    torch.manual_seed(args.seed)
    deepsight = DeepSightForConditionalGeneration(
        DeepSightConfig(vision_config=DeepSightVisionConfig(**vit_kwargs(args)), text_config=llama_config(args),
                        image_token_id=image_token_id)
    ).eval()

    generator = torch.Generator().manual_seed(args.seed)
    lengths = [args.prompt_tokens - 7 * i for i in range(args.batch)]
    input_ids = torch.zeros(args.batch, max(lengths) + num_patches, dtype=torch.long)
    attention_mask = torch.zeros_like(input_ids)
    for row, length in enumerate(lengths):  # left padding
        text = torch.randint(3, args.vocab - 1, (length,), generator=generator)
        sequence = torch.cat([torch.tensor([1]), torch.full((num_patches,), image_token_id), text[1:]])
        input_ids[row, -len(sequence) :] = sequence
        attention_mask[row, -len(sequence) :] = 1
    rgb = torch.randn(args.batch, 3, args.image_size, args.image_size)
    depth = torch.randn(args.batch, 1, args.image_size, args.image_size)
    mask = torch.ones_like(depth)
    mask[..., : args.image_size // 2, :] = 0
    generation = dict(max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, do_sample=False, pad_token_id=0)

    times = interleaved(
        {
            "llava": lambda: llava.generate(input_ids=input_ids, attention_mask=attention_mask, pixel_values=rgb,
                                            **generation),
            "deepsight": lambda: deepsight.generate(input_ids=input_ids, attention_mask=attention_mask,
                                                    pixel_values=depth, bbox_mask=mask, **generation),
        },
        args.rounds,
        "greedy generation",
    )
    tokens = args.batch * args.new_tokens
    llava_tps = tokens / statistics.median(times["llava"])
    deepsight_tps = tokens / statistics.median(times["deepsight"])
    # tokens/s ratio = LLaVA time / DeepSight time, paired per round
    ratio = paired_ratio(times["llava"], times["deepsight"])
    return [("greedy generation tokens/s", llava_tps, deepsight_tps, ratio, ">= 0.95 (tokens/s)")]


def print_table(rows: list[tuple], args) -> None:
    print(
        f"\nDeepSight vs CLIP / LLaVA of identical size (ViT {args.vit_layers}x{args.vit_hidden}, patch "
        f"{args.patch_size}, {args.vision_image_size}px for the encoder rows, {args.image_size}px in generation; Llama {args.lm_layers}x{args.lm_hidden}, vocab {args.vocab}; "
        f"batch {args.batch}; {args.rounds} rounds, median; {torch.get_num_threads()} thread(s))"
    )
    header = f"{'measure':<28} {'reference':>14} {'DeepSight':>14} {'ratio':>7}  {'goal':<20} met"
    print(header + "\n" + "-" * len(header))
    for name, reference, ours, ratio, goal in rows:
        in_time = "time" in goal
        met = ratio <= 1.05 if in_time else ratio >= 0.95
        cells = [f"{value * 1000:.1f} ms" if in_time else f"{value:.1f} tok/s" for value in (reference, ours)]
        print(f"{name:<28} {cells[0]:>14} {cells[1]:>14} {ratio:>7.3f}  {goal:<20} {'yes' if met else 'NO'}")
    print("times: medians over rounds; ratio: median of the per-round ratios (each pair run back to back), which is\n"
          "what cancels the shared CPU's load drift, so it can differ from the ratio of the two medians.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the machine is shared)")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--vision-image-size", type=int, default=224, help="input size of the encoder rows")
    parser.add_argument("--image-size", type=int, default=112, help="input size in the generation row")
    parser.add_argument("--patch-size", type=int, default=16)
    parser.add_argument("--vit-hidden", type=int, default=256)
    parser.add_argument("--vit-layers", type=int, default=4)
    parser.add_argument("--lm-hidden", type=int, default=256)
    parser.add_argument("--lm-layers", type=int, default=4)
    parser.add_argument("--vocab", type=int, default=8192)
    parser.add_argument("--prompt-tokens", type=int, default=40)
    parser.add_argument("--new-tokens", type=int, default=24)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = bench_vision(args) + bench_generation(args)
    print_table(rows, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
