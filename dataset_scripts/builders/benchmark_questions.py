"""Question generation for the Depth Template Benchmark, on scene summaries (no depth maps held).

The builder reads the scenes twice: a first pass reduces every scene to a `SceneSummary` (object
names, boxes, mask statistics such as the mean valid depth), from which all candidate questions and
the dataset-wide statistics (label vocabulary, scene / object co-occurrence) are computed here; a
second pass re-reads only the scenes that got questions to attach their depth maps. Memory stays
bounded by the summaries, whatever the dataset size.

Everything random draws from generators seeded by (seed, scene id, task), so a question does not
depend on the order scenes arrive in, and the same seed gives the same benchmark.
"""

from __future__ import annotations

import math
import zlib
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dataset_scripts.scene import Scene
from dataset_scripts.vocab import confusable, is_question_worthy, scenes_confusable
from deepsight.tasks import NUM_OPTIONS, TASKS

PAPER_TARGET_COUNTS = {
    "scene_classification": 1786,
    "recognition": 3793,
    "distance_judgment": 5737,
    "security": 2157,
}

# The question holds no options: deepsight.prompts.format_multiple_choice appends them at evaluation.
TEMPLATES: dict[str, tuple[str, ...]] = {
    "scene_classification": (
        "What type of room is shown in this depth map?",
        "Which kind of indoor scene does this depth image show?",
        "Judging from the depth map, what kind of place is this?",
        "What is the category of the scene captured in this depth image?",
    ),
    "recognition": (
        "What is the object in the highlighted region?",
        "Which object is inside the marked box?",
        "What kind of object occupies the outlined region of this depth map?",
        "Identify the object in the boxed area of the depth image.",
    ),
    "distance_judgment": (
        "Which object is farther from the camera, the {a} or the {b}?",
        "Between the {a} and the {b}, which one is farther away from the viewer?",
        "Which is more distant from the camera: the {a} or the {b}?",
        "Looking at the depth map, is the {a} or the {b} farther from the camera?",
    ),
    "security": (
        "Which of the following objects does NOT appear in this scene?",
        "One of these objects is not in the room. Which one is it?",
        "Which object cannot be found in this depth map?",
        "Which of these items is absent from the scene?",
    ),
}

# SUN RGB-D's 19-class scene protocol (LanguageBind / ImageBind zero-shot lists)
SUN19_CLASSES = (
    "bathroom",
    "bedroom",
    "classroom",
    "computer room",
    "conference room",
    "corridor",
    "dining area",
    "dining room",
    "discussion area",
    "furniture store",
    "home office",
    "kitchen",
    "lab",
    "lecture theatre",
    "library",
    "living room",
    "office",
    "rest space",
    "study space",
)


@dataclass
class QuestionSettings:
    """Thresholds and caps of question generation (all configurable from the builder config / CLI)."""

    # distance judgment: a pair is kept only when BOTH gaps are large enough
    min_absolute_gap: float = 0.3  # metres between the two masks' mean valid depths
    min_relative_gap: float = 0.15  # gap / nearer depth
    min_mask_pixels: int = 64
    min_mask_fraction: float = 0.002  # of the image
    min_valid_fraction: float = 0.5  # valid depth pixels / mask pixels
    max_box_iou: float = 0.4
    max_mask_overlap: float = 0.1  # intersection / smaller mask
    # recognition / security: boxes smaller than this fraction of the image are hard to see
    min_box_fraction: float = 0.005
    max_box_fraction: float = 0.9  # a "region" covering the whole frame names nothing
    # security: a name is plausible for a scene type when it occurs in this share of its scenes
    min_cooccurrence: float = 0.05
    # per scene caps: questions drawn round-robin over scenes, so the caps decide the spread
    max_per_scene: dict[str, int] = field(
        default_factory=lambda: {
            "scene_classification": 1,
            "recognition": 3,
            "distance_judgment": 4,
            "security": 2,
        }
    )

    def __post_init__(self) -> None:
        for name in (
            "min_absolute_gap",
            "min_relative_gap",
            "min_mask_fraction",
            "min_valid_fraction",
            "max_box_iou",
            "max_mask_overlap",
            "min_box_fraction",
            "min_cooccurrence",
        ):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and value >= 0):
                raise ValueError(f"{name}: expected a number >= 0, got {value!r}")


def stable_rng(*parts: Any) -> np.random.Generator:
    """A generator seeded from the parts' text (crc32 is stable across processes, unlike hash())."""
    return np.random.default_rng([zlib.crc32(str(part).encode()) for part in parts])


