"""The synthetic indoor depth world: furnished rooms ray-cast into metric depth with exact annotations.

`render_scene(seed)` samples a room of one of `SCENE_TYPES`, furnishes it from the scene type's
probability table of `OBJECT_CATEGORIES` (`dataset_scripts/synthetic/layout.py`), places a
Kinect-like pinhole camera at a random height and attitude, ray-casts depth, instance ids and normals
(`synthetic_geometry.py`), and returns a `Scene` with metric depth, masks and boxes of the visible
objects, a shaded pseudo-RGB, captions from the scene graph and the scene graph itself in `meta`.
`generate_scenes` yields reproducible, split-disjoint streams of scenes; `write_sunrgbd_layout`
writes scenes as SUNRGBD.zip frame folders so the real-data readers can be tested on files.

Command line: ``deepsight data synthetic --num-scenes N --seed S --split train --output DIR
[--format sunrgbd|npz] [--width W --height H] [--noise]``.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from tqdm.auto import tqdm

from dataset_scripts.scene import Scene, SceneObject
from dataset_scripts.synthetic.captions import CaptionObject, describe_scene
from dataset_scripts.synthetic.geometry import (
    NUM_ROOM_SURFACES,
    ROOM_SURFACES,
    Camera,
    RenderBuffers,
    camera_rotation,
    intrinsics_matrix,
    render_primitives,
    yaw_matrix,
)
from dataset_scripts.synthetic.layout import SCENE_SPECS, PlacedObject, furnish
from dataset_scripts.synthetic.objects import CATEGORIES
from deepsight.cli import HelpFormatter

SCENE_TYPES: list[str] = list(SCENE_SPECS)
OBJECT_CATEGORIES: list[str] = list(CATEGORIES)

# NYU Depth V2 Kinect intrinsics at 640x480 (the values shipped with the NYU toolbox)
KINECT_FX, KINECT_FY, KINECT_WIDTH = 518.8579, 519.46961, 640
# an object must show at least this many pixels, or this fraction of the frame, to be annotated
MIN_VISIBLE_PIXELS = 24
MIN_VISIBLE_FRACTION = 0.0004
# Kinect v1 reports disparity in 1/8 pixel steps: depth step = z^2 / (8 * focal * baseline)
KINECT_DEPTH_STEP_PER_M2 = 1.0 / (8 * 580.0 * 0.075)
CAMERA_ATTEMPTS = 3  # views tried before accepting one that shows no object
PREVIEW_SCENES = 6  # rows of the contact sheet the command line writes

_LIGHT = np.array([0.35, -0.45, 0.82], dtype=np.float32) / np.linalg.norm([0.35, -0.45, 0.82])


def scene_object_vocabulary(scene_type: str) -> list[str]:
    """Object categories the scene type can contain (what is plausible there, present or not)."""
    _check_scene_type(scene_type)
    names: list[str] = []
    for rule in SCENE_SPECS[scene_type].rules:
        if rule.category not in names:
            names.append(rule.category)
    return names


def _check_scene_type(scene_type: str) -> None:
    if scene_type not in SCENE_SPECS:
        raise ValueError(f"Unknown scene_type {scene_type!r}; expected one of {SCENE_TYPES}.")


def _check_size(width: int, height: int) -> None:
    if (
        not (isinstance(width, (int, np.integer)) and isinstance(height, (int, np.integer)))
        or width < 16
        or height < 16
    ):
        raise ValueError(f"width and height must be integers >= 16, got width={width!r}, height={height!r}.")


# --------------------------------------------------------------------------------------------------
# Room and camera
# --------------------------------------------------------------------------------------------------


def sample_room(rng: np.random.Generator, scene_type: str) -> tuple[float, float, float]:
    (w0, w1), (d0, d1), (h0, h1) = SCENE_SPECS[scene_type].room
    return float(rng.uniform(w0, w1)), float(rng.uniform(d0, d1)), float(rng.uniform(h0, h1))


def sample_camera_position(rng: np.random.Generator, room) -> np.ndarray:
    """Where a person holds the sensor: near the near wall, 1.0-1.8 m high."""
    room_w, room_d, room_h = room
    return np.array(
        [
            rng.uniform(0.3, 0.7) * room_w,
            rng.uniform(0.25, min(0.9, 0.25 * room_d)),
            min(rng.uniform(1.0, 1.8), room_h - 0.3),
        ]
    )


def sample_camera(
    rng: np.random.Generator,
    position: np.ndarray,
    placed: list[PlacedObject],
    width: int,
    height: int,
    aim_probability: float = 0.75,
) -> tuple[Camera, dict]:
    """A Kinect-like camera at `position`, usually aimed at furniture, with jittered attitude and K.

    Yaw is kept within +-0.6 rad of the room's depth axis so "far / left / right wall" stay true to the view.
    """
    large = [o for o in placed if o.relation.get("type") in ("against", "center", "row", "floor")]
    if large and rng.random() < aim_probability:
        target = large[int(rng.integers(len(large)))]
        aim = target.position[:2] - position[:2]
        yaw = float(np.arctan2(-aim[0], aim[1])) + rng.normal(0, 0.12)
        horizontal = max(float(np.hypot(*aim)), 0.5)
        centre_height = target.position[2] + target.size[2] / 2
        pitch = float(np.arctan2(centre_height - position[2], horizontal)) + rng.normal(0, 0.08)
    else:
        yaw = float(rng.uniform(-0.45, 0.45))
        pitch = float(rng.uniform(-0.45, -0.05))
    yaw = float(np.clip(yaw, -0.6, 0.6))
    pitch = float(np.clip(pitch, -0.55, 0.05))
    roll = float(np.clip(rng.normal(0.0, 0.03), -0.07, 0.07))
    scale = width / KINECT_WIDTH * rng.uniform(0.9, 1.1)
    fx = KINECT_FX * scale
    fy = KINECT_FY * scale * (1 + rng.normal(0, 0.003))
    cx = (width - 1) / 2 + rng.normal(0, 0.01 * width)
    cy = (height - 1) / 2 + rng.normal(0, 0.01 * height)
    camera = Camera(
        intrinsics_matrix(fx, fy, cx, cy), camera_rotation(yaw, pitch, roll), position, width, height
    )
    meta = {
        "position": [float(v) for v in position],
        "yaw_deg": float(np.degrees(yaw)),
        "pitch_deg": float(np.degrees(pitch)),
        "roll_deg": float(np.degrees(roll)),
        "fx": float(fx),
        "fy": float(fy),
        "cx": float(cx),
        "cy": float(cy),
    }
    return camera, meta


# --------------------------------------------------------------------------------------------------
# Annotation, shading, noise
# --------------------------------------------------------------------------------------------------


def _visible_objects(
    ids: np.ndarray, placed: list[PlacedObject]
) -> tuple[list[SceneObject], dict, np.ndarray]:
    """Masks and boxes of objects that show enough pixels; counts of what was dropped and why."""
    height, width = ids.shape
    pixels = np.bincount(ids.ravel(), minlength=NUM_ROOM_SURFACES + len(placed))[NUM_ROOM_SURFACES:]
    min_pixels = max(MIN_VISIBLE_PIXELS, int(MIN_VISIBLE_FRACTION * height * width))
    objects, dropped = [], {"occluded_or_outside": 0, "tiny": 0}
    for obj, count in zip(placed, pixels):
        if count == 0:
            dropped["occluded_or_outside"] += 1
            continue
        if count < min_pixels:
            dropped["tiny"] += 1
            continue
        mask = ids == NUM_ROOM_SURFACES + obj.index
        rows = np.flatnonzero(mask.any(axis=1))
        cols = np.flatnonzero(mask.any(axis=0))
        box = (float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1))
        objects.append(SceneObject(name=obj.category, box=box, mask=mask, instance_id=obj.index))
    return objects, dropped, pixels


def _room_colours(rng: np.random.Generator) -> np.ndarray:
    wall = np.array([rng.uniform(170, 240), rng.uniform(165, 235), rng.uniform(150, 225)])
    floors = ((150, 110, 75), (190, 180, 165), (110, 100, 95), (205, 200, 190), (120, 80, 55))
    floor = np.asarray(floors[rng.integers(len(floors))], dtype=float) * rng.uniform(0.85, 1.1)
    colours = np.empty((NUM_ROOM_SURFACES, 3))
    for i, surface in enumerate(ROOM_SURFACES):
        if surface == "floor":
            colours[i] = floor
        elif surface == "ceiling":
            colours[i] = (240, 240, 238)
        else:
            colours[i] = wall * rng.uniform(0.95, 1.03)
    return np.clip(colours, 0, 255)


def shade(buffers: RenderBuffers, palette: np.ndarray) -> np.ndarray:
    """Pseudo-RGB: Lambert shading of the albedo under a ceiling light plus a light at the camera."""
    n, d = buffers.normals, buffers.directions
    facing = np.abs(n[0] * d[0] + n[1] * d[1] + n[2] * d[2]) / np.sqrt(
        d[0] * d[0] + d[1] * d[1] + d[2] * d[2]
    )
    overhead = np.maximum(_LIGHT[0] * n[0] + _LIGHT[1] * n[1] + _LIGHT[2] * n[2], 0.0)
    light = (0.25 + 0.45 * overhead + 0.4 * facing) / (1.0 + 0.02 * buffers.depth * buffers.depth)
    albedo = palette.astype(np.float32)[buffers.ids]  # (H, W, 3)
    albedo *= light[..., None]
    return np.minimum(albedo, 255.0).astype(np.uint8)


def apply_sensor_noise(
    depth: np.ndarray,
    rng: np.random.Generator,
    max_range: float = 8.0,
    num_patches: int | None = None,
    edge_dropout: float = 0.6,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Kinect-like depth: axial noise growing with z^2, disparity quantisation, and holes.

    Holes (0) appear only beyond `max_range`, at depth discontinuities (each edge pixel with
    probability `edge_dropout`, plus the projector's shadow: a band of a few pixels of background left of
    a nearer object) and in a few random elliptic patches; the returned dict holds the boolean mask of
    each cause so callers can check where zeros came from.
    """
    depth = np.asarray(depth, dtype=np.float32)
    if depth.ndim != 2:
        raise ValueError(f"depth must be HxW metres, got shape {depth.shape}.")
    if max_range <= 0:
        raise ValueError(f"max_range must be positive metres, got {max_range}.")
    valid = depth > 0
    sigma = 0.0012 + 0.0019 * np.square(depth - 0.4)  # Nguyen et al. 2012, Kinect v1 axial noise
    noisy = depth + rng.standard_normal(depth.shape, dtype=np.float32) * sigma
    step = np.maximum(KINECT_DEPTH_STEP_PER_M2 * np.square(noisy), 0.001)
    noisy = np.round(noisy / step) * step
    noisy = np.maximum(np.round(noisy * 1000.0) / 1000.0, 0.001).astype(np.float32)

    beyond = valid & (depth > max_range)
    height, width = depth.shape
    jump = np.zeros(depth.shape, dtype=bool)
    threshold = 0.04 + 0.03 * depth
    step_x = np.diff(depth, axis=1)
    dx = np.abs(step_x) > np.minimum(threshold[:, 1:], threshold[:, :-1])
    dy = np.abs(np.diff(depth, axis=0)) > np.minimum(threshold[1:], threshold[:-1])
    jump[:, 1:] |= dx
    jump[:, :-1] |= dx
    jump[1:] |= dy
    jump[:-1] |= dy
    edges = jump & (rng.random(depth.shape) < edge_dropout)
    # the projector sits beside the IR camera: background just left of a nearer object's left edge is
    # in its shadow and returns nothing (a band a few pixels wide, as in NYU / SUN raw depth)
    shadow_start = np.zeros(depth.shape, dtype=bool)
    shadow_start[:, :-1] = dx & (step_x < 0)  # depth drops from column c to c+1: c is shadowed background
    band = max(1, int(round(rng.uniform(1, 4) * width / 320)))
    shadow = shadow_start.copy()
    for shift in range(1, band):
        shadow[:, :-shift] |= shadow_start[:, shift:]
    edges |= shadow

    patches = np.zeros(depth.shape, dtype=bool)
    count = rng.poisson(1.5) if num_patches is None else num_patches
    rows, cols = np.ogrid[:height, :width]
    for _ in range(count):
        cy, cx = rng.uniform(0, height), rng.uniform(0, width)
        ry, rx = rng.uniform(0.01, 0.06) * width, rng.uniform(0.01, 0.06) * width
        patches |= ((rows - cy) / ry) ** 2 + ((cols - cx) / rx) ** 2 <= 1.0
    holes = {"beyond_range": beyond, "discontinuity": edges & valid, "patch": patches & valid}
    noisy[~valid | beyond | edges | patches] = 0.0
    return noisy, holes


