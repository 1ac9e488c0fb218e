"""Pieces shared by the stage-1 (align) and stage-2 (SFT) scripts.

The two stages are the same SFTTrainer run with different data and a different set of trainable
parts, so everything but the row format lives here: our script arguments, model/processor loading
(a DeepSight checkpoint, any `AutoModelForImageTextToText` baseline, or a tiny model built in-process),
the freeze policy, the LoRA config, the trainer subclass that chooses the loss path, the start-up
report of the label masking, and the loss-curve PNG.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback, Trainer
from transformers.trainer_utils import get_last_checkpoint
from transformers.trainer_pt_utils import LengthGroupedSampler
from trl import SFTTrainer

from deepsight.depth_rendering import BOX_PROMPTS
from train.collators import DepthConversationCollator, label_statistics

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

# Parameter-name fragments of the three parts of a LLaVA-style model. The projector is checked first
# because Qwen2.5-VL keeps its projector (`visual.merger`) inside the vision tower.
PROJECTOR_NAMES = ("multi_modal_projector", "mm_projector", "visual.merger")
VISION_NAMES = ("vision_tower", "visual", "vision_model")
# LoRA goes on the language model's linear layers only: the vision tower stays frozen and the projector
# is trained fully through `modules_to_save`.
LLM_LORA_TARGETS = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"


@dataclass
class DeepSightTrainingArguments:
    """Our arguments on top of TRL's ScriptArguments / SFTConfig / ModelConfig."""

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
            "help": "How the 3-channel image modes show a row's boxes: 'outline' (drawn on the image, as the "
            "evaluation harness draws them) or 'none' (no box information).",
            "choices": list(BOX_PROMPTS),
        },
    )
    depth_encoding: str | None = field(
        default=None,
        metadata={"help": "Encoding of the stored depth (mm, metres, sun, gray8); None detects it."},
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
    max_train_samples: int | None = field(
        default=None, metadata={"help": "Keep only the first N training rows."}
    )
    max_eval_samples: int | None = field(
        default=None, metadata={"help": "Keep only the first N evaluation rows."}
    )
    save_merged: bool = field(
        default=False, metadata={"help": "LoRA runs: save the merged full model instead of the adapters."}
    )
    loss_curve: bool = field(default=True, metadata={"help": "Write OUTPUT_DIR/loss_curve.png at the end."})
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


# --------------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------------


def load_split(path: str, config_name: str | None, split: str, limit: int | None = None):
    """A split of a `save_to_disk` folder, or of a parquet folder / Hub id (`load_dataset`)."""
    from datasets import DatasetDict, load_dataset, load_from_disk

    if path is None:
        raise ValueError("--dataset_name: required (a dataset folder or Hub id)")
    folder = Path(path)
    if folder.is_dir() and ((folder / "dataset_dict.json").exists() or (folder / "state.json").exists()):
        loaded = load_from_disk(path)
        dataset = loaded[split] if isinstance(loaded, DatasetDict) else loaded
    else:
        dataset = load_dataset(path, name=config_name, split=split)
    if limit is not None:
        dataset = dataset.select(range(min(limit, len(dataset))))
    return dataset


# --------------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------------


def load_model_and_processor(args: DeepSightTrainingArguments, model_args: Any, training_args: Any):
    """The model to train and its processor: a tiny in-process model, or a checkpoint folder / Hub id."""
    if args.tiny == "deepsight":
        from deepsight.tiny import build_tiny_deepsight

        return build_tiny_deepsight(seed=training_args.seed)
    if args.tiny == "llava":
        from train.baselines import build_tiny_llava

        return build_tiny_llava(seed=training_args.seed)

    from transformers import AutoModelForImageTextToText, AutoProcessor
    from accelerate import PartialState
    from trl import get_quantization_config

    # Registers DeepSight with the Auto classes, so that a DeepSight folder loads with this repository's code
    # even without --trust_remote_code (with it, the folder's own copy of the same files is used).
    import modeling_deepsight  # noqa: F401

    trust_remote_code = bool(
        getattr(model_args, "trust_remote_code", False) or getattr(training_args, "trust_remote_code", False)
    )
    processor = AutoProcessor.from_pretrained(
        model_args.model_name_or_path, revision=model_args.model_revision, trust_remote_code=trust_remote_code
    )
    dtype = model_args.dtype if model_args.dtype in (None, "auto") else getattr(torch, model_args.dtype)
    quantization_config = get_quantization_config(model_args)
    model = AutoModelForImageTextToText.from_pretrained(
        model_args.model_name_or_path,
        revision=model_args.model_revision,
        trust_remote_code=trust_remote_code,
        attn_implementation=model_args.attn_implementation,
        dtype=dtype,
        quantization_config=quantization_config,
        # QLoRA: each process holds its own quantized copy on its own GPU.
        device_map={"": PartialState().local_process_index} if quantization_config is not None else None,
    )
    return model, processor


def load_vision_tower(model: torch.nn.Module, folder: str) -> None:
    """Replace the vision tower's weights with a stage-0 checkpoint (every key must match)."""
    from safetensors.torch import load_file

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
    from peft import LoraConfig

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


# --------------------------------------------------------------------------------------------------
# Trainer
# --------------------------------------------------------------------------------------------------


def row_mean_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy averaged over each row's target tokens, then over the rows that have any."""
    shifted_labels = labels[:, 1:]
    token_loss = torch.nn.functional.cross_entropy(
        logits[:, :-1].float().transpose(1, 2), shifted_labels, ignore_index=-100, reduction="none"
    )
    targets = shifted_labels != -100
    per_row = (token_loss * targets).sum(dim=1) / targets.sum(dim=1).clamp(min=1)
    has_targets = targets.any(dim=1)
    if not has_targets.any():
        return token_loss.sum() * 0.0  # a batch with nothing to learn: zero, still attached to the graph
    return per_row[has_targets].mean()


class DepthSFTTrainer(SFTTrainer):
    """SFTTrainer whose loss is either the model's own cross-entropy or TRL's fused LM head.

    SFTTrainer always patches ``model.forward`` with a chunked "fused LM head" and computes the loss from
    per-token log-probabilities. With ``loss_implementation="model"`` the step calls the model's own
    forward (the patched forward falls through to it when ``fused_lm_head`` is not passed), so the loss
    is the model's `ForCausalLMLoss` -- the same value (tested) and faster on CPU (train/README.md).
    ``loss_normalization="rows"`` (model path only) averages each row's answer tokens first, then the rows
    (`row_mean_cross_entropy`).
    """

    def __init__(
        self, *args, loss_implementation: str = "model", loss_normalization: str = "tokens", **kwargs
    ):
        if loss_implementation not in LOSS_IMPLEMENTATIONS:
            raise ValueError(
                f"loss_implementation: expected one of {LOSS_IMPLEMENTATIONS}, got {loss_implementation!r}"
            )
        if loss_normalization not in LOSS_NORMALIZATIONS:
            raise ValueError(f"loss_normalization: expected one of {LOSS_NORMALIZATIONS}, got {loss_normalization!r}")
        if loss_normalization == "rows" and loss_implementation != "model":
            raise ValueError("loss_normalization='rows' needs loss_implementation='model' (the fused head averages tokens)")
        self.loss_implementation = loss_implementation
        self.loss_normalization = loss_normalization
        super().__init__(*args, **kwargs)
        if loss_normalization == "rows":
            # A per-micro-batch mean, not a sum over num_items_in_batch: the Trainer must divide it by the
            # gradient accumulation steps itself.
            self.loss_is_scaled_for_ga = False

    # What the model card names (set by `train_and_save`): the training dataset and the trained parts.
    card_dataset: str | None = None
    card_train_parts: str = TRAIN_PARTS_DESCRIPTIONS["both"]

    def create_model_card(self, model_name=None, dataset_name=None, tags=None):
        """Write DeepSight's card (train/model_card.py) instead of TRL's text-only chat card."""
        if not self.is_world_process_zero():
            return
        from train.model_card import deepsight_model_card

        model = self.accelerator.unwrap_model(self.model)
        name_or_path = getattr(model.config, "_name_or_path", "") or ""
        tags = [tags] if isinstance(tags, str) else list(tags or [])
        card = deepsight_model_card(
            model,
            getattr(self.processing_class, "image_processor", None),
            model_id=self.hub_model_id or self.args.output_dir,
            base_model=name_or_path if name_or_path and not os.path.isdir(name_or_path) else None,
            dataset_name=dataset_name or self.card_dataset,
            tags=[*self._tag_names, *tags],
            trainer_name=self._name,
            train_parts=self.card_train_parts,
        )
        card.save(os.path.join(self.args.output_dir, "README.md"))

    def _get_train_sampler(self, train_dataset=None):
        sampler = super()._get_train_sampler(train_dataset)
        if isinstance(sampler, LengthGroupedSampler) and not isinstance(sampler.lengths, list):
            # The Trainer hands over the length column as `datasets`' lazy Column, and the sampler reads it one
            # row at a time to sort each epoch's mega-batches: ~3.5 s an epoch on 40k rows, ~0.01 s as a list.
            sampler.lengths = list(sampler.lengths)
        return sampler

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if self.loss_implementation == "fused":
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        mode = "train" if self.model.training else "eval"
        inputs["use_cache"] = False
        if self.loss_normalization == "rows":
            loss, outputs = self._row_normalized_loss(model, inputs)
        else:
            loss, outputs = Trainer.compute_loss(
                self, model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch
            )
        self._log_token_metrics(mode, outputs.logits.detach(), inputs)
        return (loss, outputs) if return_outputs else loss

    def _row_normalized_loss(self, model, inputs: dict[str, Any]) -> tuple[torch.Tensor, Any]:
        labels = inputs.pop("labels")
        outputs = model(**inputs)
        inputs["labels"] = labels  # the token metrics read them
        return row_mean_cross_entropy(outputs.logits, labels), outputs

    def _log_token_metrics(self, mode: str, logits: torch.Tensor, inputs: dict[str, torch.Tensor]) -> None:
        """The same `mean_token_accuracy` / `num_tokens` logs that SFTTrainer writes on the fused path."""
        labels = inputs["labels"][:, 1:]
        mask = labels != -100
        correct = (logits[:, :-1].argmax(-1) == labels) & mask
        num_valid = self.accelerator.gather_for_metrics(mask.sum()).sum()
        num_correct = self.accelerator.gather_for_metrics(correct.sum()).sum()
        self._metrics[mode]["mean_token_accuracy"].append(
            (num_correct / num_valid).item() if num_valid > 0 else 0.0
        )
        if mode == "train":
            self._total_train_tokens += (
                self.accelerator.gather_for_metrics(inputs["attention_mask"].sum()).sum().item()
            )
        self._metrics[mode]["num_tokens"] = [self._total_train_tokens]


class LossCurveCallback(TrainerCallback):
    """When training ends: OUTPUT_DIR/log_history.json (every logged step, resumed runs included) and
    OUTPUT_DIR/loss_curve.png (train and eval loss against the step)."""

    def on_train_end(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            Path(args.output_dir).mkdir(parents=True, exist_ok=True)
            (Path(args.output_dir) / "log_history.json").write_text(json.dumps(state.log_history, indent=1))
            path = plot_loss_curve(state.log_history, Path(args.output_dir) / "loss_curve.png")
            if path is not None:
                logger.info("Loss curve written to %s", path)


def plot_loss_curve(
    log_history: list[dict[str, Any]], path: Path, title: str = "training loss"
) -> Path | None:
    train = [(entry["step"], entry["loss"]) for entry in log_history if "loss" in entry]
    evals = [(entry["step"], entry["eval_loss"]) for entry in log_history if "eval_loss" in entry]
    if not train and not evals:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 4))
    if train:
        axes.plot(*zip(*train), label="train loss")
    if evals:
        axes.plot(*zip(*evals), "o-", label="eval loss")
    axes.set_xlabel("step")
    axes.set_ylabel("loss")
    axes.set_title(title)
    axes.legend()
    axes.grid(alpha=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def report_label_masking(collator: DepthConversationCollator, dataset, n_examples: int) -> dict[str, float]:
    """Collate the first rows and say which fraction of their tokens is left out of the loss."""
    n = min(n_examples, len(dataset))
    if n == 0:
        raise ValueError("the training dataset is empty")
    stats = label_statistics(collator([dataset[i] for i in range(n)]), collator.image_token_id)
    logger.warning(
        "Label masking on the first %d rows: %.1f%% of the %d tokens are out of the loss (prompt, image and "
        "template tokens; image tokens alone %.1f%%), %.1f%% are assistant tokens in the loss; "
        "padding %.1f%% "
        "of the batch.",
        n,
        100 * stats["masked_fraction"],
        int(stats["tokens"]),
        100 * stats.get("image_token_fraction", 0.0),
        100 * stats["trained_fraction"],
        100 * stats["padding_fraction"],
    )
    return stats


def add_length_column(dataset, collator: DepthConversationCollator, column: str, batch_size: int = 1024):
    """`dataset` with a `column` of estimated token counts (kept when present), which the Trainer's
    length-grouped sampler reads instead of tokenizing every row itself (it would look for `input_ids`)."""
    if column in dataset.column_names:
        return dataset
    text_only = dataset.remove_columns([name for name in ("images",) if name in dataset.column_names])
    lengths: list[int] = []
    for batch in text_only.iter(batch_size=batch_size):  # column batches: far cheaper than row by row
        rows = [dict(zip(batch, values)) for values in zip(*batch.values())]
        lengths.extend(collator.estimated_lengths(rows))
    logger.info("Length-grouped sampling: %d rows, %d-%d tokens", len(lengths), min(lengths), max(lengths))
    return dataset.add_column(column, lengths)


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


# --------------------------------------------------------------------------------------------------
# The stage run shared by align.py and sft.py
# --------------------------------------------------------------------------------------------------


def run_sft_stage(
    script_args: Any,
    training_args: Any,
    model_args: Any,
    args: DeepSightTrainingArguments,
    row_to_conversation=None,
    callbacks: list[TrainerCallback] | None = None,
) -> DepthSFTTrainer:
    """Load, freeze, train, save. Returns the trainer (its state holds the log history)."""
    from transformers import set_seed

    check_arguments(args, model_args)
    # Row formatting and collation happen in our collator, so TRL must neither prepare nor prune the rows.
    training_args.dataset_kwargs = {**(training_args.dataset_kwargs or {}), "skip_prepare_dataset": True}
    training_args.remove_unused_columns = False
    # Every trainable parameter is used in every step (the frozen vision tower is outside DDP's buckets), so
    # DDP need not search for unused ones -- and a parameter that is trainable but unused fails loudly.
    if training_args.ddp_find_unused_parameters is None:
        training_args.ddp_find_unused_parameters = False
    set_seed(training_args.seed)

    train_dataset = load_split(
        script_args.dataset_name,
        script_args.dataset_config,
        script_args.dataset_train_split,
        args.max_train_samples,
    )
    eval_dataset = None
    if training_args.eval_strategy != "no":
        eval_dataset = load_split(
            script_args.dataset_name,
            script_args.dataset_config,
            script_args.dataset_test_split,
            args.max_eval_samples,
        )

    model, processor = load_model_and_processor(args, model_args, training_args)
    if args.vision_tower:
        load_vision_tower(model, args.vision_tower)
    peft_config = build_lora_config(model_args, args.train_parts)
    if peft_config is None:
        counts = apply_train_parts(model, args.train_parts)
        logger.warning(
            "Trainable parameters (train_parts=%s):\n%s", args.train_parts, format_parameter_table(counts)
        )

    collator = DepthConversationCollator(
        processor,
        image_mode=args.image_mode,
        max_length=training_args.max_length,
        depth_encoding=args.depth_encoding,
        row_to_conversation=row_to_conversation,
        box_prompt=args.box_prompt,
    )
    masking = report_label_masking(collator, train_dataset, args.masking_report_examples)
    if training_args.train_sampling_strategy == "group_by_length":  # the Trainer groups evaluation batches too
        train_dataset = add_length_column(train_dataset, collator, training_args.length_column_name)
        if eval_dataset is not None:
            eval_dataset = add_length_column(eval_dataset, collator, training_args.length_column_name)

    all_callbacks = list(callbacks or [])
    if args.loss_curve:
        all_callbacks.append(LossCurveCallback())
    trainer = DepthSFTTrainer(
        model=model,
        args=training_args,
        data_collator=collator,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=processor,
        peft_config=peft_config,
        callbacks=all_callbacks,
        loss_implementation=args.loss_implementation,
        loss_normalization=args.loss_normalization,
    )
    trainer.label_masking = masking
    trainer.card_dataset = script_args.dataset_name
    trainer.card_train_parts = TRAIN_PARTS_DESCRIPTIONS[args.train_parts]
    if peft_config is not None and trainer.accelerator.is_main_process:
        trainer.model.print_trainable_parameters()

    resume = resolve_resume_checkpoint(training_args.resume_from_checkpoint, training_args.output_dir)
    trainer.train(resume_from_checkpoint=resume)
    save_final_model(trainer, processor, args.save_merged)
    if trainer.accelerator.is_main_process:
        (Path(training_args.output_dir) / "label_masking.json").write_text(json.dumps(masking, indent=2))
    trainer.accelerator.print(f"Model saved to {training_args.output_dir}")
    trainer.accelerator.wait_for_everyone()
    return trainer


def save_final_model(trainer: DepthSFTTrainer, processor: Any, save_merged: bool) -> None:
    """Full models and LoRA adapters via `trainer.save_model`; LoRA + --save_merged writes merged weights."""
    output_dir = trainer.args.output_dir
    model = trainer.accelerator.unwrap_model(trainer.model)
    if save_merged and hasattr(model, "merge_and_unload"):
        trainer.accelerator.wait_for_everyone()
        if trainer.accelerator.is_main_process:
            merged = model.merge_and_unload()
            merged.save_pretrained(output_dir, safe_serialization=True)
            processor.save_pretrained(output_dir)
    else:
        trainer.save_model(output_dir)
    trainer.create_model_card()  # the Trainer writes one only with checkpoints or push_to_hub
