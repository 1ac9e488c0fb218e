"""Consistency under reordered options (`deepsight eval benchmark --permutations K`) and the question layout a
checkpoint declares (`question_layout` in its config; `--layout` / `--distance-regions` override it)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from huggingface_hub.errors import StrictDataclassClassValidationError

from deepsight.prompts import OPTION_LETTERS
from evaluation.adapters import OptionScores
from evaluation.runner import (
    RunSettings,
    load_benchmark,
    option_orders,
    question_from_row,
    read_predictions,
    reordered_row,
    resolve_question_layout,
    run_benchmark,
    swap_names,
)
from tests.fixtures.evaluation import make_benchmark_rows, write_benchmark_folder

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FAR_BOX, NEAR_BOX = [0, 0, 10, 10], [16, 8, 30, 20]


class ObjectOracle:
    """Knows each question's right OBJECT (by name) and answers it, wherever its option stands."""

    name = "object-oracle"

    def __init__(self, rows):
        self.rows = {row["id"]: row for row in rows}
        self.asked: list[str] = []

    def _right(self, question) -> int:
        row = self.rows[question.id]
        return question.options.index(row["options"][row["answer_index"]])

    def generate(self, questions, max_new_tokens):
        self.asked += [q.id for q in questions]
        return [OPTION_LETTERS[self._right(q)] for q in questions]

    def score_options(self, questions, continuations, end_turn=True):
        self.asked += [q.id for q in questions]
        return [OptionScores([0.0 if i == self._right(q) else -5.0 for i in range(len(texts))], [1] * len(texts))
                for q, texts in zip(questions, continuations)]


class AlwaysA:
    """Position-biased: answers the first option whatever it is."""

    name = "always-A"

    def generate(self, questions, max_new_tokens):
        return ["A" for _ in questions]

    def score_options(self, questions, continuations, end_turn=True):
        return [OptionScores([0.0] + [-5.0] * (len(texts) - 1), [1] * len(texts)) for texts in continuations]


@pytest.fixture(scope="module")
def rows():
    rows = make_benchmark_rows(16, seed=3)
    for row in rows:
        if row["task"] == "distance_judgment":
            row["boxes"] = [FAR_BOX, NEAR_BOX]
    return rows


@pytest.fixture(scope="module")
def benchmark(tmp_path_factory, rows):
    return load_benchmark(str(write_benchmark_folder(tmp_path_factory.mktemp("bench"), rows)))


# --------------------------------------------------------------------------------------------------
# Orders
# --------------------------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None, derandomize=True)
@given(count=st.integers(2, 5), wanted=st.integers(1, 8), seed=st.integers(0, 3), question=st.text(max_size=6))
def test_option_orders_are_distinct_permutations_starting_with_the_original(count, wanted, seed, question):
    orders = option_orders(question, count, wanted, seed)
    assert orders[0] == list(range(count))
    assert len(orders) == min(wanted, math.factorial(count))
    assert len({tuple(order) for order in orders}) == len(orders)
    assert all(sorted(order) == list(range(count)) for order in orders)
    assert orders == option_orders(question, count, wanted, seed)  # deterministic per question and seed


def test_as_many_orders_as_options_put_the_answer_at_every_position_once():
    for answer in range(4):
        positions = [order.index(answer) for order in option_orders("q7", 4, 4)]
        assert sorted(positions) == [0, 1, 2, 3]


def test_permuted_questions_keep_their_answer_object_while_its_letter_moves(rows):
    for row in rows:
        letters = set()
        for order in option_orders(row["id"], len(row["options"]), 4):
            question = question_from_row(row, order=order)
            assert question.options[question.answer_index] == row["options"][row["answer_index"]]
            assert question.prompt.splitlines()[1 + question.answer_index].endswith(row["answer"])
            letters.add(question.answer_index)
        assert len(letters) == min(4, len(row["options"]))