# --------------------------------------------------------------------------------------------------
# Scenes
# --------------------------------------------------------------------------------------------------


def _scene_graph(placed: list[PlacedObject], pixels: np.ndarray, annotated: set[int]) -> list[dict]:
    return [
        {
            "index": o.index,
            "category": o.category,
            "position": [round(float(v), 4) for v in o.position],
            "size": [round(float(v), 4) for v in o.size],
            "yaw_deg": round(float(np.degrees(o.yaw)), 2),
            "relation": {
                k: (int(v) if isinstance(v, (int, np.integer)) else v)
                for k, v in o.relation.items()
                if k != "s"
            },
            "visible_pixels": int(pixels[o.index]),
            "annotated": o.index in annotated,
        }
        for o in placed
    ]


def render_scene(
    seed: int, scene_type: str | None = None, width: int = 320, height: int = 240, noise: bool = False
) -> Scene:
    """Render one furnished room, deterministically from `seed` (a non-negative integer).

    `scene_type` None draws one of `SCENE_TYPES` uniformly. With `noise`, depth gets Kinect-like noise
    and holes (0); masks and boxes stay those of the clean render (the object is there, the sensor
    missed it).
    """
    return _render_scene(seed, scene_type, width, height, noise, timings=None)


class _StageClock:
    """Adds the seconds spent in each named stage to `timings` (a no-op without one)."""

    def __init__(self, timings: dict[str, float] | None):
        self.timings = timings
        self.last = time.perf_counter()

    def lap(self, stage: str) -> None:
        if self.timings is not None:
            now = time.perf_counter()
            self.timings[stage] = self.timings.get(stage, 0.0) + now - self.last
            self.last = now


