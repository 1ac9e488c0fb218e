"""`deepsight eval ...`: score the Depth Template Benchmark, zero-shot scene classification, compare runs.

    deepsight eval benchmark --model PATH_OR_ID --benchmark DIR_OR_ID --output DIR \
        [--protocol generate|likelihood] [--limit N] [--batch-size B] [--depth-as gray|colormap] [--tasks ...]
        [--layout union|per_option] [--permutations K]
    deepsight eval zeroshot --model PATH --benchmark DIR [--dataset nyu|sun|auto] [--output DIR]
    deepsight eval compare results1.json results2.json ... [--paper] [--output table.md]
    deepsight eval card --model-dir DIR results.json ...
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch
from transformers import set_seed

from deepsight.cli import HelpFormatter, existing_path, existing_path_or_hub_id
from deepsight.depth_rendering import DEPTH_AS_CHOICES, REGION_PROTOCOLS
from deepsight.paths import add_trust_remote_code_argument
from modeling_deepsight.configuration_deepsight import QUESTION_LAYOUTS
from evaluation.adapters import VisionLanguageModel
from evaluation.compare import comparison_markdown, is_zeroshot, load_results, zeroshot_comparison_markdown
from evaluation.model_card import write_results_to_model_card
from evaluation.runner import (
    PROTOCOLS,
    SCORE_REDUCTIONS,
    RunSettings,
    load_benchmark,
    resolve_question_layout,
    results_markdown,
    run_benchmark,
)
from evaluation.zeroshot import run_zeroshot, zeroshot_markdown


def _add_benchmark_parser(sub) -> None:
    parser = sub.add_parser(
        "benchmark", help="score a model on the Depth Template Benchmark", formatter_class=HelpFormatter
    )
    parser.add_argument("--model", required=True, type=existing_path_or_hub_id,
                        help="checkpoint folder or Hub id (DeepSight or any image-text-to-text model)")
    parser.add_argument("--benchmark", required=True, type=existing_path_or_hub_id,
                        help="benchmark folder (parquet + README.md) or Hub id")
    parser.add_argument("--output", required=True, help="results folder; an existing predictions.jsonl there is resumed")
    parser.add_argument("--protocol", choices=PROTOCOLS, default="generate",
                        help="generate: free answer parsed to an option (the paper's protocol); "
                             "likelihood: the option whose answer text is most probable")
    parser.add_argument("--limit", type=int, default=None, help="evaluate only the first N selected questions")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--depth-as", choices=DEPTH_AS_CHOICES, default="gray",
                        help="how a non-DeepSight model sees depth: gray repeated to 3 channels, or a colormap")
    parser.add_argument("--region-protocol", "--box-prompt", dest="box_prompt", choices=REGION_PROTOCOLS,
                        default="outline",
                        help="how a non-DeepSight model sees a question's boxes (docs/CONTRACTS.md, 'Region "
                             "protocols'): outlined on the image, as pixel or 0-1000 coordinates in the text, the "
                             "background masked out, the image cropped to them with context, or none at all; with "
                             "--distance-regions outline/masked/crop give one copy per option")
    parser.add_argument("--tasks", nargs="+", default=None, help="only these tasks (default: all)")
    parser.add_argument("--split", default=None, help="benchmark split (default: test, or the only split)")
    parser.add_argument("--config", default=None, help="benchmark config, e.g. one source (default: the card's default)")
    parser.add_argument("--max-new-tokens", type=int, default=16, help="generate protocol: answer length limit")
    parser.add_argument("--score", choices=SCORE_REDUCTIONS, default="sum",
                        help="likelihood protocol: rank options by the summed or per-token mean log-probability of "
                             "the answer turn ('B. table'), or by the option's letter alone ('letter', MMLU-style)")
    parser.add_argument("--dtype", default="float32", help="model dtype (float32, bfloat16, float16)")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--seed", type=int, default=0)
    add_trust_remote_code_argument(parser)
    parser.add_argument("--distance-regions", action="store_true",
                        help="ask Distance Judgment with one depth copy per option, masked to that option's box "
                             "(DeepSight) or with it outlined (other models, --box-prompt outline; the layout of "
                             "`deepsight data instructions --distance-regions`), instead of one "
                             "image masked to both boxes (the paper's); the same as --layout per_option")
    parser.add_argument("--layout", choices=QUESTION_LAYOUTS, default=None,
                        help="how Distance Judgment's two boxes are shown: 'union' (one image masked to both, the "
                             "paper's) or 'per_option' (one copy per option); default: the layout the checkpoint "
                             "declares (`question_layout` in its config, written by stage 2), else 'union'")
    parser.add_argument("--permutations", type=int, default=1,
                        help="ask each question in K option orders (the benchmark's among them; Distance Judgment "
                             "also with the two names swapped in the text), drawn per question from --seed; "
                             "results then add each task's consistency and accuracy per answer position")
    parser.add_argument("--unnamed-distance", action="store_true",
                        help="with --distance-regions: ask Distance Judgment without object names ('Which of the two "
                             "marked regions is farther...?', 'the first region' / 'the second region'; same boxes and "
                             "answers), so only the depths tell the answer")
    parser.set_defaults(handler=_run_benchmark)


def _run_benchmark(args) -> int:
    set_seed(args.seed)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = VisionLanguageModel.from_pretrained(
        args.model, depth_as=args.depth_as, dtype=args.dtype, box_prompt=args.box_prompt,
        trust_remote_code=args.trust_remote_code,
    )
    model.model.to(device)
    dataset = load_benchmark(args.benchmark, split=args.split, config=args.config)
    layout = resolve_question_layout(model.model.config, args.layout, args.distance_regions)
    settings = RunSettings(
        protocol=args.protocol, batch_size=args.batch_size, limit=args.limit, tasks=args.tasks,
        max_new_tokens=args.max_new_tokens, score=args.score, distance_regions=layout == "per_option",
        unnamed_distance=args.unnamed_distance, permutations=args.permutations, seed=args.seed,
    )
    results = run_benchmark(model, dataset, args.output, settings, benchmark_name=str(args.benchmark))
    print(results_markdown(results))
    print(f"Wrote {Path(args.output) / 'results.json'}, results.md, results.png, predictions.jsonl")
    return 0


def _add_zeroshot_parser(sub) -> None:
    parser = sub.add_parser(
        "zeroshot",
        help="zero-shot scene classification of a depth encoder (Table 3)",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--model", required=True, type=existing_path_or_hub_id,
                        help="DeepSightDualEncoder folder or a CLIP-like model folder")
    parser.add_argument("--benchmark", required=True, type=existing_path_or_hub_id,
                        help="dataset folder or Hub id with depth and scene columns")
    parser.add_argument("--dataset", choices=("nyu", "sun", "auto"), default="nyu",
                        help="class list: the 10 NYU-D or 19 SUN-D classes, or the scenes found in the data")
    parser.add_argument("--split", default=None)
    parser.add_argument("--config", default=None, help="dataset config (default: the card's default)")
    parser.add_argument("--limit", type=int, default=None, help="score N randomly chosen samples (the paper used 1,000)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--depth-as", choices=("gray", "colormap"), default="gray", help="depth rendering for CLIP-like models")
    parser.add_argument("--output", default=None, help="folder for zeroshot.json and zeroshot.md")
    parser.add_argument("--seed", type=int, default=0)
    add_trust_remote_code_argument(parser)
    parser.set_defaults(handler=_run_zeroshot)


def _run_zeroshot(args) -> int:
    results = run_zeroshot(
        args.model, args.benchmark, dataset=args.dataset, split=args.split, config=args.config, limit=args.limit,
        batch_size=args.batch_size, depth_as=args.depth_as, seed=args.seed, output_dir=args.output,
        trust_remote_code=args.trust_remote_code,
    )
    print(zeroshot_markdown(results))
    return 0


def _add_compare_parser(sub) -> None:
    parser = sub.add_parser(
        "compare",
        help="Table-2-style comparison of results.json files (Table 3 for zeroshot.json)",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("results", nargs="+", type=existing_path,
                        help="results.json / zeroshot.json files (or folders holding one)")
    parser.add_argument("--paper", action="store_true", help="add the paper's Table 2 / 6 (or Table 3) rows as reference")
    parser.add_argument("--ci", action="store_true", help="show the 95%% interval next to each accuracy")
    parser.add_argument("--output", default=None, help="also write the markdown table to this file")
    parser.set_defaults(handler=_run_compare)


def _run_compare(args) -> int:
    runs = [load_results(path) for path in args.results]
    tables = []
    benchmark_runs = [run for run in runs if not is_zeroshot(run)]
    zeroshot_runs = [run for run in runs if is_zeroshot(run)]
    if benchmark_runs:
        tables.append(comparison_markdown(benchmark_runs, include_paper=args.paper, show_ci=args.ci))
    if zeroshot_runs:
        tables.append(zeroshot_comparison_markdown(zeroshot_runs, include_paper=args.paper))
    table = "\n".join(tables)
    print(table)
    if args.output:
        Path(args.output).write_text(table)
    return 0


def _add_card_parser(sub) -> None:
    parser = sub.add_parser(
        "card",
        help="write results into a model folder's README.md (model-index)",
        formatter_class=HelpFormatter,
    )
    parser.add_argument(
        "results", nargs="+", type=existing_path, help="results.json files (or folders holding one)"
    )
    parser.add_argument("--model-dir", required=True, type=existing_path,
                        help="model folder whose README.md gets the results")
    parser.add_argument("--model-name", default=None, help="name in model-index (default: the folder name)")
    parser.add_argument("--dataset-id", default=None, help="benchmark Hub id to cite (default: results' benchmark)")
    parser.set_defaults(handler=_run_card)


def _run_card(args) -> int:
    runs = [load_results(p) for p in args.results]
    if any(is_zeroshot(run) for run in runs):
        raise ValueError("card: only benchmark results.json files go into the model card, not zeroshot.json")
    path = write_results_to_model_card(args.model_dir, runs, model_name=args.model_name, dataset_id=args.dataset_id)
    print(f"Wrote {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deepsight eval", description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_benchmark_parser(sub)
    _add_zeroshot_parser(sub)
    _add_compare_parser(sub)
    _add_card_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = build_parser().parse_args(argv)
    return int(args.handler(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
