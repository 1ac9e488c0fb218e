"""Stage 0 -- contrastive depth-text training of the DeepSight depth encoder (paper §5).

`DeepSightDualEncoder`: the DeepSight vision tower (CLIP ViT with a depth Conv and the Bbox Conv) against a
frozen text encoder (CLIP text in the paper); only the vision side, the projections and the temperature
train. The paper's sampling: each depth-box-text pair keeps its object-box mask, except a fraction
`--sample_ratio` (default 0.1) replaced by a depth-text pair with an all-ones mask, so the tower keeps
its global view (at inference the mask is all ones too).

Every evaluation also measures zero-shot scene accuracy on the held-out split: the scene labels become
text prompts (`--scene_prompt`, "a depth image of a {scene}."), each depth map (all-ones mask) is
assigned the nearest prompt, and `eval_zero_shot_scene_accuracy` is logged.

At the end OUTPUT_DIR holds the dual encoder (model, image processor, tokenizer) and
OUTPUT_DIR/vision_tower the depth tower alone, which stage 1 loads with
`--vision_tower OUTPUT_DIR/vision_tower`.

# One process (CPU or one GPU)
```bash
python -m train.encoder --config train/recipes/cpu-tiny/encoder.yaml
deepsight train encoder --config train/recipes/cpu-tiny/encoder.yaml --max_steps 20
```

# The paper's setup (CLIP ViT-L/14-336 + CLIP text) on 8 GPUs; multi-node as in train/sft.py
```bash
accelerate launch --config_file train/accelerate_configs/zero2.yaml -m train.encoder \
    --config train/recipes/paper/encoder.yaml --dataset_name path/to/depth-text-pairs
```

Resume with `--resume_from_checkpoint true`. Every recipe field can be overridden on the command line.
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import torch
from transformers import AutoTokenizer, IntervalStrategy, Trainer, TrainingArguments, set_seed
from trl import ScriptArguments, TrlParser

from deepsight.checkpoints import load_pretrained
from deepsight.conversion import dual_encoder_from_clip
from deepsight.paths import resolve_local_or_hub
from deepsight.tiny import build_tiny_dual_encoder
from modeling_deepsight import DeepSightDualEncoder, DeepSightImageProcessor, DeepSightProcessor
from train.arguments import StageArguments, resolve_resume_checkpoint, with_cpu_ddp_flag
from train.callbacks import LossCurveCallback
from train.loading import load_split

logger = logging.getLogger(__name__)


@dataclass
class EncoderArguments(ScriptArguments, StageArguments):
    """Stage 0's arguments: the pairs dataset (`dataset_name`, its splits; the test split gives the zero-shot
    scene accuracy) from TRL's ScriptArguments, the starting model and the pair sampling."""

    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "A saved DeepSightDualEncoder folder (model + image processor + tokenizer)."},
    )
    clip_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "Start from a whole CLIP (depth tower converted from its vision model, its "
            "text model and projections), e.g. openai/clip-vit-large-patch14-336."
        },
    )
    tiny: bool = field(
        default=False, metadata={"help": "A tiny random dual encoder built in-process (CPU, tests)."}
    )
    image_size: int | None = field(
        default=None, metadata={"help": "Depth input side; defaults to the tower's."}
    )
    sample_ratio: float = field(
        default=0.1,
        metadata={
            "help": "Fraction of depth-box-text pairs replaced by depth-text pairs with an "
            "all-ones mask (paper §5.2)."
        },
    )
    object_ratio: float = field(
        default=0.0,
        metadata={
            "help": "Fraction of rows turned into object pairs: the mask on ONE labelled object of the row, the "
            "text `--object_prompt` with its label (names unique within a batch, so no pair has a same-text "
            "negative). Not in the paper (0 = its sampling); it teaches the tower what the masked region is."
        },
    )
    object_prompt: str = field(
        default="a depth image of a {label}.", metadata={"help": "Text of an object pair."}
    )
    scene_prompt: str = field(
        default="a depth image of a {scene}.", metadata={"help": "Zero-shot scene prompt."}
    )
    max_text_length: int = field(default=77, metadata={"help": "Captions are truncated to this many tokens."})


