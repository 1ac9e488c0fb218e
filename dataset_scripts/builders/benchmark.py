"""The Depth Template Benchmark: a `datasets` builder over NYU Depth V2, SUN RGB-D or synthetic scenes.

Four multiple-choice tasks (paper §3, Table 1): scene classification (3 candidates, NYU's 10-class
protocol), recognition (4 candidates for the object in a named region), distance judgment (which of
two named objects is farther, from the mean valid depth over their instance masks) and security
(which of 4 candidates does NOT appear). Question generation lives in `benchmark_questions.py`.

Use it in code (loading scripts are gone in datasets 5):

    builder = DepthTemplateBenchmark(config_name="synthetic", num_scenes=50, seed=0)
    builder.download_and_prepare()
    ds = builder.as_dataset(split="test")

or from the command line, which also exports a parquet folder + card that `load_dataset` reads:

    deepsight data benchmark --source synthetic --num-scenes 200 --output out/benchmark

The paper's benchmark takes scene classification from NYU-D and the other tasks from SUN-D; build
both into one folder (each source is a config, `all` -- the default -- reads them together):

    deepsight data benchmark --source nyu --data-dir nyu_depth_v2_labeled.mat --split all \
        --tasks scene_classification --max-per-scene scene_classification=2 --target-counts paper \
        --output bench
    deepsight data benchmark --source sunrgbd --data-dir SUNRGBD --tasks recognition distance_judgment \
        security --target-counts paper --output bench

A restarted run reuses the `datasets` builder cache (same config -> same arrow files) and skips the
parquet shards already written, so it ends with the same files as an uninterrupted one.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

import datasets

from dataset_scripts.sources.files import ReadReport
from dataset_scripts.builders.benchmark_questions import (
    PAPER_TARGET_COUNTS,
    SUN19_CLASSES,
    TEMPLATES,
    QuestionSettings,
    balanced_answer_positions,
    dataset_statistics,
    order_options,
    scene_candidates,
    select_round_robin,
    summarize_scene,
)
from dataset_scripts.export import CardInfo, depth_to_image_value, export_dataset, markdown_table
from dataset_scripts.scene import Scene
from dataset_scripts.sources import nyu as readers_nyu
from dataset_scripts.sources import sunrgbd as readers_sunrgbd
from dataset_scripts.synthetic.world import SCENE_TYPES, generate_scenes, scene_object_vocabulary
from dataset_scripts.vocab import NYU10_CLASSES, normalize_object_name, normalize_scene_name
from deepsight.cli import HelpFormatter, existing_path
from deepsight.tasks import NUM_OPTIONS, TASKS

SOURCES = ("nyu", "sunrgbd", "synthetic")
STATS_FILE = "benchmark_stats.json"

FEATURES = datasets.Features(
    {
        "id": datasets.Value("string"),
        "task": datasets.Value("string"),
        "source": datasets.Value("string"),
        "depth": datasets.Image(),  # 16-bit PNG, millimetres, 0 = invalid
        "question": datasets.Value("string"),
        "options": datasets.List(datasets.Value("string")),
        "answer_index": datasets.Value("int32"),
        "answer": datasets.Value("string"),
        "boxes": datasets.List(datasets.List(datasets.Value("int32"))),  # [x0, y0, x1, y1] pixels of `depth`
        "scene": datasets.Value("string"),  # scene label, "" when the source has none
    }
)

SOURCE_NOTES = {
    "nyu": (
        "NYU Depth V2 labeled set (Silberman et al., ECCV 2012), official 795/654 split; scene classes "
        "follow the 10-class zero-shot protocol of ImageBind / LanguageBind (9 named NYU scene types, "
        "the 18 others -> 'others'). Licence: the NYU Depth V2 terms (research use); see "
        "https://cs.nyu.edu/~fergus/datasets/nyu_depth_v2.html."
    ),
    "sunrgbd": (
        "SUN RGB-D (Song et al., CVPR 2015), built on NYU Depth V2, Berkeley B3DO and SUN3D; instance "
        "masks rasterised from annotation2Dfinal polygons. Licence: the SUN RGB-D terms (research "
        "use; cite the four source datasets); see https://rgbd.cs.princeton.edu/."
    ),
    "synthetic": (
        "DeepSight's synthetic indoor depth world (dataset_scripts/synthetic/world.py): exact metric depth, "
        "instance masks and scene labels rendered from a seed. Licence: Apache-2.0."
    ),
}


# --------------------------------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------------------------------


@dataclass
class DepthBenchmarkConfig(datasets.BuilderConfig):
    """Which scenes to read and how to turn them into questions.

    `data_dir` (a BuilderConfig field) points at the source: for `nyu` the labeled .mat (or a folder
    holding it, or a "sync" folder); for `sunrgbd` an original-layout root or a votenet
    `sunrgbd_trainval`; for `synthetic` an optional SUN-layout folder written by
    `synthetic.write_sunrgbd_layout` (without it, `num_scenes` scenes are rendered directly).
    """

    source: str = "synthetic"
    split_name: str = "test"  # the split of the built dataset, and the source split read ("all" reads every
    # frame of the source into a split called "test": the benchmark is an evaluation set)
    seed: int = 0
    num_scenes: int = 200  # synthetic rendering only
    scene_width: int = 320
    scene_height: int = 240
    depth_folder: str = "depth"  # sunrgbd original layout: "depth" (raw, 0 = invalid) or "depth_bfx"
    split_file: str | None = None  # nyu: splits.mat or its JSON twin (default: found beside the .mat)
    target_counts: str = "none"  # "paper" caps each task at the paper's Table 1 count
    max_per_task: int | None = None
    tasks: tuple[str, ...] = TASKS
    settings: QuestionSettings = field(default_factory=QuestionSettings)

    def __post_init__(self):
        super().__post_init__()
        if self.source not in SOURCES:
            raise ValueError(f"source: expected one of {SOURCES}, got {self.source!r}")
        if self.target_counts not in ("paper", "none"):
            raise ValueError(f"target_counts: expected 'paper' or 'none', got {self.target_counts!r}")
        unknown = set(self.tasks) - set(TASKS)
        if unknown:
            raise ValueError(f"tasks: unknown {sorted(unknown)}; expected a subset of {TASKS}")
        if self.max_per_task is not None and self.max_per_task < 0:
            raise ValueError(f"max_per_task: expected >= 0, got {self.max_per_task}")

    @property
    def output_split(self) -> str:
        return "test" if self.split_name == "all" else self.split_name

    def task_cap(self, task: str) -> int | None:
        caps = [
            c
            for c in (self.max_per_task, PAPER_TARGET_COUNTS[task] if self.target_counts == "paper" else None)
            if c is not None
        ]
        return min(caps) if caps else None


# --------------------------------------------------------------------------------------------------
# Scene sources
# --------------------------------------------------------------------------------------------------


def _split_matches(scene: Scene, split: str) -> bool:
    # votenet calls the SUN RGB-D test set "val"
    return (
        split == "all"
        or scene.split is None
        or scene.split == split
        or {scene.split, split} == {"val", "test"}
    )


def scene_reader(config: DepthBenchmarkConfig, report: ReadReport) -> Callable[[], Iterator[Scene]]:
    """A function that (re)starts the configured scene stream; the builder reads it twice."""
    data_dir = Path(config.data_dir) if config.data_dir else None
    if config.source == "synthetic" and data_dir is None:
        return lambda: generate_scenes(
            config.num_scenes,
            config.seed,
            split=config.output_split,
            width=config.scene_width,
            height=config.scene_height,
            noise=False,
        )
    if data_dir is None or not data_dir.exists():
        raise ValueError(
            f"--data-dir {str(data_dir)!r} does not exist; {config.source} needs its data folder"
        )
    if config.source == "nyu":
        return _nyu_reader(config, data_dir, report)
    if (data_dir / "sunrgbd_trainval").is_dir():
        data_dir = data_dir / "sunrgbd_trainval"
    if (data_dir / "calib").is_dir() and (data_dir / "label").is_dir():
        stream = lambda: readers_sunrgbd.read_sunrgbd_votenet(data_dir, report=report)  # noqa: E731
    else:
        if not readers_sunrgbd.find_sun_frame_folders(data_dir):
            raise ValueError(
                f"--data-dir {str(data_dir)!r}: no SUN RGB-D frame folder (image/ + depth/) inside"
            )
        stream = lambda: readers_sunrgbd.read_sunrgbd_original(
            data_dir, config.depth_folder, report=report
        )  # noqa: E731
    if config.source == "synthetic":
        return lambda: (_as_source(s, "synthetic") for s in stream())
    return lambda: (s for s in stream() if _split_matches(s, config.split_name))


def _nyu_reader(
    config: DepthBenchmarkConfig, data_dir: Path, report: ReadReport
) -> Callable[[], Iterator[Scene]]:
    """The labeled .mat (a file, or the v7.3 .mat in a folder), else a "sync" layout folder."""
    import h5py  # only the NYU labeled .mat needs it

    if data_dir.is_file():
        if not h5py.is_hdf5(data_dir):
            raise ValueError(f"{data_dir}: not a MATLAB v7.3 (HDF5) file; the NYU labeled set is v7.3")
        mat = data_dir
    else:  # splits.mat and the class mappings are MATLAB v5: only the labeled set is HDF5
        mat = next((p for p in sorted(data_dir.glob("*.mat")) if h5py.is_hdf5(p)), None)
    if mat is None:
        if not any(data_dir.rglob("sync_depth_*.png")):
            raise ValueError(
                f"--data-dir {str(data_dir)!r}: neither a NYU labeled .mat (v7.3) nor sync_depth_*.png"
            )
        return lambda: readers_nyu.read_nyu_sync(data_dir, report=report)
    if config.split_name not in readers_nyu.SPLITS:
        raise ValueError(f"--split {config.split_name!r}: the NYU labeled set has {readers_nyu.SPLITS}")
    split_file = config.split_file or readers_nyu.find_nyu_split_file(mat)
    if config.split_name != "all" and split_file is None:
        raise ValueError(
            f"--split {config.split_name}: the official NYU split is needed; pass --split-file "
            f"(splits.mat or nyu_class_and_split_lists.json) or put splits.mat next to {mat}"
        )
    return lambda: readers_nyu.read_nyu_labeled(
        mat, split=config.split_name, split_file=split_file, report=report
    )


def _as_source(scene: Scene, source: str) -> Scene:
    scene.source = source
    return scene


def synthetic_type_vocabulary() -> dict[str, set[str]]:
    """Per scene type, the object names the synthetic world furnishes it with (normalised)."""
    return {
        normalize_scene_name(t): {normalize_object_name(n) for n in scene_object_vocabulary(t)}
        for t in SCENE_TYPES
    }


def known_scene_classes(source: str) -> tuple[str, ...]:
    if source == "nyu":
        return NYU10_CLASSES
    if source == "sunrgbd":
        return SUN19_CLASSES
    return tuple(SCENE_TYPES)


# --------------------------------------------------------------------------------------------------
# Builder
# --------------------------------------------------------------------------------------------------


class DepthTemplateBenchmark(datasets.GeneratorBasedBuilder):
    """Depth Template Benchmark builder (configs `nyu`, `sunrgbd`, `synthetic`)."""

    VERSION = datasets.Version("1.0.0")
    BUILDER_CONFIG_CLASS = DepthBenchmarkConfig
    BUILDER_CONFIGS = [DepthBenchmarkConfig(name=s, source=s, description=SOURCE_NOTES[s]) for s in SOURCES]
    DEFAULT_CONFIG_NAME = "synthetic"

    def _info(self) -> datasets.DatasetInfo:
        return datasets.DatasetInfo(
            description="Depth Template Benchmark: scene classification, recognition, distance judgment and "
            "security questions on metric depth maps (DeepSight, §3).",
            features=FEATURES,
            license="apache-2.0" if self.config.source == "synthetic" else "other",
        )

    def _split_generators(self, dl_manager):
        # fail here, unwrapped, when the run is impossible (missing folder, wrong file type): errors raised
        # inside _generate_examples reach the user wrapped in a DatasetGenerationError
        scene_reader(self.config, ReadReport())
        return [datasets.SplitGenerator(name=self.config.output_split, gen_kwargs={})]

    def _generate_examples(self) -> Iterator[tuple[str, dict[str, Any]]]:
        config: DepthBenchmarkConfig = self.config
        report = ReadReport()
        read_scenes = scene_reader(config, report)
        summaries = [
            summarize_scene(s)
            for s in tqdm(read_scenes(), desc=f"reading {config.source} scenes", unit="scene")
        ]
        if not summaries:
            raise ValueError(f"{config.source}: no scene could be read (reader report: {report.as_dict()})")
        plan, build_stats = plan_questions(summaries, config)
        build_stats["reader"] = report.as_dict()
        build_stats["reader"]["messages"] = report.messages
        pending = {sid for sid in plan}
        with tqdm(total=sum(len(v) for v in plan.values()), desc="writing questions", unit="question") as bar:
            # second pass: only the scenes that got questions are kept long enough to encode their depth
            for scene in read_scenes():
                if scene.id not in pending:
                    continue
                depth = depth_to_image_value(scene.depth)
                for key, row in plan[scene.id]:
                    yield key, {**row, "depth": depth}
                    bar.update(1)
                pending.discard(scene.id)
                if not pending:
                    break
        if pending:
            raise RuntimeError(
                f"{len(pending)} scenes vanished between the two reading passes: {sorted(pending)[:5]}"
            )
        with open(os.path.join(self._output_dir, STATS_FILE), "w") as f:
            json.dump(build_stats, f, indent=1, sort_keys=True)


def _source_note(task: str, summaries, source: str) -> str | None:
    """Why a whole source cannot make `task`, when that is the case."""
    objects = [o for s in summaries for o in s.objects]
    if not objects and task != "scene_classification":
        return f"{source} scenes here have no object annotations: {task} cannot be built from them"
    if task == "distance_judgment" and objects and not any(o.has_mask for o in objects):
        return (
            f"{source} scenes here carry boxes only (no instance masks): "
            "distance judgment needs masks and cannot be built from them"
        )
    return None


def plan_questions(
    summaries, config: DepthBenchmarkConfig
) -> tuple[dict[str, list[tuple[str, dict]]], dict[str, Any]]:
    """All rows (without depth) per scene id, and the statistics for the card and summary."""
    type_vocabulary = synthetic_type_vocabulary() if config.source == "synthetic" else None
    stats = dataset_statistics(summaries, known_scene_classes(config.source), type_vocabulary)
    filtered: dict[str, Counter] = defaultdict(Counter)
    per_task: dict[str, dict[str, list]] = {task: {} for task in config.tasks}
    for summary in summaries:
        for task, cands in scene_candidates(
            summary, stats, config.settings, config.seed, filtered, config.tasks
        ).items():
            per_task[task][summary.id] = cands
    plan: dict[str, list[tuple[str, dict]]] = defaultdict(list)
    task_stats = {}
    for task in config.tasks:
        candidates = per_task[task]
        cap = config.task_cap(task)
        selected = select_round_robin(
            candidates, cap, config.settings.max_per_scene.get(task, 1), config.seed, task
        )
        positions = balanced_answer_positions(len(selected), NUM_OPTIONS[task], config.seed, task)
        for number, (candidate, position) in enumerate(zip(selected, positions)):
            options, boxes = order_options(candidate, position, config.seed)
            # the scene id in the key lets anyone re-check a question against its source scene
            key = f"{config.source}/{task}/{number:05d}/{candidate.scene_id}"
            plan[candidate.scene_id].append(
                (
                    key,
                    {
                        "id": key,
                        "task": task,
                        "source": config.source,
                        "question": candidate.question,
                        "options": options,
                        "answer_index": position,
                        "answer": candidate.answer,
                        "boxes": boxes,
                        "scene": candidate.scene,
                    },
                )
            )
        task_stats[task] = {
            "target": cap,
            "candidates": sum(len(c) for c in candidates.values()),
            "selected": len(selected),
            "answer_positions": dict(sorted(Counter(positions).items())),
            "filtered": dict(sorted(filtered[task].items())),
        }
        note = _source_note(task, summaries, config.source)
        if note:
            task_stats[task]["note"] = note
    return dict(plan), {
        "tasks": task_stats,
        "scenes": len(summaries),
        "scene_classes": stats.scene_classes,
        "vocabulary_size": len(stats.object_vocabulary),
        "config": _config_summary(config),
    }


def _config_summary(config: DepthBenchmarkConfig) -> dict[str, Any]:
    return {
        "source": config.source,
        "data_dir": str(config.data_dir) if config.data_dir else None,
        "split": config.split_name,
        "seed": config.seed,
        "target_counts": config.target_counts,
        "max_per_task": config.max_per_task,
        "num_scenes": config.num_scenes if config.source == "synthetic" else None,
        "settings": asdict(config.settings),
    }


def load_build_stats(builder: DepthTemplateBenchmark) -> dict[str, Any]:
    path = Path(builder.cache_dir) / STATS_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


# --------------------------------------------------------------------------------------------------
# Card, summary, CLI
# --------------------------------------------------------------------------------------------------


def summary_table(stats: dict[str, Any]) -> str:
    rows = []
    task_stats = stats.get("tasks", {})
    for task in (t for t in TASKS if t in task_stats):
        s = task_stats[task]
        filtered = ", ".join(f"{k} {v}" for k, v in s["filtered"].items()) or "-"
        positions = " / ".join(
            str(s["answer_positions"].get(str(p), s["answer_positions"].get(p, 0)))
            for p in range(NUM_OPTIONS[task])
        )
        rows.append(
            (
                task,
                s["target"] if s["target"] is not None else "-",
                s["candidates"],
                s["selected"],
                positions,
                filtered,
            )
        )
    return markdown_table(
        ["task", "target", "candidates", "selected", "answers at A/B/C/D", "filtered (reason count)"], rows
    )


def _source_statistics(stats: dict[str, Any]) -> str:
    reader = {k: v for k, v in stats.get("reader", {}).items() if k != "messages"}
    config = stats.get("config", {})
    return "\n\n".join(
        [
            f"Split `{config.get('split')}`, seed {config.get('seed')}, "
            f"target counts `{config.get('target_counts')}`.",
            summary_table(stats),
            f"Scenes read: {stats.get('scenes')}; object vocabulary: {stats.get('vocabulary_size')} names; "
            f"scene classes: {', '.join(stats.get('scene_classes', []))}.",
            "Reader (frames read, skipped per reason, annotations dropped per reason): " + json.dumps(reader),
            *(
                f"Note: {stats['tasks'][t]['note']}"
                for t in TASKS
                if "note" in stats.get("tasks", {}).get(t, {})
            ),
            "Build settings:\n\n```json\n" + json.dumps(config, indent=1) + "\n```",
        ]
    )


def benchmark_card(stats_by_source: dict[str, dict[str, Any]]):
    """The card of a benchmark folder holding the given sources (one config each, plus `all`)."""
    sources = [s for s in SOURCES if s in stats_by_source]
    sections = {"Sources and licences": "\n\n".join(f"- **{s}**: {SOURCE_NOTES[s]}" for s in sources)}
    sections.update({f"Statistics: {s}": _source_statistics(stats_by_source[s]) for s in sources})
    sections["Question templates"] = "\n".join(
        f"- **{task}**: " + " / ".join(f"“{t}”" for t in TEMPLATES[task]) for task in TASKS
    )
    sections["Construction"] = (
        "Distractors come from the dataset's own label vocabulary and are never a synonym or a "
        "confusable concept of the answer (dataset_scripts/vocab.py). Answer positions are balanced "
        "per task. Distance judgment compares the mean valid depth over the two instance masks; pairs are "
        "dropped when the depth gap is below the absolute or relative threshold, a mask is tiny or mostly "
        "invalid, the objects overlap, or a name is ambiguous in the scene. Security's absent object is "
        "absent from the scene's annotations, not confusable with anything annotated, and plausible for the "
        "scene type (the synthetic world's furnishing rules, else co-occurrence in the data). Question ids "
        "are `source/task/number/scene id`."
    )
    return CardInfo(
        pretty_name="Depth Template Benchmark",
        description=(
            "Multiple-choice questions on metric depth maps, after DeepSight (§3): scene classification "
            "(3 options), recognition of the object in a named region (4), distance judgment between "
            "two named objects from the mean valid depth over their instance masks (2), and security "
            "(which of 4 objects does NOT appear). `depth` is a 16-bit PNG in millimetres (0 = invalid); "
            "`boxes` are the regions the question names, `[x0, y0, x1, y1]` int32 pixels of `depth` (grown "
            "outward to whole pixels; distance "
            "judgment: one per option, in option order). The question holds no options: "
            "`deepsight.prompts.format_multiple_choice` adds them. One config per source, and `all` "
            "(the default) with every source together."
        ),
        license="apache-2.0" if sources == ["synthetic"] else "other",
        sections=sections,
        tags=["depth", "multiple-choice", "rgb-d"],
        task_categories=["visual-question-answering"],
    )


def save_source_stats(output: Path, source: str, stats: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Keep this source's build statistics in the folder; return those of every source built into it."""
    folder = Path(output) / "build_stats"
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{source}.json.tmp"
    tmp.write_text(json.dumps(stats, indent=1, sort_keys=True))
    os.replace(tmp, folder / f"{source}.json")
    return {p.stem: json.loads(p.read_text()) for p in sorted(folder.glob("*.json")) if p.stem in SOURCES}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deepsight data benchmark",
        description=__doc__.split("\n\n")[0],
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--source", choices=SOURCES, required=True)
    parser.add_argument(
        "--data-dir",
        type=existing_path,
        help="source data (NYU .mat / sync folder, SUN RGB-D root, synthetic SUN-layout "
        "folder); optional for synthetic, which then renders scenes directly",
    )
    parser.add_argument("--output", required=True, help="folder for the parquet shards and README.md card")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--split", default="test", help="NYU: train / test / all; SUN votenet: train / val (= test)"
    )
    parser.add_argument("--num-scenes", type=int, default=200, help="synthetic scenes to render")
    parser.add_argument(
        "--size", type=int, nargs=2, default=(320, 240), metavar=("W", "H"), help="synthetic frame size"
    )
    parser.add_argument(
        "--split-file",
        type=existing_path,
        help="NYU: the official split (splits.mat or its JSON twin); default: the one next to the .mat",
    )
    parser.add_argument(
        "--depth-folder",
        choices=("depth", "depth_bfx"),
        default="depth",
        help="SUN RGB-D original layout: raw depth (0 = invalid) or the hole-filled one",
    )
    parser.add_argument(
        "--target-counts",
        choices=("paper", "none"),
        default="none",
        help="'paper' caps tasks at Table 1's 1,786 / 3,793 / 5,737 / 2,157",
    )
    parser.add_argument("--max-per-task", type=int, default=None)
    parser.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS))
    parser.add_argument(
        "--min-absolute-gap", type=float, default=QuestionSettings.min_absolute_gap, help="metres"
    )
    parser.add_argument("--min-relative-gap", type=float, default=QuestionSettings.min_relative_gap)
    parser.add_argument("--min-valid-fraction", type=float, default=QuestionSettings.min_valid_fraction)
    parser.add_argument(
        "--max-per-scene",
        nargs="+",
        default=[],
        metavar="TASK=N",
        help="questions per scene and task (defaults: "
        + ", ".join(f"{t}={n}" for t, n in QuestionSettings().max_per_scene.items())
        + ")",
    )
    parser.add_argument(
        "--cache-dir", default=None, help="datasets builder cache (default: the HF datasets cache)"
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="rebuild even when the builder cache has this config"
    )
    parser.add_argument("--max-rows-per-shard", type=int, default=500)
    return parser


