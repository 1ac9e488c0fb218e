"""One-click examples: a few synthetic rooms rendered at start-up as 16-bit millimetre PNGs.

Rendering takes well under a second per room and keeps binaries out of the repository. Each example
comes with a question about the scene and, for object questions, the box of the object it names.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from modeling_deepsight.depth_codec_deepsight import depth_to_png_mm

from .inputs import format_boxes

logger = logging.getLogger(__name__)

EXAMPLE_SEEDS = (0, 1, 2)


@dataclass
class Example:
    path: str
    encoding: str
    boxes: str
    question: str
    options: str = ""  # "a; b": a multiple-choice question, as in the benchmark

    def as_row(self) -> list[str]:
        return [self.path, self.encoding, self.boxes, self.question, self.options]


def _questions_for(scene, scene_types: list[str]) -> list[tuple[str, str, str]]:
    """(boxes, question, options) a scene supports: its room type (multiple choice), one object's
    distance, and which of two objects is closer (multiple choice)."""
    others = [name for name in scene_types if name != scene.scene_type][:3]
    choices = sorted([scene.scene_type, *others]) if scene.scene_type else []
    questions = [("", "What kind of room is this?", "; ".join(choices))]
    objects = [obj for obj in scene.objects if obj.name]
    if objects:
        first = objects[0]
        question = f"How far from the camera is the {first.name}?"
        questions.append((format_boxes([list(first.box)]), question, ""))
    if len(objects) >= 2 and objects[0].name != objects[1].name:
        a, b = objects[0], objects[1]
        question = f"Which is closer to the camera, the {a.name} or the {b.name}?"
        questions.append((format_boxes([list(a.box), list(b.box)]), question, f"{a.name}; {b.name}"))
    return questions


def write_examples(directory: str | Path, seeds: tuple[int, ...] = EXAMPLE_SEEDS) -> list[Example]:
    """Render one synthetic scene per seed into `directory`; [] (logged) if the renderer is unavailable."""
    try:
        from dataset_scripts.synthetic.world import SCENE_TYPES, render_scene
    except ImportError as error:
        logger.warning("no synthetic examples: dataset_scripts.synthetic.world unavailable (%s)", error)
        return []
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    examples = []
    for index, seed in enumerate(seeds):
        # One room type per example (in the renderer's order), so the examples show different scenes.
        scene = render_scene(seed, scene_type=SCENE_TYPES[index % len(SCENE_TYPES)])
        name = f"synthetic-{seed}-{(scene.scene_type or 'room').replace(' ', '_')}.png"
        path = directory / name
        Image.fromarray(depth_to_png_mm(scene.depth)).save(path)
        questions = _questions_for(scene, SCENE_TYPES)
        boxes, question, options = questions[index % len(questions)]
        examples.append(Example(str(path), "auto", boxes, question, options))
    return examples