# --------------------------------------------------------------------------------------------------
# Scene summaries
# --------------------------------------------------------------------------------------------------


@dataclass
class ObjectSummary:
    name: str
    box: tuple[int, int, int, int]  # integer pixel edges, [x0, y0, x1, y1)
    has_mask: bool
    mask_pixels: int
    valid_fraction: float
    mean_depth: float  # mean valid depth over the mask, nan without mask or valid pixels
    mask_rle: tuple[int, ...] | None = None  # the mask in run-length form, only to test overlaps

    @property
    def box_area(self) -> int:
        return max(self.box[2] - self.box[0], 0) * max(self.box[3] - self.box[1], 0)


@dataclass
class SceneSummary:
    id: str
    source: str
    scene_label: str | None  # the scene classification answer in the benchmark's class list
    height: int
    width: int
    objects: list[ObjectSummary]

    @property
    def names(self) -> set[str]:
        return {obj.name for obj in self.objects}

    @property
    def name_counts(self) -> Counter:
        return Counter(obj.name for obj in self.objects)


def integer_box(box, height: int, width: int) -> tuple[int, int, int, int]:
    """The box grown outward to whole pixels and clipped to the image."""
    x0, y0, x1, y1 = box
    return (
        max(int(math.floor(x0)), 0),
        max(int(math.floor(y0)), 0),
        min(int(math.ceil(x1)), width),
        min(int(math.ceil(y1)), height),
    )


def _run_lengths(mask: np.ndarray) -> tuple[int, ...]:
    """Start/stop positions of the True runs of the flattened mask (cheap to keep, exact to intersect)."""
    flat = np.concatenate([[False], mask.ravel(), [False]])
    return tuple(int(v) for v in np.flatnonzero(flat[1:] != flat[:-1]))


def _runs_intersection(a: tuple[int, ...], b: tuple[int, ...]) -> int:
    starts_a, stops_a = np.array(a[0::2]), np.array(a[1::2])
    total = 0
    for start, stop in zip(b[0::2], b[1::2]):
        overlap = np.minimum(stops_a, stop) - np.maximum(starts_a, start)
        total += int(overlap[overlap > 0].sum())
    return total


def scene_label(scene: Scene) -> str | None:
    """The scene classification answer: NYU's 10-class protocol for NYU, the scene type otherwise."""
    if scene.source == "nyu":
        return scene.meta.get("nyu10") or None
    return scene.scene_type or None


def summarize_scene(scene: Scene) -> SceneSummary:
    objects = []
    for obj in scene.objects:
        box = integer_box(obj.box, scene.height, scene.width)
        if obj.mask is not None:
            mask = obj.mask.astype(bool)
            values = scene.depth[mask]
            valid = values[values > 0]
            objects.append(
                ObjectSummary(
                    name=obj.name,
                    box=box,
                    has_mask=True,
                    mask_pixels=int(mask.sum()),
                    valid_fraction=float(valid.size / max(values.size, 1)),
                    mean_depth=float(valid.mean()) if valid.size else float("nan"),
                    mask_rle=_run_lengths(mask),
                )
            )
        else:
            objects.append(
                ObjectSummary(
                    name=obj.name,
                    box=box,
                    has_mask=False,
                    mask_pixels=0,
                    valid_fraction=0.0,
                    mean_depth=float("nan"),
                )
            )
    return SceneSummary(
        id=scene.id,
        source=scene.source,
        scene_label=scene_label(scene),
        height=scene.height,
        width=scene.width,
        objects=objects,
    )


# --------------------------------------------------------------------------------------------------
# Dataset statistics
# --------------------------------------------------------------------------------------------------


@dataclass
class DatasetStatistics:
    """What distractors and plausibility are drawn from: the dataset's own labels."""

    object_vocabulary: list[str]  # question-worthy names, most frequent first
    scene_classes: list[str]
    cooccurrence: dict[str, dict[str, float]]  # scene label -> name -> share of its scenes holding the name
    global_frequency: dict[str, float]  # name -> share of all scenes holding it
    # scene label -> names plausible there, when the source knows it (the synthetic world's furnishing rules)
    type_vocabulary: dict[str, set[str]] = field(default_factory=dict)


