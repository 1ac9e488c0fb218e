"""The Depth Template Benchmark's four tasks: names in the paper's column order, option counts, chance, titles.

The benchmark builder, the instruction data, the evaluation harness and the quickstart report all read them from
here, so a task is spelled, ordered and titled the same way from the data to the report.
"""

from __future__ import annotations

from collections.abc import Iterable

# The paper's column order; tasks a dataset adds are reported after these (`ordered_tasks`).
TASKS = ("scene_classification", "recognition", "distance_judgment", "security")
NUM_OPTIONS = {"scene_classification": 3, "recognition": 4, "distance_judgment": 2, "security": 4}
# A uniform guess among the options.
CHANCE = {task: 1 / count for task, count in NUM_OPTIONS.items()}

# Column titles as the paper's tables print them (results.md, the results plot, model cards, comparisons).
TASK_TITLES = {
    "scene_classification": "Scene Classification",
    "recognition": "Recognition",
    "distance_judgment": "Distance Judge",
    "security": "Security",
}
# Full names, for prose (the quickstart report).
TASK_NAMES = {
    "scene_classification": "Scene Classification",
    "recognition": "Recognition",
    "distance_judgment": "Distance Judgment",
    "security": "Security",
}
# One word each, for narrow tables (the quickstart's ablations).
TASK_SHORT_TITLES = {
    "scene_classification": "Scene",
    "recognition": "Recognition",
    "distance_judgment": "Distance",
    "security": "Security",
}


def ordered_tasks(tasks: Iterable[str]) -> list[str]:
    """Tasks in the paper's column order, unknown ones after them alphabetically."""
    present = set(tasks)
    return [t for t in TASKS if t in present] + sorted(present - set(TASKS))
