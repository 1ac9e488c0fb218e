"""COCO 2017 reader: captions + instances json -> per-image boxes, instance masks, names, captions.

Masks are decoded here (polygons with PIL, RLE with the COCO run-length rules) so that pycocotools
is not a dependency. Boxes are converted from COCO's `[x, y, w, h]` to the project's `[x0, y0, x1, y1]`.

Indoor/outdoor: COCO has no scene label, so a coarse one is derived from the supercategories of the
annotated objects: furniture, kitchen, appliance, electronic, food and "indoor" things count as
indoor evidence; vehicle, animal, sports and "outdoor" things (traffic light, bench, ...) count as
outdoor evidence; person and accessory count for neither. More indoor than outdoor instances ->
"indoor", more outdoor -> "outdoor", no evidence or a tie -> None (unknown). It is a heuristic and the
card says so.

A json that lacks a field is not fatal: the record that lacks it is skipped and counted in
`CocoAnnotations.skipped` (e.g. `{"annotation without bbox": 3}`).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from dataset_scripts.scene import Scene, SceneObject

INDOOR_SUPERCATEGORIES = frozenset({"furniture", "kitchen", "appliance", "electronic", "food", "indoor"})
OUTDOOR_SUPERCATEGORIES = frozenset({"vehicle", "animal", "sports", "outdoor"})

# The 80 category names of COCO 2017 (instances json `categories[].name`), in id order.
COCO_CATEGORY_NAMES = (
    "person",
    "bicycle",
    "car",
    "motorcycle",
    "airplane",
    "bus",
    "train",
    "truck",
    "boat",
    "traffic light",
    "fire hydrant",
    "stop sign",
    "parking meter",
    "bench",
    "bird",
    "cat",
    "dog",
    "horse",
    "sheep",
    "cow",
    "elephant",
    "bear",
    "zebra",
    "giraffe",
    "backpack",
    "umbrella",
    "handbag",
    "tie",
    "suitcase",
    "frisbee",
    "skis",
    "snowboard",
    "sports ball",
    "kite",
    "baseball bat",
    "baseball glove",
    "skateboard",
    "surfboard",
    "tennis racket",
    "bottle",
    "wine glass",
    "cup",
    "fork",
    "knife",
    "spoon",
    "bowl",
    "banana",
    "apple",
    "sandwich",
    "orange",
    "broccoli",
    "carrot",
    "hot dog",
    "pizza",
    "donut",
    "cake",
    "chair",
    "couch",
    "potted plant",
    "bed",
    "dining table",
    "toilet",
    "tv",
    "laptop",
    "mouse",
    "remote",
    "keyboard",
    "cell phone",
    "microwave",
    "oven",
    "toaster",
    "sink",
    "refrigerator",
    "book",
    "clock",
    "vase",
    "scissors",
    "teddy bear",
    "hair drier",
    "toothbrush",
)


@dataclass
class CocoObject:
    name: str
    supercategory: str
    box: tuple[float, float, float, float]  # x0, y0, x1, y1
    segmentation: Any = None  # polygons (list of lists) or RLE dict; None = box only
    annotation_id: int = -1


@dataclass
class CocoImage:
    image_id: int
    file_name: str
    width: int
    height: int
    captions: list[str] = field(default_factory=list)
    objects: list[CocoObject] = field(default_factory=list)

    @property
    def scene_id(self) -> str:
        return f"coco-{self.image_id:012d}"

    @property
    def indoor_outdoor(self) -> str | None:
        votes = Counter()
        for obj in self.objects:
            if obj.supercategory in INDOOR_SUPERCATEGORIES:
                votes["indoor"] += 1
            elif obj.supercategory in OUTDOOR_SUPERCATEGORIES:
                votes["outdoor"] += 1
        if votes["indoor"] == votes["outdoor"]:
            return None
        return "indoor" if votes["indoor"] > votes["outdoor"] else "outdoor"

    def to_scene(self, depth: np.ndarray, rgb: np.ndarray | None = None, split: str | None = None) -> Scene:
        """A `Scene` with predicted depth; masks are decoded at the depth map's resolution."""
        height, width = depth.shape
        sx, sy = width / self.width, height / self.height
        objects = []
        for obj in self.objects:
            box = (obj.box[0] * sx, obj.box[1] * sy, obj.box[2] * sx, obj.box[3] * sy)
            mask = None
            if obj.segmentation is not None:
                mask = decode_segmentation(obj.segmentation, self.height, self.width)
                if mask.shape != depth.shape:
                    mask = np.asarray(Image.fromarray(mask).resize((width, height), Image.NEAREST))
            objects.append(SceneObject(name=obj.name, box=box, mask=mask, instance_id=obj.annotation_id))
        return Scene(
            id=self.scene_id,
            source="coco",
            depth=depth,
            objects=objects,
            scene_type=self.indoor_outdoor,
            rgb=rgb,
            captions=list(self.captions),
            depth_is_predicted=True,
            split=split,
            meta={"coco_image_id": self.image_id, "file_name": self.file_name},
        )


