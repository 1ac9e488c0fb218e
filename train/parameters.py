"""Which parameters train: the parts of a LLaVA-style model, the freeze policy, the LoRA config."""

from __future__ import annotations

from typing import Any

import torch
from peft import LoraConfig

from train.arguments import TRAIN_PARTS

# Parameter-name fragments of the three parts of a LLaVA-style model. The projector is checked first
# because Qwen2.5-VL keeps its projector (`visual.merger`) inside the vision tower.
PROJECTOR_NAMES = ("multi_modal_projector", "mm_projector", "visual.merger")
VISION_NAMES = ("vision_tower", "visual", "vision_model")
# LoRA goes on the language model's linear layers only: the vision tower stays frozen and the projector
# is trained fully through `modules_to_save`.
LLM_LORA_TARGETS = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"


def part_of(parameter_name: str) -> str:
    """'projector', 'vision' or 'llm' for a parameter of a LLaVA-style model."""
    if any(name in parameter_name for name in PROJECTOR_NAMES):
        return "projector"
    if any(name in parameter_name for name in VISION_NAMES):
        return "vision"
    return "llm"


def apply_train_parts(model: torch.nn.Module, train_parts: str) -> dict[str, dict[str, int]]:
    """Freeze whatever `train_parts` leaves out (the vision tower unless 'all'); returns parameter counts per part."""
    if train_parts not in TRAIN_PARTS:
        raise ValueError(f"train_parts: expected one of {TRAIN_PARTS}, got {train_parts!r}")
    trainable = {
        "projector": {"projector"},
        "llm": {"llm"},
        "both": {"projector", "llm"},
        "all": {"projector", "llm", "vision"},
    }[train_parts]
    counts: dict[str, dict[str, int]] = {}
    for name, parameter in model.named_parameters():
        part = part_of(name)
        parameter.requires_grad_(part in trainable)
        entry = counts.setdefault(part, {"total": 0, "trainable": 0})
        entry["total"] += parameter.numel()
        entry["trainable"] += parameter.numel() if parameter.requires_grad else 0
    if "projector" in trainable and counts.get("projector", {}).get("total", 0) == 0:
        raise ValueError(
            f"train_parts={train_parts!r}: no projector parameters found (looked for {PROJECTOR_NAMES})"
        )
    return counts


def format_parameter_table(counts: dict[str, dict[str, int]]) -> str:
    lines = [f"{'part':<10} {'parameters':>14} {'trainable':>14}"]
    for part in ("vision", "projector", "llm"):
        if part in counts:
            lines.append(f"{part:<10} {counts[part]['total']:>14,} {counts[part]['trainable']:>14,}")
    return "\n".join(lines)


def build_lora_config(model_args: Any, train_parts: str):
    """LoRA on the LLM's linear layers; a training projector (and vision tower) is fully trained via `modules_to_save`."""
    if not model_args.use_peft:
        return None
    modules_to_save = list(model_args.lora_modules_to_save or [])
    if train_parts in ("both", "all") and "multi_modal_projector" not in modules_to_save:
        modules_to_save.append("multi_modal_projector")
    if train_parts == "all" and "vision_tower" not in modules_to_save:
        modules_to_save.append("vision_tower")
    return LoraConfig(
        r=model_args.lora_r,
        lora_alpha=model_args.lora_alpha,
        lora_dropout=model_args.lora_dropout,
        target_modules=model_args.lora_target_modules or LLM_LORA_TARGETS,
        modules_to_save=modules_to_save or None,
        task_type=model_args.lora_task_type,
        use_rslora=model_args.use_rslora,
        use_dora=model_args.use_dora,
    )
