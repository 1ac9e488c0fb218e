"""Score a `BenchmarkModel` on the Depth Template Benchmark and write the results folder.

The output folder holds:
- `predictions.jsonl`: one line per question (id, task, prompt, raw output, parsed option, correct),
  appended batch by batch, so an interrupted run resumes where it stopped;
- `results.json`: per task `accuracy`, `n`, `ci95` (Wilson), the task `average`, protocol, model, the question
  layout; with `permutations` > 1 also per task `consistency` and `accuracy_by_position` (see `order_metrics`);
- `results.md`: the same as a markdown table; `results.png`: a bar chart with the intervals.

Metrics come from the `evaluate` module in `evaluation/depth_template_accuracy/`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import datasets
import numpy as np
from tqdm.auto import tqdm

from dataset_scripts.export import image_value_to_depth
from deepsight.prompts import (
    OPTION_LETTERS,
    UNNAMED_FARTHER_QUESTIONS,
    UNNAMED_REGIONS,
    answer_text,
    format_multiple_choice,
    letter_conflict,
    parse_option,
    region_answer_text,
)
from deepsight.regions import region_layout
from deepsight.tasks import TASK_TITLES, ordered_tasks
from evaluation.adapters import BenchmarkModel, Question
from modeling_deepsight.configuration_deepsight import QUESTION_LAYOUTS

PROTOCOLS = ("generate", "likelihood")
# How the likelihood protocol ranks options: "sum" / "mean" of the answer turn's token log-probabilities
# ("B. table</s>"), or "letter": the option's letter alone ("B"), MMLU-style -- what the prompt asks for
# ("Answer with the option's letter"), without the option text's own probability.
SCORE_REDUCTIONS = ("sum", "mean", "letter")
REQUIRED_COLUMNS = ("id", "task", "depth", "question", "options", "answer_index")
METRIC_PATH = Path(__file__).resolve().parent / "depth_template_accuracy"
PREDICTIONS_FILE = "predictions.jsonl"


# --------------------------------------------------------------------------------------------------
# Benchmark loading
# --------------------------------------------------------------------------------------------------


def _load_dataset_fresh(path_or_id: str, config: str | None = None):
    """`datasets.load_dataset`, but a local folder is read through its resolved data files.

    For a folder whose card lists `configs:`, datasets 5.2 keys its Arrow cache on the folder *name*
    and the card's file patterns only, so a rebuilt benchmark, or another folder with the same name,
    silently loads the stale cached copy. Loading the packaged builder with the resolved file list
    keys the cache on the files' paths and modification times instead.
    """
    if not os.path.isdir(path_or_id):
        return datasets.load_dataset(path_or_id, config)
    builder = datasets.load_dataset_builder(path_or_id, config)
    return datasets.load_dataset(builder.name, data_files=builder.config.data_files, features=builder.info.features)


def load_benchmark_dataset(
    path_or_id: str, split: str | None = None, required: Sequence[str] = REQUIRED_COLUMNS, config: str | None = None
):
    """One split of a dataset folder (parquet + card) or Hub id, checked to have the `required` columns.

    `config` picks one of the card's configs (e.g. one source); by default the card's default config.
    With no `split`, `test` is used when present, else the only split.
    """
    loaded = _load_dataset_fresh(str(path_or_id), config)
    if split is None:
        if "test" in loaded:
            split = "test"
        elif len(loaded) == 1:
            split = next(iter(loaded))
        else:
            raise ValueError(f"benchmark {path_or_id}: several splits {list(loaded)}; pass --split")
    if split not in loaded:
        raise ValueError(f"split: {split!r} not in benchmark {path_or_id} (splits: {list(loaded)})")
    dataset = loaded[split]
    missing = [c for c in required if c not in dataset.column_names]
    if missing:
        raise ValueError(f"benchmark {path_or_id}: missing columns {missing}; expected at least {', '.join(required)}")
    return dataset


def load_benchmark(path_or_id: str, split: str | None = None, config: str | None = None):
    """The Depth Template Benchmark split as a `datasets.Dataset` (contract schema checked)."""
    return load_benchmark_dataset(path_or_id, split, REQUIRED_COLUMNS, config)


def select_rows(dataset, tasks: Sequence[str] | None = None, limit: int | None = None) -> list[int]:
    """Indices of the rows to evaluate: the given tasks (all by default), at most `limit` in dataset order."""
    all_tasks = dataset["task"]
    if tasks:
        unknown = sorted(set(tasks) - set(all_tasks))
        if unknown:
            raise ValueError(f"tasks: {unknown} not in the benchmark (it has {ordered_tasks(all_tasks)})")
    indices = [i for i, task in enumerate(all_tasks) if not tasks or task in tasks]
    if limit is not None:
        if limit <= 0:
            raise ValueError(f"limit: expected a positive number of questions, got {limit}")
        indices = indices[:limit]
    return indices


def depth_of_row(row: dict[str, Any]) -> np.ndarray:
    """The row's depth (a 16-bit PNG in millimetres, per the datasets contract) as float32 metres."""
    depth = image_value_to_depth(row["depth"])
    if not np.any(depth > 0):
        raise ValueError(f"`depth of {row.get('id', '?')}` has no valid pixel (all zero); expected some depth > 0.")
    return depth