def dataset_statistics(
    summaries: list[SceneSummary],
    known_scene_classes: tuple[str, ...] = (),
    type_vocabulary: dict[str, set[str]] | None = None,
) -> DatasetStatistics:
    names_per_scene = Counter()
    per_label: dict[str, Counter] = defaultdict(Counter)
    scenes_per_label = Counter()
    for summary in summaries:
        names = {n for n in summary.names if is_question_worthy(n)}
        names_per_scene.update(names)
        label = summary.scene_label or "unknown"
        scenes_per_label[label] += 1
        per_label[label].update(names)
    vocabulary = [name for name, _ in sorted(names_per_scene.items(), key=lambda kv: (-kv[1], kv[0]))]
    observed = sorted({s.scene_label for s in summaries if s.scene_label})
    classes = list(dict.fromkeys([*known_scene_classes, *observed]))
    cooccurrence = {
        label: {n: c / scenes_per_label[label] for n, c in counts.items()}
        for label, counts in per_label.items()
    }
    total = max(len(summaries), 1)
    return DatasetStatistics(
        vocabulary,
        classes,
        cooccurrence,
        {n: c / total for n, c in names_per_scene.items()},
        dict(type_vocabulary or {}),
    )


# --------------------------------------------------------------------------------------------------
# Candidates
# --------------------------------------------------------------------------------------------------


@dataclass
class Candidate:
    """A question before its options are ordered: the answer first, then the distractors."""

    task: str
    scene_id: str
    question: str
    answer: str
    distractors: list[str]
    boxes: list[
        list[int]
    ]  # regions the question names (distance: one per option, in `answer, *distractors` order)
    scene: str  # scene label ("" when unknown)
    facts: dict[str, Any] = field(default_factory=dict)  # what the answer was derived from (for checks)


def _pick_distractors(
    rng: np.random.Generator, pool: list[str], answer: str, count: int, exclude: set[str], is_confusable
) -> list[str] | None:
    """`count` names from `pool`, none confusable with the answer nor with each other; None if impossible."""
    eligible = [n for n in pool if n not in exclude and not is_confusable(n, answer)]
    chosen: list[str] = []
    for index in rng.permutation(len(eligible)):
        name = eligible[index]
        if all(not is_confusable(name, other) for other in chosen):
            chosen.append(name)
            if len(chosen) == count:
                return chosen
    return None


def _template(rng: np.random.Generator, task: str) -> str:
    return TEMPLATES[task][int(rng.integers(len(TEMPLATES[task])))]


def scene_classification_candidates(
    summary: SceneSummary, stats: DatasetStatistics, settings: QuestionSettings, seed: int, filtered: Counter
) -> list[Candidate]:
    """Up to `max_per_scene` questions per scene, each with another set of distractor classes."""
    if not summary.scene_label:
        filtered["unknown_scene_type"] += 1
        return []
    rng = stable_rng(seed, summary.id, "scene_classification")
    candidates, seen = [], set()
    wanted = settings.max_per_scene.get("scene_classification", 1)
    for _ in range(4 * wanted):  # a few more draws than questions: a repeated distractor set is redrawn
        if len(candidates) == wanted:
            break
        distractors = _pick_distractors(
            rng,
            stats.scene_classes,
            summary.scene_label,
            NUM_OPTIONS["scene_classification"] - 1,
            set(),
            scenes_confusable,
        )
        if distractors is None:
            filtered["too_few_scene_classes"] += 1
            break
        if frozenset(distractors) in seen:
            continue
        seen.add(frozenset(distractors))
        candidates.append(
            Candidate(
                "scene_classification",
                summary.id,
                _template(rng, "scene_classification"),
                summary.scene_label,
                distractors,
                [],
                summary.scene_label,
            )
        )
    return candidates


def _visible_box(obj: ObjectSummary, summary: SceneSummary, settings: QuestionSettings) -> bool:
    fraction = obj.box_area / float(summary.height * summary.width)
    return settings.min_box_fraction <= fraction <= settings.max_box_fraction


