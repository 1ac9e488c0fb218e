"""Tests of the evaluation harness: the metric module, the runner (stub models), reports, resume,
comparison tables, model cards, and both protocols end to end on a tiny random LLaVA."""

from __future__ import annotations

import json

import numpy as np
import torch
import pytest
from PIL import Image

from deepsight.depth_rendering import metres_to_rgb
from deepsight.prompts import OPTION_LETTERS
from deepsight.tasks import TASKS
from evaluation.adapters import OptionScores
from evaluation.depth_template_accuracy.depth_template_accuracy import wilson_interval
from evaluation.runner import METRIC_PATH, RunSettings, load_benchmark, read_predictions, run_benchmark
from tests.fixtures.evaluation import make_benchmark_rows, save_tiny_llava, write_benchmark_folder

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# --------------------------------------------------------------------------------------------------
# Stub models with the adapters' interface
# --------------------------------------------------------------------------------------------------


class AlwaysA:
    """Answers option A under both protocols."""

    name = "always-A"

    def __init__(self):
        self.asked: list[str] = []

    def generate(self, questions, max_new_tokens):
        self.asked += [q.id for q in questions]
        return ["A" for _ in questions]

    def score_options(self, questions, continuations, end_turn=True):
        self.asked += [q.id for q in questions]
        return [OptionScores([0.0] + [-5.0] * (len(texts) - 1), [1] * len(texts)) for texts in continuations]


class Oracle:
    """Is fed the answers; phrases them as a letter, the option text or the option number in turn."""

    name = "oracle"

    def __init__(self, answers: dict[str, int]):
        self.answers = answers

    def generate(self, questions, max_new_tokens):
        outputs = []
        for i, q in enumerate(questions):
            index = self.answers[q.id]
            outputs.append([f"{OPTION_LETTERS[index]}.", f"It is the {q.options[index]}.", f"{index + 1}"][i % 3])
        return outputs

    def score_options(self, questions, continuations, end_turn=True):
        return [
            OptionScores([-1.0 if i == self.answers[q.id] else -9.0 for i in range(len(texts))], [3] * len(texts))
            for q, texts in zip(questions, continuations)
        ]


class Mumbler:
    """Never names an option."""

    name = "mumbler"

    def generate(self, questions, max_new_tokens):
        return ["hmm, hard to say" for _ in questions]

    def score_options(self, questions, continuations, end_turn=True):  # pragma: no cover - generate-only stub
        raise NotImplementedError


@pytest.fixture(scope="module")
def benchmark_rows():
    # 24 questions with a known, uneven share of A answers per task.
    answer_indices = [0 if i % 3 == 0 else 1 for i in range(24)]
    return make_benchmark_rows(24, seed=1, answer_indices=answer_indices)


@pytest.fixture(scope="module")
def benchmark(tmp_path_factory, benchmark_rows):
    folder = write_benchmark_folder(tmp_path_factory.mktemp("bench"), benchmark_rows)
    return load_benchmark(str(folder))


@pytest.fixture(scope="module")
def grouped_benchmark(tmp_path_factory):
    # 4 questions (one per task) about each depth map, as the paper's templates produce.
    rows = make_benchmark_rows(12, seed=2, questions_per_image=4)
    return load_benchmark(str(write_benchmark_folder(tmp_path_factory.mktemp("grouped"), rows)))


@pytest.fixture(scope="module")
def tiny_llava(tmp_path_factory):
    return save_tiny_llava(tmp_path_factory.mktemp("llava"))


# --------------------------------------------------------------------------------------------------
# Metric module
# --------------------------------------------------------------------------------------------------


def test_metric_module_loads_offline_and_matches_scipy_wilson_interval():
    import evaluate
    from scipy.stats import binomtest

    metric = evaluate.load(str(METRIC_PATH))
    predictions = [1] * 81 + [0] * 19 + [2] * 3 + [-1] * 7
    references = [1] * 100 + [2] * 10
    tasks = ["recognition"] * 100 + ["security"] * 10
    result = metric.compute(predictions=predictions, references=references, tasks=tasks)
    for task, correct, n in [("recognition", 81, 100), ("security", 3, 10)]:
        expected = binomtest(correct, n).proportion_ci(confidence_level=0.95, method="wilson")
        assert result["per_task"][task]["n"] == n
        assert result["per_task"][task]["accuracy"] == pytest.approx(correct / n)
        assert result["per_task"][task]["ci95"] == pytest.approx([expected.low, expected.high], abs=1e-9)
    assert result["average"] == pytest.approx((0.81 + 0.3) / 2)
    assert result["accuracy"] == pytest.approx(84 / 110)


