"""The offline instruction generator: correct, varied instructions written from a scene's ground truth.

Everything an answer states is computed from the Scene: an object's distance is the mean valid depth
under its instance mask (`SceneObject.mean_depth`, the benchmark's rule), left/right is where the box
centre falls in the image, sizes and gaps in metres come from the pinhole intrinsics, the room type is
the scene label. Only objects whose name occurs once in the scene are named in questions about one
object, so "the chair" is never ambiguous. Two objects are compared only when their distances differ
clearly (`DISTANCE_MARGIN_M` and `DISTANCE_MARGIN_RATIO`), the same ground-truth rule that keeps the
benchmark free of ambiguous pairs.

Besides the three free-form types (complex reasoning, multi-round conversation, detailed
description) it writes multiple-choice items for the four benchmark skills in exactly the benchmark's
layout (`deepsight.prompts.format_multiple_choice` / `answer_text`); they are `conversation` rows with
one round, the boxes the question names in the row's `boxes`.
"""

from __future__ import annotations

import math
import zlib
from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Mapping

import numpy as np

from dataset_scripts import vocab
from dataset_scripts.builders.benchmark_questions import TEMPLATES as BENCHMARK_TEMPLATES
from dataset_scripts.scene import Scene
from deepsight.prompts import (  # noqa: F401 (the unnamed templates are re-exported: the generator's vocabulary)
    UNNAMED_FARTHER_QUESTIONS,
    UNNAMED_REGIONS,
    answer_text,
    format_multiple_choice,
    region_answer_text,
)
from deepsight.regions import region_layout
from deepsight.tasks import TASKS as BENCHMARK_SKILLS

INSTRUCTION_TYPES = ("complex_reasoning", "conversation", "detailed_description")

DISTANCE_MARGIN_M = 0.3
DISTANCE_MARGIN_RATIO = 0.1
MIN_OBJECT_AREA_FRACTION = 0.002  # smaller regions hold too few depth pixels for a trustworthy mean

# Phrasings. Each list is sampled per item, so one dataset holds many wordings of every question.
SCENE_QUESTIONS = (
    "What type of room is shown in this depth map?",
    "Which kind of scene does this depth image show?",
    "Based on the depth image, what kind of place is this?",
    "Classify the scene captured in this depth map.",
    "Where was this depth image most likely taken?",
    "What room is this?",
)
RECOGNITION_QUESTIONS = (
    "What is the object in the boxed region?",
    "Which object is located inside the highlighted box?",
    "Identify the object in the marked region of the depth map.",
    "What does the region inside the box contain?",
    "Which of these objects occupies the boxed area?",
)
FARTHER_QUESTIONS = (
    "Which object is farther from the camera: the {a} or the {b}?",
    "Between the {a} and the {b}, which one is farther away?",
    "Of the {a} and the {b}, which is at a greater distance from the viewpoint?",
    "Looking at the depth map, is the {a} or the {b} farther from the viewer?",
    "Which is more distant from the camera, the {a} or the {b}?",
)
ABSENT_QUESTIONS = (
    "Which of the following objects does not appear in this scene?",
    "Which object is absent from the depth image?",
    "One of these objects is not in the scene. Which one?",
    "Which of these cannot be found in the depth map?",
    "Which object is missing from this scene?",
)


def _with_benchmark(own: tuple[str, ...], task: str) -> tuple[str, ...]:
    """`own` wordings, then the benchmark's: training sees exactly what evaluation asks."""
    return tuple(dict.fromkeys(own + tuple(BENCHMARK_TEMPLATES.get(task, ()))))


SCENE_QUESTIONS = _with_benchmark(SCENE_QUESTIONS, "scene_classification")
RECOGNITION_QUESTIONS = _with_benchmark(RECOGNITION_QUESTIONS, "recognition")
FARTHER_QUESTIONS = _with_benchmark(FARTHER_QUESTIONS, "distance_judgment")
ABSENT_QUESTIONS = _with_benchmark(ABSENT_QUESTIONS, "security")


