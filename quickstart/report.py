"""`outputs/quickstart/report.md`: what the quickstart did and what it reached, readable in a minute."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import datasets

from deepsight.tasks import CHANCE, TASK_NAMES
from evaluation.compare import load_paper_rows
from evaluation.model_card import write_results_to_model_card
from evaluation.priors import accuracy_by_prior, option_statistics, prior_accuracy
from evaluation.runner import consistency_markdown

# The bar for the quickstart (test split, likelihood protocol).
TARGET_AVERAGE, TARGET_DISTANCE, TARGET_MARGIN = 0.70, 0.90, 0.25


def load_json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.exists() else None


def paper_fine_tuned_row() -> list[float] | None:
    for row in load_paper_rows():
        if row.get("model") == "DeepSight-7B" and "fine-tuned" in row.get("group", ""):
            return row["values"]
    return None


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}"


def _task_entry(results: dict[str, Any] | None, task: str) -> dict[str, Any] | None:
    return None if results is None else results.get("tasks", {}).get(task)


def _ci(entry: dict[str, Any] | None) -> str:
    if not entry or not entry.get("ci95"):
        return ""
    low, high = entry["ci95"]
    return f" [{100 * low:.0f}–{100 * high:.0f}]"


def results_table(
    likelihood: dict[str, Any] | None, generate: dict[str, Any] | None, prior: dict[str, Any] | None = None
) -> str:
    paper = paper_fine_tuned_row()
    lines = ["| task | n | likelihood (95% CI) | generate | blind prior† | chance | paper DeepSight-7B FT* |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for i, (task, title) in enumerate(TASK_NAMES.items()):
        lk, gen = _task_entry(likelihood, task), _task_entry(generate, task)
        blind = (prior or {}).get(task)
        lines.append(f"| {title} | {lk['n'] if lk else '—'} | {_pct(lk and lk['accuracy'])}{_ci(lk)} | "
                     f"{_pct(gen and gen['accuracy'])} | {_pct(blind and blind['accuracy'])} | {_pct(CHANCE[task])} | "
                     f"{paper[i] if paper else '—'} |")
    average = lambda r: None if r is None else r.get("average")  # noqa: E731
    chance_avg = sum(CHANCE.values()) / len(CHANCE)
    prior_avg = sum(prior[t]["accuracy"] for t in TASK_NAMES) / len(TASK_NAMES) if prior and all(
        t in prior for t in TASK_NAMES) else None
    lines.append(f"| **Average** | | **{_pct(average(likelihood))}** | {_pct(average(generate))} | "
                 f"{_pct(prior_avg)} | {_pct(chance_avg)} | {paper[4] if paper else '—'} |")
    return "\n".join(lines)


PRIOR_NOTE = (
    "† Blind prior: each option scored by how often its name was the right answer in the training "
    "instructions' multiple-choice rows, no depth looked at (`evaluation/priors.py`). What a model scores "
    "above it, it owes to the depth."
)


def blind_prior(output: Path) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(prior accuracy per task, the likelihood model's accuracy where the prior is wrong / right)."""
    instructions, benchmark = output / "data" / "instructions", output / "data" / "benchmark"
    if not (instructions.exists() and benchmark.exists()):
        return None, None
    rows = datasets.load_dataset(str(instructions), split="train").select_columns(["id", "messages"])
    questions = datasets.load_dataset(str(benchmark), split="test").select_columns(
        ["id", "task", "options", "answer_index"])
    statistics = option_statistics(rows)
    predictions = output / "eval" / "likelihood" / "predictions.jsonl"
    split = None
    if predictions.exists():
        records = [json.loads(line) for line in predictions.read_text().splitlines() if line.strip()]
        split = accuracy_by_prior(statistics, questions, {r["id"]: r["correct"] for r in records})
    return prior_accuracy(statistics, questions), split


def prior_split_table(split: dict[str, Any]) -> str:
    lines = ["| task | prior wrong: n | model (likelihood) | chance | prior right: n | model (likelihood) |",
             "|---|---:|---:|---:|---:|---:|"]
    for task, title in TASK_NAMES.items():
        if task not in split:
            continue
        wrong, right = split[task]["prior_wrong"], split[task]["prior_right"]
        lines.append(f"| {title} | {wrong['n']} | {_pct(wrong['accuracy'] if wrong['n'] else None)} | "
                     f"{_pct(CHANCE[task])} | {right['n']} | {_pct(right['accuracy'] if right['n'] else None)} |")
    return "\n".join(lines)