def test_wilson_interval_of_no_questions_is_an_error():
    with pytest.raises(ValueError, match="n: expected a positive number"):
        wilson_interval(0, 0)


def test_metric_counts_unparseable_as_wrong_and_interval_stays_in_unit_range():
    import evaluate

    metric = evaluate.load(str(METRIC_PATH))
    result = metric.compute(predictions=[-1, None, 0], references=[0, 0, 0], tasks=["a", "a", "b"])
    assert result["per_task"]["a"]["accuracy"] == 0.0
    assert result["per_task"]["a"]["ci95"][0] == 0.0
    assert result["per_task"]["b"]["accuracy"] == 1.0
    assert result["per_task"]["b"]["ci95"][1] == 1.0 and result["per_task"]["b"]["ci95"][0] > 0


# --------------------------------------------------------------------------------------------------
# Harness with stub models
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["generate", "likelihood"])
def test_always_A_scores_exactly_the_share_of_A_answers(tmp_path, benchmark, benchmark_rows, protocol):
    results = run_benchmark(AlwaysA(), benchmark, tmp_path, RunSettings(protocol=protocol, batch_size=5), progress=False)
    for task in TASKS:
        rows = [r for r in benchmark_rows if r["task"] == task]
        share = sum(r["answer_index"] == 0 for r in rows) / len(rows)
        assert results["tasks"][task]["accuracy"] == pytest.approx(share)
        assert results["tasks"][task]["n"] == len(rows)
    assert results["n"] == len(benchmark_rows)
    assert results["protocol"] == protocol
    assert results["tasks"]["security"]["chance"] == pytest.approx(0.5)  # two options
    assert results["tasks"]["recognition"]["chance"] == pytest.approx(0.25)  # four options


@pytest.mark.parametrize("protocol", ["generate", "likelihood"])
def test_model_fed_the_answers_scores_100_percent(tmp_path, benchmark, benchmark_rows, protocol):
    oracle = Oracle({r["id"]: r["answer_index"] for r in benchmark_rows})
    results = run_benchmark(oracle, benchmark, tmp_path, RunSettings(protocol=protocol, batch_size=7), progress=False)
    assert results["average"] == 1.0
    assert all(entry["accuracy"] == 1.0 for entry in results["tasks"].values())
    assert results["unparseable"] == []


def test_unparseable_answers_count_as_wrong_and_are_listed(tmp_path, benchmark):
    results = run_benchmark(Mumbler(), benchmark, tmp_path, RunSettings(protocol="generate", limit=6), progress=False)
    assert results["average"] == 0.0
    assert len(results["unparseable"]) == 6
    lines = [json.loads(line) for line in (tmp_path / "predictions.jsonl").read_text().splitlines()]
    assert all(line["prediction"] == -1 and line["prediction_letter"] is None and not line["correct"] for line in lines)
    assert "Unparseable answers (counted wrong): 6" in (tmp_path / "results.md").read_text()


def test_run_writes_predictions_results_table_and_chart(tmp_path, benchmark, benchmark_rows):
    run_benchmark(AlwaysA(), benchmark, tmp_path, RunSettings(protocol="generate", tasks=["recognition", "security"]), progress=False)
    results = json.loads((tmp_path / "results.json").read_text())
    assert list(results["tasks"]) == ["recognition", "security"]
    assert set(results["tasks"]["security"]) >= {"accuracy", "n", "ci95"}
    lines = [json.loads(line) for line in (tmp_path / "predictions.jsonl").read_text().splitlines()]
    assert {"id", "task", "prompt", "output", "prediction", "correct"} <= set(lines[0])
    assert lines[0]["prompt"].splitlines()[1].startswith("A. ")
    table = (tmp_path / "results.md").read_text()
    assert "| Recognition |" in table and "**Avg.**" in table
    with Image.open(tmp_path / "results.png") as chart:
        assert chart.format == "PNG" and chart.size[0] > 100


