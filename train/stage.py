"""The stage run shared by align.py and sft.py: load, freeze, report the label masking, train, save."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from transformers import TrainerCallback, set_seed

from train.arguments import (
    TRAIN_PARTS_DESCRIPTIONS,
    DeepSightTrainingArguments,
    check_arguments,
    resolve_resume_checkpoint,
)
from train.callbacks import LossCurveCallback
from train.loading import load_model_and_processor, load_split, load_vision_tower
from train.parameters import apply_train_parts, build_lora_config, format_parameter_table
from train.rows import ConversationRows, estimated_lengths, image_token_id, label_statistics, vision_collator
from train.trainer import DepthSFTTrainer

logger = logging.getLogger(__name__)


def report_label_masking(collator, processor: Any, dataset, n_examples: int) -> dict[str, float]:
    """Collate the first rows and say which fraction of their tokens is left out of the loss."""
    n = min(n_examples, len(dataset))
    if n == 0:
        raise ValueError("the training dataset is empty")
    stats = label_statistics(collator([dataset[i] for i in range(n)]), image_token_id(processor))
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


def question_layout_of_rows(dataset, batch_size: int = 1024) -> str:
    """"per_option" when some conversation row shows several depth copies, each with its own boxes (`boxes` one
    list per image block: `deepsight data instructions --distance-regions`), else "union" (the paper's layout).
    Rows without `messages` (stage 1's pairs, whose `boxes` are one image's) are in the union layout."""
    if not {"messages", "boxes"} <= set(dataset.column_names):
        return "union"
    for batch in dataset.select_columns(["messages", "boxes"]).iter(batch_size=batch_size):
        for messages, boxes in zip(batch["messages"], batch["boxes"]):
            images = _image_blocks(messages)
            if images > 1 and len(boxes or []) == images:
                return "per_option"
    return "union"


def _image_blocks(messages: list[dict] | None) -> int:
    """How many image blocks a conversation's turns hold (a turn's content is a string or a list of blocks)."""
    return sum(
        isinstance(block, dict) and block.get("type") == "image"
        for message in messages or []
        if isinstance(message.get("content"), list)
        for block in message["content"]
    )


def add_length_column(dataset, processor: Any, column: str, batch_size: int = 1024, row_to_conversation=None):
    """`dataset` with a `column` of estimated token counts (kept when present), which the Trainer's
    length-grouped sampler reads instead of tokenizing every row itself (it would look for `input_ids`)."""
    if column in dataset.column_names:
        return dataset
    text_only = dataset.remove_columns([name for name in ("images",) if name in dataset.column_names])
    lengths: list[int] = []
    for batch in text_only.iter(batch_size=batch_size):  # column batches: far cheaper than row by row
        rows = [dict(zip(batch, values)) for values in zip(*batch.values())]
        if row_to_conversation is not None:
            rows = [row_to_conversation(row) for row in rows]
        lengths.extend(estimated_lengths(processor, rows))
    logger.info("Length-grouped sampling: %d rows, %d-%d tokens", len(lengths), min(lengths), max(lengths))
    return dataset.add_column(column, lengths)


def run_sft_stage(
    script_args: Any,
    training_args: Any,
    model_args: Any,
    args: DeepSightTrainingArguments,
    row_to_conversation=None,
    callbacks: list[TrainerCallback] | None = None,
) -> DepthSFTTrainer:
    """Load, freeze, train, save. Returns the trainer (its state holds the log history)."""
    check_arguments(args, model_args)
    # TRL's vision collator labels the assistant turns ({% generation %} in the chat template). The rows keep their
    # other columns: a row transform (stage 1, baselines) reads them, and the length-grouped sampler its column.
    training_args.assistant_only_loss = True
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
    if question_layout_of_rows(train_dataset) == "per_option":
        # saved with the weights, so `deepsight eval benchmark` asks in the layout the rows taught
        model.config.question_layout = "per_option"
    if args.vision_tower:
        load_vision_tower(model, args.vision_tower)
    peft_config = build_lora_config(model_args, args.train_parts)
    if peft_config is None:
        counts = apply_train_parts(model, args.train_parts)
        logger.warning(
            "Trainable parameters (train_parts=%s):\n%s", args.train_parts, format_parameter_table(counts)
        )

    conversion = ConversationRows(
        processor,
        image_mode=args.image_mode,
        depth_encoding=args.depth_encoding,
        row_to_conversation=row_to_conversation,
        box_prompt=args.box_prompt,
    )
    if training_args.train_sampling_strategy == "group_by_length":  # the Trainer groups evaluation batches too
        column = training_args.length_column_name
        train_dataset = add_length_column(train_dataset, processor, column, row_to_conversation=row_to_conversation)
        if eval_dataset is not None:
            eval_dataset = add_length_column(eval_dataset, processor, column, row_to_conversation=row_to_conversation)
    if conversion.needed:
        train_dataset = train_dataset.with_transform(conversion)
        eval_dataset = eval_dataset.with_transform(conversion) if eval_dataset is not None else None
    collator = vision_collator(processor, training_args.max_length, training_args.pad_to_multiple_of)
    masking = report_label_masking(collator, processor, train_dataset, args.masking_report_examples)

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
