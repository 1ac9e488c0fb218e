"""The blind option-prior baseline: statistics of the training answers, applied without any depth."""

from __future__ import annotations

import math

from deepsight.prompts import answer_text, format_multiple_choice
from evaluation.priors import accuracy_by_prior, option_statistics, prior_accuracy, prior_choice


def mc_row(row_id: str, options: list[str], answer: int) -> dict:
    return {
        "id": row_id,
        "messages": [
            {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": format_multiple_choice("Which is farther?", options)}]},
            {"role": "assistant", "content": [{"type": "text", "text": answer_text(options, answer)}]},
        ],
    }


def test_statistics_count_answers_and_offers_per_task_and_skip_free_form_rows():
    rows = [
        mc_row("s0-mc-distance_judgment", ["window", "chair"], 0),
        mc_row("s1-mc-distance_judgment-2", ["chair", "window"], 1),
        mc_row("s2-mc-distance_judgment", ["chair", "lamp"], 0),
        {"id": "s3-conversation-0", "messages": []},
    ]
    stats = option_statistics(rows)
    assert stats == {"distance_judgment": {"window": [2, 2], "chair": [1, 3], "lamp": [0, 1]}}
    assert prior_choice(stats, "distance_judgment", ["chair", "window"]) == 1
    assert prior_choice(stats, "distance_judgment", ["sofa", "bed"]) == 0  # unseen names: a tie, the first


def test_prior_accuracy_and_the_split_of_a_model_by_where_the_prior_is_wrong():
    stats = option_statistics([mc_row(f"s{i}-mc-distance_judgment", ["window", "chair"], 0) for i in range(3)])
    questions = [
        {"id": "q0", "task": "distance_judgment", "options": ["chair", "window"], "answer_index": 1},  # prior right
        {"id": "q1", "task": "distance_judgment", "options": ["window", "chair"], "answer_index": 1},  # prior wrong
        {"id": "q2", "task": "distance_judgment", "options": ["window", "chair"], "answer_index": 0},  # prior right
    ]
    assert prior_accuracy(stats, questions) == {"distance_judgment": {"accuracy": 2 / 3, "n": 3}}
    split = accuracy_by_prior(stats, questions, {"q0": True, "q1": True, "q2": False})["distance_judgment"]
    assert split["prior_wrong"] == {"accuracy": 1.0, "n": 1}
    assert split["prior_right"] == {"accuracy": 0.5, "n": 2}
    empty = accuracy_by_prior(stats, questions[:1], {"q0": True})["distance_judgment"]["prior_wrong"]
    assert empty["n"] == 0 and math.isnan(empty["accuracy"])