@dataclass
class CocoAnnotations:
    images: dict[int, CocoImage]
    skipped: Counter = field(default_factory=Counter)
    image_dir: Path | None = None

    def image_path(self, image: CocoImage) -> Path:
        if self.image_dir is None:
            raise ValueError("this CocoAnnotations was read without an image directory")
        return self.image_dir / image.file_name


def _require(record: dict, keys: tuple[str, ...]) -> str | None:
    """The first missing key, or None when the record has them all."""
    for key in keys:
        if key not in record or record[key] is None:
            return key
    return None


def _read_json(path: Path) -> dict:
    if not path.exists():
        raise FileNotFoundError(f"COCO annotation file not found: {path}")
    with path.open() as handle:
        data = json.load(handle)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a COCO json object, got {type(data).__name__}")
    return data


def read_coco(coco_dir: str | Path, split: str = "val2017") -> CocoAnnotations:
    """Read `annotations/{captions,instances}_<split>.json` (and find images in `<split>/`)."""
    coco_dir = Path(coco_dir)
    captions = _read_json(coco_dir / "annotations" / f"captions_{split}.json")
    instances = _read_json(coco_dir / "annotations" / f"instances_{split}.json")
    result = parse_coco(captions, instances)
    result.image_dir = coco_dir / split
    return result


def parse_coco(captions: dict, instances: dict) -> CocoAnnotations:
    skipped: Counter = Counter()
    images: dict[int, CocoImage] = {}
    for source in (instances, captions):
        for record in source.get("images", []):
            missing = _require(record, ("id", "file_name", "width", "height"))
            if missing:
                skipped[f"image without {missing}"] += 1
                continue
            images.setdefault(
                int(record["id"]),
                CocoImage(
                    int(record["id"]), str(record["file_name"]), int(record["width"]), int(record["height"])
                ),
            )

    categories = {}
    for record in instances.get("categories", []):
        missing = _require(record, ("id", "name"))
        if missing:
            skipped[f"category without {missing}"] += 1
            continue
        categories[int(record["id"])] = (
            str(record["name"]).lower(),
            str(record.get("supercategory", "")).lower(),
        )

    for record in captions.get("annotations", []):
        missing = _require(record, ("image_id", "caption"))
        if missing:
            skipped[f"caption without {missing}"] += 1
        elif int(record["image_id"]) not in images:
            skipped["caption of an unknown image"] += 1
        else:
            images[int(record["image_id"])].captions.append(" ".join(str(record["caption"]).split()))

    for record in instances.get("annotations", []):
        missing = _require(record, ("image_id", "category_id", "bbox"))
        if missing:
            skipped[f"annotation without {missing}"] += 1
            continue
        image = images.get(int(record["image_id"]))
        if image is None:
            skipped["annotation of an unknown image"] += 1
            continue
        if int(record["category_id"]) not in categories:
            skipped["annotation of an unknown category"] += 1
            continue
        if record.get("iscrowd", 0):
            # A crowd region is many instances under one label: no single object depth to speak of.
            skipped["crowd annotation"] += 1
            continue
        x, y, w, h = (float(v) for v in record["bbox"])
        if w <= 0 or h <= 0:
            skipped["annotation with an empty bbox"] += 1
            continue
        name, supercategory = categories[int(record["category_id"])]
        image.objects.append(
            CocoObject(
                name,
                supercategory,
                (x, y, x + w, y + h),
                record.get("segmentation") or None,
                int(record.get("id", -1)),
            )
        )
    return CocoAnnotations(images=dict(sorted(images.items())), skipped=skipped)