def _render_scene(seed, scene_type, width, height, noise, timings: dict[str, float] | None) -> Scene:
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}.")
    _check_size(width, height)
    clock = _StageClock(timings)
    rng = np.random.default_rng(int(seed))
    if scene_type is None:
        scene_type = SCENE_TYPES[int(rng.integers(len(SCENE_TYPES)))]
    _check_scene_type(scene_type)

    room = sample_room(rng, scene_type)
    position = sample_camera_position(rng, room)
    placed, placement = furnish(rng, scene_type, room, position[:2])
    primitives = [(obj.index, prim) for obj in placed for prim in obj.primitives()]
    clock.lap("layout")
    for attempt in range(CAMERA_ATTEMPTS):
        # a view of bare walls is a wasted frame: re-aim (always at furniture) when nothing shows
        camera, camera_meta = sample_camera(
            rng, position, placed, width, height, aim_probability=1.0 if attempt else 0.75
        )
        buffers = render_primitives(camera, room, primitives)
        clock.lap("ray casting")
        objects, dropped, pixels = _visible_objects(buffers.ids, placed)
        clock.lap("masks and boxes")
        if objects or not placed:
            break
    palette = np.concatenate(
        [_room_colours(rng), np.array([o.colour for o in placed], dtype=float).reshape(-1, 3)]
    )
    rgb = shade(buffers, palette)
    clean_depth = buffers.depth
    clock.lap("shading")

    caption_objects = [
        CaptionObject(
            o.instance_id,
            o.name,
            placed[o.instance_id].relation,
            (o.box[0] + o.box[2]) / 2,
            float(clean_depth[o.mask].mean()),
            int(pixels[o.instance_id]),
        )
        for o in objects
    ]
    captions = describe_scene(scene_type, caption_objects, width, rng)
    clock.lap("captions")

    present_anywhere = {o.category for o in placed}
    meta = {
        "generator": "deepsight-synthetic",
        "seed": int(seed),
        "room": {"width": room[0], "depth": room[1], "height": room[2]},
        "camera": camera_meta,
        "scene_graph": _scene_graph(placed, pixels, {o.instance_id for o in objects}),
        "num_placed": len(placed),
        "dropped_objects": dropped,
        "placement": placement,
        # plausible for the scene type and not in the room at all (not even hidden): Security's distractors
        "absent_categories": [c for c in scene_object_vocabulary(scene_type) if c not in present_anywhere],
        "noise": None,
    }
    depth = clean_depth
    if noise:
        depth, holes = apply_sensor_noise(clean_depth, rng, max_range=float(rng.uniform(7.0, 10.0)))
        meta["noise"] = {
            "holes": {k: int(v.sum()) for k, v in holes.items()},
            "invalid_pixels": int((depth == 0).sum()),
        }
        clock.lap("sensor noise")
    return Scene(
        id=f"synthetic-{int(seed)}",
        source="synthetic",
        depth=depth,
        objects=objects,
        scene_type=scene_type,
        rgb=rgb,
        captions=captions,
        intrinsics=camera.K.astype(np.float64),
        meta=meta,
    )