def group_rows_by_depth(dataset, indices: list[int], chunk_size: int = 256) -> list[int]:
    """`indices` reordered so that rows sharing a depth map are adjacent (in order of first appearance).

    A benchmark lists its questions task by task, so the questions about one depth map are far apart;
    batched together, the likelihood protocol encodes that depth map's image prefix once for all of them.
    """
    if not indices:
        return indices
    raw = dataset.select(indices).select_columns(["depth"]).cast_column("depth", datasets.Image(decode=False))
    keys: dict[str, int] = {}
    order = []
    for start in range(0, len(indices), chunk_size):
        for value in raw[start : start + chunk_size]["depth"]:
            content = value.get("bytes") or (value.get("path") or "").encode()
            order.append(keys.setdefault(hashlib.sha1(content).hexdigest(), len(keys)))
    # sorted() is stable: within a depth map the benchmark's order is kept
    return [index for _, index in sorted(zip(order, indices), key=lambda pair: pair[0])]


def option_orders(question_id: str, count: int, permutations: int, seed: int = 0) -> list[list[int]]:
    """`permutations` distinct orders of a question's `count` options (all of them when fewer exist), the original
    first; each order lists the original option at each position. Deterministic per question id and seed.

    The next orders are rotations of the original (a random few when fewer are asked), so with `permutations` =
    `count` the answer stands at every position once; beyond that come random distinct orders.
    """
    if permutations < 1:
        raise ValueError(f"permutations: expected a positive number of option orders, got {permutations}")
    wanted = min(permutations, math.factorial(count))
    rng = np.random.default_rng([seed, zlib.crc32(str(question_id).encode())])
    rotations = [[(j + r) % count for j in range(count)] for r in range(1, count)]
    orders = [list(range(count))] + [rotations[i] for i in sorted(rng.permutation(len(rotations))[: wanted - 1])]
    while len(orders) < wanted:
        order = [int(i) for i in rng.permutation(count)]
        if order not in orders:
            orders.append(order)
    return orders


def swap_names(text: str, first: str, second: str) -> str:
    """`text` with the names `first` and `second` swapped (whole words; the longer name is matched first, so
    "table" inside "coffee table" is left alone); unchanged unless each name occurs exactly once."""
    names = sorted({first, second}, key=len, reverse=True)
    pattern = re.compile(r"\b(" + "|".join(re.escape(name) for name in names) + r")\b")
    found = pattern.findall(text)
    if first == second or sorted(found) != sorted([first, second]):
        return text
    return pattern.sub(lambda match: second if match.group(0) == first else first, text)


