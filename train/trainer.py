"""The SFTTrainer of stages 1 and 2: which loss path, the length-grouped sampler, DeepSight's model card."""

from __future__ import annotations

import os
from typing import Any

import torch
from transformers import Trainer
from transformers.trainer_pt_utils import LengthGroupedSampler
from trl import SFTTrainer

from train.arguments import LOSS_IMPLEMENTATIONS, LOSS_NORMALIZATIONS, TRAIN_PARTS_DESCRIPTIONS
from train.loss import row_mean_cross_entropy
from train.model_card import base_model_of, deepsight_model_card


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
        model = self.accelerator.unwrap_model(self.model)
        base_model, start_checkpoint = base_model_of(getattr(model.config, "_name_or_path", "") or "")
        tags = [tags] if isinstance(tags, str) else list(tags or [])
        card = deepsight_model_card(
            model,
            getattr(self.processing_class, "image_processor", None),
            model_id=self.hub_model_id or self.args.output_dir,
            base_model=base_model,
            start_checkpoint=start_checkpoint,
            dataset_name=dataset_name or self.card_dataset,
            tags=[*self._tag_names, *tags],
            trainer_name=self._name,
            train_parts=self.card_train_parts,
        )
        card.save(os.path.join(self.args.output_dir, "README.md"))

    def _get_train_sampler(self, train_dataset=None):
        sampler = super()._get_train_sampler(train_dataset)
        if isinstance(sampler, LengthGroupedSampler) and not isinstance(sampler.lengths, list):
            # The Trainer hands over the length column as `datasets`' lazy Column, read one row at a time to sort each
            # epoch's mega-batches, through the rows' transform (which decodes every depth map): read it once, as a
            # list, from the plain rows.
            dataset = self.train_dataset if train_dataset is None else train_dataset
            sampler.lengths = list(dataset.with_format(None)[self.args.length_column_name])
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