def scene_seed(seed: int, split: str, index: int) -> int:
    """The seed of scene `index` of `split`: independent streams per (seed, split), stable across runs."""
    if not isinstance(split, str) or not split:
        raise ValueError(f"split must be a non-empty string, got {split!r}.")
    sequence = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, zlib.crc32(split.encode("utf-8")), int(index)])
    return int(sequence.generate_state(1, dtype=np.uint64)[0] >> 1)


def _check_seed(seed: int) -> None:
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}.")


def scene_at(
    seed: int, split: str, index: int, width: int = 320, height: int = 240, noise: bool = False
) -> Scene:
    """Scene `index` of `generate_scenes(..., seed, split)`, rendered alone (so shards render only their own)."""
    _check_seed(seed)
    # The scene types start at a (seed, split)-dependent offset and cycle, so every type is equally common.
    offset = zlib.crc32(f"{seed}/{split}".encode("utf-8")) % len(SCENE_TYPES)
    scene = render_scene(
        scene_seed(seed, split, index),
        SCENE_TYPES[(offset + index) % len(SCENE_TYPES)],
        width=width,
        height=height,
        noise=noise,
    )
    scene.id = f"synthetic-{split}-{seed}-{index:06d}"
    scene.split = split
    return scene


def generate_scenes(
    num_scenes: int, seed: int, split: str = "train", width: int = 320, height: int = 240, noise: bool = False
) -> Iterator[Scene]:
    """Yield `num_scenes` scenes; scene i depends only on (seed, split, i), and the types cycle evenly."""
    if not isinstance(num_scenes, (int, np.integer)) or num_scenes < 0:
        raise ValueError(f"num_scenes must be a non-negative integer, got {num_scenes!r}.")
    _check_seed(seed)
    scene_seed(seed, split, 0)  # validates split before the first scene
    for index in range(num_scenes):
        yield scene_at(seed, split, index, width=width, height=height, noise=noise)