def targets_check(likelihood: dict[str, Any] | None) -> list[str]:
    """One line per target of the issue, each saying whether it was met (honestly, from results.json)."""
    if likelihood is None:
        return ["- no likelihood results: the evaluation did not run"]
    tasks = likelihood.get("tasks", {})
    lines = []
    avg = likelihood.get("average")
    lines.append(f"- average ≥ {_pct(TARGET_AVERAGE)}%: {'met' if avg is not None and avg >= TARGET_AVERAGE else 'NOT met'} "
                 f"({_pct(avg)}%)")
    dj = tasks.get("distance_judgment", {}).get("accuracy")
    lines.append(f"- Distance Judgment ≥ {_pct(TARGET_DISTANCE)}%: "
                 f"{'met' if dj is not None and dj >= TARGET_DISTANCE else 'NOT met'} ({_pct(dj)}%)")
    for task, title in TASK_NAMES.items():
        acc = tasks.get(task, {}).get("accuracy")
        bar = CHANCE[task] + TARGET_MARGIN
        lines.append(f"- {title} ≥ chance + 25 points ({_pct(bar)}%): "
                     f"{'met' if acc is not None and acc >= bar else 'NOT met'} ({_pct(acc)}%)")
    return lines


def step_timings(output: Path) -> list[str]:
    """Wall and CPU seconds per finished step (CPU: this machine's cost without other users of the cores)."""
    lines = ["| step | wall seconds | CPU seconds |", "|---|---:|---:|"]
    total_wall = total_cpu = 0.0
    for marker in sorted(output.rglob(".done"), key=lambda p: p.stat().st_mtime):
        timing = json.loads(marker.read_text() or "{}")
        total_wall += timing.get("seconds") or 0
        total_cpu += timing.get("cpu_seconds") or 0
        lines.append(f"| {marker.parent.relative_to(output)} | {timing.get('seconds', '—')} | "
                     f"{timing.get('cpu_seconds', '—')} |")
    lines.append(f"| **sum** | {total_wall:.0f} | {total_cpu:.0f} |")
    return lines


DISTANCE_LAYOUT_NOTE = (
    "Distance Judgment is asked in the per-option region layout (`--distance-regions`, in training and here): each "
    "option's name is followed by its own copy of the depth map masked to that option's box, instead of the "
    "paper's one image masked to both boxes (where the model must first recognise which box is which name). "
    "The answer there is the region's letter alone (`B`), and the likelihood protocol scores it so."
)
UNNAMED_NOTE = (
    " The training data also holds each Distance row's twin that names no object (\"the first region\" / "
    "\"the second region\", `--unnamed-distance`), answerable only by comparing the two regions' depths."
)


def unnamed_distance_lines(unnamed: dict[str, Any] | None, likelihood: dict[str, Any] | None) -> list[str]:
    """The depth-only probe: the same Distance Judgment questions asked without object names."""
    task = (unnamed or {}).get("tasks", {}).get("distance_judgment")
    if not task:
        return []
    named = ((likelihood or {}).get("tasks", {}).get("distance_judgment") or {}).get("accuracy")
    low, high = task["ci95"]
    return [
        f"The test split's {task['n']} Distance Judgment questions asked again without the object names (\"Which of "
        f"the two marked regions is farther...?\", options \"the first region\" / \"the second region\"; the same "
        f"boxes and answers, `deepsight eval benchmark --distance-regions --unnamed-distance`), where only the depths "
        f"tell the answer: **{_pct(task['accuracy'])}** [{_pct(low)}–{_pct(high)}] (chance 50.0; with the names: "
        f"{_pct(named)}).",
        "",
    ]


def order_and_layout_lines(output: Path, likelihood: dict[str, Any] | None) -> list[str]:
    """`--ablations`: Distance in both layouts, and the consistency over option orders."""
    union = _task_entry(load_json(output / "eval_distance_union" / "results.json"), "distance_judgment")
    consistency = load_json(output / "eval_consistency" / "results.json")
    if union is None and consistency is None:
        return []
    lines = ["## Question layout and option order (likelihood)", ""]
    if union is not None:
        per_option = _task_entry(likelihood, "distance_judgment")
        lines += [
            f"Distance Judgment in the layout the model was trained in (one masked copy per option, the layout its "
            f"config declares): {_pct((per_option or {}).get('accuracy'))}; in the paper's one image masked to both "
            f"boxes (`--layout union`): {_pct(union['accuracy'])}{_ci(union)} (n={union['n']}, chance 50.0).", ""]
    if consistency is not None:
        lines += consistency_markdown(consistency)[1:] + [""]
    return lines


