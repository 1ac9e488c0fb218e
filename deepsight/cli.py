"""`deepsight` console command.

Each area of the project owns its subcommand: the entry point here only dispatches, importing the
area lazily so that `deepsight --help` stays instant and a broken optional dependency of one area
(gradio, say) does not break the others. An area module exposes `main(argv: list[str]) -> int`.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# subcommand -> (module with `main(argv)`, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "model": ("deepsight.model_cli", "build, save and inspect DeepSight checkpoints; ask a question about a depth map"),
    "data": ("dataset_scripts.cli", "render synthetic scenes; build the benchmark, pairs and instruction datasets"),
    "train": ("train.cli", "stage 0 encoder / stage 1 align / stage 2 sft (TRL + Accelerate)"),
    "eval": ("evaluation.cli", "score the Depth Template Benchmark, zero-shot scenes, compare results"),
    "demo": ("spaces_demo.cli", "start the Gradio demo locally"),
    "quickstart": ("quickstart.pipeline", "the whole pipeline end to end on this CPU"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deepsight",
        description="DeepSight: a depth-aware multimodal LLM. Run `deepsight COMMAND --help` for details.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in SUBCOMMANDS.items():
        # add_help=False: the area's own parser prints the real help for `deepsight NAME --help`.
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv or argv[0] in ("-h", "--help"):
        parser.print_help()
        return 0
    command, rest = argv[0], argv[1:]
    if command not in SUBCOMMANDS:
        parser.error(f"unknown command {command!r}; choose from {', '.join(SUBCOMMANDS)}")
    module = importlib.import_module(SUBCOMMANDS[command][0])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