def test_resume_skips_answered_ids_and_recovers_from_a_torn_line(tmp_path, benchmark, benchmark_rows):
    first = AlwaysA()
    run_benchmark(first, benchmark, tmp_path, RunSettings(protocol="generate", limit=10, batch_size=4), progress=False)
    assert len(first.asked) == 10
    predictions = tmp_path / "predictions.jsonl"
    with predictions.open("a") as sink:
        sink.write('{"id": "q0010", "task": "secu')  # a run killed mid-write
    second = AlwaysA()
    results = run_benchmark(second, benchmark, tmp_path, RunSettings(protocol="generate", batch_size=4), progress=False)
    assert second.asked == [r["id"] for r in benchmark_rows[10:]]
    assert results["n"] == len(benchmark_rows)
    assert len(read_predictions(predictions)) == len(benchmark_rows)


def test_resume_with_another_protocol_model_or_setting_is_refused(tmp_path, benchmark):
    run_benchmark(AlwaysA(), benchmark, tmp_path, RunSettings(protocol="generate", limit=2), progress=False)
    with pytest.raises(ValueError, match="protocol"):
        run_benchmark(AlwaysA(), benchmark, tmp_path, RunSettings(protocol="likelihood", limit=2), progress=False)
    with pytest.raises(ValueError, match="model"):
        run_benchmark(Mumbler(), benchmark, tmp_path, RunSettings(protocol="generate", limit=2), progress=False)
    with pytest.raises(ValueError, match="max_new_tokens"):
        run_benchmark(AlwaysA(), benchmark, tmp_path, RunSettings(protocol="generate", limit=2, max_new_tokens=3), progress=False)
    run_benchmark(AlwaysA(), benchmark, tmp_path, RunSettings(protocol="generate", limit=4), progress=False)  # same run: resumes


def test_bad_settings_and_unknown_tasks_raise_value_errors(tmp_path, benchmark):
    with pytest.raises(ValueError, match="protocol"):
        run_benchmark(AlwaysA(), benchmark, tmp_path, RunSettings(protocol="vote"), progress=False)
    with pytest.raises(ValueError, match="tasks"):
        run_benchmark(AlwaysA(), benchmark, tmp_path, RunSettings(tasks=["counting"]), progress=False)
    with pytest.raises(ValueError, match="limit"):
        run_benchmark(AlwaysA(), benchmark, tmp_path, RunSettings(limit=0), progress=False)


def test_benchmark_missing_schema_columns_is_rejected(tmp_path):
    import datasets

    folder = tmp_path / "not_a_benchmark"
    (folder / "data").mkdir(parents=True)
    datasets.Dataset.from_dict({"id": ["x"], "text": ["hello"]}).to_parquet(str(folder / "data" / "test-0.parquet"))
    with pytest.raises(ValueError, match="missing columns"):
        load_benchmark(str(folder))


# --------------------------------------------------------------------------------------------------
# Depth rendering for photo models
# --------------------------------------------------------------------------------------------------


def test_metres_to_rgb_gray_is_brighter_when_closer_and_black_when_invalid():
    depth = np.array([[0.0, 1.0], [2.0, 4.0]], dtype=np.float32)
    rgb = np.asarray(metres_to_rgb(depth, "gray"))
    assert rgb.shape == (2, 2, 3) and (rgb[..., 0] == rgb[..., 2]).all()
    assert rgb[0, 0, 0] == 0
    assert rgb[0, 1, 0] > rgb[1, 0, 0] > rgb[1, 1, 0] > 0
    colour = np.asarray(metres_to_rgb(depth, "colormap"))
    assert colour.shape == (2, 2, 3) and (colour[0, 0] == 0).all() and not (colour[0, 1] == colour[0, 1, 0]).all()
    with pytest.raises(ValueError, match="gray"):
        metres_to_rgb(depth, "jet")


# --------------------------------------------------------------------------------------------------
# Tiny random LLaVA, end to end
# --------------------------------------------------------------------------------------------------