def scene_rng(seed: int, scene_id: str, purpose: str = "") -> np.random.Generator:
    """A generator that depends only on (seed, scene id, purpose): a scene's rows do not depend on
    which other scenes were built before it, so reruns, resumes and shards agree row for row."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, zlib.crc32(f"{scene_id}|{purpose}".encode())])


def metres(value: float) -> str:
    return f"{value:.1f} m"


@dataclass
class ObjectFact:
    index: int  # position in scene.objects
    name: str
    box: tuple[float, float, float, float]
    depth: float  # mean valid depth under the mask, metres
    side: str  # "left" | "middle" | "right"
    width_m: float | None  # physical width from the box and intrinsics, when known
    lateral_m: tuple[float, float] | None  # left/right edge in metres from the optical axis


@dataclass
class SceneFacts:
    scene: Scene
    objects: list[ObjectFact]  # every usable object, nearest first
    counts: Counter
    room_depth: float  # 95th percentile of valid depth: how deep the room reaches
    scene_type: str | None

    @property
    def unique(self) -> list[ObjectFact]:
        """Objects whose name occurs once, so a question can name them without ambiguity."""
        return [fact for fact in self.objects if self.counts[fact.name] == 1]

    def clearly_apart(self, a: ObjectFact, b: ObjectFact) -> bool:
        gap = abs(a.depth - b.depth)
        return gap >= DISTANCE_MARGIN_M and gap >= DISTANCE_MARGIN_RATIO * max(a.depth, b.depth)

    def clear_nearest(self, facts: list[ObjectFact]) -> ObjectFact | None:
        """The first of `facts` (nearest first) when it is clearly nearer than the second, else None."""
        if not facts or (len(facts) > 1 and not self.clearly_apart(facts[0], facts[1])):
            return None
        return facts[0]

    def clear_farthest(self) -> ObjectFact | None:
        return self.clear_nearest(self.objects[::-1]) if len(self.objects) > 1 else None

    def straight_ahead(self) -> list[ObjectFact]:
        """Objects whose box covers the image's central column, nearest first."""
        centre = self.scene.width / 2.0
        return [fact for fact in self.objects if fact.box[0] <= centre <= fact.box[2]]


def side_of(box, width: int) -> str:
    centre = (box[0] + box[2]) / 2.0
    if centre < width / 3.0:
        return "left"
    if centre > 2.0 * width / 3.0:
        return "right"
    return "middle"


def answer_name_counts(scenes: Iterable[Scene]) -> Counter:
    """In how many of `scenes` each object name could be a Recognition answer (present exactly once)."""
    counts: Counter = Counter()
    for scene in scenes:
        counts.update(fact.name for fact in scene_facts(scene).unique)
    return counts


@dataclass(frozen=True)
class FartherNamePrior:
    """How often each object name is the farther one of a Distance Judgment pair, over some scenes.

    `rates[name]` is that share (add-one smoothed); the prior "names" the object whose rate is higher.
    `right_share` is how often that guess is right over the counted pairs (ties left out).
    """

    rates: dict[str, float]
    right_share: float

    def points_to(self, far: str, near: str) -> bool | None:
        """Whether the names alone point to `far` (None: they do not tell)."""
        a, b = self.rates.get(far, 0.5), self.rates.get(near, 0.5)
        return None if a == b else a > b


def farther_name_prior(scenes: Iterable[Scene]) -> FartherNamePrior:
    """The names' prior on Distance Judgment, from every clearly-apart pair of `scenes` (as `mc_distance_judgment`
    draws them)."""
    far_counts, pair_counts, pairs = Counter(), Counter(), []
    for scene in scenes:
        facts = scene_facts(scene)
        for i, a in enumerate(facts.unique):
            for b in facts.unique[i + 1 :]:
                if facts.clearly_apart(a, b) and not vocab.confusable(a.name, b.name):
                    far, near = (a.name, b.name) if a.depth > b.depth else (b.name, a.name)
                    far_counts[far] += 1
                    pair_counts.update((far, near))
                    pairs.append((far, near))
    rates = {name: (far_counts[name] + 1) / (count + 2) for name, count in pair_counts.items()}
    prior = FartherNamePrior(rates, 0.5)
    told = [prior.points_to(far, near) for far, near in pairs]
    told = [t for t in told if t is not None]
    return FartherNamePrior(rates, sum(told) / len(told) if told else 0.5)


def scene_facts(scene: Scene) -> SceneFacts:
    """The ground truth every generated sentence is computed from."""
    depth = scene.depth
    min_area = MIN_OBJECT_AREA_FRACTION * depth.size
    facts = []
    for index, obj in enumerate(scene.objects):
        name = vocab.normalize_object_name(obj.name)
        if not vocab.is_question_worthy(name):
            continue
        region = obj.region(depth.shape)
        if int((region & (depth > 0)).sum()) < min_area:
            continue
        mean_depth = obj.mean_depth(depth)
        if not math.isfinite(mean_depth):
            continue
        width_m = lateral = None
        if scene.intrinsics is not None:
            fx, cx = float(scene.intrinsics[0, 0]), float(scene.intrinsics[0, 2])
            lateral = ((obj.box[0] - cx) * mean_depth / fx, (obj.box[2] - cx) * mean_depth / fx)
            width_m = lateral[1] - lateral[0]
        facts.append(
            ObjectFact(
                index,
                name,
                tuple(float(v) for v in obj.box),
                mean_depth,
                side_of(obj.box, scene.width),
                width_m,
                lateral,
            )
        )
    facts.sort(key=lambda fact: fact.depth)
    valid = depth[depth > 0]
    room_depth = float(np.percentile(valid, 95)) if valid.size else float("nan")
    scene_type = vocab.normalize_scene_name(scene.scene_type) if scene.scene_type else None
    # Counted over every annotated instance, also those too small to measure: "the chair" is only
    # unambiguous, and "3 chairs" only true, when the tiny fourth chair is counted too.
    counts = Counter(
        name
        for name in (vocab.normalize_object_name(o.name) for o in scene.objects)
        if vocab.is_question_worthy(name)
    )
    return SceneFacts(scene, facts, counts, room_depth, scene_type)