def check_arguments(args: EncoderArguments) -> None:
    for name in ("sample_ratio", "object_ratio"):
        if not 0.0 <= getattr(args, name) <= 1.0:
            raise ValueError(f"--{name}: expected a fraction in [0, 1], got {getattr(args, name)}")
    if "{label}" not in args.object_prompt:
        raise ValueError(f"--object_prompt: expected a template with '{{label}}', got {args.object_prompt!r}")
    sources = [bool(args.model_name_or_path), bool(args.clip_name_or_path), bool(args.tiny)]
    if sum(sources) != 1:
        raise ValueError(
            "give exactly one of --model_name_or_path (a dual encoder), --clip_name_or_path (a CLIP) "
            f"or --tiny true; got model_name_or_path={args.model_name_or_path!r}, "
            f"clip_name_or_path={args.clip_name_or_path!r}, tiny={args.tiny}"
        )
    if "{scene}" not in args.scene_prompt:
        raise ValueError(f"--scene_prompt: must contain '{{scene}}', got {args.scene_prompt!r}")
    # a mistyped folder says "not found: <path>" here rather than a Hub error later
    for name in ("dataset_name", "model_name_or_path", "clip_name_or_path"):
        if getattr(args, name):
            setattr(args, name, resolve_local_or_hub(getattr(args, name)))


def load_dual_encoder(args: EncoderArguments, seed: int):
    """(model, image_processor, tokenizer) from a dual-encoder folder, a CLIP, or the tiny builder."""
    if args.tiny:
        model, processor = build_tiny_dual_encoder(seed=seed)
        return model, processor.image_processor, processor.tokenizer
    if args.model_name_or_path:
        # The classes are this repository's own, so no remote code is needed to load a dual-encoder folder.
        path = args.model_name_or_path
        model = load_pretrained(DeepSightDualEncoder, path)
        return model, DeepSightImageProcessor.from_pretrained(path), AutoTokenizer.from_pretrained(path)

    model = dual_encoder_from_clip(args.clip_name_or_path)
    image_processor = DeepSightImageProcessor(size=args.image_size or model.config.vision_config.image_size)
    return model, image_processor, AutoTokenizer.from_pretrained(args.clip_name_or_path)


class DepthTextCollator:
    """Pairs rows -> pixel_values, bbox_mask (boxes; all ones for a `sample_ratio` share), caption tokens.

    An `object_ratio` share of the rows instead becomes an object pair: one labelled object's box as the mask
    and `object_prompt` filled with its label as the text.
    """

    def __init__(
        self,
        image_processor: Any,
        tokenizer: Any,
        sample_ratio: float = 0.1,
        max_text_length: int = 77,
        depth_encoding: str | None = None,
        object_ratio: float = 0.0,
        object_prompt: str = "a depth image of a {label}.",
    ) -> None:
        for name, value in (("sample_ratio", sample_ratio), ("object_ratio", object_ratio)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name}: expected a fraction in [0, 1], got {value}")
        self.image_processor = image_processor
        self.tokenizer = tokenizer
        self.sample_ratio = sample_ratio
        self.max_text_length = max_text_length
        self.depth_encoding = depth_encoding
        self.object_ratio = object_ratio
        self.object_prompt = object_prompt

    def choose_objects(self, rows: list[dict[str, Any]]) -> list[tuple[list[float], str] | None]:
        """Per row, (box, label) of the object it is turned into, or None to keep the row's own pair.

        A label already used in the batch is never picked again: two object pairs with the same text would
        each count the other's depth map as a negative. Rows with no unused label keep their own pair.
        """
        chosen, used = [], set()
        turned = (torch.rand(len(rows)) < self.object_ratio).tolist()
        for row, turn in zip(rows, turned):
            boxes, labels = row.get("boxes") or [], row.get("labels") or []
            candidates = [i for i, label in enumerate(labels[: len(boxes)]) if label and label not in used]
            if not (turn and candidates):
                chosen.append(None)
                continue
            pick = candidates[int(torch.randint(len(candidates), ()))]
            used.add(labels[pick])
            chosen.append((list(boxes[pick]), labels[pick]))
        return chosen

    def choose_boxes(self, rows: list[dict[str, Any]]) -> list[list[list[float]]]:
        # The global torch RNG: seeded by the Trainer and restored on resume, so the sampling replays exactly.
        replaced = torch.rand(len(rows)) < self.sample_ratio
        return [
            [] if replace else [list(box) for box in (row.get("boxes") or [])]
            for row, replace in zip(rows, replaced.tolist())
        ]

    def encode_depth(
        self, rows: list[dict[str, Any]], boxes: list[list[list[float]]] | None
    ) -> dict[str, torch.Tensor]:
        for row in rows:
            if row.get("depth") is None:
                raise ValueError(
                    f"pairs row {row.get('id')!r}: missing 'depth' (expected the pairs dataset schema)"
                )
        vision = self.image_processor(
            [row["depth"] for row in rows],
            boxes=boxes,
            depth_encoding=self.depth_encoding,
            return_tensors="pt",
        )
        return {"pixel_values": vision["pixel_values"], "bbox_mask": vision["bbox_mask"]}

    def encode_text(self, texts: list[str]) -> dict[str, torch.Tensor]:
        tokens = self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_text_length, return_tensors="pt"
        )
        return {"input_ids": tokens["input_ids"], "attention_mask": tokens["attention_mask"]}

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        if not rows:
            raise ValueError("rows: expected at least one pairs row to collate")
        for row in rows:
            if not row.get("caption"):
                raise ValueError(f"pairs row {row.get('id')!r}: missing 'caption'")
        boxes, texts = self.choose_boxes(rows), [row["caption"] for row in rows]
        if self.object_ratio > 0:
            for i, choice in enumerate(self.choose_objects(rows)):
                if choice is not None:
                    boxes[i], texts[i] = [choice[0]], self.object_prompt.format(label=choice[1])
        batch = self.encode_depth(rows, boxes)
        batch.update(self.encode_text(texts))
        batch["return_loss"] = True
        return batch