def _questions(benchmark, count):
    from evaluation.runner import question_from_row

    return [question_from_row(benchmark[i]) for i in range(count)]


def test_shared_prefix_cache_scores_equal_full_sequence_scores_on_tiny_llava(tiny_llava, grouped_benchmark):
    from deepsight.prompts import answer_text
    from evaluation.adapters import VisionLanguageModel

    outlined = VisionLanguageModel.from_pretrained(str(tiny_llava))
    questions = _questions(grouped_benchmark, 10)
    groups, _, _ = outlined._split_at_images(outlined._encode(questions))
    # with the boxes outlined, one image prefix per depth map and box
    assert len(groups) == len({(q.depth.tobytes(), str(q.boxes)) for q in questions}) < len(questions)

    model = VisionLanguageModel.from_pretrained(str(tiny_llava), box_prompt="none")
    assert model.shares_prefix_cache
    groups, _, _ = model._split_at_images(model._encode(questions))
    assert [len(members) for members in groups] == [4, 4, 2]  # one image prefix per depth map
    continuations = [[answer_text(q.options, i) for i in range(len(q.options))] for q in questions]
    full_path_calls = []
    full_path = model._continuation_logprobs_full
    model._continuation_logprobs_full = lambda *args: full_path_calls.append(args) or full_path(*args)
    cached = model.score_options(questions, continuations)
    one_at_a_time = [model.score_options([q], [c])[0] for q, c in zip(questions, continuations)]
    assert not full_path_calls  # the cached path really ran
    model.shares_prefix_cache = False
    full = model.score_options(questions, continuations)
    for a, b, c in zip(cached, full, one_at_a_time):
        np.testing.assert_allclose(a.logprobs, b.logprobs, atol=1e-4)
        np.testing.assert_allclose(a.logprobs, c.logprobs, atol=1e-4)
        assert a.num_tokens == b.num_tokens
        assert all(value < 0 for value in a.logprobs)


def test_options_side_by_side_in_one_row_score_like_one_cache_row_per_option(tiny_llava, grouped_benchmark):
    from evaluation.adapters import VisionLanguageModel

    model = VisionLanguageModel.from_pretrained(str(tiny_llava))
    questions = _questions(grouped_benchmark, 5)
    # options of unequal token lengths, one the prefix of another: each must see only its own earlier tokens
    continuations = [["A. table", "B. table lamp with a long shade", "C. sofa"], ["A. safe", "B. unsafe"]] * 2 + [["D. x"]]
    scores = {}
    for packs_options in (True, False):
        model.packs_options = packs_options
        scores[packs_options] = model.score_options(questions, continuations)
    model.shares_prefix_cache = False
    full = model.score_options(questions, continuations)
    for packed, per_row, reference in zip(scores[True], scores[False], full):
        np.testing.assert_allclose(packed.logprobs, reference.logprobs, atol=1e-4)
        np.testing.assert_allclose(per_row.logprobs, reference.logprobs, atol=1e-4)
        assert packed.num_tokens == reference.num_tokens


def test_batched_generation_matches_one_question_at_a_time_on_tiny_llava(tiny_llava, benchmark):
    from evaluation.adapters import VisionLanguageModel

    model = VisionLanguageModel.from_pretrained(str(tiny_llava))
    questions = _questions(benchmark, 4)
    batched = model.generate(questions, max_new_tokens=4)
    single = [model.generate([q], max_new_tokens=4)[0] for q in questions]
    assert batched == single


@pytest.mark.parametrize("protocol,depth_as", [("generate", "gray"), ("likelihood", "colormap")])
def test_cli_benchmark_runs_end_to_end_on_tiny_llava(tmp_path, tiny_llava, benchmark_rows, protocol, depth_as):
    from evaluation.cli import main

    folder = write_benchmark_folder(tmp_path / "bench", benchmark_rows[:8])
    output = tmp_path / "out"
    argv = ["benchmark", "--model", str(tiny_llava), "--benchmark", str(folder), "--output", str(output),
            "--protocol", protocol, "--batch-size", "3", "--depth-as", depth_as, "--max-new-tokens", "4"]
    assert main(argv) == 0
    results = json.loads((output / "results.json").read_text())
    assert results["n"] == 8 and results["protocol"] == protocol and results["model"] == str(tiny_llava)
    assert set(results["tasks"]) == set(TASKS)
    lines = [json.loads(line) for line in (output / "predictions.jsonl").read_text().splitlines()]
    assert len(lines) == 8
    if protocol == "likelihood":
        assert all(0 <= line["prediction"] < len(line["option_logprobs"]) for line in lines)
    assert (output / "results.png").stat().st_size > 0