def write_report(pipeline, wall_seconds: float) -> Path:
    output: Path = pipeline.output
    likelihood = load_json(output / "eval" / "likelihood" / "results.json")
    generate = load_json(output / "eval" / "generate" / "results.json")
    sizes = load_json(output / "init" / "sizes.json") or {}
    ablations = (output / "ablations" / "ablations.md")
    setting = pipeline.setting
    prior, split = blind_prior(output)
    parts = [
        "# DeepSight quickstart report",
        "",
        f"Setting: `{json.dumps(setting.__dict__)}`  ",
        f"Model: {sizes.get('parameters', '?'):,} parameters, {sizes.get('image_tokens', '?')} image tokens, "
        f"vocabulary {sizes.get('vocab', '?')}; stage-0 text encoder: {sizes.get('dual_encoder_text', '?')}  "
        if isinstance(sizes.get("parameters"), int) else "",
        f"Wall time of this run: {wall_seconds / 60:.1f} min (steps already done were skipped).",
        "",
        "## Depth Template Benchmark (synthetic test scenes, disjoint seeds from training)",
        "",
        *([DISTANCE_LAYOUT_NOTE + (UNNAMED_NOTE if setting.unnamed_distance else ""), ""]
          if getattr(setting, "distance_regions", False) else []),
        results_table(likelihood, generate, prior),
        "",
        "\\* The paper's fine-tuned DeepSight-7B (Table 2b) on real NYU-D / SUN-D with a 7B LLM — a different "
        "scale and different data, shown for orientation only, not comparable.",
        "",
        PRIOR_NOTE,
        "",
        *(["### Does the model read the depth?", "",
           "The same questions split by whether the blind prior answers them right. Where it is wrong, only the "
           "depth can lead to the answer; a model that learned the names' statistics alone falls to chance or "
           "below there.", "", prior_split_table(split), ""] if split else []),
        *unnamed_distance_lines(load_json(output / "eval_distance_unnamed" / "results.json"), likelihood),
        "### Targets (likelihood protocol)",
        "",
        *targets_check(likelihood),
        "",
    ]
    sun_layout = load_json(output / "eval_sun_layout" / "likelihood" / "results.json")
    if sun_layout is not None:
        parts += ["## Unseen scenes in the SUN RGB-D original layout (likelihood)", "",
                  "Scenes from another seed written as SUN RGB-D frame folders and read back through "
                  "`deepsight data benchmark --source sunrgbd` (the same model, no change).", "",
                  results_table(sun_layout, None), ""]
    zero_shot = output / "stage0" / "zero_shot_scene_accuracy.json"
    if zero_shot.exists() and json.loads(zero_shot.read_text()):
        curve = ", ".join(f"step {step}: {100 * acc:.1f}%" for step, acc in json.loads(zero_shot.read_text()))
        parts += ["## Stage 0: zero-shot scene accuracy on held-out scenes", "",
                  f"{curve} (prompt \"a depth image of a {{scene}}.\", all-ones box mask).", ""]
    parts += order_and_layout_lines(output, likelihood)
    if ablations.exists():
        parts += ["## Ablations", "", ablations.read_text(), ""]
    parts += [
        "## Artefacts",
        "",
        f"- model: `{output / 'model'}` (the installed classes load it; without them, `trust_remote_code=True`)",
        f"- results: `{output / 'eval' / 'likelihood'}` and `{output / 'eval' / 'generate'}` "
        "(results.json, predictions.jsonl, results.md, bar chart PNG)",
        f"- data: `{output / 'data'}` (benchmark, pairs, instructions: parquet + README.md cards)",
        f"- training: loss curves in `{output}/stage0|stage1|model/loss_curve.png`, TensorBoard logs beside them",
        "",
        f"Talk to the model: `make demo` (or `deepsight demo --model {output / 'model'}`).",
        "",
        "## Step timings",
        "",
        "CPU seconds are user + system time of the step's processes: what the step costs on an idle machine "
        "(wall time also counts waiting for other users of the cores). Data steps run two at a time, so each "
        "may include CPU of a concurrent step that finished meanwhile.",
        "",
        *step_timings(output),
        "",
    ]
    report = output / "report.md"
    report.write_text("\n".join(parts))
    runs = [results for results in (likelihood, generate) if results is not None]
    if runs and (output / "model" / "README.md").exists():  # the results on the model's own card, as on the Hub
        write_results_to_model_card(output / "model", runs)
    print("\n" + results_table(likelihood, generate, prior) + "\n")
    print("\n".join(targets_check(likelihood)))
    return report