# --------------------------------------------------------------------------------------------------
# Writers
# --------------------------------------------------------------------------------------------------


def mask_outline(mask: np.ndarray) -> tuple[list[float], list[float]] | None:
    """Outer contour of the mask's largest connected component, in pixel-edge coordinates.

    Pixel (row r, column c) covers x in [c, c+1], y in [r, r+1]; the contour runs along pixel edges and
    cuts convex corners diagonally, so rasterising the polygon at pixel centres (c+0.5, r+0.5) gives
    the component back. None for an empty mask.
    """
    import contourpy  # scipy and contourpy: slow to import, and only the SUN RGB-D layout writer needs them
    from scipy import ndimage

    labels, count = ndimage.label(mask)
    if count == 0:
        return None
    sizes = np.bincount(labels.ravel())[1:]
    component = ndimage.binary_fill_holes(labels == 1 + int(np.argmax(sizes)))
    padded = np.pad(component, 1).astype(np.float64)
    xs = np.arange(padded.shape[1]) - 0.5  # centre of padded column j is original column j-1, at x = j-0.5
    ys = np.arange(padded.shape[0]) - 0.5
    lines = contourpy.contour_generator(xs, ys, padded, line_type="Separate").lines(0.5)
    outline = max(lines, key=len)
    if np.allclose(outline[0], outline[-1]):
        outline = outline[:-1]
    # keep only the corners: a vertex between two collinear edges adds nothing to the polygon
    before, after = outline - np.roll(outline, 1, axis=0), np.roll(outline, -1, axis=0) - outline
    turns = np.abs(before[:, 0] * after[:, 1] - before[:, 1] * after[:, 0]) > 1e-9
    if turns.sum() >= 3:
        outline = outline[turns]
    return [round(float(v), 2) for v in outline[:, 0]], [round(float(v), 2) for v in outline[:, 1]]


