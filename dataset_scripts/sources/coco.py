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
`CocoAnnotations.skipped` (e.g. `{"annotation without bbox": 3}`), and so is a record with a NaN, infinite,
empty or outside box, an absurd polygon or RLE, a category outside COCO's 80, or anything else that
raises while it is parsed; the report's messages name the file and the record.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from dataset_scripts.scene import Scene, SceneObject
from dataset_scripts.sources.files import ReadReport

logger = logging.getLogger(__name__)

INDOOR_SUPERCATEGORIES = frozenset({"furniture", "kitchen", "appliance", "electronic", "food", "indoor"})
OUTDOOR_SUPERCATEGORIES = frozenset({"vehicle", "animal", "sports", "outdoor"})
# px a box or polygon may stray outside its image (COCO's own annotations stay within a fraction of one)
OUTSIDE_IMAGE_TOLERANCE = 2.0

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
    report: ReadReport = field(default_factory=ReadReport)
    image_dir: Path | None = None

    @property
    def skipped(self) -> Counter:
        """Records skipped, per reason (the report's dropped annotations)."""
        return self.report.dropped_annotations

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
    try:
        with path.open(encoding="utf-8") as handle:
            data = json.load(handle)
    except (ValueError, RecursionError) as err:  # not JSON, or nested too deeply to read
        raise ValueError(f"{path}: not a COCO json ({type(err).__name__}: {err})") from err
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a COCO json object, got {type(data).__name__}")
    return data


def read_coco(coco_dir: str | Path, split: str = "val2017") -> CocoAnnotations:
    """Read `annotations/{captions,instances}_<split>.json` (and find images in `<split>/`)."""
    coco_dir = Path(coco_dir)
    captions_path = coco_dir / "annotations" / f"captions_{split}.json"
    instances_path = coco_dir / "annotations" / f"instances_{split}.json"
    captions, instances = _read_json(captions_path), _read_json(instances_path)
    result = parse_coco(captions, instances, where=(str(captions_path), str(instances_path)))
    for message in result.report.messages:
        logger.warning(message)
    result.image_dir = coco_dir / split
    return result