# --------------------------------------------------------------------------------------------------
# Comparison table and model card
# --------------------------------------------------------------------------------------------------


def test_compare_table_lists_each_run_and_the_labelled_paper_rows(tmp_path, benchmark):
    from evaluation.compare import comparison_markdown, load_results

    run_benchmark(AlwaysA(), benchmark, tmp_path / "a", RunSettings(protocol="generate"), progress=False)
    run_benchmark(AlwaysA(), benchmark, tmp_path / "b", RunSettings(protocol="likelihood"), progress=False)
    runs = [load_results(tmp_path / "a"), load_results(tmp_path / "b" / "results.json")]
    table = comparison_markdown(runs, include_paper=True)
    assert "always-A (generate)" in table and "always-A (likelihood)" in table
    assert "| DeepSight-7B | paper, Table 2 (b) fine-tuned | 64.86 | 40.56 | 63.17 | 44.81 | 53.85 | |" in table
    average = f"**{100 * runs[0]['average']:.2f}**"
    assert average in table
    with pytest.raises(ValueError, match="results"):
        load_results(tmp_path / "missing")


def test_model_card_gets_model_index_and_updates_in_place(tmp_path, benchmark):
    from huggingface_hub import ModelCard

    from evaluation.compare import load_results
    from evaluation.model_card import write_results_to_model_card

    run_benchmark(AlwaysA(), benchmark, tmp_path / "run", RunSettings(protocol="generate"), progress=False)
    results = load_results(tmp_path / "run")
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "README.md").write_text("---\nlicense: apache-2.0\n---\n\n# My model\n\nIntro text.\n")
    write_results_to_model_card(model_dir, [results], model_name="my-model")
    write_results_to_model_card(model_dir, [results], model_name="my-model")  # no duplicates on rerun
    card = ModelCard.load(model_dir / "README.md")
    assert card.data.license == "apache-2.0" and "Intro text." in card.text
    values = {r.metric_config: r.metric_value for r in card.data.eval_results}
    assert len(card.data.eval_results) == len(results["tasks"]) + 1
    assert values["average/generate"] == pytest.approx(round(100 * results["average"], 2))
    assert card.text.count("deepsight-eval:start") == 1


def test_model_card_rewritten_with_two_protocols_keeps_one_entry_per_metric(tmp_path, benchmark):
    """The card's YAML groups a dataset's results under one task name: entries read back must still match."""
    from huggingface_hub import ModelCard

    from evaluation.compare import load_results
    from evaluation.model_card import write_results_to_model_card

    runs = []
    for protocol in ("likelihood", "generate"):
        run_benchmark(AlwaysA(), benchmark, tmp_path / protocol, RunSettings(protocol=protocol), progress=False)
        runs.append(load_results(tmp_path / protocol))
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    for _ in range(2):
        write_results_to_model_card(model_dir, runs, model_name="my-model")
    configs = [r.metric_config for r in ModelCard.load(model_dir / "README.md").data.eval_results]
    assert len(configs) == len(set(configs)) == 2 * (len(runs[0]["tasks"]) + 1)


# --------------------------------------------------------------------------------------------------
# Tiny random DeepSight (trust_remote_code folder), end to end
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_deepsight(tmp_path_factory):
    tiny = pytest.importorskip("deepsight.tiny")
    model, processor = tiny.build_tiny_deepsight(seed=0)
    folder = tmp_path_factory.mktemp("deepsight")
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def test_deepsight_receives_metric_depth_and_question_boxes_as_bbox_mask(tiny_deepsight, benchmark):
    from evaluation.adapters import VisionLanguageModel

    model = VisionLanguageModel.from_pretrained(str(tiny_deepsight))
    assert model.is_deepsight
    questions = _questions(benchmark, 2)
    inputs = model._encode(questions)
    assert inputs["pixel_values"].shape[1] == 1  # one depth channel, not an RGB rendering
    assert inputs["bbox_mask"].shape[0] == 2
    assert inputs["bbox_mask"].min() == 0 and inputs["bbox_mask"].max() == 1  # the box, not all ones


