"""What a training run leaves for people to read: the log history and the loss curve."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

logger = logging.getLogger(__name__)


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
