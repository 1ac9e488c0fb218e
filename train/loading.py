"""What a stage starts from: its dataset splits, the model and processor, a stage-0 vision tower."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from accelerate import PartialState
from datasets import DatasetDict, load_dataset, load_from_disk
from safetensors.torch import load_file
from trl import get_quantization_config

from deepsight.checkpoints import load_checkpoint
from deepsight.paths import resolve_local_or_hub
from deepsight.tiny import build_tiny_deepsight, build_tiny_llava
from train.arguments import DeepSightTrainingArguments

logger = logging.getLogger(__name__)


def load_split(path: str, config_name: str | None, split: str, limit: int | None = None):
    """A split of a `save_to_disk` folder, or of a parquet folder / Hub id (`load_dataset`)."""
    if path is None:
        raise ValueError("--dataset_name: required (a dataset folder or Hub id)")
    path = resolve_local_or_hub(path)  # a mistyped folder: "not found: <path>", not a Hub error
    folder = Path(path)
    if folder.is_dir() and ((folder / "dataset_dict.json").exists() or (folder / "state.json").exists()):
        loaded = load_from_disk(path)
        dataset = loaded[split] if isinstance(loaded, DatasetDict) else loaded
    else:
        dataset = load_dataset(path, name=config_name, split=split)
    if limit is not None:
        dataset = dataset.select(range(min(limit, len(dataset))))
    return dataset


def load_model_and_processor(args: DeepSightTrainingArguments, model_args: Any, training_args: Any):
    """The model to train and its processor: a tiny in-process model, or a checkpoint folder / Hub id."""
    if args.tiny == "deepsight":
        return build_tiny_deepsight(seed=training_args.seed)
    if args.tiny == "llava":
        return build_tiny_llava(seed=training_args.seed)

    trust_remote_code = bool(
        getattr(model_args, "trust_remote_code", False) or getattr(training_args, "trust_remote_code", False)
    )
    dtype = model_args.dtype if model_args.dtype in (None, "auto") else getattr(torch, model_args.dtype)
    quantization_config = get_quantization_config(model_args)
    return load_checkpoint(
        model_args.model_name_or_path,
        revision=model_args.model_revision,
        trust_remote_code=trust_remote_code,
        attn_implementation=model_args.attn_implementation,
        dtype=dtype,
        quantization_config=quantization_config,
        # QLoRA: each process holds its own quantized copy on its own GPU.
        device_map={"": PartialState().local_process_index} if quantization_config is not None else None,
    )


def load_vision_tower(model: torch.nn.Module, folder: str) -> None:
    """Replace the vision tower's weights with a stage-0 checkpoint (every key must match)."""
    files = sorted(Path(folder).glob("*.safetensors"))
    if not files:
        raise ValueError(
            f"--vision_tower: no .safetensors file in {folder!r} (expected train/encoder.py's "
            "OUTPUT_DIR/vision_tower)"
        )
    state = {}
    for file in files:
        state.update(load_file(str(file)))
    tower = model.get_vision_tower() if hasattr(model, "get_vision_tower") else model.model.vision_tower
    missing, unexpected = tower.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"--vision_tower {folder!r} does not fit the model's vision tower: missing "
            f"{missing[:5]}{'...' if len(missing) > 5 else ''}, unexpected {unexpected[:5]}"
        )
    logger.info("Loaded the stage-0 vision tower from %s (%d tensors)", folder, len(state))