def with_article(name: str) -> str:
    """'a chair', 'an oven'."""
    return f"{'an' if name[:1] in 'aeiou' else 'a'} {name}"


def scene_phrase(scene_type: str | None) -> str:
    """'a kitchen', 'an office', 'an outdoor scene' (COCO's coarse labels), 'a room' when unknown."""
    if not scene_type:
        return "a room"
    if scene_type in ("indoor", "outdoor"):
        return f"an {scene_type} scene"
    return with_article(scene_type)


def where(fact: ObjectFact) -> str:
    return "in the middle of the view" if fact.side == "middle" else f"on the {fact.side}"


IRREGULAR_PLURALS = {
    "person": "people",
    "mouse": "mice",
    "shelf": "shelves",
    "bookshelf": "bookshelves",
    "knife": "knives",
    "shelves": "shelves",
}


def plural(name: str, count: int) -> str:
    if count == 1:
        return name
    head, _, last = name.rpartition(" ")
    if last in IRREGULAR_PLURALS:
        last = IRREGULAR_PLURALS[last]
    elif last.endswith(("s", "sh", "ch", "x")):
        last += "es"
    elif last.endswith("y") and last[-2:-1] not in "aeiou":
        last = last[:-1] + "ies"
    else:
        last += "s"
    return f"{head} {last}" if head else last


def object_list(facts: SceneFacts) -> str:
    parts = [
        f"{count} {plural(name, count)}" if count > 1 else with_article(name)
        for name, count in sorted(facts.counts.items())
    ]
    if len(parts) <= 1:
        return "".join(parts)
    return ", ".join(parts[:-1]) + " and " + parts[-1]


# --------------------------------------------------------------------------------------------------
# Question-answer pairs for conversations (each returns None when the scene cannot support it)
# --------------------------------------------------------------------------------------------------


def qa_room_type(facts: SceneFacts, rng):
    if not facts.scene_type:
        return None
    q = rng.choice(
        [
            "What kind of room is this?",
            "Can you tell what room this depth map shows?",
            "What type of space is this?",
        ]
    )
    named = [f"the {fact.name}" for fact in facts.unique[:3]]
    evidence = ", ".join(named[:-1]) + (" and " if len(named) > 1 else "") + (named[-1] if named else "")
    a = f"It looks like {scene_phrase(facts.scene_type)}."
    if evidence:
        a += f" The shapes of {evidence} fit that kind of room."
    return q, a, []


def qa_count(facts: SceneFacts, rng):
    if not facts.counts:
        return None
    name = str(rng.choice(sorted(facts.counts)))
    count = facts.counts[name]
    q = rng.choice(
        [
            f"How many {plural(name, 2)} are there?",
            f"How many {plural(name, 2)} can you see in the depth map?",
            f"Count the {plural(name, 2)} in this scene.",
        ]
    )
    a = f"There {'is' if count == 1 else 'are'} {count} {plural(name, count)} in the scene."
    return q, a, [list(f.box) for f in facts.objects if f.name == name]


def qa_distance(facts: SceneFacts, rng):
    if not facts.unique:
        return None
    fact = facts.unique[int(rng.integers(len(facts.unique)))]
    q = rng.choice(
        [
            f"How far away is the {fact.name}?",
            f"What is the distance from the camera to the {fact.name}?",
            f"Roughly how many metres away is the {fact.name}?",
        ]
    )
    a = f"The {fact.name} is about {metres(fact.depth)} from the camera, {where(fact)}."
    return q, a, [list(fact.box)]


def qa_position(facts: SceneFacts, rng):
    if not facts.unique:
        return None
    fact = facts.unique[int(rng.integers(len(facts.unique)))]
    q = rng.choice(
        [
            f"Where is the {fact.name}?",
            f"Where in the view is the {fact.name} located?",
            f"Is the {fact.name} on the left or on the right?",
        ]
    )
    a = f"The {fact.name} is {where(fact)}, about {metres(fact.depth)} away."
    return q, a, [list(fact.box)]


def _clear_pair(facts: SceneFacts, rng):
    """Two objects at clearly different depths, as (a, b) in a random order (the order they are named in) and
    as (near, far); None when the scene has no such pair."""
    pairs = [
        (a, b) for i, a in enumerate(facts.unique) for b in facts.unique[i + 1 :] if facts.clearly_apart(a, b)
    ]
    if not pairs:
        return None
    a, b = pairs[int(rng.integers(len(pairs)))]
    named = (a, b) if rng.random() < 0.5 else (b, a)
    return named, tuple(sorted(named, key=lambda fact: fact.depth))