def _safe_name(scene_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", scene_id) or "scene"


def fill_holes_nearest(depth: np.ndarray) -> np.ndarray:
    """Every invalid (0) pixel takes the depth of its nearest valid pixel (what depth_bfx provides)."""
    from scipy import ndimage

    invalid = depth <= 0
    if not invalid.any() or invalid.all():
        return depth.copy()
    _, (rows, cols) = ndimage.distance_transform_edt(invalid, return_indices=True)
    return depth[rows, cols]


def sun_annotation(scene: Scene, name: str) -> dict:
    """SUN3D `annotation2Dfinal/index.json` content: one polygon per visible instance."""
    polygons, objects = [], []
    for obj in scene.objects:
        if obj.mask is None:
            continue
        outline = mask_outline(obj.mask)
        if outline is None:
            continue
        polygons.append({"x": outline[0], "y": outline[1], "object": len(objects)})
        objects.append({"name": obj.name})
    return {
        "name": name,
        "frames": [{"polygon": polygons}],
        "objects": objects,
        "fileList": [f"{name}.jpg"],
        "conflictList": [],
    }


def _depth_preview(depth: np.ndarray) -> np.ndarray:
    """Grey RGB of a depth map (brighter = closer) for scenes that carry no image."""
    grey = (255 * (1 - np.clip(depth / 10.0, 0, 1))).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=2)


def sun_rtilt(camera_meta: dict) -> np.ndarray:
    """SUN RGB-D's Rtilt of a synthetic camera: the camera's pitch and roll, without its heading.

    The SUN toolbox maps camera points (x right, y down, z forward) to gravity-aligned ones as
    Rtilt @ [x, z, -y]; here that is the camera-to-world rotation with the yaw taken out.
    """
    yaw, pitch, roll = np.radians([camera_meta["yaw_deg"], camera_meta["pitch_deg"], camera_meta["roll_deg"]])
    to_right_forward_up = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])
    return yaw_matrix(-yaw) @ camera_rotation(yaw, pitch, roll) @ to_right_forward_up.T


