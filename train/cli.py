"""`deepsight train {encoder,align,sft} --config RECIPE.yaml [--field value ...]`.

Runs the stage in this process, or -- with `--num-processes N` (N > 1) or `--accelerate-config FILE` --
re-launches it under `accelerate launch` (the same command a GPU cluster uses). Everything after the
stage name except those two options goes to the stage's own parser (TRL style: every recipe field can be
overridden, as `--max-steps` or `--max_steps`). `deepsight train sft --help` lists every field.
"""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys

from deepsight.cli import HelpFormatter

STAGES = {
    "encoder": ("train.encoder", "stage 0: contrastive depth-text training of the depth encoder"),
    "align": ("train.align", "stage 1: train the projector on depth-text pairs (vision + LLM frozen)"),
    "sft": (
        "train.sft",
        "stage 2: fine-tune projector + LLM (full or LoRA) on depth instructions; baselines too",
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deepsight train",
        description="Train DeepSight, one stage at a time:\n"
        + "\n".join(f"  {name:<8} {help_text}" for name, (_, help_text) in STAGES.items()),
        epilog="Example: deepsight train sft --config train/recipes/cpu-tiny/sft.yaml --max-steps 20",
        formatter_class=HelpFormatter,
        # `--help` after the stage name belongs to the stage's parser, and stage fields must never be taken
        # for abbreviations of ours.
        add_help=False,
        allow_abbrev=False,
    )
    parser.add_argument("stage", choices=list(STAGES), help="which stage to run")
    parser.add_argument(
        "--num-processes",
        type=int,
        default=1,
        help="> 1: run N processes under `accelerate launch` (CPU: gloo DDP)",
    )
    parser.add_argument(
        "--accelerate-config",
        default=None,
        help="an Accelerate config (train/accelerate_configs/*.yaml); implies accelerate launch",
    )
    # The underscore spellings of older commands, recipes and tests: accepted, not shown.
    hidden = {"default": argparse.SUPPRESS, "help": argparse.SUPPRESS}
    parser.add_argument("--num_processes", type=int, dest="num_processes", **hidden)
    parser.add_argument("--accelerate_config", dest="accelerate_config", **hidden)
    return parser


def accelerate_command(
    stage: str, num_processes: int, accelerate_config: str | None, rest: list[str]
) -> list[str]:
    """The `accelerate launch ... -m train.<stage> ...` command line for a stage.

    Without a config file, N > 1 processes go through accelerate's torchrun launcher (`--multi_gpu`), also
    on a machine without CUDA: the stages then add `--use_cpu true` themselves (`with_cpu_ddp_flag`) and the
    processes join a gloo group (accelerate's own `--cpu` launcher would need mpirun for N > 1).
    """
    command = [sys.executable, "-m", "accelerate.commands.launch"]
    if accelerate_config:
        command += ["--config_file", accelerate_config]
    if num_processes > 1:
        command += ["--num_processes", str(num_processes)]
        if not accelerate_config:
            command += [
                "--multi_gpu",
                "--num_machines",
                "1",
                "--mixed_precision",
                "no",
                "--dynamo_backend",
                "no",
            ]
    return command + ["-m", STAGES[stage][0], *rest]


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        build_parser().print_help()
        return 0
    launcher, rest = build_parser().parse_known_args(argv)
    if launcher.num_processes < 1:
        raise ValueError(f"--num-processes: expected >= 1, got {launcher.num_processes}")
    if launcher.num_processes > 1 or launcher.accelerate_config:
        command = accelerate_command(launcher.stage, launcher.num_processes, launcher.accelerate_config, rest)
        print("Launching:", " ".join(command), flush=True)
        return subprocess.call(command)
    module = importlib.import_module(STAGES[launcher.stage][0])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