class DualEncoderTrainer(Trainer):
    """Trainer whose evaluation adds zero-shot scene accuracy on the held-out split."""

    def __init__(self, *args, scene_labels: list[str], scene_prompt: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.scene_labels = scene_labels
        self.scene_prompt = scene_prompt

    def evaluate(
        self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval"
    ) -> dict[str, float]:
        metrics = super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)
        dataset = self.eval_dataset if eval_dataset is None else eval_dataset
        if dataset is not None and self.scene_labels:
            accuracy = self.zero_shot_scene_accuracy(dataset)
            key = f"{metric_key_prefix}_zero_shot_scene_accuracy"
            metrics[key] = accuracy
            self.log({key: accuracy})
        return metrics

    @torch.no_grad()
    def zero_shot_scene_accuracy(self, dataset) -> float:
        """Top-1 accuracy of assigning each depth map (all-ones mask) the closest scene prompt."""
        model = self.accelerator.unwrap_model(self.model)
        was_training = model.training
        model.eval()
        collator: DepthTextCollator = self.data_collator
        device = self.args.device
        prompts = [self.scene_prompt.format(scene=label) for label in self.scene_labels]
        text = {k: v.to(device) for k, v in collator.encode_text(prompts).items()}
        text_embeds = torch.nn.functional.normalize(model.get_text_features(**text).pooler_output, dim=-1)
        rows = [row for row in dataset if row.get("scene") in self.scene_labels]
        correct = 0
        batch_size = self.args.per_device_eval_batch_size
        for start in range(0, len(rows), batch_size):
            chunk = rows[start : start + batch_size]
            vision = {k: v.to(device) for k, v in collator.encode_depth(chunk, boxes=None).items()}
            image_embeds = torch.nn.functional.normalize(model.get_image_features(**vision).pooler_output, dim=-1)
            predicted = (image_embeds @ text_embeds.t()).argmax(dim=-1).tolist()
            correct += sum(self.scene_labels[p] == row["scene"] for p, row in zip(predicted, chunk))
        model.train(was_training)
        return correct / max(len(rows), 1)


def scene_labels_of(*datasets) -> list[str]:
    labels: set[str] = set()
    for dataset in datasets:
        if dataset is not None and "scene" in dataset.column_names:
            labels.update(label for label in dataset["scene"] if label)
    return sorted(labels)


def split_names(path: str, config_name: str | None) -> list[str] | None:
    """The splits of a dataset folder or Hub id; None for a `save_to_disk` Dataset (`load_split` reads it as any split)."""
    folder = Path(path)
    if (folder / "dataset_dict.json").exists():
        return json.loads((folder / "dataset_dict.json").read_text())["splits"]
    if (folder / "state.json").exists():
        return None
    return datasets.get_dataset_split_names(path, config_name)