@pytest.mark.parametrize("model_fixture", ["tiny_llava", "tiny_deepsight"])
def test_one_rendering_per_question_gives_every_option_the_continuation_of_its_own_rendering(
    request, model_fixture, benchmark
):
    from deepsight.prompts import answer_text
    from evaluation.adapters import VisionLanguageModel
    from evaluation.runner import question_from_row

    model = VisionLanguageModel.from_pretrained(str(request.getfixturevalue(model_fixture)))
    for question in (question_from_row(row) for row in list(benchmark)[:6]):
        answers = [answer_text(question.options, i) for i in range(len(question.options))]
        prompt = model.prompt_text(question)
        one_rendering = model._continuations_after(prompt, question, answers)
        assert one_rendering == [model.continuation_text(question, answer) for answer in answers]
        assert all(text.startswith(answer) for text, answer in zip(one_rendering, answers))


@pytest.mark.parametrize("packs_options", [True, False], ids=["options_side_by_side", "one_cache_row_per_option"])
def test_shared_prefix_cache_scores_equal_full_sequence_scores_on_tiny_deepsight(tiny_deepsight, grouped_benchmark, packs_options):
    from deepsight.prompts import answer_text
    from evaluation.adapters import VisionLanguageModel

    model = VisionLanguageModel.from_pretrained(str(tiny_deepsight))
    model.packs_options = packs_options
    questions = _questions(grouped_benchmark, 8)
    groups, _, _ = model._split_at_images(model._encode(questions))
    # box masks differ: only the box-free scene and security questions of an image share its prefix
    assert sorted(len(members) for members in groups) == [1, 1, 1, 1, 2, 2]
    continuations = [[answer_text(q.options, i) for i in range(len(q.options))] for q in questions]
    cached = model.score_options(questions, continuations)
    model.shares_prefix_cache = False
    full = model.score_options(questions, continuations)
    for a, b in zip(cached, full):
        np.testing.assert_allclose(a.logprobs, b.logprobs, atol=1e-4)


@pytest.mark.parametrize("protocol", ["generate", "likelihood"])
def test_cli_benchmark_runs_end_to_end_on_tiny_deepsight(tmp_path, tiny_deepsight, benchmark_rows, protocol):
    from evaluation.cli import main

    folder = write_benchmark_folder(tmp_path / "bench", benchmark_rows[:8])
    output = tmp_path / "out"
    argv = ["benchmark", "--model", str(tiny_deepsight), "--benchmark", str(folder), "--output", str(output),
            "--protocol", protocol, "--batch-size", "4", "--max-new-tokens", "4", "--limit", "6"]
    assert main(argv) == 0
    results = json.loads((output / "results.json").read_text())
    assert results["n"] == 6 and results["protocol"] == protocol
    assert len((output / "predictions.jsonl").read_text().splitlines()) == 6


def test_cli_compare_and_card_commands_write_their_outputs(tmp_path, benchmark, capsys):
    from evaluation.cli import main

    run_benchmark(AlwaysA(), benchmark, tmp_path / "run", RunSettings(protocol="likelihood"), progress=False)
    assert main(["compare", str(tmp_path / "run"), "--ci", "--output", str(tmp_path / "table.md")]) == 0
    printed = capsys.readouterr().out
    assert "always-A (likelihood)" in printed and "[" in printed  # intervals shown with --ci
    assert (tmp_path / "table.md").read_text() == printed.rstrip("\n") + "\n"
    (tmp_path / "model").mkdir()
    assert main(["card", str(tmp_path / "run" / "results.json"), "--model-dir", str(tmp_path / "model")]) == 0
    card = (tmp_path / "model" / "README.md").read_text()
    assert "model-index" in card and "average/likelihood" in card


