"""The arguments of the training stages beyond TRL's, and their checks."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers.trainer_utils import get_last_checkpoint

from deepsight.depth_rendering import REGION_PROTOCOLS

logger = logging.getLogger(__name__)

TRAIN_PARTS = ("projector", "llm", "both", "all")
TRAIN_PARTS_DESCRIPTIONS = {  # for the model card
    "projector": "the projector trained",
    "llm": "the language model trained",
    "both": "the projector and the language model trained",
    "all": "every part trained, the vision tower too",
}
LOSS_IMPLEMENTATIONS = ("model", "fused")
LOSS_NORMALIZATIONS = ("tokens", "rows")
TINY_MODELS = ("deepsight", "llava")


@dataclass
class StageArguments:
    """What every stage (0, 1 and 2) reads on top of TRL's arguments: the stored depth, row limits, the loss curve."""

    depth_encoding: str | None = field(
        default=None,
        metadata={"help": "Encoding of the stored depth (mm, metres, sun, gray8); None detects it."},
    )
    max_train_samples: int | None = field(
        default=None, metadata={"help": "Keep only the first N training rows."}
    )
    max_eval_samples: int | None = field(
        default=None, metadata={"help": "Keep only the first N evaluation (held-out) rows."}
    )
    loss_curve: bool = field(default=True, metadata={"help": "Write OUTPUT_DIR/loss_curve.png at the end."})


@dataclass
class DeepSightTrainingArguments(StageArguments):
    """Stages 1 and 2: our arguments on top of TRL's ScriptArguments / SFTConfig / ModelConfig."""

    train_parts: str = field(
        default="both",
        metadata={
            "help": "What trains: 'projector' (stage 1; SFT ablation), 'llm' (SFT ablation), 'both' "
            "(projector + LLM, the paper's stage 2; the vision tower frozen) or 'all' (the vision tower too).",
            "choices": list(TRAIN_PARTS),
        },
    )
    tiny: str | None = field(
        default=None,
        metadata={
            "help": "Build a tiny random model in-process instead of loading --model_name_or_path: "
            "'deepsight' or 'llava' (CPU recipes and tests); 'none' to override a recipe's value."
        },
    )
    vision_tower: str | None = field(
        default=None,
        metadata={
            "help": "Folder of a stage-0 vision tower (train/encoder.py writes OUTPUT_DIR/vision_tower) "
            "whose weights replace the model's vision tower before training."
        },
    )
    image_mode: str = field(
        default="auto",
        metadata={
            "help": "How depth reaches the model: 'depth' (DeepSight: metric depth + box mask), 'gray' or "
            "'colormap' (3-channel image for RGB baselines); 'auto' picks by processor.",
            "choices": ["auto", "depth", "gray", "colormap"],
        },
    )
    box_prompt: str = field(
        default="outline",
        metadata={
            "help": "The region protocol: how the 3-channel image modes show a row's boxes, as the evaluation "
            "harness's --region-protocol does: 'outline' (drawn on the image), 'text-pixels' / 'text-1000' "
            "(coordinates in the question's text), 'masked' (background black), 'crop' (cropped to them with "
            "context) or 'none' (no box information). See docs/CONTRACTS.md, 'Region protocols'.",
            "choices": list(REGION_PROTOCOLS),
        },
    )
    loss_implementation: str = field(
        default="model",
        metadata={
            "help": "'model': the model's own cross-entropy (faster on CPU, see train/README.md); 'fused': "
            "TRL's chunked fused LM head (never builds the full logits; saves memory on large vocabularies).",
            "choices": list(LOSS_IMPLEMENTATIONS),
        },
    )
    loss_normalization: str = field(
        default="tokens",
        metadata={
            "help": "'tokens': the cross-entropy averaged over all target tokens of the batch (transformers' "
            "way: a row weighs as much as it has answer tokens); 'rows': averaged over each row's own target "
            "tokens, then over the rows, so a one-letter multiple-choice answer weighs as much as a paragraph.",
            "choices": list(LOSS_NORMALIZATIONS),
        },
    )
    save_merged: bool = field(
        default=False, metadata={"help": "LoRA runs: save the merged full model instead of the adapters."}
    )
    masking_report_examples: int = field(
        default=8,
        metadata={"help": "Rows collated at start-up to report the fraction of tokens out of the loss."},
    )


def with_cpu_ddp_flag(argv: list[str]) -> list[str]:
    """Under torchrun (`accelerate launch --multi_gpu`) on a machine without CUDA, add `--use_cpu true`.

    Without it transformers sets up no distributed mode on CPU and every process would train alone on the
    whole dataset; with it the processes join accelerate's gloo group. So the GPU launch command works
    unchanged on CPU.
    """
    if (
        int(os.environ.get("WORLD_SIZE", "1")) > 1
        and not torch.cuda.is_available()
        and "--use_cpu" not in argv
    ):
        return [*argv, "--use_cpu", "true"]
    return argv


def check_arguments(args: DeepSightTrainingArguments, model_args: Any) -> None:
    if isinstance(args.tiny, str) and args.tiny.lower() in ("none", "null", "false", ""):
        args.tiny = None
    if args.train_parts not in TRAIN_PARTS:
        raise ValueError(f"--train_parts: expected one of {TRAIN_PARTS}, got {args.train_parts!r}")
    if args.loss_implementation not in LOSS_IMPLEMENTATIONS:
        raise ValueError(
            f"--loss_implementation: expected one of {LOSS_IMPLEMENTATIONS}, got {args.loss_implementation!r}"
        )
    if args.loss_normalization not in LOSS_NORMALIZATIONS:
        raise ValueError(
            f"--loss_normalization: expected one of {LOSS_NORMALIZATIONS}, got {args.loss_normalization!r}"
        )
    if args.loss_normalization == "rows" and args.loss_implementation != "model":
        raise ValueError("--loss_normalization rows: needs --loss_implementation model (the fused head averages tokens)")
    if args.tiny is not None and args.tiny not in TINY_MODELS:
        raise ValueError(f"--tiny: expected one of {TINY_MODELS}, got {args.tiny!r}")
    if args.tiny is None and not model_args.model_name_or_path:
        raise ValueError(
            "--model_name_or_path: required (a DeepSight or image-text-to-text checkpoint), or pass --tiny"
        )
    if model_args.use_peft and args.train_parts == "projector":
        raise ValueError(
            "--use_peft with --train_parts projector: LoRA adapts the LLM; train the projector alone "
            "without --use_peft"
        )


def resolve_resume_checkpoint(value: str | None, output_dir: str) -> str | bool | None:
    """``--resume_from_checkpoint true`` (or ``last``) means the newest checkpoint in the output folder."""
    if value is None or str(value).lower() in ("false", "none", ""):
        return None
    if str(value).lower() in ("true", "last"):
        last = get_last_checkpoint(output_dir) if os.path.isdir(output_dir) else None
        if last is None:
            logger.warning(
                "--resume_from_checkpoint %s: no checkpoint in %s, starting from scratch", value, output_dir
            )
        return last
    if not os.path.isdir(value):
        raise ValueError(f"--resume_from_checkpoint: {value!r} is not a checkpoint folder")
    return value
