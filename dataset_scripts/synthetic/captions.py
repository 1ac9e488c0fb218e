"""Captions of a synthetic scene from its scene graph, naming only objects that are annotated (visible).

Several styles per scene so a model cannot key on one template: an inventory, a sentence anchored on
the largest object with a relation of a smaller one ("... a lamp on the night stand to its left"),
relations, left/right layout, nearest/farthest object, and metric distances of a few objects (mean
depth over their masks, the same quantity the Distance Judgment task compares).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

_NUMBERS = (
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
)
_IRREGULAR_PLURALS = {"shelf": "shelves", "bookshelf": "bookshelves"}


@dataclass(frozen=True)
class CaptionObject:
    """What a caption may say about one visible object."""

    index: int  # scene-graph index
    name: str
    relation: dict
    centre_x: float  # box centre, pixels
    mean_depth: float  # metres
    pixels: int


def article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def plural(name: str) -> str:
    if name in _IRREGULAR_PLURALS:
        return _IRREGULAR_PLURALS[name]
    head, _, last = name.rpartition(" ")
    if last in _IRREGULAR_PLURALS:
        return f"{head} {_IRREGULAR_PLURALS[last]}".strip()
    if name.endswith(("s", "sh", "ch", "x")):
        return name + "es"
    return name + "s"


def counted(name: str, count: int) -> str:
    if count == 1:
        return f"{article(name)} {name}"
    number = _NUMBERS[count] if count < len(_NUMBERS) else str(count)
    return f"{number} {plural(name)}"


def join_words(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _inventory(scene_type: str, objects: list[CaptionObject], rng) -> str:
    counts = Counter(o.name for o in objects)
    order = sorted(counts, key=lambda n: -max(o.pixels for o in objects if o.name == n))
    listed = join_words([counted(n, counts[n]) for n in order])
    templates = (
        "{A} {scene} with {objects}.",
        "A depth view of {a} {scene} showing {objects}.",
        "This {scene} contains {objects}.",
        "Inside {a} {scene}: {objects}.",
    )
    template = templates[rng.integers(len(templates))]
    return template.format(
        A=article(scene_type).capitalize(), a=article(scene_type), scene=scene_type, objects=listed
    )


def _relation_phrase(obj: CaptionObject, by_index: dict[int, CaptionObject]) -> str | None:
    kind = obj.relation.get("type")
    if kind in ("against", "mounted"):
        return f"{'against' if kind == 'against' else 'on'} the {obj.relation['wall']}"
    target = by_index.get(obj.relation.get("target", -1))
    if target is None:  # the object it relates to is not visible: say nothing about it
        return None
    word = {"on": "on", "beside": "next to", "front": "in front of", "at": "at"}.get(kind)
    return None if word is None else f"{word} the {target.name}"


def _side(obj: CaptionObject, reference: CaptionObject) -> str:
    return "left" if obj.centre_x < reference.centre_x else "right"


def _anchored(scene_type: str, objects: list[CaptionObject], by_index, rng) -> str | None:
    anchors = [o for o in objects if o.relation.get("type") in ("against", "center", "row")]
    if not anchors:
        return None
    anchor = max(anchors, key=lambda o: o.pixels)
    head = f"{article(scene_type).capitalize()} {scene_type} with "
    if anchor.relation.get("type") == "row":
        rows = sum(o.relation.get("type") == "row" and o.name == anchor.name for o in objects)
        head += (
            f"{counted(anchor.name, rows)} in rows" if rows > 1 else f"{article(anchor.name)} {anchor.name}"
        )
    else:
        where = _relation_phrase(anchor, by_index) or "in the middle of the room"
        head += f"{article(anchor.name)} {anchor.name} {where}"
    others = [
        o
        for o in objects
        if o.index != anchor.index and o.relation.get("target") in by_index and o.name != anchor.name
    ]
    if not others:
        return head + "."
    other = others[rng.integers(len(others))]
    phrase = _relation_phrase(other, by_index)
    if other.relation.get("target") == anchor.index:
        return f"{head} and {article(other.name)} {other.name} {phrase}."
    return f"{head} and {article(other.name)} {other.name} {phrase} to its {_side(other, anchor)}."


def _relations(objects: list[CaptionObject], by_index, rng) -> str | None:
    # group identical statements: "three chairs are at the table", not the same sentence three times
    groups: dict[tuple[str, str], list[int]] = {}
    for obj in objects:
        phrase = _relation_phrase(obj, by_index)
        if phrase and obj.relation.get("type") in ("on", "beside", "front", "at", "mounted"):
            groups.setdefault((obj.name, phrase), []).append(obj.relation.get("target", -1))
    if not groups:
        return None
    sentences = []
    for (name, phrase), targets in groups.items():
        verb = "is" if len(targets) == 1 else "are"
        if len(set(targets)) > 1 and phrase.split(" the ", 1)[-1] in {o.name for o in objects}:
            # chairs at different desks are "at the desks"
            head, _, target_name = phrase.rpartition(" the ")
            phrase = f"{head} the {plural(target_name)}"
        sentences.append(f"{counted(name, len(targets)).capitalize()} {verb} {phrase}.")
    picks = rng.permutation(len(sentences))[: min(3, len(sentences))]
    return " ".join(sentences[i] for i in sorted(picks))


def _left_right(objects: list[CaptionObject], width: int) -> str | None:
    left = [o for o in objects if o.centre_x < width / 3]
    right = [o for o in objects if o.centre_x > 2 * width / 3]
    if not left or not right:
        return None
    big_left, big_right = max(left, key=lambda o: o.pixels), max(right, key=lambda o: o.pixels)
    left_phrase = f"{article(big_left.name)} {big_left.name}"
    right_phrase = f"{article(big_right.name)} {big_right.name}"
    return f"On the left there is {left_phrase}; on the right, {right_phrase}."


def _nearest_farthest(objects: list[CaptionObject]) -> str | None:
    valid = [o for o in objects if np.isfinite(o.mean_depth)]
    if len(valid) < 2:
        return None
    near = min(valid, key=lambda o: o.mean_depth)
    others = [o for o in valid if o.name != near.name]
    if not others:
        return None
    far = max(others, key=lambda o: o.mean_depth)
    if far.mean_depth - near.mean_depth < 0.3:
        return None
    return (
        f"The nearest object is the {near.name}, about {near.mean_depth:.1f} metres from the camera; "
        f"the farthest is the {far.name}, about {far.mean_depth:.1f} metres away."
    )


def _distances(objects: list[CaptionObject], rng) -> str | None:
    """Metric distances of up to three objects whose category appears once (so "the X" is unambiguous)."""
    counts = Counter(o.name for o in objects)
    unique = [o for o in objects if counts[o.name] == 1 and np.isfinite(o.mean_depth)]
    if len(unique) < 2:
        return None
    picks = [unique[i] for i in rng.permutation(len(unique))[:3]]
    picks.sort(key=lambda o: o.mean_depth)
    parts = [f"the {o.name} about {o.mean_depth:.1f} m" for o in picks]
    return f"Seen from the camera, {join_words(parts)} away."


def describe_scene(
    scene_type: str, objects: list[CaptionObject], width: int, rng: np.random.Generator
) -> list[str]:
    """Captions of one scene (at least one; the first is the most complete)."""
    if not objects:
        return [f"{article(scene_type).capitalize()} {scene_type} with no furniture in view."]
    by_index = {o.index: o for o in objects}
    captions = [
        _anchored(scene_type, objects, by_index, rng),
        _inventory(scene_type, objects, rng),
        _relations(objects, by_index, rng),
        _left_right(objects, width),
        _nearest_farthest(objects),
        _distances(objects, rng),
    ]
    return [c for c in captions if c]
