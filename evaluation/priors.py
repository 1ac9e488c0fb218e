"""A blind baseline: answer the benchmark from option names alone, with statistics of the training data.

How often each name was the right answer when it was offered, per task, counted over the instruction
dataset's multiple-choice rows (ids ending in `-mc-<skill>`), picks the option with the highest rate (add-one
smoothed; ties go to the first option). No depth map is looked at, so whatever a model scores above this
line it owes to the depth. On the quickstart's synthetic world the line is far above chance for Distance
Judgment (windows and doors stand at the walls, chairs in front of them) and Security (some objects are
rarely placed), which is what a model learns first.
"""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Any, Iterable

from deepsight.box_tags import strip_box_tags
from deepsight.prompts import parse_option

_MC_ID = re.compile(r"-mc-(\w+?)(?:-\d+)?$")
_OPTION_LINE = re.compile(r"^[A-H]\. (.+)$", flags=re.M)


def _text_of(turn: dict[str, Any]) -> str:
    # an image block ends its line, as the chat template renders it (region-layout rows: "A. chair <image>")
    return "".join(
        strip_box_tags(block.get("text") or "") if block.get("type") == "text" else "\n" for block in turn["content"]
    )


def option_statistics(rows: Iterable[dict[str, Any]]) -> dict[str, dict[str, list[int]]]:
    """task -> option name -> [times it was the answer, times it was offered], from multiple-choice rows."""
    counts: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    for row in rows:
        match = _MC_ID.search(str(row.get("id", "")))
        if not match:
            continue
        user = next(turn for turn in row["messages"] if turn["role"] == "user")
        answer = next(turn for turn in row["messages"] if turn["role"] == "assistant")
        options = [option.strip() for option in _OPTION_LINE.findall(_text_of(user))]
        chosen = parse_option(_text_of(answer), options)
        if chosen is None:
            raise ValueError(f"row {row.get('id')!r}: its answer names none of its options {options}")
        for index, option in enumerate(options):
            entry = counts[match.group(1)][option]
            entry[0] += index == chosen
            entry[1] += 1
    return {task: dict(names) for task, names in counts.items()}


def prior_choice(statistics: dict[str, dict[str, list[int]]], task: str, options: list[str]) -> int:
    """The option whose name was most often right for `task` (add-one smoothed rate)."""
    names = statistics.get(task, {})
    rates = [(names.get(option, [0, 0])[0] + 1) / (names.get(option, [0, 0])[1] + 2) for option in options]
    return max(range(len(options)), key=lambda i: (rates[i], -i))


def prior_accuracy(
    statistics: dict[str, dict[str, list[int]]], questions: Iterable[dict[str, Any]]
) -> dict[str, dict[str, float]]:
    """Per task: accuracy and n of the blind prior on benchmark rows (task, options, answer_index)."""
    hits: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for question in questions:
        entry = hits[question["task"]]
        entry[0] += prior_choice(statistics, question["task"], list(question["options"])) == question["answer_index"]
        entry[1] += 1
    return {task: {"accuracy": right / n, "n": n} for task, (right, n) in hits.items()}


def accuracy_by_prior(
    statistics: dict[str, dict[str, list[int]]],
    questions: Iterable[dict[str, Any]],
    correct: dict[str, bool],
) -> dict[str, dict[str, dict[str, float]]]:
    """Per task, a model's accuracy on the questions the blind prior gets wrong and on those it gets right.

    `correct` maps question ids to whether the model answered them right (from predictions.jsonl). A model
    that reads the depth keeps its accuracy where the prior is wrong; one that learned the names' statistics
    only falls to chance or below there.
    """
    hits: dict[str, dict[str, list[int]]] = defaultdict(lambda: {"prior_wrong": [0, 0], "prior_right": [0, 0]})
    for question in questions:
        if question["id"] not in correct:
            continue
        right = prior_choice(statistics, question["task"], list(question["options"])) == question["answer_index"]
        entry = hits[question["task"]]["prior_right" if right else "prior_wrong"]
        entry[0] += bool(correct[question["id"]])
        entry[1] += 1
    return {
        task: {side: {"accuracy": (r / n) if n else float("nan"), "n": n} for side, (r, n) in sides.items()}
        for task, sides in hits.items()
    }
