"""`deepsight data instructions`: the Depth Instruction Dataset (paper §4) in TRL's conversational format.

Rows: `id, type, messages, images, boxes, source` (docs/CONTRACTS.md). `messages` hold
`{"type": "image"}` / `{"type": "text", "text": ...}` blocks, the image block in the first user turn,
followed by a text block of `<box>[x0, y0, x1, y1]</box>` tags when the conversation is about regions;
`images` is `[depth]` (16-bit PNG, millimetres); `boxes` is, per image, the same boxes (`[]` = the whole
image), kept as a readable reference: TRL's collator drops it and reads the tags.

Generators:
- `offline` (default): `instructions_offline.OfflineInstructionGenerator`, written from the scene
  graph's ground truth; deterministic from `--seed`.
- `openai`: `instructions_openai.OpenAIInstructionGenerator`, any OpenAI-compatible endpoint fed the
  captions and boxes as in the paper; validated, retried, cached per call.

Besides the free-form rows (`--rows-per-scene`, types drawn per scene with the `--mix` weights) every
scene gets up to `--mc-per-scene` multiple-choice rows for each of the benchmark's four skills (scene type,
object in a box, which of two is farther, which object is absent), always from the ground truth; a
repeated row draws another object, pair or set of options (an identical question is kept once).
`--balance-names recognition[,security]` draws those skills' wrong options as often as each name is an
answer (counted on the first `--balance-sample` training scenes), so option names alone stop telling the
answer; the default draws uniformly, as the benchmark does. `--balance-names distance_judgment` cannot
draw options (the pair is the question), so it thins the named Distance rows whose names point to the
farther object (windows stand at the walls) until they are as many as those whose names point the other
way; with `--unnamed-distance` every unnamed twin stays.

Every scene's rows are cached in `<output>/.cache/rows/` as soon as they are made, so an interrupted
run resumes where it stopped; a scene whose generation failed is counted and retried on the next run.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import logging
import os
import re
import sys
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

import datasets
from dataset_scripts.builders.benchmark_questions import integer_box
from dataset_scripts.builders.instructions.offline import (
    BENCHMARK_SKILLS,
    INSTRUCTION_TYPES,
    OfflineInstructionGenerator,
    answer_name_counts,
    farther_name_prior,
    scene_rng,
)
from dataset_scripts.builders.instructions.openai_endpoint import (
    EndpointConfigError,
    OpenAIChatClient,
    OpenAIInstructionGenerator,
)
from dataset_scripts.export import CardInfo, depth_to_image_value, export_dataset, image_value_to_depth, markdown_table
from dataset_scripts.scene import Scene, SceneObject
from dataset_scripts.synthetic.world import SCENE_TYPES, generate_scenes, scene_object_vocabulary
from deepsight.box_tags import strip_box_tags, tag_boxes
from deepsight.cli import HelpFormatter, existing_path

logger = logging.getLogger(__name__)

DEFAULT_MIX = {"complex_reasoning": 0.4, "conversation": 0.3, "detailed_description": 0.3}

INSTRUCTION_FEATURES = datasets.Features(
    {
        "id": datasets.Value("string"),
        "type": datasets.Value("string"),
        "messages": datasets.List(
            {
                "role": datasets.Value("string"),
                "content": datasets.List(
                    {"type": datasets.Value("string"), "text": datasets.Value("string")}
                ),
            }
        ),
        "images": datasets.List(datasets.Image()),
        "boxes": datasets.List(datasets.List(datasets.List(datasets.Value("int32")))),
        "source": datasets.Value("string"),
    }
)


def parse_mix(text: str | None) -> dict[str, float]:
    """'complex_reasoning=0.4,conversation=0.3,detailed_description=0.3' -> weights summing to 1."""
    if not text:
        return dict(DEFAULT_MIX)
    weights = {}
    for part in text.split(","):
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep or name not in INSTRUCTION_TYPES:
            raise ValueError(
                f"--mix: expected TYPE=WEIGHT pairs with TYPE in {INSTRUCTION_TYPES}, got {part!r}"
            )
        try:
            weights[name] = float(value)
        except ValueError:
            raise ValueError(f"--mix: weight of {name!r} must be a number, got {value!r}") from None
        if weights[name] < 0 or not np.isfinite(weights[name]):
            raise ValueError(f"--mix: weight of {name!r} must be >= 0, got {value!r}")
    total = sum(weights.values())
    if total <= 0:
        raise ValueError(f"--mix: at least one weight must be positive, got {text!r}")
    return {name: weights.get(name, 0.0) / total for name in INSTRUCTION_TYPES}


def parse_mc_per_scene(text: str) -> int | dict[str, int]:
    """'3' -> 3 rows for every skill; '3,distance_judgment=6' -> {skill: 3, ..., 'distance_judgment': 6}."""
    default, *overrides = [part.strip() for part in str(text).split(",")]
    counts = {}
    try:
        uniform = int(default)
        for part in overrides:
            skill, sep, value = part.partition("=")
            if not sep or skill.strip() not in BENCHMARK_SKILLS:
                raise argparse.ArgumentTypeError(
                    f"--mc-per-scene: expected N or N,SKILL=M,... with SKILL in {BENCHMARK_SKILLS}, got {part!r}"
                )
            counts[skill.strip()] = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--mc-per-scene: counts must be whole numbers, got {text!r}") from None
    if uniform < 0 or any(count < 0 for count in counts.values()):
        raise argparse.ArgumentTypeError(f"--mc-per-scene: counts must be >= 0, got {text!r}")
    return {skill: counts.get(skill, uniform) for skill in BENCHMARK_SKILLS} if counts else uniform


def mc_per_scene_setting(counts: Mapping[str, int], skills: Iterable[str]) -> int | dict[str, int]:
    """What the row cache keys on: one number when every selected skill has the same count (as before per-skill
    counts existed, so those caches stay valid), else the count of each selected skill."""
    selected = {skill: counts.get(skill, 0) for skill in skills}
    values = set(selected.values())
    return values.pop() if len(values) == 1 else selected


def plan_types(scene_id: str, mix: dict[str, float], rows_per_scene: int, seed: int) -> list[str]:
    """The free-form types one scene gets: drawn with the mix weights, from (seed, scene id) only."""
    rng = scene_rng(seed, scene_id, "plan")
    names = list(INSTRUCTION_TYPES)
    return [str(t) for t in rng.choice(names, size=rows_per_scene, p=[mix[n] for n in names])]


@dataclass
class BuildReport:
    scenes: int = 0
    from_cache: int = 0
    failed_scenes: list[str] = field(default_factory=list)
    failed_items: int = 0
    duplicates: int = 0

    def summary(self) -> str:
        return (
            f"instructions: {self.scenes} scenes ({self.from_cache} from cache), {self.failed_items} items "
            f"skipped after retries in {len(self.failed_scenes)} scenes, {self.duplicates} duplicates dropped"
        )


class RowCache:
    """One json per scene; the key ties it to the settings that made it, so changed settings rebuild."""

    def __init__(self, directory: str | Path, settings: dict):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]

    def _path(self, scene_id: str) -> Path:
        return self.directory / f"{scene_id}.json"

    def get(self, scene_id: str) -> list[dict] | None:
        path = self._path(scene_id)
        if not path.exists():
            return None
        try:
            stored = json.loads(path.read_text())
        except json.JSONDecodeError:
            return None
        return stored["rows"] if stored.get("key") == self.key else None

    def put(self, scene_id: str, rows: list[dict]) -> None:
        path = self._path(scene_id)
        partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
        partial.write_text(json.dumps({"key": self.key, "rows": rows}))
        partial.replace(path)


def _row_text(row: dict) -> str:
    """The row's words (its regions' `<box>` tags are markup: statistics and duplicates ignore them)."""
    return "\n".join(
        strip_box_tags(block.get("text") or "") for message in row["messages"] for block in message["content"]
    )


def build_instruction_rows(
    scenes: Iterable[Scene],
    generator,
    cache_dir: str | Path,
    mix: dict[str, float] | None = None,
    rows_per_scene: int = 3,
    mc_skills: tuple[str, ...] = BENCHMARK_SKILLS,
    seed: int = 0,
    total: int | None = None,
    progress: bool = True,
    ground_truth: OfflineInstructionGenerator | None = None,
    mc_per_scene: int | Mapping[str, int] = 1,
) -> tuple[list[dict], BuildReport]:
    """Rows (with `images`) for every scene, cached per scene, deduplicated within a scene.

    `ground_truth` writes the multiple-choice rows (default: `generator` when it is the offline one).
    """
    if rows_per_scene < 0:
        raise ValueError(f"rows_per_scene must be >= 0, got {rows_per_scene}")
    counts = mc_per_scene if isinstance(mc_per_scene, Mapping) else dict.fromkeys(mc_skills, mc_per_scene)
    if any(count < 0 for count in counts.values()):
        raise ValueError(f"mc_per_scene must be >= 0 for every skill, got {mc_per_scene}")
    unknown = set(mc_skills) - set(BENCHMARK_SKILLS)
    if unknown:
        raise ValueError(f"mc skills must be among {BENCHMARK_SKILLS}, got {sorted(unknown)}")
    mix = mix or dict(DEFAULT_MIX)
    if ground_truth is None:
        ground_truth = (
            generator
            if isinstance(generator, OfflineInstructionGenerator)
            else OfflineInstructionGenerator(seed)
        )
    settings = {
        "generator": generator.fingerprint(),
        "mix": mix,
        "rows_per_scene": rows_per_scene,
        "mc": list(mc_skills),
        **({"mc_per_scene": mc_per_scene_setting(counts, mc_skills)}
           if any(counts.get(skill, 0) != 1 for skill in mc_skills) else {}),  # caches of earlier builds stay valid
        "seed": seed,
        "ground_truth": ground_truth.fingerprint(),
    }
    cache = RowCache(cache_dir, settings)
    report = BuildReport()
    rows: list[dict] = []
    for scene in tqdm(
        scenes, total=total, desc=f"instructions ({generator.name})", unit="scene", disable=not progress
    ):
        report.scenes += 1
        scene_rows = cache.get(scene.id)
        if scene_rows is None:
            free_form, failed = generator.generate(scene, plan_types(scene.id, mix, rows_per_scene, seed))
            scene_rows = free_form + ground_truth.multiple_choice(scene, mc_skills, mc_per_scene)
            if failed:
                # Keep what was made for this run, but leave the scene uncached so a rerun retries it.
                report.failed_items += failed
                report.failed_scenes.append(scene.id)
            else:
                cache.put(scene.id, scene_rows)
        else:
            report.from_cache += 1
        depth_value = depth_to_image_value(scene.depth)
        seen = set()
        for row in scene_rows:
            text = _row_text(row)
            if text in seen:
                report.duplicates += 1
                continue
            seen.add(text)
            rows.append(with_depth_and_box_tags(row, depth_value, scene.depth.shape))
    return rows, report


def with_depth_and_box_tags(row: dict, depth_value, depth_shape: tuple[int, int]) -> dict:
    """A cached row as the dataset holds it: one copy of the depth map per image block (rows in the region layout
    have one per option) and each image's boxes also as `<box>` tags right after its block, where TRL's collator
    and the DeepSight processor read them (`boxes` stays as the readable reference). Boxes are whole pixels (int32,
    the benchmark's and the pairs' type): grown outward and clipped to the map (an endpoint may give fractions)."""
    height, width = depth_shape[:2]
    boxes = [[list(integer_box(box, height, width)) for box in image_boxes] for image_boxes in row["boxes"]]
    return {
        **row,
        "boxes": boxes,
        "messages": tag_boxes(row["messages"], boxes),
        "images": [depth_value] * max(len(boxes), 1),
    }


def rows_to_dataset(rows: list[dict]) -> datasets.Dataset:
    if not rows:
        raise ValueError(
            "no instruction rows were produced: check the scenes (objects, depth) and the generator"
        )
    return datasets.Dataset.from_list(rows, features=INSTRUCTION_FEATURES)


_TOKEN_RE = re.compile(r"\w+|[^\w\s]")


def instruction_statistics(rows: list[dict]) -> dict:
    """Per type: rows, user turns, whitespace/punctuation tokens; per benchmark skill: rows and answer letters."""
    per_type: dict[str, dict] = {}
    skills: Counter = Counter()
    letters: Counter = Counter()
    for row in rows:
        entry = per_type.setdefault(row["type"], {"rows": 0, "turns": 0, "tokens": 0})
        entry["rows"] += 1
        entry["turns"] += sum(message["role"] == "user" for message in row["messages"])
        entry["tokens"] += len(_TOKEN_RE.findall(_row_text(row)))
        match = re.search(r"-mc-(\w+?)(?:-\d+)?$", row["id"])
        if match:
            skills[match.group(1)] += 1
            letters[row["messages"][-1]["content"][0]["text"][:1]] += 1
    return {"per_type": per_type, "skills": dict(skills), "answer_letters": dict(sorted(letters.items()))}


def statistics_markdown(stats: dict) -> str:
    table = markdown_table(
        ["type", "rows", "mean user turns", "mean tokens", "total tokens"],
        [
            (kind, s["rows"], f"{s['turns'] / s['rows']:.2f}", f"{s['tokens'] / s['rows']:.1f}", s["tokens"])
            for kind, s in sorted(stats["per_type"].items())
        ],
    )
    skills = markdown_table(
        ["benchmark skill (multiple choice rows)", "rows"], sorted(stats["skills"].items())
    )
    letters = ", ".join(f"{letter}: {n}" for letter, n in stats["answer_letters"].items()) or "none"
    return (
        f"{table}\n\nTokens are words and punctuation marks (`\\w+|[^\\w\\s]`), not model tokens.\n\n"
        f"{skills}\n\nCorrect answer letters: {letters}."
    )


def instruction_card(stats: dict, generator_description: str, mix: dict[str, float], source: str) -> CardInfo:
    mix_text = ", ".join(f"{k}={v:.2f}" for k, v in mix.items())
    return CardInfo(
        pretty_name="DeepSight Depth Instruction Dataset",
        description=(
            "Depth-aware instructions in TRL's conversational format (LLaVA-style): complex reasoning, "
            "multi-round conversations and detailed descriptions about a depth map, plus multiple-choice "
            "items for the Depth Template Benchmark's four skills. Each row holds `messages` with an "
            '`{"type": "image"}` block followed by the regions the conversation is about as '
            "`<box>[x0, y0, x1, y1]</box>` tags (pixels), the depth map in `images` (16-bit PNG, millimetres) and "
            "the same boxes in `boxes` (empty = whole image) for reading."
        ),
        license="other",
        tags=["depth", "instruction-tuning", "llava", "trl"],
        task_categories=["image-text-to-text"],
        sections={
            "Generation": (
                f"Source scenes: {source}. Generator: {generator_description}. Mix of free-form "
                f"types: {mix_text}. Distances are mean depth under the instance mask; pairs are "
                "compared only when their distances differ by >= 0.3 m and >= 10%. The multiple-choice rows "
                "for the benchmark skills (ids ending in `-mc-<skill>`) are single-round `conversation` rows "
                "in the benchmark's exact layout, always written from the ground truth."
            ),
            "Statistics": statistics_markdown(stats),
            "Using with TRL": (
                "`SFTTrainer` (and `trl sft --dataset_name <this folder> --trust_remote_code`) reads `messages` + "
                "`images` directly; a DeepSight processor turns the `<box>` tags into the Bbox-Conv mask, so TRL's "
                "own vision collator with `assistant_only_loss` trains with the right masks."
            ),
        },
    )


def scenes_from_pairs(folder: str | Path) -> Iterable[Scene]:
    """Scenes rebuilt from a depth-text-bbox pairs folder (boxes only: object depth is the box mean)."""
    pairs = datasets.load_dataset(str(folder), split="train")
    for row in pairs:
        objects = [SceneObject(name=name, box=tuple(box)) for name, box in zip(row["labels"], row["boxes"])]
        yield Scene(
            id=row["id"],
            source=row["source"],
            depth=image_value_to_depth(row["depth"]),
            objects=objects,
            scene_type=row["scene"] or None,
            captions=list(row["captions"]),
            depth_is_predicted=bool(row["depth_is_predicted"]),
        )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deepsight data instructions", description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter
    )
    parser.add_argument("--source", choices=["synthetic", "pairs"], default="synthetic")
    parser.add_argument("--pairs-dir", type=existing_path, help="a depth-text-bbox pairs folder (for --source pairs)")
    parser.add_argument("--num-scenes", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", required=True)
    parser.add_argument("--generator", choices=["offline", "openai"], default="offline")
    parser.add_argument(
        "--mix", help="TYPE=WEIGHT,...; default " + ",".join(f"{k}={v}" for k, v in DEFAULT_MIX.items())
    )
    parser.add_argument("--rows-per-scene", type=int, default=3, help="free-form rows per scene")
    parser.add_argument(
        "--mc-skills",
        default=",".join(BENCHMARK_SKILLS),
        help="benchmark skills to write multiple-choice rows for ('' = none)",
    )
    parser.add_argument(
        "--mc-per-scene",
        type=parse_mc_per_scene,
        default=1,
        help="multiple-choice rows per skill and scene (at most): N for every skill, or N,SKILL=M,... to give "
        "some skills their own count (e.g. 3,distance_judgment=6)",
    )
    parser.add_argument(
        "--balance-names",
        default="",
        help="skills (recognition,security,distance_judgment) whose option names stop telling the answer, from "
        "statistics of the first --balance-sample scenes: recognition/security draw their wrong options in "
        "proportion to how often each name is an answer; distance_judgment keeps the named rows whose names point "
        "to the farther object only as often as those that point away ('' = uniform, the benchmark's way)",
    )
    parser.add_argument("--balance-sample", type=int, default=300, help="scenes counted for --balance-names")
    parser.add_argument(
        "--distance-regions",
        action="store_true",
        help="Distance Judgment rows in the per-option region layout: one depth-map copy per option, masked to "
        "that option's box (evaluate with `deepsight eval benchmark --distance-regions`)",
    )
    parser.add_argument(
        "--unnamed-distance",
        nargs="?",
        const="twin",
        choices=["twin", "own"],
        help="with --distance-regions: each Distance Judgment row also gets a row naming no object ('the first "
        "region' / 'the second region'), answerable only by comparing the regions' depths; 'twin' (the flag "
        "alone) asks it about the named row's pair, 'own' about a pair drawn for it",
    )
    parser.add_argument(
        "--base-url", help="OpenAI-compatible endpoint (default: env OPENAI_BASE_URL or api.openai.com/v1)"
    )
    parser.add_argument("--model", default="gpt-4o-mini", help="chat model name for --generator openai")
    parser.add_argument(
        "--api-key",
        help="default: env OPENAI_API_KEY, the safer way: a key given here is visible to other users in `ps` and "
        "kept in the shell history",
    )
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per request")
    parser.add_argument("--max-retries", type=int, default=4)
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--no-progress", action="store_true")
    return parser


def synthetic_vocabularies() -> dict:
    """The synthetic world's scene types and object categories: the distractor pools its benchmark uses."""
    objects = sorted({name for scene_type in SCENE_TYPES for name in scene_object_vocabulary(scene_type)})
    return {"object_vocabulary": objects, "scene_vocabulary": list(SCENE_TYPES)}


