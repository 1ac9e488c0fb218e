"""Small datasets in the pairs / instruction schemas, for tests, benches and CPU smoke runs.

Each depth map is a room-like box (a floor ramp and a back wall) with a few rectangular objects at
their own depths; the scene label decides the object names. Deterministic from the seed. Real runs use
the datasets built by dataset_scripts (`deepsight data ...`), which share these schemas
(docs/CONTRACTS.md).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

SCENE_OBJECTS = {
    "bedroom": ("bed", "lamp", "night stand"),
    "kitchen": ("table", "chair", "refrigerator"),
    "office": ("desk", "chair", "monitor"),
    "bathroom": ("toilet", "sink", "bathtub"),
}


def _render(rng: np.random.Generator, scene: str, height: int, width: int):
    rows = np.linspace(1.0, 0.0, height, dtype=np.float32)[:, None]
    depth = np.broadcast_to(1.5 + 3.5 * (1 - rows), (height, width)).copy() + rng.normal(
        0, 0.02, (height, width)
    )
    names, boxes, depths = [], [], []
    for name in rng.choice(SCENE_OBJECTS[scene], size=2, replace=False):
        w, h = int(rng.integers(width // 6, width // 3)), int(rng.integers(height // 6, height // 3))
        x0, y0 = int(rng.integers(0, width - w)), int(rng.integers(0, height - h))
        d = float(rng.uniform(1.0, 4.0))
        depth[y0 : y0 + h, x0 : x0 + w] = d
        names.append(str(name))
        boxes.append([float(x0), float(y0), float(x0 + w), float(y0 + h)])
        depths.append(d)
    depth[rng.random((height, width)) < 0.01] = 0.0  # sensor holes: 0 = invalid
    png = Image.fromarray(np.clip(depth * 1000, 0, 65535).astype(np.uint16))
    return png, names, boxes, depths


def make_pairs_rows(n: int, seed: int = 0, height: int = 48, width: int = 64) -> list[dict]:
    """Rows of the pairs schema (id, source, depth, caption(s), caption_scores, boxes, labels, scene...)."""
    rng = np.random.default_rng(seed)
    scenes = sorted(SCENE_OBJECTS)
    rows = []
    for i in range(n):
        scene = scenes[i % len(scenes)]
        depth, names, boxes, _ = _render(rng, scene, height, width)
        caption = f"a depth image of a {scene} with a {names[0]} and a {names[1]}."
        rows.append(
            {
                "id": f"smoke-{seed}-{i}",
                "source": "smoke",
                "depth": depth,
                "caption": caption,
                "captions": [caption, f"a {scene}."],
                "caption_scores": [1.0, 0.5],
                "boxes": boxes,
                "labels": names,
                "scene": scene,
                "depth_is_predicted": False,
            }
        )
    return rows


def make_instruction_rows(n: int, seed: int = 0, height: int = 48, width: int = 64) -> list[dict]:
    """Rows of the instruction schema (TRL conversational messages, images [depth], boxes per image)."""
    rng = np.random.default_rng(seed + 10_000)
    scenes = sorted(SCENE_OBJECTS)
    rows = []
    for i in range(n):
        scene = scenes[i % len(scenes)]
        depth, names, boxes, depths = _render(rng, scene, height, width)
        nearer = names[int(np.argmin(depths))]
        messages = [
            {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What room is this?"}]},
            {"role": "assistant", "content": [{"type": "text", "text": f"It is a {scene}."}]},
        ]
        if i % 2 == 0:  # half the rows are two-turn conversations about the boxed objects
            messages += [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": f"Which is closer, the {names[0]} or the {names[1]}?"}
                    ],
                },
                {"role": "assistant", "content": [{"type": "text", "text": f"The {nearer} is closer."}]},
            ]
        rows.append(
            {
                "id": f"smoke-inst-{seed}-{i}",
                "type": "conversation" if i % 2 == 0 else "detailed_description",
                "messages": messages,
                "images": [depth],
                "boxes": [boxes if i % 2 == 0 else []],
                "source": "smoke",
            }
        )
    return rows


def save_smoke_dataset(folder: str | Path, kind: str, n_train: int, n_test: int = 0, seed: int = 0) -> Path:
    """Write a `save_to_disk` DatasetDict of smoke rows ("pairs" or "instructions") and return the folder."""
    from datasets import Dataset, DatasetDict, Features, Image as ImageFeature, List, Value

    makers = {"pairs": make_pairs_rows, "instructions": make_instruction_rows}
    if kind not in makers:
        raise ValueError(f"kind: expected one of {sorted(makers)}, got {kind!r}")
    if kind == "pairs":
        features = Features(
            {
                "id": Value("string"),
                "source": Value("string"),
                "depth": ImageFeature(),
                "caption": Value("string"),
                "captions": List(Value("string")),
                "caption_scores": List(Value("float32")),
                "boxes": List(List(Value("float32"))),
                "labels": List(Value("string")),
                "scene": Value("string"),
                "depth_is_predicted": Value("bool"),
            }
        )
    else:
        block = {"type": Value("string"), "text": Value("string")}
        features = Features(
            {
                "id": Value("string"),
                "type": Value("string"),
                "messages": List({"role": Value("string"), "content": List(block)}),
                "images": List(ImageFeature()),
                "boxes": List(List(List(Value("float32")))),
                "source": Value("string"),
            }
        )
    splits = {"train": makers[kind](n_train, seed)}
    if n_test:
        splits["test"] = makers[kind](n_test, seed + 1)
    dataset = DatasetDict({name: Dataset.from_list(rows, features=features) for name, rows in splits.items()})
    dataset.save_to_disk(str(folder))
    return Path(folder)