def write_sunrgbd_layout(scenes: Iterable[Scene], out_dir: str | Path) -> list[Path]:
    """Write each scene as a SUNRGBD.zip frame folder; returns the folders.

    Layout per scene: image/<name>.jpg, depth/<name>.png (SUN bit-rotated uint16 mm, holes = 0),
    depth_bfx/<name>.png (holes filled by the nearest valid depth), intrinsics.txt, scene.txt,
    annotation2Dfinal/index.json and, for synthetic scenes, extrinsics/<name>.txt (SUN's Rtilt).
    """
    from modeling_deepsight.depth_codec_deepsight import encode_depth  # heavy: see dataset_scripts.export

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    folders = []
    for scene in scenes:
        if not isinstance(scene, Scene):
            raise ValueError(f"write_sunrgbd_layout expects Scene objects, got {type(scene).__name__}.")
        name = _safe_name(scene.id)
        folder = out_dir / name
        for sub in ("image", "depth", "depth_bfx", "annotation2Dfinal"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        rgb = scene.rgb if scene.rgb is not None else _depth_preview(scene.depth)
        Image.fromarray(rgb).save(folder / "image" / f"{name}.jpg", quality=95)
        Image.fromarray(encode_depth(scene.depth, "sun")).save(folder / "depth" / f"{name}.png")
        Image.fromarray(encode_depth(fill_holes_nearest(scene.depth), "sun")).save(
            folder / "depth_bfx" / f"{name}.png"
        )
        K = scene.intrinsics if scene.intrinsics is not None else np.eye(3)
        (folder / "intrinsics.txt").write_text(
            "\n".join(" ".join(f"{v:.6f}" for v in row) for row in K) + "\n"
        )
        (folder / "scene.txt").write_text((scene.scene_type or "unknown").replace(" ", "_"))
        (folder / "annotation2Dfinal" / "index.json").write_text(json.dumps(sun_annotation(scene, name)))
        if "camera" in scene.meta:
            (folder / "extrinsics").mkdir(exist_ok=True)
            rows = np.hstack([sun_rtilt(scene.meta["camera"]), np.zeros((3, 1))])
            (folder / "extrinsics" / f"{name}.txt").write_text(
                "\n".join(" ".join(f"{v:.6f}" for v in row) for row in rows) + "\n"
            )
        folders.append(folder)
    return folders


def save_scene_npz(scene: Scene, path: str | Path) -> Path:
    """One scene as a compressed .npz (arrays) with captions and meta as JSON strings."""
    path = Path(path)
    masks = (
        np.stack([o.mask for o in scene.objects])
        if scene.objects
        else np.zeros((0, *scene.depth.shape), bool)
    )
    np.savez_compressed(
        path,
        depth=scene.depth,
        rgb=scene.rgb if scene.rgb is not None else np.zeros((*scene.depth.shape, 3), np.uint8),
        masks=np.packbits(masks, axis=-1),
        boxes=np.array([o.box for o in scene.objects], dtype=np.float32).reshape(-1, 4),
        instance_ids=np.array([o.instance_id for o in scene.objects], dtype=np.int32),
        intrinsics=scene.intrinsics if scene.intrinsics is not None else np.eye(3),
        info=np.array(
            json.dumps(
                {
                    "id": scene.id,
                    "source": scene.source,
                    "scene_type": scene.scene_type,
                    "split": scene.split,
                    "names": scene.object_names,
                    "captions": scene.captions,
                    "meta": scene.meta,
                }
            )
        ),
    )
    return path


def load_scene_npz(path: str | Path) -> Scene:
    """Read back a scene written by `save_scene_npz`."""
    with np.load(path) as data:
        info = json.loads(str(data["info"]))
        depth = data["depth"]
        masks = np.unpackbits(data["masks"], axis=-1, count=depth.shape[1]).astype(bool)
        objects = [
            SceneObject(name=n, box=tuple(float(v) for v in b), mask=m, instance_id=int(i))
            for n, b, m, i in zip(info["names"], data["boxes"], masks, data["instance_ids"])
        ]
        return Scene(
            id=info["id"],
            source=info["source"],
            depth=depth,
            objects=objects,
            scene_type=info["scene_type"],
            rgb=data["rgb"],
            captions=info["captions"],
            intrinsics=data["intrinsics"],
            split=info["split"],
            meta=info["meta"],
        )


def save_preview(scenes: list[Scene], path: str | Path, max_depth: float = 8.0) -> Path:
    """A contact sheet, one row per scene: pseudo-RGB, depth (turbo, black = invalid), boxes with names."""
    from matplotlib import colormaps

    if not scenes:
        raise ValueError("save_preview needs at least one scene.")
    rows = []
    for scene in scenes:
        rgb = scene.rgb if scene.rgb is not None else _depth_preview(scene.depth)
        depth = (colormaps["turbo"](np.clip(scene.depth / max_depth, 0, 1))[..., :3] * 255).astype(np.uint8)
        depth[scene.depth == 0] = 0
        boxes = Image.fromarray(rgb.copy())
        draw = ImageDraw.Draw(boxes)
        for obj in scene.objects:
            draw.rectangle([obj.box[0], obj.box[1], obj.box[2] - 1, obj.box[3] - 1], outline=(255, 255, 0))
            draw.text((obj.box[0] + 2, obj.box[1] + 1), obj.name, fill=(255, 255, 0))
        draw.text((3, 3), scene.scene_type or "", fill=(255, 255, 255))
        rows.append(np.concatenate([rgb, depth, np.asarray(boxes)], axis=1))
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0))) for r in rows]
    path = Path(path)
    Image.fromarray(np.concatenate(rows, axis=0)).save(path)
    return path