def qa_closer(facts: SceneFacts, rng):
    pair = _clear_pair(facts, rng)
    if pair is None:
        return None
    (a, b), (near, far) = pair
    q = rng.choice(
        [
            f"Which is closer to the camera, the {a.name} or the {b.name}?",
            f"Is the {a.name} nearer than the {b.name}?",
        ]
    )
    a_text = (
        f"The {near.name} is closer: it is about {metres(near.depth)} away, while the {far.name} "
        f"is about {metres(far.depth)} away."
    )
    return q, a_text, [list(a.box), list(b.box)]


def qa_nearest(facts: SceneFacts, rng):
    nearest = facts.clear_nearest(facts.objects)
    if nearest is None or facts.counts[nearest.name] > 1:
        return None
    q = rng.choice(
        [
            "What is the closest object to the camera?",
            "Which object is nearest to the viewer?",
            "What is right in front of the camera?",
        ]
    )
    return (
        q,
        f"The nearest object is the {nearest.name}, about {metres(nearest.depth)} away {where(nearest)}.",
        [list(nearest.box)],
    )


def qa_farthest(facts: SceneFacts, rng):
    far = facts.clear_farthest()
    if far is None or facts.counts[far.name] > 1:
        return None
    q = rng.choice(["Which object is the farthest away?", "What is the most distant object in the scene?"])
    return (
        q,
        f"The farthest object is the {far.name}, about {metres(far.depth)} from the camera {where(far)}.",
        [list(far.box)],
    )


def qa_room_depth(facts: SceneFacts, rng):
    if not math.isfinite(facts.room_depth):
        return None
    q = rng.choice(["How deep is the room?", "How far does the space extend from the camera?"])
    return q, f"The farthest surfaces are about {metres(facts.room_depth)} from the camera.", []


CONVERSATION_QUESTIONS = (
    qa_room_type,
    qa_count,
    qa_distance,
    qa_position,
    qa_closer,
    qa_nearest,
    qa_farthest,
    qa_room_depth,
)


# --------------------------------------------------------------------------------------------------
# Complex reasoning (one question that needs several facts combined)
# --------------------------------------------------------------------------------------------------