def parse_task_counts(items: list[str], option: str) -> dict[str, int]:
    counts = {}
    for item in items:
        task, _, number = item.partition("=")
        if task not in TASKS or not number.isdigit() or int(number) < 1:
            raise ValueError(f"{option} {item!r}: expected TASK=N with TASK in {TASKS} and N >= 1")
        counts[task] = int(number)
    return counts


def build_benchmark(
    args: argparse.Namespace,
) -> tuple[datasets.Dataset, dict[str, Any], DepthBenchmarkConfig]:
    settings = QuestionSettings(
        min_absolute_gap=args.min_absolute_gap,
        min_relative_gap=args.min_relative_gap,
        min_valid_fraction=args.min_valid_fraction,
    )
    settings.max_per_scene.update(parse_task_counts(args.max_per_scene, "--max-per-scene"))
    builder = DepthTemplateBenchmark(
        config_name=args.source,
        cache_dir=args.cache_dir,
        data_dir=os.path.abspath(args.data_dir) if args.data_dir else None,
        source=args.source,
        split_name=args.split,
        seed=args.seed,
        num_scenes=args.num_scenes,
        scene_width=args.size[0],
        scene_height=args.size[1],
        depth_folder=args.depth_folder,
        split_file=os.path.abspath(args.split_file) if args.split_file else None,
        target_counts=args.target_counts,
        max_per_task=args.max_per_task,
        tasks=tuple(args.tasks),
        settings=settings,
    )
    # the builder cache makes a restarted run resume from finished preparation; a fresh one regenerates
    builder.download_and_prepare(download_mode="force_redownload" if args.overwrite else None)
    return as_dataset_or_empty(builder), load_build_stats(builder), builder.config