def make_generators(args, cache_root: Path, name_weights: dict[str, float] | None = None, farther_prior=None):
    """(free-form generator, ground-truth multiple-choice generator)."""
    balanced = tuple(s for s in args.balance_names.split(",") if s)
    ground_truth = OfflineInstructionGenerator(
        seed=args.seed,
        **(synthetic_vocabularies() if args.source == "synthetic" else {}),
        name_weights=name_weights if balanced else None,
        balanced_skills=balanced,
        farther_prior=farther_prior,
        distance_regions=args.distance_regions,
        unnamed_distance=args.unnamed_distance,
    )
    if args.generator == "offline":
        return ground_truth, ground_truth
    client = OpenAIChatClient(
        base_url=args.base_url,
        model=args.model,
        api_key=args.api_key,
        timeout=args.timeout,
        max_retries=args.max_retries,
    )
    return OpenAIInstructionGenerator(client, cache_dir=cache_root / "openai", seed=args.seed), ground_truth


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.num_scenes < 1:
        raise SystemExit(f"--num-scenes must be >= 1, got {args.num_scenes}")
    mix = parse_mix(args.mix)
    skills = tuple(s for s in args.mc_skills.split(",") if s)
    output = Path(args.output)
    cache_root = output / ".cache"
    if args.source == "synthetic":
        def scene_stream(count: int):
            return generate_scenes(count, args.seed, split="train", width=args.width, height=args.height, noise=False)

        total = args.num_scenes
    else:
        if not args.pairs_dir:
            raise SystemExit("--source pairs needs --pairs-dir")

        def scene_stream(count: int | None):
            return itertools.islice(scenes_from_pairs(args.pairs_dir), count)

        total = None
    scenes = scene_stream(args.num_scenes if args.source == "synthetic" else None)  # pairs: every row
    name_weights = farther_prior = None
    balanced = {s for s in args.balance_names.split(",") if s}
    sample = min(args.balance_sample, args.num_scenes)
    # counted on the training scenes themselves (their first ones), never on a benchmark
    if balanced - {"distance_judgment"}:
        name_weights = dict(answer_name_counts(scene_stream(sample)))
    if "distance_judgment" in balanced:
        farther_prior = farther_name_prior(scene_stream(sample))
        print(f"distance_judgment: the names point to the farther object in {farther_prior.right_share:.0%} of the "
              f"pairs of {sample} scenes; named rows they point right for are kept as often as the others")
    generator, ground_truth = make_generators(args, cache_root, name_weights, farther_prior)
    try:
        rows, report = build_instruction_rows(
            scenes,
            generator,
            cache_root / "rows",
            mix,
            args.rows_per_scene,
            skills,
            args.seed,
            total=total,
            progress=not args.no_progress,
            ground_truth=ground_truth,
            mc_per_scene=args.mc_per_scene,
        )
    except EndpointConfigError as error:
        print(
            f"deepsight data instructions: {error}. Scenes finished so far are cached in {cache_root}.",
            file=sys.stderr,
        )
        return 2
    stats = instruction_statistics(rows)
    source = (
        "synthetic world (exact depth)"
        if args.source == "synthetic"
        else (
            f"depth-text-bbox pairs in `{args.pairs_dir}` (object depth = mean over the box; for COCO pairs the "
            "depth is predicted by a depth estimator, not measured)"
        )
    )
    card = instruction_card(stats, generator.describe(), mix, source)
    export_dataset(rows_to_dataset(rows), output, card)
    print(report.summary())
    if isinstance(generator, OpenAIInstructionGenerator):
        print(generator.rejection_table())
    print(statistics_markdown(stats))
    print(f"wrote {len(rows)} rows to {output}")
    return 0
