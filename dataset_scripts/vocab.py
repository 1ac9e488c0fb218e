"""One object / scene vocabulary across NYU, SUN RGB-D and the synthetic world.

Raw names differ in case, separators and wording ("night_stand", "nightstand", "Night Stand"); the
benchmark needs one spelling per concept so that a distractor is never the answer under another name.
`normalize_object_name` folds spelling and true synonyms onto one canonical name; `CONFUSABLE_GROUPS`
lists different concepts still too close to be fair distractors of each other (a desk vs a table).
"""

from __future__ import annotations

import re

# raw spelling (after lower-casing and separator folding) -> canonical name
OBJECT_SYNONYMS: dict[str, str] = {
    "nightstand": "night stand",
    "night table": "night stand",
    "bedside table": "night stand",
    "couch": "sofa",
    "settee": "sofa",
    "tv": "television",
    "tv stand": "television stand",
    "television set": "television",
    "monitor": "computer monitor",
    "computer screen": "computer monitor",
    "book shelf": "bookshelf",
    "bookcase": "bookshelf",
    "book case": "bookshelf",
    "books": "book",
    "fridge": "refrigerator",
    "refridgerator": "refrigerator",  # sic, in the NYU-40 / SUN-37 class lists
    "shelves": "shelf",
    "garbage bin": "trash can",
    "garbage can": "trash can",
    "waste bin": "trash can",
    "wastebasket": "trash can",
    "recycle bin": "trash can",
    "bin": "trash can",
    "tap": "faucet",
    "wc": "toilet",
    "toilet seat": "toilet",
    "pillows": "pillow",
    "cushion": "pillow",
    "rug": "carpet",
    "floor mat": "carpet",
    "blinds": "blind",
    "curtains": "curtain",
    "drape": "curtain",
    "drapes": "curtain",
    "whiteboard": "white board",
    "blackboard": "black board",
    "chalkboard": "black board",
    "lamp shade": "lamp",
    "table lamp": "lamp",
    "floor lamp": "lamp",
    "ottoman": "stool",
    "footstool": "stool",
    "dresser mirror": "mirror",
    "sink counter": "counter",
    "countertop": "counter",
    "kitchen counter": "counter",
    "bath tub": "bathtub",
    "tub": "bathtub",
    "cupboard": "cabinet",
    "kitchen cabinet": "cabinet",
    "file cabinet": "filing cabinet",
    "office chair": "chair",
    "desk chair": "chair",
    "armchair": "chair",
    "arm chair": "chair",
    "laptop computer": "laptop",
    "notebook computer": "laptop",
    "printer machine": "printer",
    "plant pot": "plant",
    "potted plant": "plant",
    "flower pot": "plant",
    "photo": "picture",
    "painting": "picture",
    "poster": "picture",
    "frame": "picture",
    "picture frame": "picture",
}

# different concepts a person could reasonably confuse; never offered against each other
CONFUSABLE_GROUPS: list[frozenset[str]] = [
    frozenset({"table", "desk", "coffee table", "dining table", "side table", "end table", "counter"}),
    frozenset({"chair", "stool", "sofa", "bench", "sofa chair"}),
    frozenset(
        {
            "cabinet",
            "dresser",
            "drawer",
            "chest",
            "wardrobe",
            "closet",
            "filing cabinet",
            "shelf",
            "bookshelf",
        }
    ),
    frozenset({"television", "computer monitor", "screen", "laptop"}),
    frozenset({"picture", "mirror", "white board", "black board"}),
    frozenset({"curtain", "blind", "window"}),
    frozenset({"pillow", "blanket", "bed"}),
    frozenset({"box", "bag", "basket", "container"}),
    frozenset({"sink", "bathtub"}),
    frozenset({"night stand", "side table", "end table", "dresser"}),
    frozenset({"lamp", "light"}),
    frozenset({"door", "doorframe"}),
]

# names that describe structure or nothing at all, never a sensible question target
STRUCTURAL_NAMES = frozenset(
    {
        "wall",
        "floor",
        "ceiling",
        "unknown",
        "other",
        "others",
        "otherprop",
        "otherstructure",
        "otherfurniture",
        "object",
        "objects",
        "stuff",
        "misc",
        "",
    }
)

