"""The per-row loss normalization of stages 1 and 2 (`--loss_normalization rows`)."""

from __future__ import annotations

import torch


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