def reordered_row(row: dict[str, Any], order: Sequence[int]) -> dict[str, Any]:
    """`row` with its options in `order` (position j holds original option `order[j]`) and the answer index
    moved with them; a Distance Judgment row's per-option boxes move with their options, and when its two
    options swap places the two names in the question text swap too."""
    options = list(row["options"])
    if sorted(order) != list(range(len(options))):
        raise ValueError(f"order: expected a permutation of {len(options)} option indices, got {list(order)}")
    reordered = dict(row, options=[options[i] for i in order], answer_index=list(order).index(row["answer_index"]))
    if row["task"] == "distance_judgment":
        boxes = list(row.get("boxes") or [])
        if len(boxes) == len(options):
            reordered["boxes"] = [boxes[i] for i in order]
        if len(options) == 2 and list(order) == [1, 0]:
            reordered["question"] = swap_names(row["question"], options[0], options[1])
    return reordered


def question_from_row(
    row: dict[str, Any], distance_regions: bool = False, unnamed_distance: bool = False,
    order: Sequence[int] | None = None,
) -> Question:
    """Decode a benchmark row: depth to metres, the prompt in the shared multiple-choice layout.

    `distance_regions`: a Distance Judgment question (one box per option) also carries its per-option region
    layout (`deepsight.regions.region_layout`), which models that read boxes (DeepSight) are asked in.
    `unnamed_distance` (with it): such a question names no object -- "Which of the two marked regions is
    farther...?", options "the first region" / "the second region" -- the same boxes and answer, so only the
    depths tell it (a probe of depth comparison without the names' statistics).
    `order`: the options asked in this order (`reordered_row`); None = the benchmark's.
    """
    depth = depth_of_row(row)
    if not 0 <= row["answer_index"] < len(row["options"]):
        raise ValueError(f"row {row['id']}: answer_index {row['answer_index']} outside its {len(row['options'])} options")
    if order is not None:
        row = reordered_row(row, order)
    options, text = list(row["options"]), row["question"]
    in_regions = distance_regions and row["task"] == "distance_judgment" and len(row.get("boxes") or []) in (
        0, len(options))
    if unnamed_distance and in_regions:
        # the template by a stable hash of the id: the same question on every run
        text = UNNAMED_FARTHER_QUESTIONS[zlib.crc32(str(row["id"]).encode()) % len(UNNAMED_FARTHER_QUESTIONS)]
        options = list(UNNAMED_REGIONS)
    question = Question(
        id=str(row["id"]),
        task=row["task"],
        prompt=format_multiple_choice(text, options),
        options=options,
        answer_index=int(row["answer_index"]),
        depth=depth,
        boxes=[list(box) for box in (row.get("boxes") or [])],
    )
    # (a row whose boxes were removed keeps the layout, every copy then unmasked: the Bbox Conv ablation)
    if in_regions:
        question.regions = region_layout(text, options, question.boxes)
    return question


# --------------------------------------------------------------------------------------------------
# Answering
# --------------------------------------------------------------------------------------------------


def answer_by_generation(model: BenchmarkModel, questions: list[Question], max_new_tokens: int) -> list[dict[str, Any]]:
    outputs = model.generate(questions, max_new_tokens=max_new_tokens)
    records = []
    for question, output in zip(questions, outputs):
        parsed = parse_option(output, question.options)
        records.append({
            "output": output,
            "prediction": -1 if parsed is None else parsed,
            "letter_conflict": letter_conflict(output, question.options),
        })
    return records


def option_continuation(question: Question, index: int, score: str) -> str:
    """The answer option `index` is scored by: the answer a trained model gives ('B. table'; for a question with a
    region layout, the letter alone, `region_answer_text`), or with `score="letter"` the letter alone."""
    if question.regions is not None:
        return region_answer_text(question.options, index)
    return OPTION_LETTERS[index] if score == "letter" else answer_text(question.options, index)