def test_harness_scores_the_benchmark_builders_output_exactly(tmp_path):
    """The real builder's folder (`deepsight data benchmark`) loads, and always-A scores the share of A answers."""
    data_cli = pytest.importorskip("dataset_scripts.cli")
    folder = tmp_path / "built"
    assert data_cli.main(["benchmark", "--source", "synthetic", "--num-scenes", "3", "--output", str(folder)]) == 0
    dataset = load_benchmark(str(folder))
    rows = list(zip(dataset["task"], dataset["answer_index"]))
    results = run_benchmark(AlwaysA(), dataset, tmp_path / "out", RunSettings(protocol="likelihood"), progress=False)
    for task, entry in results["tasks"].items():
        answers = [answer for t, answer in rows if t == task]
        assert entry["n"] == len(answers)
        assert entry["accuracy"] == pytest.approx(sum(a == 0 for a in answers) / len(answers))
    assert load_benchmark(str(folder), config="synthetic").num_rows == len(rows)


def _train_to_answer(model, questions, target_loss: float = 5e-3, max_steps: int = 400, lr: float = 1e-2) -> None:
    """Fit the adapter's model to give each question's correct answer turn (prompt tokens masked out), until the
    answer turns are learnt token by token: a fixed step count left the letter of some answers unlearnt on one
    machine ('D. bed' generated for 'C. bed')."""
    import torch

    from deepsight.prompts import answer_text
    from evaluation.adapters import _padded_positions

    inputs = model._encode(questions)
    answers = [
        model.tokenizer(model.continuation_text(q, answer_text(q.options, q.answer_index)), add_special_tokens=False)["input_ids"]
        for q in questions
    ]
    answer_ids, answer_mask = model._pad(answers)
    input_ids = torch.cat([inputs["input_ids"], answer_ids], dim=1)
    attention_mask = torch.cat([inputs["attention_mask"], answer_mask], dim=1)
    labels = torch.cat([torch.full_like(inputs["input_ids"], -100), answer_ids.masked_fill(answer_mask == 0, -100)], dim=1)
    torch.manual_seed(0)
    network = model.model.train()
    optimizer = torch.optim.Adam(network.parameters(), lr=lr)
    for _ in range(max_steps):
        loss = network(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=_padded_positions(attention_mask),
            pixel_values=inputs["pixel_values"], labels=labels,
        ).loss
        if loss.item() < target_loss:
            break
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    network.eval()
    assert loss.item() < target_loss, f"the tiny model did not learn the answers in {max_steps} steps (loss {loss.item():.4f})"


def test_likelihood_and_generate_agree_on_a_tiny_llava_trained_to_answer(tmp_path, tiny_llava):
    from evaluation.adapters import VisionLanguageModel

    dataset = load_benchmark(str(write_benchmark_folder(tmp_path / "bench", make_benchmark_rows(8, seed=5))))
    model = VisionLanguageModel.from_pretrained(str(tiny_llava))
    _train_to_answer(model, _questions(dataset, len(dataset)))
    likelihood = run_benchmark(model, dataset, tmp_path / "l", RunSettings(protocol="likelihood"), progress=False)
    generate = run_benchmark(model, dataset, tmp_path / "g", RunSettings(protocol="generate", max_new_tokens=8), progress=False)
    assert likelihood["average"] == 1.0 and generate["average"] == 1.0
    by_id = {p["id"]: p for p in map(json.loads, (tmp_path / "l" / "predictions.jsonl").read_text().splitlines())}
    for line in (tmp_path / "g" / "predictions.jsonl").read_text().splitlines():
        answered = json.loads(line)
        assert answered["prediction"] == by_id[answered["id"]]["prediction"]
        assert answered["output"] == by_id[answered["id"]]["output"]  # the generated turn is the scored text