def cr_walk_ahead(facts: SceneFacts, rng):
    depth, scene = facts.scene.depth, facts.scene
    q = rng.choice(
        [
            "If I walk straight ahead from the camera, what will I reach first, and after how far?",
            "A robot drives straight forward from the camera position. What does it hit first?",
        ]
    )
    ahead = facts.straight_ahead()
    if not ahead:
        # What the central view ray meets: the middle rows of the central columns (the floor is below them).
        h, w = depth.shape
        window = depth[h // 3 : 2 * h // 3, int(w * 0.45) : max(int(w * 0.55), int(w * 0.45) + 1)]
        window = window[window > 0]
        if not window.size:
            return None
        return (
            q,
            (
                f"Nothing annotated is in the way straight ahead: the view is open until the surface about "
                f"{metres(float(np.median(window)))} away."
            ),
            [],
        )
    first = facts.clear_nearest(ahead)
    if first is None:
        return None
    values = depth[scene.objects[first.index].region(depth.shape) & (depth > 0)]
    front = float(np.percentile(values, 5))  # its nearest surface, robust to a few stray pixels
    answer = (
        f"The first obstacle straight ahead is the {first.name}, about {metres(first.depth)} away on average"
    )
    if facts.counts[first.name] > 1:
        answer += f" (one of the {facts.counts[first.name]} {plural(first.name, 2)})"
    answer += (
        f"; its nearest surface is about {metres(front)} from the camera, which is the free space in front."
    )
    return q, answer, [list(first.box)]


def cr_order(facts: SceneFacts, rng):
    # Only objects whose distances differ clearly from one to the next, so the order has one right answer.
    chain: list[ObjectFact] = []
    for fact in facts.unique:  # nearest first
        if not chain or facts.clearly_apart(chain[-1], fact):
            chain.append(fact)
    if len(chain) < 3:
        return None
    chosen = sorted(rng.choice(len(chain), size=min(4, len(chain)), replace=False).tolist())
    picked = [chain[i] for i in chosen]
    shown = list(picked)
    rng.shuffle(shown)
    q = rng.choice(
        [
            "Order these objects from nearest to farthest: {}.",
            "Sort by distance from the camera, closest first: {}.",
        ]
    ).format(", ".join(f"the {f.name}" for f in shown))
    steps = ", then ".join(f"the {f.name} ({metres(f.depth)})" for f in picked)
    return q, f"From nearest to farthest: {steps}.", [list(f.box) for f in shown]


def cr_reach(facts: SceneFacts, rng):
    pair = _clear_pair(facts, rng)
    if pair is None:
        return None
    (a, b), (near, far) = pair
    q = rng.choice(
        [
            f"I want to grab the {a.name} or the {b.name}, whichever is closer. Which should I go for and why?",
            f"Standing at the camera, would I reach the {a.name} or the {b.name} first?",
        ]
    )
    answer = (
        f"The {near.name}. The depth under it averages about {metres(near.depth)}, against about "
        f"{metres(far.depth)} for the {far.name}, so it is roughly {metres(far.depth - near.depth)} closer."
    )
    return q, answer, [list(a.box), list(b.box)]


# Things on or in a wall: "passing between" them means nothing.
WALL_THINGS = frozenset(
    {
        "window",
        "picture",
        "mirror",
        "curtain",
        "blind",
        "white board",
        "black board",
        "clock",
        "door",
        "television",
        "shelf",
    }
)


def cr_gap(facts: SceneFacts, rng):
    """Can something of a given width pass between two side-by-side objects (lateral gap from intrinsics)."""
    candidates = []
    standing = [fact for fact in facts.unique if fact.name not in WALL_THINGS]
    for i, a in enumerate(standing):
        for b in standing[i + 1 :]:
            if a.lateral_m is None or b.lateral_m is None or facts.clearly_apart(a, b):
                continue  # only side-by-side pairs: a lateral gap means little between near and far objects
            left, right = (a, b) if a.lateral_m[0] < b.lateral_m[0] else (b, a)
            gap = right.lateral_m[0] - left.lateral_m[1]
            if gap > 0.1:
                candidates.append((left, right, gap))
    if not candidates:
        return None
    left, right, gap = candidates[int(rng.integers(len(candidates)))]
    width = float(rng.choice([0.4, 0.6, 0.8, 1.0]))
    fits = gap >= width
    q = f"Could a {width:.1f} m wide robot pass between the {left.name} and the {right.name}?"
    verdict = "Yes" if fits else "No"
    answer = (
        f"{verdict}. The {left.name} and the {right.name} stand side by side at about "
        f"{metres((left.depth + right.depth) / 2)} from the camera, with a horizontal gap of about "
        f"{metres(gap)} between them, which is {'wider' if fits else 'narrower'} than {width:.1f} m."
    )
    return q, answer, [list(left.box), list(right.box)]


def cr_room(facts: SceneFacts, rng):
    if not facts.scene_type or not facts.objects:
        return None
    q = rng.choice(
        [
            "What kind of room is this likely to be, and what in the depth map supports that?",
            "Guess the room type and explain your reasoning.",
        ]
    )
    answer = (
        f"This is most likely {scene_phrase(facts.scene_type)}. The depth map shows {object_list(facts)}, "
        f"and the room reaches about {metres(facts.room_depth)} from the camera."
    )
    return q, answer, []


COMPLEX_REASONING_QUESTIONS = (cr_walk_ahead, cr_order, cr_reach, cr_gap, cr_room)


def detailed_description(facts: SceneFacts, rng) -> str:
    opening = rng.choice(
        ["This depth map shows {}.", "The depth image captures {}.", "We are looking at {}."]
    )
    sentences = [opening.format(scene_phrase(facts.scene_type))]
    if facts.objects:
        sentences.append(f"It contains {object_list(facts)}.")
        for fact in facts.objects[:6]:
            sentences.append(
                f"{with_article(fact.name).capitalize()} is {where(fact)}, about {metres(fact.depth)} from the camera."
            )
        nearest, farthest = facts.clear_nearest(facts.objects), facts.clear_farthest()
        if nearest is not None:
            sentences.append(f"The nearest object is {with_article(nearest.name)}.")
        if farthest is not None:
            sentences.append(f"The farthest object is {with_article(farthest.name)}.")
        first = facts.clear_nearest(facts.straight_ahead())
        if first is not None:
            sentences.append(
                f"Straight ahead the first obstacle is {with_article(first.name)} at about {metres(first.depth)}."
            )
    if math.isfinite(facts.room_depth):
        sentences.append(f"The far surfaces of the room are about {metres(facts.room_depth)} away.")
    return " ".join(sentences)


DESCRIPTION_REQUESTS = (
    "Describe this depth map in detail.",
    "Give a detailed description of the scene, including where things are and how far away.",
    "What can you tell me about the layout of this room from the depth image?",
    "Explain the spatial layout of this scene.",
)


# --------------------------------------------------------------------------------------------------
# Rows
# --------------------------------------------------------------------------------------------------


def user(text: str, with_image: bool = False) -> dict:
    content = ([{"type": "image", "text": None}] if with_image else []) + [{"type": "text", "text": text}]
    return {"role": "user", "content": content}


def assistant(text: str) -> dict:
    return {"role": "assistant", "content": [{"type": "text", "text": text}]}


def single_turn(question: str, answer: str) -> list[dict]:
    return [user(question, with_image=True), assistant(answer)]


def make_row(scene: Scene, kind: str, key: str, messages: list[dict], boxes: list) -> dict:
    """An instruction row without its depth image (added when the dataset is assembled)."""
    return {
        "id": f"{scene.id}-{key}",
        "type": kind,
        "messages": messages,
        "boxes": [[[float(v) for v in box] for box in boxes]],
        "source": scene.source,
    }


class OfflineInstructionGenerator:
    """Writes instruction rows for a Scene from its ground truth; deterministic given (seed, scene id)."""

    name = "offline"

    def __init__(
        self,
        seed: int = 0,
        object_vocabulary=vocab.OBJECT_VOCABULARY,
        scene_vocabulary=vocab.SCENE_VOCABULARY,
        name_weights: dict[str, float] | None = None,
        balanced_skills: tuple[str, ...] = ("recognition", "security"),
        distance_regions: bool = False,
        unnamed_distance: bool | str | None = False,
        farther_prior: FartherNamePrior | None = None,
    ):
        """`name_weights`: how often each object name is an answer (e.g. in how many scenes it is present).
        When given, the skills in `balanced_skills` draw their wrong options in proportion to it (Recognition:
        the distractors; Security: the absent object), so a name is offered as a wrong option about as often
        as it is the right one and the names alone stop telling the answer; None draws uniformly (the
        benchmark's way).
        `distance_regions`: Distance Judgment rows in the per-option region layout
        (`deepsight.regions.region_layout`: one depth-map copy per option, masked to that option's box)
        instead of one image whose mask is the union of both boxes.
        `unnamed_distance` (with `distance_regions`): each Distance Judgment row gets a twin that names no object
        ("Which of the two marked regions is farther from the camera?" / "the first region", "the second
        region"): option names carry a prior (windows stand at the walls), these rows carry none, so only
        comparing the two regions' depths answers them. True or "twin": the twin asks about the named row's pair;
        "own": it draws a pair of its own, so the scene's unnamed rows compare other regions than its named ones
        (the same number of rows, twice the depth comparisons).
        `farther_prior` (with "distance_judgment" in `balanced_skills`): the named Distance rows whose names
        point to the answer (`FartherNamePrior.points_to`) are kept only as often as to make the names right
        half of the time (their unnamed twins always stay), so the option names stop telling which is
        farther and only the depth does."""
        if unnamed_distance not in (None, False, True, "twin", "own"):
            raise ValueError(f"unnamed_distance: expected False, True, 'twin' or 'own', got {unnamed_distance!r}")
        if unnamed_distance and not distance_regions:
            raise ValueError("unnamed_distance: needs distance_regions (the regions are told apart by their images)")
        unknown = set(balanced_skills) - {"recognition", "security", "distance_judgment"}
        if unknown:
            raise ValueError(
                f"balanced_skills: expected recognition, security or distance_judgment, got {sorted(unknown)}"
            )
        if "distance_judgment" in balanced_skills and farther_prior is None:
            raise ValueError("balanced_skills: balancing distance_judgment needs `farther_prior` (farther_name_prior)")
        self.seed = seed
        self.object_vocabulary = sorted({vocab.normalize_object_name(n) for n in object_vocabulary})
        self.scene_vocabulary = sorted({vocab.normalize_scene_name(n) for n in scene_vocabulary})
        self.name_weights = dict(name_weights) if name_weights else None
        self.farther_prior = farther_prior if "distance_judgment" in balanced_skills else None
        self.balanced_skills = tuple(
            skill for skill in balanced_skills
            if (self.farther_prior is not None if skill == "distance_judgment" else self.name_weights)
        )
        self.distance_regions = distance_regions
        self.unnamed_distance = {True: "twin"}.get(unnamed_distance, unnamed_distance)

    def fingerprint(self) -> dict:
        return {
            "name": self.name,
            "seed": self.seed,
            "objects": self.object_vocabulary,
            "scenes": self.scene_vocabulary,
            **({"name_weights": self.name_weights} if self.name_weights else {}),
            **({"balanced": list(self.balanced_skills)} if self.balanced_skills else {}),
            **({"farther_rates": self.farther_prior.rates} if self.farther_prior else {}),
            # only with regions (other caches stay valid); "letter": region rows answered by the letter alone
            **({"distance_regions": "letter"} if self.distance_regions else {}),
            # "twin" keeps its earlier fingerprint (True), so existing caches stay valid
            **({"unnamed_distance": {"twin": True}.get(self.unnamed_distance, self.unnamed_distance)}
               if self.unnamed_distance else {}),
        }

    def describe(self) -> str:
        text = "offline, from the scene graph's ground truth (deterministic from the seed)"
        drawn = [skill for skill in self.balanced_skills if skill != "distance_judgment"]
        if drawn:
            text += (f"; the wrong options of {', '.join(drawn)} are drawn in proportion to how often "
                     "each name is an answer, so option names alone do not tell the answer")
        if self.farther_prior is not None:
            text += ("; named distance_judgment rows are thinned until the names point to the farther object half "
                     "of the time")
        return text

    def generate(self, scene: Scene, types: list[str]) -> tuple[list[dict], int]:
        """Rows for the requested free-form types, and how many could not be made (always 0 here:
        a type the scene cannot support, e.g. no objects, is simply left out)."""
        facts = scene_facts(scene)
        rows = []
        for slot, kind in enumerate(types):
            rng = scene_rng(self.seed, scene.id, f"{kind}-{slot}")
            made = {
                "conversation": self.conversation,
                "complex_reasoning": self.complex_reasoning,
                "detailed_description": self.description,
            }[kind](facts, rng)
            if made is not None:
                messages, boxes = made
                rows.append(make_row(scene, kind, f"{kind}-{slot}", messages, boxes))
        return rows, 0

    def conversation(self, facts: SceneFacts, rng):
        order = rng.permutation(len(CONVERSATION_QUESTIONS))
        turns, boxes = [], []
        for index in order:
            made = CONVERSATION_QUESTIONS[index](facts, rng)
            if made is None:
                continue
            question, answer, named = made
            turns += [user(question, with_image=not turns), assistant(answer)]
            boxes += [box for box in named if box not in boxes]
            if len(turns) >= 2 * int(rng.integers(3, 6)):
                break
        if len(turns) < 4:  # a "multi-round" conversation needs two rounds at least
            return None
        return turns, boxes

    def complex_reasoning(self, facts: SceneFacts, rng):
        for index in rng.permutation(len(COMPLEX_REASONING_QUESTIONS)):
            made = COMPLEX_REASONING_QUESTIONS[index](facts, rng)
            if made is not None:
                question, answer, boxes = made
                return single_turn(question, answer), boxes
        return None

    def description(self, facts: SceneFacts, rng):
        if not facts.objects and not math.isfinite(facts.room_depth):
            return None
        return single_turn(str(rng.choice(DESCRIPTION_REQUESTS)), detailed_description(facts, rng)), []

    # ---------------------------------------------------------------- benchmark-skill multiple choice

    def multiple_choice(
        self, scene: Scene, skills=BENCHMARK_SKILLS, per_skill: int | Mapping[str, int] = 1
    ) -> list[dict]:
        """Up to `per_skill` multiple-choice rows per skill (one count for all, or a count per skill: a skill the
        mapping leaves out gets none). The k-th (k >= 1) draws its own object, pair or options and has the id
        suffix `mc-<skill>-<k+1>` (the first keeps `mc-<skill>`)."""
        counts = per_skill if isinstance(per_skill, Mapping) else dict.fromkeys(skills, per_skill)
        negative = {skill: count for skill, count in counts.items() if count < 0}
        if negative:
            raise ValueError(f"per_skill: expected counts >= 0, got {negative}")
        facts = scene_facts(scene)
        rows = []
        for skill in skills:
            for k in range(counts.get(skill, 0)):
                key = f"mc-{skill}" if k == 0 else f"mc-{skill}-{k + 1}"
                made = getattr(self, f"mc_{skill}")(facts, scene_rng(self.seed, scene.id, key))
                if made is None:
                    continue
                question, options, answer_index, boxes = made
                named = skill != "distance_judgment" or self._keep_named_distance(scene, key, options, answer_index)
                if skill == "distance_judgment" and self.distance_regions:
                    if named:
                        rows.append(self._region_row(scene, key, question, options, answer_index, boxes))
                    if self.unnamed_distance:
                        rows += self._unnamed_region_rows(scene, facts, key, answer_index, boxes)
                    continue
                if not named:
                    continue
                messages = single_turn(format_multiple_choice(question, options), answer_text(options, answer_index))
                rows.append(make_row(scene, "conversation", key, messages, boxes))
        return rows

    def _unnamed_region_rows(self, scene: Scene, facts: SceneFacts, key: str, answer_index: int, boxes) -> list[dict]:
        """The Distance row naming no object: about the named row's pair ("twin"), or a pair of its own ("own")."""
        if self.unnamed_distance == "own":
            made = self.mc_distance_judgment(facts, scene_rng(self.seed, scene.id, f"{key}-unnamed-pair"))
            if made is None:
                return []
            _, _, answer_index, boxes = made
        question = str(scene_rng(self.seed, scene.id, f"{key}-unnamed").choice(UNNAMED_FARTHER_QUESTIONS))
        return [self._region_row(scene, f"{key}-unnamed", question, list(UNNAMED_REGIONS), answer_index, boxes)]

    def _keep_named_distance(self, scene: Scene, key: str, options: list[str], answer_index: int) -> bool:
        """Whether the named Distance row stays (always, unless the names are balanced and point to the answer)."""
        if self.farther_prior is None:
            return True
        far, near = options[answer_index], options[1 - answer_index]
        if not self.farther_prior.points_to(far, near):
            return True
        right = self.farther_prior.right_share
        keep = (1 - right) / right if right > 0.5 else 1.0  # prior-right rows thinned to as many as prior-wrong
        return bool(scene_rng(self.seed, scene.id, f"{key}-keep").random() < keep)

    @staticmethod
    def _region_row(scene: Scene, key: str, question: str, options: list[str], answer_index: int, boxes) -> dict:
        """A multiple-choice row in the per-option region layout: one image per option, masked to its box."""
        layout = region_layout(question, options, boxes)
        messages = [{"role": "user", "content": layout.content}, assistant(region_answer_text(options, answer_index))]
        row = make_row(scene, "conversation", key, messages, [])
        row["boxes"] = layout.boxes
        return row

    @staticmethod
    def _place_answer(answer: str, distractors: list[str], rng) -> tuple[list[str], int]:
        """Options with the answer at a uniformly drawn position, so every letter is right equally often."""
        position = int(rng.integers(len(distractors) + 1))
        options = list(distractors)
        options.insert(position, answer)
        return options, position

    def _draw_order(self, candidates: list[str], rng, weighted: bool) -> list[int]:
        """The order candidates are tried in: uniform, or in proportion to `name_weights` when asked."""
        if not (weighted and self.name_weights and candidates):
            return list(rng.permutation(len(candidates)))
        floor = min((w for w in self.name_weights.values() if w > 0), default=1.0) / 10  # unseen names: rarely
        weights = np.array([max(self.name_weights.get(name, 0.0), floor) for name in candidates], dtype=float)
        return list(rng.choice(len(candidates), size=len(candidates), replace=False, p=weights / weights.sum()))

    def _distractors(
        self, pool: list[str], avoid: list[str], count: int, rng, same=vocab.confusable, weighted: bool = False
    ) -> list[str] | None:
        candidates = [name for name in pool if not any(same(name, other) for other in avoid)]
        chosen: list[str] = []
        for index in self._draw_order(candidates, rng, weighted):
            name = candidates[index]
            if not any(same(name, other) for other in chosen):
                chosen.append(name)
            if len(chosen) == count:
                return chosen
        return None

    def mc_scene_classification(self, facts: SceneFacts, rng):
        # Only room types the options can be drawn against ("indoor" vs "kitchen" would have two right answers).
        if facts.scene_type not in self.scene_vocabulary:
            return None
        distractors = self._distractors(
            self.scene_vocabulary, [facts.scene_type], 2, rng, same=vocab.scenes_confusable
        )
        if distractors is None:
            return None
        options, index = self._place_answer(facts.scene_type, distractors, rng)
        return str(rng.choice(SCENE_QUESTIONS)), options, index, []

    def mc_recognition(self, facts: SceneFacts, rng):
        if not facts.unique:
            return None
        target = facts.unique[int(rng.integers(len(facts.unique)))]
        # Distractors are absent from the whole scene, so no option is right under another box.
        distractors = self._distractors(
            self.object_vocabulary, list(facts.counts), 3, rng, weighted="recognition" in self.balanced_skills
        )
        if distractors is None:
            return None
        options, index = self._place_answer(target.name, distractors, rng)
        return str(rng.choice(RECOGNITION_QUESTIONS)), options, index, [list(target.box)]

    def mc_distance_judgment(self, facts: SceneFacts, rng):
        pairs = [
            (a, b)
            for i, a in enumerate(facts.unique)
            for b in facts.unique[i + 1 :]
            if facts.clearly_apart(a, b) and not vocab.confusable(a.name, b.name)
        ]
        if not pairs:
            return None
        a, b = pairs[int(rng.integers(len(pairs)))]
        far, near = (a, b) if a.depth > b.depth else (b, a)
        options, index = self._place_answer(far.name, [near.name], rng)
        question = str(rng.choice(FARTHER_QUESTIONS)).format(a=options[0], b=options[1])
        return question, options, index, [list(far.box) if o == far.name else list(near.box) for o in options]

    def mc_security(self, facts: SceneFacts, rng):
        present = sorted({fact.name for fact in facts.objects})  # options the depth map visibly shows
        if len(present) < 3:
            return None
        chosen: list[str] = []
        for index in rng.permutation(len(present)):
            if not any(vocab.confusable(present[index], other) for other in chosen):
                chosen.append(present[index])
            if len(chosen) == 3:
                break
        if len(chosen) < 3:
            return None
        # The renderer knows what is plausible for the room and not in it at all (not even hidden): prefer that.
        pool = [vocab.normalize_object_name(n) for n in facts.scene.meta.get("absent_categories", [])]
        pool = [n for n in pool if vocab.is_question_worthy(n)] or self.object_vocabulary
        absent = self._distractors(
            pool, present + list(facts.counts), 1, rng, weighted="security" in self.balanced_skills
        )
        if absent is None:
            return None
        order = rng.permutation(3)
        options, index = self._place_answer(absent[0], [chosen[i] for i in order], rng)
        return str(rng.choice(ABSENT_QUESTIONS)), options, index, []