def answer_by_likelihood(model: BenchmarkModel, questions: list[Question], score: str) -> list[dict[str, Any]]:
    continuations = [[option_continuation(q, i, score) for i in range(len(q.options))] for q in questions]
    records = []
    scored = model.score_options(questions, continuations, end_turn=score != "letter")
    for question, texts, scores in zip(questions, continuations, scored):
        values = np.asarray(scores.logprobs, dtype=np.float64)
        if score == "mean":
            values = values / np.asarray(scores.num_tokens, dtype=np.float64)
        best = int(np.argmax(values))
        records.append(
            {
                "output": texts[best],
                "prediction": best,
                "option_logprobs": [round(v, 6) for v in scores.logprobs],
                "option_num_tokens": list(scores.num_tokens),
            }
        )
    return records


# --------------------------------------------------------------------------------------------------
# Predictions file (resume)
# --------------------------------------------------------------------------------------------------


def record_key(question_id: str, order: Sequence[int] | None = None) -> str:
    """The key of a prediction: the question id, with the option order when the run reorders options."""
    return str(question_id) if order is None else f"{question_id}@{','.join(map(str, order))}"


def read_predictions(path: Path) -> dict[str, dict[str, Any]]:
    """Records of an existing predictions.jsonl by `record_key`; a torn last line (killed run) is dropped."""
    records: dict[str, dict[str, Any]] = {}
    if not path.exists():
        return records
    lines = path.read_text().splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):
                break  # the run was killed while writing this line: it is answered again
            raise ValueError(f"{path}:{number}: not a JSON line; remove the file to start over") from None
        records[record_key(record["id"], record.get("permutation"))] = record
    return records


def _check_resumable(records: dict[str, dict[str, Any]], protocol: str, path: Path) -> None:
    protocols = {record.get("protocol") for record in records.values()}
    if protocols and protocols != {protocol}:
        raise ValueError(
            f"{path} holds predictions of protocol {sorted(map(str, protocols))}, not {protocol!r}; "
            "use another --output folder"
        )


RUN_CONFIG_FILE = "run_config.json"


def _check_same_run(output_dir: Path, config: dict[str, Any]) -> None:
    """Predictions of another model / protocol / setting in the folder must not be resumed as ours."""
    path = output_dir / RUN_CONFIG_FILE
    if path.exists():
        previous = json.loads(path.read_text())
        # a setting written only when it is on (distance_regions) counts when either run has it
        differing = sorted(key for key in config.keys() | previous.keys() if previous.get(key) != config.get(key))
        if differing:
            details = ", ".join(f"{key}: {previous.get(key)!r} there vs {config.get(key)!r} now" for key in differing)
            raise ValueError(f"{output_dir} holds a run with other settings ({details}); use another --output folder")
    path.write_text(json.dumps(config, indent=2) + "\n")


def _rewrite_without_torn_line(path: Path, records: dict[str, dict[str, Any]]) -> None:
    if path.exists():
        path.write_text("".join(json.dumps(record) + "\n" for record in records.values()))


# --------------------------------------------------------------------------------------------------
# Run
# --------------------------------------------------------------------------------------------------