def test_multimodal_rope_model_scores_prompt_plus_option_rows_and_batching_changes_nothing(tmp_path, benchmark):
    """Qwen2-VL (multimodal RoPE) takes the one-pass path; batched and one-question scores agree."""
    from deepsight.prompts import answer_text
    from evaluation.adapters import VisionLanguageModel
    from deepsight.tiny import build_tiny_qwen2_vl
    from tests.fixtures.evaluation import fixture_tokenizer

    model = VisionLanguageModel(*build_tiny_qwen2_vl(tokenizer=fixture_tokenizer()), name="tiny-qwen2-vl")
    assert not model.shares_prefix_cache
    questions = _questions(benchmark, 5)
    continuations = [[answer_text(q.options, i) for i in range(len(q.options))] for q in questions]
    batched = model.score_options(questions, continuations)
    for question, texts, scores in zip(questions, continuations, batched):
        np.testing.assert_allclose(scores.logprobs, model.score_options([question], [texts])[0].logprobs, atol=1e-4)
    assert model.generate(questions[:3], max_new_tokens=3) == [model.generate([q], max_new_tokens=3)[0] for q in questions[:3]]
    results = run_benchmark(model, benchmark, tmp_path, RunSettings(protocol="likelihood", limit=6), progress=False)
    assert results["n"] == 6


def test_rows_about_one_depth_map_are_batched_together_in_benchmark_order(tmp_path):
    from evaluation.runner import group_rows_by_depth

    rows = make_benchmark_rows(12, seed=4, questions_per_image=4)
    by_task = sorted(rows, key=lambda row: TASKS.index(row["task"]))  # how a builder lists them
    dataset = load_benchmark(str(write_benchmark_folder(tmp_path / "bench", by_task)))
    order = group_rows_by_depth(dataset, list(range(len(dataset))))
    assert sorted(order) == list(range(len(dataset)))
    ids = [dataset[i]["id"] for i in order]
    assert ids == [f"q{i:04d}" for i in (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11)]


def test_letter_score_is_the_next_token_probability_of_each_letter_after_the_prompt(tiny_deepsight, grouped_benchmark):
    from deepsight.prompts import OPTION_LETTERS
    from evaluation.adapters import VisionLanguageModel
    from evaluation.runner import answer_by_likelihood

    model = VisionLanguageModel.from_pretrained(str(tiny_deepsight))
    questions = _questions(grouped_benchmark, 6)
    letters = [[OPTION_LETTERS[i] for i in range(len(q.options))] for q in questions]
    scores = model.score_options(questions, letters, end_turn=False)
    with torch.inference_mode():
        logits = model.model(**model._encode(questions)).logits[:, -1].float().log_softmax(-1)
    for row, (question, texts, score) in enumerate(zip(questions, letters, scores)):
        ids = [model.tokenizer(text, add_special_tokens=False)["input_ids"][0] for text in texts]
        np.testing.assert_allclose(score.logprobs, logits[row, ids].tolist(), atol=1e-4)
        assert score.num_tokens == [1] * len(texts)
    # the runner's `letter` ranking picks the most probable letter; `sum` scores the whole answer turn instead
    records = answer_by_likelihood(model, questions, "letter")
    assert [r["prediction"] for r in records] == [int(np.argmax(s.logprobs)) for s in scores]
    assert all(r["option_num_tokens"] == [1] * len(q.options) for r, q in zip(records, questions))
    summed = answer_by_likelihood(model, questions, "sum")
    assert all(min(r["option_num_tokens"]) > 1 for r in summed)


def test_one_token_options_are_scored_from_the_prompt_pass_alone_like_the_full_path(tiny_llava, grouped_benchmark):
    from deepsight.prompts import OPTION_LETTERS
    from evaluation.adapters import VisionLanguageModel

    model = VisionLanguageModel.from_pretrained(str(tiny_llava))
    questions = _questions(grouped_benchmark, 8)
    letters = [[OPTION_LETTERS[i] for i in range(len(q.options))] for q in questions]
    packed_calls = []
    packed = model._option_logprobs_packed
    model._option_logprobs_packed = lambda *args: packed_calls.append(args) or packed(*args)
    cached = model.score_options(questions, letters, end_turn=False)
    assert not packed_calls  # no option pass ran
    model.shares_prefix_cache = False
    full = model.score_options(questions, letters, end_turn=False)
    for a, b in zip(cached, full):
        np.testing.assert_allclose(a.logprobs, b.logprobs, atol=1e-4)
        assert a.num_tokens == b.num_tokens == [1] * len(a.num_tokens)