def test_distance_swap_also_swaps_the_names_in_the_text_and_the_per_option_copies():
    row = next(r for r in make_benchmark_rows(8, seed=0) if r["task"] == "distance_judgment")
    row = dict(row, boxes=[FAR_BOX, NEAR_BOX])
    first, second = row["options"]
    swapped = reordered_row(row, [1, 0])
    assert swapped["question"] == row["question"].replace(first, "\0").replace(second, first).replace("\0", second)
    assert swapped["options"] == [second, first] and swapped["boxes"] == [NEAR_BOX, FAR_BOX]
    assert swapped["answer_index"] == 1 - row["answer_index"]
    question = question_from_row(row, distance_regions=True, order=[1, 0])
    assert question.regions.boxes == [[[float(v) for v in NEAR_BOX]], [[float(v) for v in FAR_BOX]]]
    assert question.regions.content == question_from_row(swapped, distance_regions=True).regions.content


def test_swap_names_matches_whole_names_and_leaves_ambiguous_texts_alone():
    assert swap_names("Is the table or the coffee table farther?", "table", "coffee table") == (
        "Is the coffee table or the table farther?")
    assert swap_names("Which is farther, the bed or the lamp?", "bed", "lamp") == "Which is farther, the lamp or the bed?"
    assert swap_names("Which marked region is farther?", "bed", "lamp") == "Which marked region is farther?"


def test_a_bad_order_is_a_value_error(rows):
    with pytest.raises(ValueError, match="order"):
        reordered_row(rows[0], [0, 0, 1, 2])
    with pytest.raises(ValueError, match="permutations"):
        RunSettings(permutations=0).validate()


# --------------------------------------------------------------------------------------------------
# Runs
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["generate", "likelihood"])
def test_an_oracle_is_fully_consistent_and_right_at_every_position(tmp_path, benchmark, rows, protocol):
    results = run_benchmark(ObjectOracle(rows), benchmark, tmp_path, RunSettings(protocol=protocol, permutations=4),
                            progress=False)
    assert results["average"] == 1.0 and results["permutations"] == 4
    for task, entry in results["tasks"].items():
        assert entry["consistency"] == 1.0
        options = len(next(r for r in rows if r["task"] == task)["options"])
        assert set(entry["accuracy_by_position"]) == set(OPTION_LETTERS[:options])
        assert all(cell["accuracy"] == 1.0 for cell in entry["accuracy_by_position"].values())
        assert entry["n"] == sum(r["task"] == task for r in rows)  # accuracy: the benchmark's order alone
    assert "Consistency (%)" in (tmp_path / "results.md").read_text()


def test_a_position_biased_model_is_inconsistent_and_right_only_at_A(tmp_path, benchmark, rows):
    results = run_benchmark(AlwaysA(), benchmark, tmp_path, RunSettings(protocol="likelihood", permutations=2),
                            progress=False)
    for task, entry in results["tasks"].items():
        assert entry["consistency"] == 0.0  # two orders: the first option is another object each time
        positions = entry["accuracy_by_position"]
        assert all(cell["accuracy"] == (1.0 if letter == "A" else 0.0) for letter, cell in positions.items())
        assert sum(cell["n"] for cell in positions.values()) == 2 * entry["n"]
        share = sum(r["answer_index"] == 0 for r in rows if r["task"] == task) / entry["n"]
        assert entry["accuracy"] == pytest.approx(share)


def test_one_order_writes_todays_records_and_results(tmp_path, benchmark):
    results = run_benchmark(AlwaysA(), benchmark, tmp_path, RunSettings(protocol="generate"), progress=False)
    records = [json.loads(line) for line in (tmp_path / "predictions.jsonl").read_text().splitlines()]
    assert not any("permutation" in record for record in records)
    assert not any("consistency" in entry for entry in results["tasks"].values())
    assert "permutations" not in results and results["question_layout"] == "union"
    assert "permutations" not in json.loads((tmp_path / "run_config.json").read_text())