def decode_rle_string(counts: str) -> list[int]:
    """COCO's compressed RLE string -> run lengths (6-bit chunks, 5 data bits, deltas from two runs back)."""
    runs: list[int] = []
    position = 0
    while position < len(counts):
        value, shift, more = 0, 0, True
        while more:
            chunk = ord(counts[position]) - 48
            value |= (chunk & 0x1F) << (5 * shift)
            more = bool(chunk & 0x20)
            position += 1
            shift += 1
            if not more and chunk & 0x10:
                value |= -1 << (5 * shift)
        if len(runs) > 2:
            value += runs[-2]
        runs.append(value)
    return runs


def decode_rle(rle: dict) -> np.ndarray:
    """An RLE dict (`counts` as list or compressed string, `size` [h, w]) -> bool HxW mask."""
    if "size" not in rle or "counts" not in rle:
        raise ValueError(f"RLE segmentation needs 'size' and 'counts', got keys {sorted(rle)}")
    height, width = (int(v) for v in rle["size"])
    counts = rle["counts"]
    runs = decode_rle_string(counts) if isinstance(counts, str) else [int(c) for c in counts]
    flat = np.zeros(height * width, dtype=bool)
    position, value = 0, False
    for run in runs:
        if value:
            flat[position : position + run] = True
        position += run
        value = not value
    # COCO runs go down the columns (Fortran order).
    return flat.reshape((width, height)).T


def decode_polygons(polygons: list[list[float]], height: int, width: int) -> np.ndarray:
    """Polygons [x1, y1, x2, y2, ...] -> bool mask of the pixels whose centre lies inside any of them.

    Testing pixel centres keeps the mask's area close to the polygon's (COCO's `area`); drawing the
    outline as well, as PIL's polygon fill does, inflates small objects by their perimeter.
    """
    from matplotlib.path import Path as PolygonPath

    mask = np.zeros((height, width), dtype=bool)
    for polygon in polygons:
        if len(polygon) < 6:
            continue
        points = np.asarray(polygon[: len(polygon) // 2 * 2], dtype=np.float64).reshape(-1, 2)
        x0, y0 = np.clip(np.floor(points.min(axis=0)).astype(int), 0, None)
        x1 = min(int(np.ceil(points[:, 0].max())) + 1, width)
        y1 = min(int(np.ceil(points[:, 1].max())) + 1, height)
        if x1 <= x0 or y1 <= y0:
            continue
        ys, xs = np.mgrid[y0:y1, x0:x1]
        centres = np.column_stack([xs.ravel() + 0.5, ys.ravel() + 0.5])
        inside = PolygonPath(points).contains_points(centres).reshape(ys.shape)
        mask[y0:y1, x0:x1] |= inside
    return mask


def decode_segmentation(segmentation: Any, height: int, width: int) -> np.ndarray:
    if isinstance(segmentation, dict):
        return decode_rle(segmentation)
    if isinstance(segmentation, list):
        return decode_polygons(segmentation, height, width)
    raise ValueError(f"segmentation must be a polygon list or an RLE dict, got {type(segmentation).__name__}")


def load_rgb(path: str | Path) -> Image.Image:
    with Image.open(path) as image:
        return image.convert("RGB")
