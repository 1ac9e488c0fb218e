"""Stage-2 collation cost per row: TRL's vision collator on the stored rows vs after our row conversion.

Stage 2 collates with TRL's `DataCollatorForVisionLanguageModeling` (`train.rows.vision_collator`: the chat
template's `{% generation %}` markers give the labels, the `<box>` tags the box masks). On the stored rows the
processor detects each map's encoding; with the recipes' `depth_encoding: mm` the rows first go through
`ConversationRows`, which decodes the depth to metres (the collator passes the processor no encoding). Both
collate the same batches in this process, interleaved round by round; the figures are medians over the rounds,
and the batches must come out identical.

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

from train.rows import ConversationRows, vision_collator  # noqa: E402


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


def collators(processor) -> dict:
    collator = vision_collator(processor)
    millimetres = ConversationRows(processor, depth_encoding="mm")
    return {
        "TRL's collator, encoding detected (reference)": collator,
        "rows decoded as mm first (ConversationRows)": lambda rows: collator([millimetres.convert(r) for r in rows]),
    }


def time_round(collator, batches: list[list[dict]]) -> tuple[float, list]:
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
