# Copyright 2026 The DeepSight authors. Licensed under the Apache License, Version 2.0.
"""Depth Template Benchmark accuracy: per-task accuracy with a Wilson 95% interval, and the task average.

This file is an `evaluate` module: load it offline with ``evaluate.load("<path to this folder>")``.
It imports one module per line because evaluate's import scanner misreads ``import a, b``.
"""

import math

import datasets
import evaluate


_DESCRIPTION = """\
Accuracy on the Depth Template Benchmark (DeepSight), reported per task (scene_classification,
recognition, distance_judgment, security, or any task name the references carry) with the number of
questions and a 95% Wilson score interval, plus `average`: the unweighted mean of the per-task
accuracies (the paper's "Avg." column). A prediction of -1 (or None) means "the answer named no
option" and always counts as wrong.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[int]`): chosen option index per question; -1 (or None) when the answer was unparseable.
    references (`list[int]`): correct option index per question.
    tasks (`list[str]`): task name per question.
    confidence (`float`, optional): coverage of the interval, default 0.95.

Returns:
    `per_task` (`dict[str, dict]`): per task `accuracy` (0-1), `n`, `correct`, `ci95` ([low, high], Wilson).
    `average` (`float`): mean of the per-task accuracies (tasks weighted equally, as the paper's Avg.).
    `accuracy` (`float`): accuracy over all questions pooled (tasks weighted by their size).
    `n` (`int`): number of questions.

Examples:
    >>> metric = evaluate.load("evaluation/depth_template_accuracy")
    >>> result = metric.compute(predictions=[0, 1, -1, 2], references=[0, 1, 1, 0],
    ...                         tasks=["recognition", "recognition", "security", "security"])
    >>> result["per_task"]["recognition"]["accuracy"], result["average"]
    (1.0, 0.5)
"""

_CITATION = """\
@article{deepsight2025,
  title = {DeepSight: Bridging Depth Maps and Language with a Depth-Driven Multimodal Model},
  year = {2025}
}
@article{wilson1927,
  title = {Probable Inference, the Law of Succession, and Statistical Inference},
  author = {Wilson, Edwin B.},
  journal = {Journal of the American Statistical Association},
  volume = {22}, number = {158}, pages = {209--212}, year = {1927}
}
"""


def normal_quantile(confidence):
    """Two-sided standard-normal quantile for `confidence` (1.959964 for 0.95), by bisection on erf."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence: expected a value in (0, 1), got {confidence!r}")
    target = 1.0 - (1.0 - confidence) / 2.0
    low, high = 0.0, 10.0
    for _ in range(100):
        middle = (low + high) / 2.0
        if 0.5 * (1.0 + math.erf(middle / math.sqrt(2.0))) < target:
            low = middle
        else:
            high = middle
    return (low + high) / 2.0


def wilson_interval(correct, n, confidence=0.95):
    """Wilson score interval for a binomial proportion `correct / n`.

    Chosen over the normal ("Wald") interval because it stays inside [0, 1] and keeps its coverage at
    the small per-task counts and extreme accuracies (0% / 100%) a benchmark run can produce.
    """
    if n <= 0:
        raise ValueError(f"n: expected a positive number of questions, got {n}")
    z = normal_quantile(confidence)
    p = correct / n
    denominator = 1.0 + z * z / n
    centre = (p + z * z / (2.0 * n)) / denominator
    half_width = z * math.sqrt(p * (1.0 - p) / n + z * z / (4.0 * n * n)) / denominator
    # Exactly 0 at 0% and 1 at 100% (rounding leaves ~1e-17 there): the interval always holds `p`.
    return [min(p, max(0.0, centre - half_width)), max(p, min(1.0, centre + half_width))]


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class DepthTemplateAccuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Value("int32"),
                    "references": datasets.Value("int32"),
                    "tasks": datasets.Value("string"),
                }
            ),
            reference_urls=["https://en.wikipedia.org/wiki/Binomial_proportion_confidence_interval#Wilson_score_interval"],
        )

    def _compute(self, predictions, references, tasks, confidence=0.95):
        if not references:
            raise ValueError("references: expected at least one question, got none")
        counts = {}
        for prediction, reference, task in zip(predictions, references, tasks):
            if reference is None or reference < 0:
                raise ValueError(f"references: expected option indices >= 0, got {reference!r} (task {task!r})")
            n, correct = counts.get(task, (0, 0))
            # -1 / None (unparseable) never equals a valid reference, so it counts as wrong.
            counts[task] = (n + 1, correct + int(prediction is not None and prediction == reference))
        per_task = {}
        for task in sorted(counts):
            n, correct = counts[task]
            per_task[task] = {
                "accuracy": correct / n,
                "n": n,
                "correct": correct,
                "ci95": wilson_interval(correct, n, confidence),
            }
        total = sum(n for n, _ in counts.values())
        total_correct = sum(correct for _, correct in counts.values())
        return {
            "per_task": per_task,
            "average": sum(entry["accuracy"] for entry in per_task.values()) / len(per_task),
            "accuracy": total_correct / total,
            "n": total,
        }