def recognition_candidates(
    summary: SceneSummary, stats: DatasetStatistics, settings: QuestionSettings, seed: int, filtered: Counter
) -> list[Candidate]:
    rng = stable_rng(seed, summary.id, "recognition")
    present = summary.names
    candidates, asked = [], set()
    # largest instance first: one question per name, about its most visible instance
    for obj in sorted(summary.objects, key=lambda o: (-o.box_area, o.name)):
        if not is_question_worthy(obj.name):
            filtered["structural_or_catch_all_name"] += 1
        elif obj.name in asked:
            filtered["same_name_already_asked"] += 1
        elif not _visible_box(obj, summary, settings):
            filtered["box_too_small_or_whole_image"] += 1
        else:
            distractors = _pick_distractors(
                rng, stats.object_vocabulary, obj.name, NUM_OPTIONS["recognition"] - 1, present, confusable
            )
            if distractors is None:
                filtered["too_few_distractors"] += 1
                continue
            asked.add(obj.name)
            candidates.append(
                Candidate(
                    "recognition",
                    summary.id,
                    _template(rng, "recognition"),
                    obj.name,
                    distractors,
                    [list(obj.box)],
                    summary.scene_label or "",
                )
            )
    return candidates


def _box_iou(a: tuple[int, ...], b: tuple[int, ...]) -> float:
    ix = max(min(a[2], b[2]) - max(a[0], b[0]), 0)
    iy = max(min(a[3], b[3]) - max(a[1], b[1]), 0)
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _distance_object_problem(
    obj: ObjectSummary, summary: SceneSummary, settings: QuestionSettings
) -> str | None:
    if not obj.has_mask:
        return "no_instance_mask"
    if obj.mask_pixels < max(
        settings.min_mask_pixels, settings.min_mask_fraction * summary.height * summary.width
    ):
        return "tiny_mask"
    if obj.valid_fraction < settings.min_valid_fraction or not np.isfinite(obj.mean_depth):
        return "mostly_invalid_mask"
    return None


def distance_pair_problem(a: ObjectSummary, b: ObjectSummary, settings: QuestionSettings) -> str | None:
    """Why the pair (a, b) makes no fair distance question, or None when it does."""
    if a.name == b.name:
        return "same_name"
    if confusable(a.name, b.name):
        return "confusable_names"
    if _box_iou(a.box, b.box) > settings.max_box_iou:
        return "overlapping_boxes"
    if a.mask_rle and b.mask_rle:
        if _runs_intersection(a.mask_rle, b.mask_rle) > settings.max_mask_overlap * min(
            a.mask_pixels, b.mask_pixels
        ):
            return "overlapping_masks"
    gap = abs(a.mean_depth - b.mean_depth)
    if gap < settings.min_absolute_gap:
        return "gap_below_absolute_threshold"
    if gap / min(a.mean_depth, b.mean_depth) < settings.min_relative_gap:
        return "gap_below_relative_threshold"
    return None


def distance_candidates(
    summary: SceneSummary, settings: QuestionSettings, seed: int, filtered: Counter
) -> list[Candidate]:
    rng = stable_rng(seed, summary.id, "distance_judgment")
    counts = summary.name_counts
    usable = []
    for obj in summary.objects:
        if not is_question_worthy(obj.name):
            filtered["structural_or_catch_all_name"] += 1
            continue
        # "the chair" names nothing when the scene has two chairs
        problem = (
            "ambiguous_name_in_scene"
            if counts[obj.name] > 1
            else _distance_object_problem(obj, summary, settings)
        )
        if problem:
            filtered[problem] += 1
        else:
            usable.append(obj)
    candidates = []
    for i in range(len(usable)):
        for j in range(i + 1, len(usable)):
            a, b = usable[i], usable[j]
            problem = distance_pair_problem(a, b, settings)
            if problem:
                filtered[problem] += 1
                continue
            far, near = (a, b) if a.mean_depth > b.mean_depth else (b, a)
            first, second = (a, b) if rng.random() < 0.5 else (b, a)  # naming order independent of the answer
            question = _template(rng, "distance_judgment").format(a=first.name, b=second.name)
            candidates.append(
                Candidate(
                    "distance_judgment",
                    summary.id,
                    question,
                    far.name,
                    [near.name],
                    [list(far.box), list(near.box)],
                    summary.scene_label or "",
                    facts={"mean_depth": {far.name: far.mean_depth, near.name: near.mean_depth}},
                )
            )
    return candidates


def plausible_absent_names(
    summary: SceneSummary, stats: DatasetStatistics, settings: QuestionSettings
) -> list[str]:
    """Names truly absent from the scene, not confusable with anything in it, plausible for its type.

    Plausible = in the source's own vocabulary of that scene type when it has one (synthetic world),
    else common in scenes of that type in the data (co-occurrence share >= `min_cooccurrence`).
    """
    present = summary.names
    if summary.scene_label in stats.type_vocabulary:
        allowed = stats.type_vocabulary[summary.scene_label]
        plausible = [name for name in stats.object_vocabulary if name in allowed]
    else:
        shares = stats.cooccurrence.get(summary.scene_label) if summary.scene_label else None
        shares = shares if shares else stats.global_frequency
        plausible = [
            name for name in stats.object_vocabulary if shares.get(name, 0.0) >= settings.min_cooccurrence
        ]
    return [
        name
        for name in plausible
        if name not in present and not any(confusable(name, other) for other in present)
    ]


