"""`deepsight data ...`: one subcommand per dataset step; each lives in its own module's `main(argv)`."""

from __future__ import annotations

import argparse
import importlib

from deepsight.cli import HelpFormatter

DATA_COMMANDS: dict[str, tuple[str, str]] = {
    "synthetic": ("dataset_scripts.synthetic.world", "render synthetic indoor depth scenes (optionally in SUN RGB-D layout)"),
    "benchmark": ("dataset_scripts.builders.benchmark", "build the Depth Template Benchmark from nyu / sunrgbd / synthetic"),
    "pairs": ("dataset_scripts.builders.pairs", "build depth-text-bbox pairs (COCO + depth estimator, or synthetic)"),
    "instructions": ("dataset_scripts.builders.instructions.builder", "build the Depth Instruction Dataset (LLaVA / TRL format)"),
    "publish": ("dataset_scripts.publish", "push a dataset folder (parquet + card) to the Hub"),
}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="deepsight data", description=__doc__, formatter_class=HelpFormatter
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in DATA_COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    if not argv or argv[0] in ("-h", "--help"):
        parser.print_help()
        return 0
    if argv[0] not in DATA_COMMANDS:
        parser.error(f"unknown data command {argv[0]!r}; choose from {', '.join(DATA_COMMANDS)}")
    module = importlib.import_module(DATA_COMMANDS[argv[0]][0])
    return int(module.main(argv[1:]) or 0)