def as_dataset_or_empty(builder: DepthTemplateBenchmark) -> datasets.Dataset:
    """The built split; an empty dataset with the benchmark features when no question survived the filters."""
    split = builder.config.output_split
    if builder.info.splits and builder.info.splits[split].num_examples == 0:
        return datasets.Dataset.from_dict({name: [] for name in FEATURES}, features=FEATURES, split=split)
    return builder.as_dataset(split=split)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    dataset, stats, config = build_benchmark(args)
    if len(dataset) == 0:
        print(f"No question could be built from {args.source}; see the filter counts below.", file=sys.stderr)
        print(summary_table(stats), file=sys.stderr)
        return 1
    all_stats = save_source_stats(Path(args.output), args.source, stats)
    export_dataset(
        dataset,
        args.output,
        benchmark_card(all_stats),
        config_name=args.source,
        split=config.output_split,
        union_config="all",
        max_rows_per_shard=args.max_rows_per_shard,
    )
    print(
        f"\nDepth Template Benchmark ({args.source}, split {config.output_split}, seed {args.seed}): "
        f"{len(dataset)} questions from {stats.get('scenes')} scenes -> {args.output}\n"
    )
    print(summary_table(stats))
    reader = stats.get("reader", {})
    if reader.get("skipped_frames") or reader.get("dropped_annotations"):
        skipped, dropped = reader.get("skipped_frames"), reader.get("dropped_annotations")
        print(f"\nskipped frames: {skipped}; dropped annotations: {dropped}", *reader["messages"], sep="\n")
    task_stats = stats.get("tasks", {})
    for note in (task_stats[t]["note"] for t in TASKS if "note" in task_stats.get(t, {})):
        print(f"note: {note}")
    for task in (t for t in TASKS if t in stats.get("tasks", {})):
        s = stats["tasks"][task]
        if s["target"] is not None and s["selected"] < s["target"]:
            print(
                f"note: {task}: {s['selected']} of the {s['target']} questions targeted; the source gave "
                f"{s['candidates']} candidates (read more scenes, or raise --max-per-scene {task}=N)"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
