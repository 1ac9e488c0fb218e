"""`deepsight` console command.

Each area of the project owns its subcommand: the entry point here only dispatches, importing the
area lazily so that `deepsight --help` stays instant and a broken optional dependency of one area
(gradio, say) does not break the others. An area module exposes `main(argv: list[str]) -> int`.

The conventions every area's parser shares live here too: `HelpFormatter` (descriptions as written, the
defaults shown) and the `type=` checks that turn a mistyped local path into "not found: <path>".
"""

from __future__ import annotations

import argparse
import configparser
import copy
import importlib
import importlib.metadata
import os
import sys
from pathlib import Path

from deepsight.paths import resolve_local_or_hub

REPO = Path(__file__).resolve().parents[1]

# subcommand -> (module with `main(argv)`, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "model": ("deepsight.model_cli", "build, save and inspect DeepSight checkpoints; ask a question about a depth map"),
    "data": ("dataset_scripts.cli", "render synthetic scenes; build the benchmark, pairs and instruction datasets"),
    "train": ("train.cli", "stage 0 encoder / stage 1 align / stage 2 sft (TRL + Accelerate)"),
    "eval": ("evaluation.cli", "score the Depth Template Benchmark, zero-shot scenes, compare results"),
    "demo": ("spaces_demo.cli", "start the Gradio demo locally"),
    "xyz": ("deepsight.xyz_cli", "camera-frame XYZ and depth (metres) of a region of a depth map"),
    "quickstart": ("quickstart.pipeline", "the whole pipeline end to end on this CPU"),
}


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The help style of every `deepsight` parser: descriptions as written, and each option's default.

    The default is left out where the help already states one, or where there is none to show (an unset
    option, an off flag, an empty string or list).
    """

    def _format_action(self, action: argparse.Action) -> str:
        if not action.help and action.option_strings and not _no_default(action.default):
            # argparse prints no help line at all for an option without help text: give it one
            action = copy.copy(action)
            action.help = "(default: %(default)s)"
        return super()._format_action(action)

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if _states_default(text) or _no_default(action.default):
            return action.help
        return super()._get_help_string(action)


def _states_default(help_text: str) -> bool:
    return any(marker in help_text for marker in ("%(default)", "(default", "default:", "defaults:"))


def _no_default(default: object) -> bool:
    return default is None or default is False or default is argparse.SUPPRESS or default in ("", [])


def package_version() -> str:
    """The installed `deepsight` version; setup.cfg's when the package is not installed (a bare checkout)."""
    try:
        return importlib.metadata.version("deepsight")
    except importlib.metadata.PackageNotFoundError:
        setup_cfg = configparser.ConfigParser(interpolation=None)
        setup_cfg.read(REPO / "setup.cfg")
        return setup_cfg.get("metadata", "version", fallback="unknown")


def existing_path_or_hub_id(value: str) -> str:
    """argparse `type=` for a folder or Hub id: a mistyped local path fails at parsing, not at the Hub."""
    try:
        resolve_local_or_hub(value)
    except FileNotFoundError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return value


def existing_path(value: str) -> Path:
    """argparse `type=` for an argument that can only be local (a results file, a model folder to inspect)."""
    path = Path(value).expanduser()
    if not path.exists():
        raise argparse.ArgumentTypeError(f"not found: {value}")
    return path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deepsight",
        description="DeepSight: a depth-aware multimodal LLM. Run `deepsight COMMAND --help` for details.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
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
    if argv[0].startswith("-"):
        parser.parse_args(argv)  # --version prints and exits; any other option before COMMAND is an error
    command, rest = argv[0], argv[1:]
    if command not in SUBCOMMANDS:
        parser.error(f"unknown command {command!r}; choose from {', '.join(SUBCOMMANDS)}")
    module = importlib.import_module(SUBCOMMANDS[command][0])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