# --------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------


def summary_table(scene_counts: Counter, object_counts: Counter, dropped: Counter) -> str:
    rows = [("scene type", "scenes")] + sorted(scene_counts.items())
    rows += [("", ""), ("object category", "instances")] + sorted(
        object_counts.items(), key=lambda kv: (-kv[1], kv[0])
    )
    rows += [("", ""), ("dropped (not annotated)", "instances")] + sorted(dropped.items())
    width = max(len(str(r[0])) for r in rows) + 2
    return "\n".join(f"{str(a):<{width}}{b}" for a, b in rows)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deepsight data synthetic",
        description="Render synthetic indoor depth scenes with exact annotations.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--num-scenes", type=int, required=True, help="how many scenes to render")
    parser.add_argument(
        "--seed", type=int, default=0, help="base seed (scene i uses a seed from seed, split, i)"
    )
    parser.add_argument("--split", default="train", help="split name; different splits give disjoint scenes")
    parser.add_argument("--output", type=Path, required=True, help="output folder")
    parser.add_argument(
        "--format",
        choices=("sunrgbd", "npz"),
        default="sunrgbd",
        help="SUNRGBD.zip frame folders (default) or one .npz per scene",
    )
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--noise", action="store_true", help="Kinect-like depth noise and holes")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.num_scenes < 1:
        parser.error(f"--num-scenes must be >= 1, got {args.num_scenes}")
    if args.seed < 0:
        parser.error(f"--seed must be >= 0, got {args.seed}")
    if args.width < 16 or args.height < 16:
        parser.error(f"--width and --height must be >= 16 pixels, got {args.width}x{args.height}")
    if not args.split.strip():
        parser.error("--split must not be empty")
    scenes = generate_scenes(args.num_scenes, args.seed, args.split, args.width, args.height, args.noise)
    out_dir = args.output / args.split
    out_dir.mkdir(parents=True, exist_ok=True)
    scene_counts, object_counts, dropped = Counter(), Counter(), Counter()
    invalid_pixels = 0
    preview = []
    for scene in tqdm(scenes, total=args.num_scenes, desc=f"rendering {args.split}", unit="scene"):
        if len(preview) < PREVIEW_SCENES:
            preview.append(scene)
        if args.format == "npz":
            save_scene_npz(scene, out_dir / f"{_safe_name(scene.id)}.npz")
        else:
            write_sunrgbd_layout([scene], out_dir)
        scene_counts[scene.scene_type] += 1
        object_counts.update(scene.object_names)
        dropped.update(scene.meta["dropped_objects"])
        invalid_pixels += int((scene.depth == 0).sum())
    print(summary_table(scene_counts, object_counts, dropped))
    if args.noise:
        share = invalid_pixels / (args.num_scenes * args.width * args.height)
        print(f"\ninvalid (0) depth pixels from sensor noise: {100 * share:.1f} %")
    preview_path = save_preview(preview, args.output / f"preview_{_safe_name(args.split)}.png")
    print(f"\n{args.num_scenes} scenes ({args.format}) written to {out_dir}")
    print(f"preview of the first scenes: {preview_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