def _integer(value: Any, what: str) -> int:
    """An id or size as an int; bools, fractions, NaN and text other than digits are malformed."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if not isinstance(value, (float, str)):
        raise ValueError(f"{what} {value!r:.40} is not an integer")
    number = float(value)
    if not np.isfinite(number) or number != int(number):
        raise ValueError(f"{what} {value!r:.40} is not an integer")
    return int(number)


def _numbers(values: Any) -> np.ndarray | None:
    """`values` as float64 when it is a list of plain numbers (NaN and inf included), else None."""
    if not isinstance(values, (list, tuple)):
        return None
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return None
    try:
        return np.asarray(values, dtype=np.float64)
    except OverflowError:  # an integer beyond float64
        return None


def _outside(xs: np.ndarray, ys: np.ndarray, width: int, height: int) -> bool:
    tolerance = OUTSIDE_IMAGE_TOLERANCE
    low = min(xs.min(), ys.min()) < -tolerance
    return bool(low or xs.max() > width + tolerance or ys.max() > height + tolerance)


def bbox_problem(bbox: Any, width: int, height: int) -> str | None:
    """Why a COCO `[x, y, w, h]` box cannot be used on a `width` x `height` image, or None when it can."""
    values = _numbers(bbox)
    if values is None or values.size != 4:
        return "annotation with a malformed bbox"
    if not np.isfinite(values).all():
        return "annotation with a NaN or infinite bbox"
    x, y, w, h = values
    if not (x + w > x and y + h > y):  # w or h <= 0, or too small to move the edge
        return "annotation with an empty bbox"
    if _outside(np.array([x, x + w]), np.array([y, y + h]), width, height):
        return "annotation with a bbox outside its image"
    return None


def _rle_problem(rle: dict, width: int, height: int) -> str | None:
    counts = rle.get("counts")
    try:
        size = [_integer(v, "RLE size") for v in rle.get("size", ())]
        runs = decode_rle_string(counts) if isinstance(counts, str) else [_integer(c, "run") for c in counts]
    except (TypeError, ValueError, IndexError):
        return "annotation with a malformed RLE"
    if size != [height, width] or min(runs, default=0) < 0 or sum(runs) != height * width:
        return "annotation with an RLE that does not cover its image"
    return None


def segmentation_problem(segmentation: Any, width: int, height: int) -> str | None:
    """Why a COCO segmentation (polygons or RLE) is absurd for a `width` x `height` image, or None."""
    if isinstance(segmentation, dict):
        return _rle_problem(segmentation, width, height)
    if not isinstance(segmentation, list):
        return "annotation with a malformed segmentation"
    area = 0.0
    for polygon in segmentation:
        coordinates = _numbers(polygon)
        if coordinates is None or coordinates.size < 6 or coordinates.size % 2:
            return "annotation with an absurd polygon"
        xs, ys = coordinates[0::2], coordinates[1::2]
        if not np.isfinite(coordinates).all() or _outside(xs, ys, width, height):
            return "annotation with an absurd polygon"
        area += 0.5 * abs(float(np.dot(xs, np.roll(ys, 1)) - np.dot(ys, np.roll(xs, 1))))
    return None if area > 0 else "annotation with an absurd polygon"


def _each_record(data: dict, key: str, what: str, where: str, report: ReadReport, parse) -> None:
    """`parse` each record of `data[key]`; one that raises is skipped and counted with file and position."""
    records = data.get(key, [])
    if not isinstance(records, list):
        raise ValueError(f"{where}: '{key}' must be a list of records, got {type(records).__name__}")
    for position, record in enumerate(records):
        try:
            if not isinstance(record, dict):
                raise ValueError(f"a {type(record).__name__}, not an object")
            parse(record, f"{where} {key}[{position}]")
        except Exception as err:  # whatever one record holds, the other records are still read
            record_id = record.get("id") if isinstance(record, dict) else None
            report.drop(
                f"malformed {what} record",
                f"{where} {key}[{position}] (id {record_id!r:.40}): {type(err).__name__}: {err}"[:300],
            )


def parse_coco(
    captions: dict,
    instances: dict,
    report: ReadReport | None = None,
    where: tuple[str, str] = ("captions", "instances"),
) -> CocoAnnotations:
    """Images, categories, captions and instances of COCO's two jsons; `where` names them in the report.

    A record that lacks a field, holds a NaN / infinite / empty / outside box or an absurd segmentation,
    names a category outside COCO's 80 or cannot be parsed at all is skipped and counted, never fatal.
    """
    report = report if report is not None else ReadReport()
    captions_where, instances_where = where
    images: dict[int, CocoImage] = {}
    categories: dict[int, tuple[str, str]] = {}

    def add_image(record: dict, at: str) -> None:
        missing = _require(record, ("id", "file_name", "width", "height"))
        if missing:
            report.drop(f"image without {missing}", at)
            return
        width, height = _integer(record["width"], "width"), _integer(record["height"], "height")
        if width <= 0 or height <= 0:
            report.drop("image of an empty size", at)
            return
        image_id = _integer(record["id"], "id")
        images.setdefault(image_id, CocoImage(image_id, str(record["file_name"]), width, height))

    def add_category(record: dict, at: str) -> None:
        missing = _require(record, ("id", "name"))
        if missing:
            report.drop(f"category without {missing}", at)
            return
        name = str(record["name"]).lower()
        if name not in COCO_CATEGORY_NAMES:
            report.drop("category of an unknown name", f"{at}: {name!r:.60} is not a COCO category")
            return
        categories[_integer(record["id"], "id")] = (name, str(record.get("supercategory", "")).lower())

    def add_caption(record: dict, at: str) -> None:
        missing = _require(record, ("image_id", "caption"))
        if missing:
            report.drop(f"caption without {missing}", at)
            return
        image = images.get(_integer(record["image_id"], "image_id"))
        caption = " ".join(record["caption"].split()) if isinstance(record["caption"], str) else ""
        if image is None:
            report.drop("caption of an unknown image", at)
        elif not caption:
            report.drop("caption that is no text", at)
        else:
            image.captions.append(caption)

    def add_annotation(record: dict, at: str) -> None:
        missing = _require(record, ("image_id", "category_id", "bbox"))
        if missing:
            report.drop(f"annotation without {missing}", at)
            return
        image = images.get(_integer(record["image_id"], "image_id"))
        if image is None:
            report.drop("annotation of an unknown image", at)
            return
        category = categories.get(_integer(record["category_id"], "category_id"))
        if category is None:
            report.drop("annotation of an unknown category", at)
            return
        if record.get("iscrowd", 0):
            # A crowd region is many instances under one label: no single object depth to speak of.
            report.drop("crowd annotation")
            return
        segmentation = record.get("segmentation") or None
        problem = bbox_problem(record["bbox"], image.width, image.height)
        if problem is None and segmentation is not None:
            problem = segmentation_problem(segmentation, image.width, image.height)
        if problem:
            report.drop(problem, at)
            return
        x, y, w, h = (float(v) for v in record["bbox"])
        name, supercategory = category
        annotation_id = _integer(record.get("id", -1), "id")
        box = (x, y, x + w, y + h)
        image.objects.append(CocoObject(name, supercategory, box, segmentation, annotation_id))

    for data, where_images in ((instances, instances_where), (captions, captions_where)):
        _each_record(data, "images", "image", where_images, report, add_image)
    _each_record(instances, "categories", "category", instances_where, report, add_category)
    _each_record(captions, "annotations", "caption", captions_where, report, add_caption)
    _each_record(instances, "annotations", "annotation", instances_where, report, add_annotation)
    return CocoAnnotations(images=dict(sorted(images.items())), report=report)


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
