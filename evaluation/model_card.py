"""Write benchmark results into a model folder's README.md: `model-index` metadata plus a results table.

The metadata goes through `huggingface_hub`'s `ModelCard` / `EvalResult`, so the Hub renders it in the
model page's evaluation widget. Rerunning with new numbers replaces the old entries of the same task
and protocol instead of piling up duplicates; the card's other metadata and text are kept.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from deepsight.tasks import TASK_TITLES
from evaluation.compare import comparison_markdown, run_setting

BENCHMARK_NAME = "Depth Template Benchmark"
SECTION_START = "<!-- deepsight-eval:start -->"
SECTION_END = "<!-- deepsight-eval:end -->"


def eval_results_from_run(results: dict[str, Any], dataset_id: str | None = None) -> list:
    """One `EvalResult` per task and one for the average, tagged with the run's protocol (and question layout
    when it is not the paper's, so runs in the two layouts keep their own entries)."""
    from huggingface_hub import EvalResult

    protocol = run_setting(dict(results, protocol=results.get("protocol", "generate")))
    dataset_type = dataset_id or Path(str(results.get("benchmark") or "depth-template-benchmark")).name
    common = dict(
        task_type="visual-question-answering",
        task_name=f"{BENCHMARK_NAME} ({protocol})",
        dataset_type=dataset_type,
        dataset_name=BENCHMARK_NAME,
        dataset_split="test",
        metric_type="accuracy",
    )
    entries = [
        EvalResult(
            metric_value=round(100 * entry["accuracy"], 2),
            metric_name=f"{TASK_TITLES.get(task, task)} accuracy ({protocol})",
            metric_config=f"{task}/{protocol.replace(', ', '/')}",
            **common,
        )
        for task, entry in results["tasks"].items()
    ]
    entries.append(
        EvalResult(
            metric_value=round(100 * results["average"], 2),
            metric_name=f"Avg. accuracy over tasks ({protocol})",
            metric_config=f"average/{protocol.replace(', ', '/')}",
            **common,
        )
    )
    return entries


def _same_entry(old: Any, new: Any) -> bool:
    """The same metric of the same dataset. Not `is_equal_except_value`: the card's YAML groups a dataset's results
    under one task name, so an entry read back may carry another protocol's task name."""
    keys = ("metric_config", "metric_type", "dataset_type", "dataset_split")
    return all(getattr(old, key) == getattr(new, key) for key in keys)


def _replace_section(text: str, section: str) -> str:
    block = f"{SECTION_START}\n{section.rstrip()}\n{SECTION_END}"
    if SECTION_START in text and SECTION_END in text:
        before, rest = text.split(SECTION_START, 1)
        after = rest.split(SECTION_END, 1)[1]
        return before + block + after
    return text.rstrip() + "\n\n" + block + "\n"


def write_results_to_model_card(
    model_dir: str | os.PathLike,
    runs: list[dict[str, Any]],
    model_name: str | None = None,
    dataset_id: str | None = None,
) -> Path:
    """Add (or update) the runs' results in `model_dir/README.md`; creates the card if missing."""
    from huggingface_hub import ModelCard, ModelCardData

    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ValueError(f"model_dir: {model_dir} is not a folder")
    if not runs:
        raise ValueError("runs: expected at least one results dict")
    model_name = model_name or model_dir.resolve().name
    readme = model_dir / "README.md"
    if readme.exists():
        card = ModelCard.load(readme)
    else:
        card = ModelCard(f"---\n{ModelCardData().to_yaml()}\n---\n\n# {model_name}\n")
    new = [entry for run in runs for entry in eval_results_from_run(run, dataset_id)]
    kept = [old for old in (card.data.eval_results or []) if not any(_same_entry(old, entry) for entry in new)]
    card.data.eval_results = kept + new
    card.data.model_name = model_name
    section = f"## {BENCHMARK_NAME} results\n\nAccuracy (%) per task; 95% Wilson intervals in brackets.\n\n"
    card.text = _replace_section(card.text, section + comparison_markdown(runs, show_ci=True))
    card.save(readme)
    return readme