def test_a_killed_permuted_run_resumes_without_asking_twice(tmp_path, benchmark, rows):
    first = ObjectOracle(rows)
    run_benchmark(first, benchmark, tmp_path, RunSettings(protocol="generate", permutations=3, limit=5, batch_size=4),
                  progress=False)
    predictions = tmp_path / "predictions.jsonl"
    with predictions.open("a") as sink:
        sink.write('{"id": "q0005", "task": "sce')  # killed mid-write
    second = ObjectOracle(rows)
    results = run_benchmark(second, benchmark, tmp_path, RunSettings(protocol="generate", permutations=3, batch_size=4),
                            progress=False)
    expected = sum(min(3, math.factorial(len(r["options"]))) for r in rows)
    assert len(first.asked) + len(second.asked) == expected
    assert len(read_predictions(predictions)) == expected and results["n"] == len(rows)
    with pytest.raises(ValueError, match="permutations"):
        run_benchmark(second, benchmark, tmp_path, RunSettings(protocol="generate"), progress=False)


# --------------------------------------------------------------------------------------------------
# The checkpoint's question layout
# --------------------------------------------------------------------------------------------------


def test_layout_comes_from_the_config_unless_a_flag_says_otherwise():
    from modeling_deepsight import DeepSightConfig

    per_option = DeepSightConfig(question_layout="per_option")
    assert resolve_question_layout(DeepSightConfig()) == "union"
    assert resolve_question_layout(per_option) == "per_option"
    assert resolve_question_layout(per_option, "union") == "union"
    assert resolve_question_layout(object(), distance_regions=True) == "per_option"
    with pytest.raises(ValueError, match="layout"):
        resolve_question_layout(per_option, "union", distance_regions=True)
    with pytest.raises((ValueError, StrictDataclassClassValidationError), match="question_layout"):
        DeepSightConfig(question_layout="stacked")


def test_stage_two_declares_the_per_option_layout_of_its_rows():
    import datasets

    from train.stage import question_layout_of_rows

    def turn(images: int) -> list[dict]:
        return [{"role": "user", "content": [{"type": "image", "text": None}] * images + [{"type": "text", "text": "?"}]},
                {"role": "assistant", "content": [{"type": "text", "text": "A"}]}]

    union = datasets.Dataset.from_dict({"messages": [turn(1), turn(1)], "boxes": [[[[0, 0, 4, 4], [5, 5, 9, 9]]], [[]]]})
    regions = datasets.Dataset.from_dict({"messages": [turn(1), turn(2)],
                                          "boxes": [[[[0, 0, 4, 4]]], [[[0, 0, 4, 4]], [[5, 5, 9, 9]]]]})
    # stage 1's pairs: one image's boxes, no conversation
    pairs = datasets.Dataset.from_dict({"text": ["a bed"], "boxes": [[[0, 0, 4, 4], [5, 5, 9, 9]]]})
    assert question_layout_of_rows(union) == "union"
    assert question_layout_of_rows(regions) == "per_option"
    assert question_layout_of_rows(pairs) == "union"


@pytest.fixture(scope="module")
def per_option_checkpoint(tmp_path_factory):
    from deepsight.tiny import build_tiny_deepsight

    model, processor = build_tiny_deepsight(seed=0)
    model.config.question_layout = "per_option"
    folder = tmp_path_factory.mktemp("deepsight")
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def test_eval_asks_in_the_saved_checkpoints_layout_and_layout_flag_overrides(tmp_path, per_option_checkpoint, rows):
    from evaluation.cli import main

    assert json.loads((per_option_checkpoint / "config.json").read_text())["question_layout"] == "per_option"
    folder = write_benchmark_folder(tmp_path / "bench", rows[:8])
    common = ["benchmark", "--model", str(per_option_checkpoint), "--benchmark", str(folder), "--protocol",
              "likelihood", "--tasks", "distance_judgment"]
    assert main(common + ["--output", str(tmp_path / "declared")]) == 0
    declared = json.loads((tmp_path / "declared" / "results.json").read_text())
    assert declared["question_layout"] == "per_option" and declared["distance_regions"] is True
    records = [json.loads(line) for line in (tmp_path / "declared" / "predictions.jsonl").read_text().splitlines()]
    assert all(record["output"] in ("A", "B") for record in records)  # the region layout's letter answers

    assert main(common + ["--output", str(tmp_path / "union"), "--layout", "union", "--permutations", "2"]) == 0
    union = json.loads((tmp_path / "union" / "results.json").read_text())
    assert union["question_layout"] == "union" and "distance_regions" not in union
    assert union["permutations"] == 2 and "consistency" in union["tasks"]["distance_judgment"]