@dataclass
class RunSettings:
    protocol: str = "generate"
    batch_size: int = 8
    limit: int | None = None
    tasks: Sequence[str] | None = None
    max_new_tokens: int = 16
    score: str = "sum"
    distance_regions: bool = False  # Distance Judgment in the per-option region layout (DeepSight)
    unnamed_distance: bool = False  # with it: Distance Judgment asked without object names (depth-only probe)
    permutations: int = 1  # option orders per question (`option_orders`); 1 = the benchmark's order alone
    seed: int = 0  # draws the option orders

    @property
    def question_layout(self) -> str:
        """How Distance Judgment's boxes are shown: one image with the union mask, or one copy per option."""
        return "per_option" if self.distance_regions else "union"

    def validate(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol: expected one of {PROTOCOLS}, got {self.protocol!r}")
        if self.score not in SCORE_REDUCTIONS:
            raise ValueError(f"score: expected one of {SCORE_REDUCTIONS}, got {self.score!r}")
        if self.batch_size <= 0:
            raise ValueError(f"batch_size: expected a positive integer, got {self.batch_size}")
        if self.max_new_tokens <= 0:
            raise ValueError(f"max_new_tokens: expected a positive integer, got {self.max_new_tokens}")
        if self.unnamed_distance and not self.distance_regions:
            raise ValueError("unnamed_distance: needs distance_regions (the regions are told apart by their images)")
        if self.permutations < 1:
            raise ValueError(f"permutations: expected a positive number of option orders, got {self.permutations}")

    def protocol_fields(self) -> dict[str, Any]:
        """The settings that change answers (each protocol ignores the other's option), as results report them."""
        return {
            "protocol": self.protocol,
            "score": self.score if self.protocol == "likelihood" else None,
            "max_new_tokens": self.max_new_tokens if self.protocol == "generate" else None,
            **({"distance_regions": True} if self.distance_regions else {}),  # earlier runs' configs stay valid
            **({"unnamed_distance": True} if self.unnamed_distance else {}),
            **({"permutations": self.permutations, "permutation_seed": self.seed} if self.permutations > 1 else {}),
        }


def _open_run(
    output_dir: Path, model_name: str, depth_as: str | None, settings: RunSettings, box_prompt: str | None = None
) -> tuple[Path, dict[str, dict[str, Any]]]:
    """The predictions file of `output_dir` and the records already in it, once they are known to belong to
    this same run (model and protocol); a line torn by an interrupted write is dropped from the file."""
    output_dir.mkdir(parents=True, exist_ok=True)
    predictions_path = output_dir / PREDICTIONS_FILE
    records = read_predictions(predictions_path)
    _check_resumable(records, settings.protocol, predictions_path)
    identity = {"model": model_name, "depth_as": depth_as, **settings.protocol_fields()}
    if box_prompt is not None:  # models that read boxes themselves (DeepSight) have none
        identity["box_prompt"] = box_prompt
    _check_same_run(output_dir, identity)
    _rewrite_without_torn_line(predictions_path, records)
    return predictions_path, records


def prediction_record(
    question: Question, answer: dict[str, Any], protocol: str, order: Sequence[int] | None = None
) -> dict[str, Any]:
    """One line of predictions.jsonl: the question, the model's answer and whether it is right; asked with its
    options reordered, also the `permutation` and the chosen option's index in the benchmark's order."""
    chosen = answer["prediction"]
    reordered = {} if order is None else {
        "permutation": list(order), "original_prediction": order[chosen] if chosen >= 0 else -1}
    return {
        "id": question.id,
        "task": question.task,
        "protocol": protocol,
        "prompt": question.prompt,
        **answer,
        "prediction_letter": OPTION_LETTERS[answer["prediction"]] if answer["prediction"] >= 0 else None,
        "answer_index": question.answer_index,
        "num_options": len(question.options),
        "correct": answer["prediction"] == question.answer_index,
        **reordered,
    }


def run_benchmark(
    model: BenchmarkModel,
    dataset,
    output_dir: str | os.PathLike,
    settings: RunSettings | None = None,
    benchmark_name: str | None = None,
    progress: bool = True,
    write_report: bool = True,
) -> dict[str, Any]:
    """Answer every selected question not yet in `output_dir/predictions.jsonl`, then score and report.

    Returns the results dict, also written to `results.json` / `results.md` / `results.png` unless
    `write_report` is False (the predictions file is always written: it is what makes runs resumable).
    """
    settings = settings or RunSettings()
    settings.validate()
    output_dir = Path(output_dir)
    model_name = getattr(model, "name", type(model).__name__)
    predictions_path, records = _open_run(
        output_dir, model_name, getattr(model, "depth_as", None), settings, getattr(model, "box_prompt", None)
    )

    indices = select_rows(dataset, settings.tasks, settings.limit)
    asked = questions_to_ask(dataset, indices, settings)
    todo_rows = [index for index in indices if any(record_key(*key) not in records for key in asked[index])]
    if settings.protocol == "likelihood":
        todo_rows = group_rows_by_depth(dataset, todo_rows)
    # a row's orders stay adjacent: its depth prefix is shared by the likelihood batches
    todo = [(index, order) for index in todo_rows for question_id, order in asked[index]
            if record_key(question_id, order) not in records]
    total = sum(len(keys) for keys in asked.values())
    with predictions_path.open("a") as sink, tqdm(
        total=total, initial=total - len(todo), desc=f"benchmark ({settings.protocol})",
        unit="q", disable=not progress,
    ) as bar:
        for start in range(0, len(todo), settings.batch_size):
            batch = todo[start : start + settings.batch_size]
            questions = [
                question_from_row(dataset[i], settings.distance_regions, settings.unnamed_distance, order)
                for i, order in batch
            ]
            if settings.protocol == "generate":
                answers = answer_by_generation(model, questions, settings.max_new_tokens)
            else:
                answers = answer_by_likelihood(model, questions, settings.score)
            for question, answer, (_, order) in zip(questions, answers, batch):
                record = prediction_record(question, answer, settings.protocol, order)
                records[record_key(question.id, order)] = record
                sink.write(json.dumps(record) + "\n")
            sink.flush()
            bar.update(len(questions))

    selected = [records[record_key(*key)] for index in indices for key in asked[index]]
    results = summarize(selected, settings, model_name=model_name, benchmark=benchmark_name)
    if write_report:
        write_reports(results, output_dir)
    return results


def questions_to_ask(dataset, indices: list[int], settings: RunSettings) -> dict[int, list[tuple[str, list[int] | None]]]:
    """Per selected row, the (question id, option order) pairs it is asked as; one pair with order None (the
    benchmark's order, today's records) unless the run reorders options."""
    if not indices:
        return {}
    selected = dataset.select(indices).select_columns(["id", "options"])
    ids, options = [str(i) for i in selected["id"]], list(selected["options"])
    if settings.permutations == 1:
        return {index: [(question_id, None)] for index, question_id in zip(indices, ids)}
    return {
        index: [(question_id, order) for order in option_orders(question_id, len(opts), settings.permutations, settings.seed)]
        for index, question_id, opts in zip(indices, ids, options)
    }


def in_benchmark_order(record: dict[str, Any]) -> bool:
    """Whether a prediction was asked with the options in the benchmark's own order."""
    order = record.get("permutation")
    return order is None or order == sorted(order)


def order_metrics(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per task, over questions asked in several option orders:

    - `consistency`: the share of questions whose chosen OBJECT (the option in the benchmark's order, not the
      letter) is the same under every order; an unparseable answer counts as inconsistent;
    - `accuracy_by_position`: per answer letter (where the right option stood), accuracy and n over every order.
    """
    chosen: dict[tuple[str, str], list[int]] = {}
    by_position: dict[str, dict[str, list[int]]] = {}
    for record in records:
        chosen.setdefault((record["task"], record["id"]), []).append(record.get("original_prediction", record["prediction"]))
        letter = OPTION_LETTERS[record["answer_index"]]
        by_position.setdefault(record["task"], {}).setdefault(letter, []).append(int(record["correct"]))
    metrics: dict[str, dict[str, Any]] = {}
    for task in ordered_tasks({task for task, _ in chosen}):
        answers = [picks for (t, _), picks in chosen.items() if t == task]
        same = [len(set(picks)) == 1 and picks[0] >= 0 for picks in answers]
        metrics[task] = {
            "consistency": sum(same) / len(same),
            "orders_per_question": max(len(picks) for picks in answers),
            "accuracy_by_position": {
                letter: {"accuracy": sum(hits) / len(hits), "n": len(hits)}
                for letter, hits in sorted(by_position[task].items())
            },
        }
    return metrics


def compute_metric(records: list[dict[str, Any]]) -> dict[str, Any]:
    """The `depth_template_accuracy` evaluate module over prediction records."""
    import evaluate  # pulls in transformers' pipelines (~5 s): only scoring needs it

    metric = evaluate.load(str(METRIC_PATH))
    return metric.compute(
        predictions=[int(r["prediction"]) for r in records],
        references=[int(r["answer_index"]) for r in records],
        tasks=[r["task"] for r in records],
    )


def summarize(records: list[dict[str, Any]], settings: RunSettings, model_name: str, benchmark: str | None) -> dict[str, Any]:
    if not records:
        raise ValueError("no questions were selected; check --tasks and --limit")
    reordered = records if settings.permutations > 1 else []
    # accuracy is the benchmark's order's, comparable with a run that does not reorder
    records = [r for r in records if in_benchmark_order(r)]
    scores = compute_metric(records)
    tasks = {task: dict(scores["per_task"][task]) for task in ordered_tasks(scores["per_task"])}
    for task, entry in tasks.items():
        # chance level: the expected accuracy of a uniform random pick (2-option tasks sit at 50%)
        counts = [r["num_options"] for r in records if r["task"] == task and r.get("num_options")]
        if counts:
            entry["chance"] = sum(1.0 / count for count in counts) / len(counts)
    for task, metrics in order_metrics(reordered).items():
        tasks[task].update(metrics)
    unparseable = [r["id"] for r in records if r["prediction"] < 0]
    conflicts = [r["id"] for r in records if r.get("letter_conflict")]
    return {
        "model": model_name,
        "benchmark": benchmark,
        **settings.protocol_fields(),
        "question_layout": settings.question_layout,
        "n": scores["n"],
        "average": scores["average"],
        "accuracy": scores["accuracy"],
        "tasks": tasks,
        "interval": "Wilson score interval, 95%",
        "unparseable": unparseable,
        # generate: answers whose letter and option text name different options (scored by the text)
        **({"letter_conflicts": conflicts} if settings.protocol == "generate" else {}),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


# --------------------------------------------------------------------------------------------------
# Reports
# --------------------------------------------------------------------------------------------------


def results_markdown(results: dict[str, Any]) -> str:
    """A per-task table (accuracy in %, Wilson 95% interval) with the average row."""
    lines = [
        f"# Depth Template Benchmark: {results['model']}",
        "",
        f"Protocol: `{results['protocol']}`, {results['n']} questions"
        + (f", benchmark `{results['benchmark']}`" if results.get("benchmark") else "")
        + ".",
        "",
        "| Task | n | Accuracy (%) | 95% CI (Wilson) | Chance (%) |",
        "|---|---:|---:|---|---:|",
    ]
    for task, entry in results["tasks"].items():
        low, high = entry["ci95"]
        chance = f"{100 * entry['chance']:.1f}" if "chance" in entry else "-"
        lines.append(
            f"| {TASK_TITLES.get(task, task)} | {entry['n']} | {100 * entry['accuracy']:.2f} | "
            f"{100 * low:.1f} - {100 * high:.1f} | {chance} |"
        )
    lines.append(f"| **Avg.** | {results['n']} | **{100 * results['average']:.2f}** | | |")
    if results["protocol"] == "generate":
        count = len(results["unparseable"])
        lines += ["", f"Unparseable answers (counted wrong): {count}" + (f": {', '.join(results['unparseable'][:20])}" if count else "")]
        if count > 20:
            lines[-1] += ", ..."
        conflicts = len(results.get("letter_conflicts", []))
        lines.append(
            f"Answers whose letter and option text disagree (scored by the text, see `parse_option`): {conflicts}"
        )
    lines += consistency_markdown(results)
    return "\n".join(lines) + "\n"


def consistency_markdown(results: dict[str, Any]) -> list[str]:
    """The consistency table of a run that reordered the options (none otherwise)."""
    tasks = {task: entry for task, entry in results["tasks"].items() if "consistency" in entry}
    if not tasks:
        return []
    letters = sorted({letter for entry in tasks.values() for letter in entry["accuracy_by_position"]})
    lines = [
        "",
        f"Consistency over {results.get('permutations')} option orders per question (every order where a task has "
        "fewer; Distance Judgment with the two names swapped in the text too): the share of questions answered "
        "with the same object under every order, and the accuracy (%) by the right answer's position, over all "
        "orders.",
        "",
        "| Task | Consistency (%) | " + " | ".join(f"Answer {letter}" for letter in letters) + " |",
        "|---|---:|" + "---:|" * len(letters),
    ]
    for task, entry in tasks.items():
        positions = entry["accuracy_by_position"]
        cells = [f"{100 * positions[l]['accuracy']:.1f} (n={positions[l]['n']})" if l in positions else "-" for l in letters]
        lines.append(f"| {TASK_TITLES.get(task, task)} | {100 * entry['consistency']:.1f} | " + " | ".join(cells) + " |")
    return lines


def resolve_question_layout(model_config: Any, layout: str | None = None, distance_regions: bool = False) -> str:
    """The layout to ask Distance Judgment in: `layout` when given (or "per_option" for `distance_regions`), else
    the one the checkpoint declares (`question_layout` in its config; "union", the paper's, when it has none)."""
    if layout is not None and layout not in QUESTION_LAYOUTS:
        raise ValueError(f"layout: expected one of {QUESTION_LAYOUTS}, got {layout!r}")
    if distance_regions:
        if layout == "union":
            raise ValueError("layout: 'union' contradicts --distance-regions (the per-option layout); pass one")
        return "per_option"
    if layout is not None:
        return layout
    declared = getattr(model_config, "question_layout", None) or "union"
    if declared not in QUESTION_LAYOUTS:
        raise ValueError(f"the checkpoint's question_layout: expected one of {QUESTION_LAYOUTS}, got {declared!r}")
    return declared


def plot_results(results: dict[str, Any], path: Path) -> Path:
    """Bar chart of per-task accuracy with the 95% intervals and the average as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(results["tasks"])
    accuracy = np.array([100 * results["tasks"][t]["accuracy"] for t in tasks])
    intervals = np.array([[100 * v for v in results["tasks"][t]["ci95"]] for t in tasks]).reshape(-1, 2)
    # matplotlib refuses negative error bars; an interval from an older results.json may miss `p` by rounding
    errors = np.clip(np.stack([accuracy - intervals[:, 0], intervals[:, 1] - accuracy]), 0.0, None)
    figure, axis = plt.subplots(figsize=(1.6 * len(tasks) + 2.5, 3.6))
    labels = [TASK_TITLES.get(t, t) for t in tasks]
    axis.bar(labels, accuracy, yerr=errors, capsize=4, color="#4C72B0", label="accuracy (95% CI)")
    chance = [100 * results["tasks"][t].get("chance", np.nan) for t in tasks]
    if not np.all(np.isnan(chance)):
        axis.scatter(labels, chance, marker="_", s=900, color="#555555", zorder=3, label="chance")
    axis.axhline(100 * results["average"], color="#C44E52", linestyle="--", label=f"Avg. {100 * results['average']:.1f}%")
    axis.set_ylim(0, 100)
    axis.set_ylabel("accuracy (%)")
    axis.set_title(f"{Path(str(results['model'])).name} ({results['protocol']})", fontsize=10)
    axis.legend(loc="upper right", fontsize=8)
    plt.setp(axis.get_xticklabels(), rotation=15, fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def write_reports(results: dict[str, Any], output_dir: Path) -> None:
    (output_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (output_dir / "results.md").write_text(results_markdown(results))
    plot_results(results, output_dir / "results.png")