# ImageBind / LanguageBind NYU-D zero-shot protocol: 9 named classes, every other NYU scene type is "others"
NYU10_CLASSES: tuple[str, ...] = (
    "bathroom",
    "bedroom",
    "bookstore",
    "classroom",
    "dining room",
    "home office",
    "kitchen",
    "living room",
    "office",
    "others",
)
NYU10_NAMED_CLASSES: tuple[str, ...] = NYU10_CLASSES[:-1]  # without the catch-all "others"

# Scene-classification questions are asked only for scenes in this list and take their wrong options from it:
# it holds every NYU-D class the benchmark asks about, plus other common indoor scenes.
SCENE_VOCABULARY: tuple[str, ...] = (
    *NYU10_NAMED_CLASSES,
    "conference room",
    "corridor",
    "library",
    "furniture store",
    "lab",
)
# The objects the instruction generators know by name: Recognition's wrong options, Security's absent objects.
OBJECT_VOCABULARY: tuple[str, ...] = (
    "bathtub",
    "bed",
    "bookshelf",
    "box",
    "cabinet",
    "chair",
    "computer monitor",
    "counter",
    "curtain",
    "desk",
    "door",
    "dresser",
    "lamp",
    "laptop",
    "mirror",
    "night stand",
    "picture",
    "pillow",
    "plant",
    "refrigerator",
    "shelf",
    "sink",
    "sofa",
    "table",
    "television",
    "toilet",
    "towel",
    "trash can",
    "whiteboard",
    "window",
    "printer",
    "piano",
    "stool",
    "bench",
    "oven",
    "microwave",
    "clock",
    "vase",
    "bottle",
    "cup",
    "bowl",
    "book",
    "keyboard",
    "backpack",
    "suitcase",
    "umbrella",
    "fan",
    "radiator",
)

# spellings of one scene concept across sources
SCENE_SYNONYMS: dict[str, str] = {
    "computer lab": "computer room",
    "lecture hall": "lecture theatre",
    "lecture theater": "lecture theatre",
}

# scene classes too close to be fair distractors of each other (SUN RGB-D keeps them apart as labels)
SCENE_CONFUSABLE_GROUPS: list[frozenset[str]] = [
    frozenset({"dining room", "dining area", "dinette"}),
    frozenset({"office", "home office", "study space", "study", "study room"}),
    frozenset({"classroom", "lecture theatre"}),
    frozenset({"lab", "computer room"}),
    frozenset({"rest space", "discussion area", "living room"}),
    frozenset({"library", "bookstore"}),
]


def fold_name(raw: str) -> str:
    """Lower case, '_' / '-' / repeated blanks -> one space, trailing instance digits dropped."""
    name = str(raw).strip().lower()
    name = re.sub(r"[_\-/]+", " ", name)
    name = re.sub(r"\s*\d+$", "", name)  # "chair 2", "chair_2"
    return re.sub(r"\s+", " ", name).strip()


def normalize_object_name(raw: str) -> str:
    """The canonical object name ("Night_Stand" -> "night stand", "couch" -> "sofa")."""
    name = fold_name(raw)
    return OBJECT_SYNONYMS.get(name, name)


def is_question_worthy(name: str) -> bool:
    """False for structure (wall, floor) and catch-all names, which make meaningless questions."""
    return name not in STRUCTURAL_NAMES and not name.startswith("other")


def confusable(a: str, b: str) -> bool:
    """True when `a` and `b` are the same concept or too close to be fair distractors of each other."""
    if a == b:
        return True
    if a in b.split() or b in a.split():  # "table" / "coffee table"
        return True
    return any(a in group and b in group for group in CONFUSABLE_GROUPS)


def normalize_scene_name(raw: str) -> str:
    """Scene type in the benchmark's style ("living_room" -> "living room", "dinette" -> "dining room")."""
    name = fold_name(raw)
    name = re.sub(r"\s*\d+[a-z]?$", "", name)  # NYU sequence ids like "kitchen_0028a"
    return SCENE_SYNONYMS.get(name, name)


def scenes_confusable(a: str, b: str) -> bool:
    """True when scene classes `a` and `b` should not be offered against each other."""
    return a == b or any(a in group and b in group for group in SCENE_CONFUSABLE_GROUPS)


def nyu10_scene_class(scene_type: str) -> str:
    """Map one of the 27 NYU scene types (any spelling) onto the 10-class zero-shot protocol."""
    name = fold_name(scene_type)
    return name if name in NYU10_NAMED_CLASSES else "others"
