"""Linear probe: does a depth encoder's box feature tell which of two boxes is farther?

For every Distance Judgment question of a benchmark (two options, one box each), the vision tower reads the
depth map once per box, masked to that box (as DeepSight's per-option region layout does), and the feature of
each box is the mean of one layer's patch features over the box (`region_mean`, DeepSight's region token before
the projector). A logistic regression on the difference of the two features, fitted on one benchmark (e.g. built
from training scenes) and scored on another (the test split), says how much of the comparison a linear read-out
of the tower already gets -- a ceiling to compare the whole model's Distance accuracy with.

    python -m bench.probe_distance --encoder outputs/quickstart/stage0 \\
        --fit-benchmark outputs/probe/bench_train --benchmark outputs/quickstart/data/benchmark [--layers 0 -2 -1]

The fit benchmark comes from `deepsight data benchmark --source synthetic --split train --seed 0 ...` (training
scenes; the test benchmark's scenes are disjoint).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import numpy as np
import torch

from deepsight.checkpoints import load_pretrained
from evaluation.runner import depth_of_row, load_benchmark

TASK = "distance_judgment"


def load_encoder(path: str):
    """(vision model, image processor) of a stage-0 dual encoder folder or a DeepSight checkpoint."""
    from transformers import AutoImageProcessor, AutoModel

    model = load_pretrained(AutoModel, path).eval()  # the installed DeepSight classes, safetensors only
    vision = getattr(model, "vision_model", None) or getattr(model, "vision_tower", None)
    if vision is None:
        raise ValueError(
            f"--encoder {path}: a {model.config.model_type} model has neither `vision_model` nor `vision_tower`"
        )
    return vision, AutoImageProcessor.from_pretrained(path)


def box_pair_features(vision, image_processor, dataset, layers: list[int], batch_size: int = 32):
    """{layer: [N, D] feature(first box) - feature(second box)} and the answers [N] (1: the second is farther)."""
    from modeling_deepsight.modeling_deepsight import region_mean

    rows = dataset.filter(lambda task: task == TASK, input_columns="task")
    if len(rows) == 0:
        raise ValueError(f"the benchmark has no {TASK} questions to probe")
    patch_size = vision.config.patch_size
    differences: dict[int, list[np.ndarray]] = {layer: [] for layer in layers}
    answers: list[int] = []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        depths, boxes = [], []
        for row_id, depth, row_boxes in zip(chunk["id"], chunk["depth"], chunk["boxes"]):
            if len(row_boxes) != 2:
                raise ValueError(f"row {row_id}: expected one box per option (2), got {len(row_boxes)}")
            metres = depth_of_row({"id": row_id, "depth": depth})
            depths += [metres, metres]
            boxes += [[list(row_boxes[0])], [list(row_boxes[1])]]
        inputs = image_processor(depths, boxes=boxes, depth_encoding="metres", return_tensors="pt")
        with torch.no_grad():
            hidden = vision(inputs["pixel_values"], bbox_mask=inputs["bbox_mask"], output_hidden_states=True,
                            return_dict=True).hidden_states
        for layer in layers:
            features = region_mean(hidden[layer][:, 1:], inputs["bbox_mask"], patch_size).numpy()
            differences[layer].append(features[0::2] - features[1::2])
        answers += list(chunk["answer_index"])
    return {layer: np.concatenate(parts) for layer, parts in differences.items()}, np.asarray(answers)


def fit_logistic(features: np.ndarray, labels: np.ndarray, l2: float = 1e-4):
    """An L2-regularised logistic regression on standardised features (L-BFGS); returns a predict function."""
    x = torch.as_tensor(features, dtype=torch.float64)
    y = torch.as_tensor(labels, dtype=torch.float64)
    mean, std = x.mean(0), x.std(0) + 1e-8
    weights = torch.zeros(x.shape[1] + 1, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([weights], max_iter=500, line_search_fn="strong_wolfe")

    def loss_and_gradient():
        optimizer.zero_grad()
        logits = ((x - mean) / std) @ weights[:-1] + weights[-1]
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y) + l2 * weights[:-1].pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(loss_and_gradient)
    fitted = weights.detach()

    def predict(new_features: np.ndarray) -> np.ndarray:
        z = (torch.as_tensor(new_features, dtype=torch.float64) - mean) / std
        return (z @ fitted[:-1] + fitted[-1] > 0).numpy().astype(int)

    return predict


def probe(encoder: str, fit_benchmark: str, benchmark: str, layers: list[int], l2: float = 1e-4) -> dict[str, Any]:
    vision, image_processor = load_encoder(encoder)
    fit_x, fit_y = box_pair_features(vision, image_processor, load_benchmark(fit_benchmark), layers)
    test_x, test_y = box_pair_features(vision, image_processor, load_benchmark(benchmark), layers)
    results = {"encoder": encoder, "fit_questions": len(fit_y), "test_questions": len(test_y), "l2": l2, "layers": {}}
    for layer in layers:
        predict = fit_logistic(fit_x[layer], fit_y, l2)
        results["layers"][str(layer)] = {
            "fit_accuracy": float((predict(fit_x[layer]) == fit_y).mean()),
            "test_accuracy": float((predict(test_x[layer]) == test_y).mean()),
        }
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoder", required=True, help="a stage-0 dual encoder folder (or a DeepSight checkpoint)")
    parser.add_argument("--fit-benchmark", required=True, help="benchmark folder the probe is fitted on")
    parser.add_argument("--benchmark", required=True, help="benchmark folder the probe is scored on")
    parser.add_argument("--layers", type=int, nargs="+", default=[-2], help="hidden-state indices (0: embeddings)")
    parser.add_argument("--l2", type=float, default=1e-4)
    args = parser.parse_args(argv)
    results = probe(args.encoder, args.fit_benchmark, args.benchmark, args.layers, args.l2)
    print(f"Distance probe of {args.encoder}: fitted on {results['fit_questions']} questions, scored on "
          f"{results['test_questions']}\n")
    print("| layer | fit accuracy (%) | test accuracy (%) |\n|---:|---:|---:|")
    for layer, scores in results["layers"].items():
        print(f"| {layer} | {scores['fit_accuracy'] * 100:.1f} | {scores['test_accuracy'] * 100:.1f} |")
    print("\n" + json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