def security_candidates(
    summary: SceneSummary, stats: DatasetStatistics, settings: QuestionSettings, seed: int, filtered: Counter
) -> list[Candidate]:
    rng = stable_rng(seed, summary.id, "security")
    visible = sorted(
        {o.name for o in summary.objects if is_question_worthy(o.name) and _visible_box(o, summary, settings)}
    )
    absent_pool = plausible_absent_names(summary, stats, settings)
    if not absent_pool:
        filtered["no_plausible_absent_object"] += 1
        return []
    candidates = []
    for absent_index in rng.permutation(len(absent_pool))[: settings.max_per_scene.get("security", 1)]:
        absent = absent_pool[absent_index]
        present = _pick_distractors(rng, visible, absent, NUM_OPTIONS["security"] - 1, set(), confusable)
        if present is None:
            filtered["fewer_than_3_distinct_present_objects"] += 1
            break
        candidates.append(
            Candidate(
                "security",
                summary.id,
                _template(rng, "security"),
                absent,
                present,
                [],
                summary.scene_label or "",
                facts={"present": sorted(summary.names)},
            )
        )
    return candidates


def scene_candidates(
    summary: SceneSummary,
    stats: DatasetStatistics,
    settings: QuestionSettings,
    seed: int,
    filtered: dict[str, Counter],
    tasks=TASKS,
) -> dict[str, list[Candidate]]:
    out = {}
    if "scene_classification" in tasks:
        out["scene_classification"] = scene_classification_candidates(
            summary, stats, settings, seed, filtered["scene_classification"]
        )
    if "recognition" in tasks:
        out["recognition"] = recognition_candidates(summary, stats, settings, seed, filtered["recognition"])
    if "distance_judgment" in tasks:
        out["distance_judgment"] = distance_candidates(summary, settings, seed, filtered["distance_judgment"])
    if "security" in tasks:
        out["security"] = security_candidates(summary, stats, settings, seed, filtered["security"])
    return out


# --------------------------------------------------------------------------------------------------
# Selection and option order
# --------------------------------------------------------------------------------------------------


def select_round_robin(
    per_scene: dict[str, list[Candidate]], cap: int | None, per_scene_cap: int, seed: int, task: str
) -> list[Candidate]:
    """Up to `cap` candidates, one scene at a time in a seeded order, so questions spread over scenes."""
    rng = stable_rng(seed, "select", task)
    scene_ids = sorted(sid for sid, cands in per_scene.items() if cands)
    order = [scene_ids[i] for i in rng.permutation(len(scene_ids))]
    queues = {
        sid: [
            per_scene[sid][i] for i in stable_rng(seed, "order", task, sid).permutation(len(per_scene[sid]))
        ][:per_scene_cap]
        for sid in order
    }
    selected: list[Candidate] = []
    for round_index in range(per_scene_cap):
        for sid in order:
            if cap is not None and len(selected) >= cap:
                return selected
            if round_index < len(queues[sid]):
                selected.append(queues[sid][round_index])
    return selected


def balanced_answer_positions(count: int, num_options: int, seed: int, task: str) -> list[int]:
    """Answer positions with every position used equally often (+-1), in a seeded order."""
    positions = np.arange(count) % num_options
    return [int(p) for p in stable_rng(seed, "positions", task).permutation(positions)]


def order_options(candidate: Candidate, position: int, seed: int) -> tuple[list[str], list[list[int]]]:
    """Options with the answer at `position`; the distractors in a seeded order around it."""
    rng = stable_rng(
        seed, "options", candidate.task, candidate.scene_id, candidate.question, candidate.answer
    )
    permutation = [int(i) for i in rng.permutation(len(candidate.distractors))]
    options = [candidate.distractors[i] for i in permutation]
    options.insert(position, candidate.answer)
    boxes = candidate.boxes
    if candidate.task == "distance_judgment":  # one box per option, in option order
        boxes = [candidate.boxes[1 + i] for i in permutation]
        boxes.insert(position, candidate.boxes[0])
    return options, boxes