def load_held_out_split(args: EncoderArguments, training_args: TrainingArguments):
    """The split zero-shot scene accuracy is measured on; None when evaluation is off. Pairs without it (`deepsight
    data pairs` writes it with `--test-fraction`) train without evaluation, saying so, instead of failing."""
    if training_args.eval_strategy == IntervalStrategy.NO:
        return None
    names = split_names(args.dataset_name, args.dataset_config)
    if names is not None and args.dataset_test_split not in names:
        logger.warning(
            "%s has no %r split (only %s): training without evaluation. For zero-shot scene accuracy while it "
            "trains, build the pairs with a held-out split (`deepsight data pairs ... --test-fraction 0.1`).",
            args.dataset_name, args.dataset_test_split, ", ".join(names),
        )
        training_args.eval_strategy = IntervalStrategy.NO
        return None
    return load_split(args.dataset_name, args.dataset_config, args.dataset_test_split, args.max_eval_samples)


def make_parser(prog: str | None = "deepsight train encoder"):
    return TrlParser((EncoderArguments, TrainingArguments), prog=prog)


def run(
    args: EncoderArguments, training_args: TrainingArguments, callbacks: list[Any] | None = None
) -> DualEncoderTrainer:
    check_arguments(args)
    training_args.remove_unused_columns = False  # the collator reads the raw pairs rows
    set_seed(training_args.seed)
    train_dataset = load_split(
        args.dataset_name, args.dataset_config, args.dataset_train_split, args.max_train_samples
    )
    eval_dataset = load_held_out_split(args, training_args)
    model, image_processor, tokenizer = load_dual_encoder(args, training_args.seed)
    # Only the depth side trains (paper §5.2): the text encoder stays frozen whatever the config says.
    model.text_model.requires_grad_(False)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    logger.warning(
        "Stage 0: %s trainable of %s parameters (text encoder frozen); sample_ratio=%.2f, object_ratio=%.2f",
        f"{trainable:,}",
        f"{sum(p.numel() for p in model.parameters()):,}",
        args.sample_ratio,
        args.object_ratio,
    )

    collator = DepthTextCollator(
        image_processor,
        tokenizer,
        args.sample_ratio,
        args.max_text_length,
        args.depth_encoding,
        object_ratio=args.object_ratio,
        object_prompt=args.object_prompt,
    )
    trainer = DualEncoderTrainer(
        model=model,
        args=training_args,
        data_collator=collator,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        callbacks=[*(callbacks or []), *([LossCurveCallback()] if args.loss_curve else [])],
        scene_labels=scene_labels_of(train_dataset, eval_dataset),
        scene_prompt=args.scene_prompt,
    )
    trainer.train(
        resume_from_checkpoint=resolve_resume_checkpoint(
            training_args.resume_from_checkpoint, training_args.output_dir
        )
    )
    save_encoder(trainer, image_processor, tokenizer)
    return trainer


def save_encoder(trainer: DualEncoderTrainer, image_processor: Any, tokenizer: Any) -> None:
    """OUTPUT_DIR: the dual encoder + processors; OUTPUT_DIR/vision_tower: the depth tower for stage 1."""
    output_dir = Path(trainer.args.output_dir)
    trainer.save_model(str(output_dir))
    if trainer.accelerator.is_main_process:
        # A caption-mode processor (no image tokens) so `AutoProcessor.from_pretrained(OUTPUT_DIR,
        # trust_remote_code=True)` works on the folder: the tokenizer config names DeepSightProcessor.
        DeepSightProcessor(image_processor=image_processor, tokenizer=tokenizer, image_seq_length=0).save_pretrained(
            str(output_dir)
        )
        tower_dir = output_dir / "vision_tower"
        trainer.accelerator.unwrap_model(trainer.model).vision_model.save_pretrained(str(tower_dir))
        image_processor.save_pretrained(str(tower_dir))
        accuracies = [
            (e["step"], e["eval_zero_shot_scene_accuracy"])
            for e in trainer.state.log_history
            if "eval_zero_shot_scene_accuracy" in e
        ]
        (output_dir / "zero_shot_scene_accuracy.json").write_text(json.dumps(accuracies))
        if accuracies:
            print("step  zero-shot scene accuracy")
            for step, accuracy in accuracies:
                print(f"{step:>4}  {accuracy:.3f}")
    trainer.accelerator.wait_for_everyone()


def main(argv: list[str] | None = None, callbacks: list[Any] | None = None) -> int:
    """`deepsight train encoder ...`; `callbacks` lets Python callers add TrainerCallbacks."""
    args, training_args = make_parser().parse_args_and_config(
        with_cpu_ddp_flag(list(sys.argv[1:] if argv is None else argv))
    )
    trainer = run(args, training_args, callbacks)
    trainer.end()
    return 0


if __name__ == "__main__":
    sys.exit(main())