def test_quickstart_ablations_ask_distance_in_the_union_layout_and_in_four_orders(tmp_path):
    from evaluation.cli import build_parser
    from quickstart.pipeline import Pipeline
    from quickstart.settings import SETTINGS

    for folder in ("model", "data/benchmark"):
        (tmp_path / folder).mkdir(parents=True)
    steps = Pipeline(output=tmp_path, setting=SETTINGS["default"], seed=0).order_and_layout_steps()
    commands = {step.folder.name: step.commands[0] for step in steps}
    assert set(commands) == {"eval_consistency", "eval_distance_union"}
    for command in commands.values():
        build_parser().parse_args(command[command.index("eval") + 1 :])  # valid `deepsight eval` flags
    assert "--layout" in commands["eval_distance_union"] and "--distance-regions" not in commands["eval_distance_union"]
    assert commands["eval_consistency"][-2:] == ["--permutations", "4"]


# --------------------------------------------------------------------------------------------------
# Compare, model card and quickstart report
# --------------------------------------------------------------------------------------------------


def _results(layout: str | None, accuracy: float, **extra) -> dict:
    entry = {"accuracy": accuracy, "n": 10, "ci95": [accuracy - 0.1, accuracy + 0.05], **extra}
    return {"model": "m", "protocol": "likelihood", "n": 10, "average": accuracy,
            "tasks": {"distance_judgment": entry}, **({"question_layout": layout} if layout else {})}


def test_compare_and_model_card_keep_the_two_layouts_apart(tmp_path):
    from evaluation.compare import comparison_markdown
    from evaluation.model_card import write_results_to_model_card

    union, per_option, older = _results("union", 0.5), _results("per_option", 0.9), _results(None, 0.6)
    table = comparison_markdown([union, per_option, older])
    assert "| m (likelihood) |" in table and "| m (likelihood, per_option) |" in table
    readme = write_results_to_model_card(tmp_path, [union, per_option])
    text = readme.read_text()
    assert "distance_judgment/likelihood/per_option" in text and "distance_judgment/likelihood\n" in text


def test_quickstart_report_shows_both_layouts_and_consistency(tmp_path):
    from quickstart.report import order_and_layout_lines

    assert order_and_layout_lines(tmp_path, None) == []
    for name, results in (("eval_distance_union", _results("union", 0.55)), ("eval_consistency", _results(
            "per_option", 0.9, consistency=0.8, accuracy_by_position={"A": {"accuracy": 1.0, "n": 10},
                                                                     "B": {"accuracy": 0.8, "n": 10}}))):
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(json.dumps(dict(results, permutations=4)))
    text = "\n".join(order_and_layout_lines(tmp_path, _results("per_option", 0.979)))
    assert "97.9" in text and "55.0" in text
    assert "| Distance" in text and "| 80.0 | 100.0 (n=10) | 80.0 (n=10) |" in text


def test_stage_two_on_region_rows_saves_the_per_option_layout_and_eval_asks_in_it(tmp_path):
    from dataset_scripts.builders.instructions.builder import main as instructions
    from train.cli import main as train

    rows = tmp_path / "rows"
    assert instructions(["--num-scenes", "6", "--seed", "4", "--width", "96", "--height", "72", "--mc-per-scene", "2",
                         "--no-progress", "--rows-per-scene", "1", "--distance-regions", "--output", str(rows)]) == 0
    output = tmp_path / "sft"
    recipe = Path(__file__).resolve().parents[1] / "train" / "recipes" / "cpu-tiny" / "sft.yaml"
    assert train(["sft", "--config", str(recipe), "--dataset_name", str(rows), "--output_dir", str(output),
                  "--max_steps", "1", "--per_device_train_batch_size", "2", "--save_strategy", "no",
                  "--report_to", "none", "--train_sampling_strategy", "random"]) == 0
    config = json.loads((output / "config.json").read_text())
    assert config["question_layout"] == "per_option"
    assert resolve_question_layout(SimpleNamespace(**config)) == "per_option"
