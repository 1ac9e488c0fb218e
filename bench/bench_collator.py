"""Stage-2 collation cost per row: locating the answer spans from the text alone vs re-encoding the images.

`DepthConversationCollator` finds each assistant turn by the token length of the conversation rendered up to
it. The reference way encodes every such prefix through the processor again, its depth maps included (one
image pass per answer turn, on top of the row's own); the shortcut counts a prefix's tokens from its text and
the image-token run length of the row's encoding (`_tokens_per_image`), so the images are processed once per
row. A third row also decodes the depth as millimetres (the recipes' `depth_encoding: mm`) instead of
detecting the encoding per map. All three collate the same batches in this process, interleaved round by round;
the figures are medians over the rounds, and the batches must come out identical.

    .venv/bin/python bench/bench_collator.py [--dataset outputs/quickstart/data/instructions] [--rows 320]
        [--rounds 3] [--threads 1]

Without --dataset it uses smoke instruction rows (one or two answer turns, 64 x 48 depth maps) and a tiny
processor; with it, the dataset's rows (e.g. the quickstart's, 320 x 240 maps, region-layout rows with one depth
copy per option) and the processor of --processor (default: a tiny one at the quickstart's 64 px).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from train.collators import DepthConversationCollator  # noqa: E402


def load_rows(dataset: str | None, count: int, seed: int) -> list[dict]:
    if dataset is None:
        from tests.fixtures.smoke_data import make_instruction_rows

        return make_instruction_rows(count, seed=seed)
    from datasets import load_dataset

    data = load_dataset(dataset, split="train")
    picked = random.Random(seed).sample(range(len(data)), min(count, len(data)))
    return [data[i] for i in picked]


def load_processor(path: str | None, image_size: int):
    if path is not None:
        from transformers import AutoProcessor

        return AutoProcessor.from_pretrained(path, trust_remote_code=True)
    from deepsight.tiny import build_tiny_deepsight

    return build_tiny_deepsight(image_size=image_size, seed=0)[1]


def collators(processor) -> dict[str, DepthConversationCollator]:
    reference = DepthConversationCollator(processor)
    reference._tokens_per_image = lambda *args: None  # every prefix re-encoded with its images
    return {
        "re-encode prefixes (reference)": reference,
        "prefix lengths from text": DepthConversationCollator(processor),
        "... and depth_encoding=mm": DepthConversationCollator(processor, depth_encoding="mm"),
    }


def time_round(collator: DepthConversationCollator, batches: list[list[dict]]) -> tuple[float, list]:
    start = time.perf_counter()
    outputs = [collator(batch) for batch in batches]
    return time.perf_counter() - start, outputs


def same_batches(a: list[dict], b: list[dict]) -> bool:
    return all(x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x) for x, y in zip(a, b))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", help="an instruction dataset folder (default: smoke rows)")
    parser.add_argument("--processor", help="a model folder whose processor collates (default: a tiny one)")
    parser.add_argument("--image_size", type=int, default=64, help="the tiny processor's image size")
    parser.add_argument("--rows", type=int, default=320)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    rows = load_rows(args.dataset, args.rows, args.seed)
    batches = [rows[i : i + args.batch_size] for i in range(0, len(rows), args.batch_size)]
    runs = collators(load_processor(args.processor, args.image_size))
    times: dict[str, list[float]] = {name: [] for name in runs}
    for round_index in range(args.rounds):
        outputs = {}
        for name, collator in runs.items():
            seconds, outputs[name] = time_round(collator, batches)
            times[name].append(seconds)
        reference = outputs[next(iter(runs))]
        for name, output in outputs.items():
            if not same_batches(reference, output):
                sys.exit(f"round {round_index}: {name!r} collated different batches than the reference")

    base = statistics.median(times[next(iter(runs))])
    print(f"{len(rows)} rows ({args.dataset or 'smoke rows'}), batches of {args.batch_size}, {args.rounds} rounds, "
          f"{args.threads} thread(s); identical batches: yes\n")
    print("| collation | ms per row (median) | speed-up vs reference |")
    print("|---|---:|---:|")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"| {name} | {median / len(rows) * 1000:.2f} | {base / median:.2f}x |")


if __name__ == "__main__":
    main()
