"""SUN RGB-D readers -> `Scene`: the original SUNRGBD.zip frame folders and votenet's `sunrgbd_trainval`.

Original layout, one folder per frame: `image/*.jpg`, `depth/*.png` (raw, 0 = invalid) and
`depth_bfx/*.png` (hole-filled), both in SUN's bit-rotated uint16 encoding; `intrinsics.txt` (3x3),
`scene.txt`, and `annotation2Dfinal/index.json` in the SUN3D annotation format:
`{"objects": [{"name": ...} | null, ...], "frames": [{"polygon": [{"x": [...], "y": [...], "object": i}]}]}`.
Real annotation files hold null objects, object indices out of range and degenerate polygons; each is
dropped and counted in the `ReadReport`, never fatal, and so is an object name outside the NYU / SUN RGB-D
class lists or a `scene.txt` outside SUN RGB-D's scene labels (`dataset_scripts.vocab`). A frame whose
depth is mostly invalid, or whose files raise anything while being read, is skipped and counted.
Polygons are rasterised with pixel centres at (col + 0.5, row + 0.5) (the annotation tool's canvas
coordinates); several polygons of one object are one instance.

votenet layout: `image/NNNNNN.jpg`, `depth/NNNNNN.mat` (`instance`: N x 6 upright point cloud xyzrgb),
`calib/NNNNNN.txt` (Rtilt, then K, both 9 numbers column major) and `label/NNNNNN.txt` (lines `name
xmin ymin w h cx cy cz ...`). The depth map is recovered by undoing the toolbox's `read3dPoints.m`:
points_upright = Rtilt @ [x, z, -y] with x = (u - cx) z / fx, y = (v - cy) z / fy over 1-based pixels
(u, v). Boxes only: these scenes have no instance masks.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from dataset_scripts.sources.files import (
    MIN_VALID_DEPTH_FRACTION,
    FrameError,
    ReadReport,
    as_frame_error,
    box_of_mask,
    check_min_fraction,
    check_same_size,
    check_valid_depth,
    read_image_array,
    read_image_shape,
    read_json,
    read_mat_variables,
    require_dir,
)
from dataset_scripts.scene import Scene, SceneObject
from dataset_scripts.vocab import (
    SUNRGBD_SCENE_TYPES,
    is_known_object_name,
    known_scene_label,
    normalize_object_name,
)
from deepsight.spatial import CameraIntrinsics, read_sunrgbd_intrinsics
from deepsight.spatial import read_votenet_calib as read_votenet_calib_file

DEPTH_FOLDERS = ("depth", "depth_bfx")
UNKNOWN_SCENES = {"", "idk", "unknown"}  # SUN RGB-D labels undecided frames "idk"
MIN_POLYGON_AREA = 1.0  # px^2; below this a polygon covers no pixel centre reliably
MAX_COORDINATE = 1e5  # px; no depth camera's frame is this large, a vertex beyond it is garbage
MAX_SCENE_FILE_CHARS = 200  # scene.txt holds one label; anything longer is not one


# --------------------------------------------------------------------------------------------------
# Original layout
# --------------------------------------------------------------------------------------------------


def find_sun_frame_folders(root: str | Path) -> list[Path]:
    """Every folder under `root` (itself included) holding `image/` and a depth folder, sorted."""
    root = require_dir(root, "SUN RGB-D root")
    candidates = [root, *(p.parent for p in root.rglob("image") if p.is_dir())]
    frames = {
        p for p in candidates if (p / "image").is_dir() and any((p / d).is_dir() for d in DEPTH_FOLDERS)
    }
    return sorted(frames)


def _single_file(folder: Path, pattern: str, what: str) -> Path:
    files = sorted(folder.glob(pattern)) if folder.is_dir() else []
    if not files:
        raise FrameError(f"missing_{what}", f"no {pattern} in {folder}")
    return files[0]


def read_intrinsics(path: Path) -> np.ndarray | None:
    """3x3 K from `intrinsics.txt` (row major), None when absent."""
    if not path.is_file():
        return None
    try:
        return read_sunrgbd_intrinsics(path)
    except ValueError as err:
        raise FrameError("corrupt_intrinsics", str(err)) from err


def polygon_mask(xs: list[float], ys: list[float], height: int, width: int) -> np.ndarray:
    """Boolean HxW mask of the pixels whose centres lie inside the polygon."""
    from matplotlib.path import Path as PolygonPath

    vertices = np.column_stack([xs, ys]).astype(np.float64)
    mask = np.zeros((height, width), dtype=bool)
    x0, y0 = np.floor(vertices.min(axis=0)).astype(int)
    x1, y1 = np.ceil(vertices.max(axis=0)).astype(int)
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    if x0 >= x1 or y0 >= y1:
        return mask
    cols, rows = np.meshgrid(np.arange(x0, x1), np.arange(y0, y1))
    centres = np.column_stack([cols.ravel() + 0.5, rows.ravel() + 0.5])
    inside = PolygonPath(vertices).contains_points(centres)
    mask[y0:y1, x0:x1] = inside.reshape(rows.shape)
    return mask


def _polygon_area(xs: np.ndarray, ys: np.ndarray) -> float:
    return 0.5 * abs(float(np.dot(xs, np.roll(ys, 1)) - np.dot(ys, np.roll(xs, 1))))


def _valid_polygon(
    polygon, num_objects: int, objects: list, report: ReadReport, where: str
) -> tuple[int, np.ndarray, np.ndarray] | None:
    """(object index, xs, ys) of a usable polygon, or None after counting why it is not."""
    if not isinstance(polygon, dict):
        report.drop("malformed_polygon", f"{where}: polygon entry {polygon!r:.60}")
        return None
    index = polygon.get("object")
    if isinstance(index, bool) or not isinstance(index, (int, float)) or not np.isfinite(index):
        report.drop("object_index_out_of_range", f"{where}: object index {index!r:.60}")
        return None
    if int(index) != index or not 0 <= index < num_objects:
        report.drop("object_index_out_of_range", f"{where}: object index {index} of {num_objects} objects")
        return None
    index = int(index)
    entry = objects[index]
    if entry is None or not isinstance(entry, dict):
        report.drop("null_object", f"{where}: object {index} is null")
        return None
    name = entry.get("name")
    if not isinstance(name, str) or not name.strip():
        report.drop("unnamed_object", f"{where}: object {index} has no name")
        return None
    if not is_known_object_name(name):
        report.drop("unknown_object_name", f"{where}: object {index} {name!r:.60} is in no known class list")
        return None
    try:
        xs = np.asarray(polygon.get("x"), dtype=np.float64).ravel()
        ys = np.asarray(polygon.get("y"), dtype=np.float64).ravel()
    except (TypeError, ValueError, OverflowError):
        report.drop("degenerate_polygon", f"{where}: object {index}: non-numeric coordinates")
        return None
    if xs.size < 3 or xs.size != ys.size or not (np.isfinite(xs).all() and np.isfinite(ys).all()):
        report.drop("degenerate_polygon", f"{where}: object {index}: {xs.size} x / {ys.size} y coordinates")
        return None
    if max(np.abs(xs).max(), np.abs(ys).max()) > MAX_COORDINATE:
        report.drop("degenerate_polygon", f"{where}: object {index}: a vertex beyond {MAX_COORDINATE:.0f} px")
        return None
    if _polygon_area(xs, ys) < MIN_POLYGON_AREA:
        report.drop("degenerate_polygon", f"{where}: object {index}: zero area")
        return None
    return index, xs, ys


def sun_annotation_objects(
    annotation: dict, height: int, width: int, report: ReadReport, where: str = "index.json"
) -> list[SceneObject]:
    """Instance masks of a SUN3D `index.json` (frame 0), one object per annotated object index.

    `where` (the file's path) prefixes the report's messages about dropped polygons.
    """
    objects = annotation.get("objects") if isinstance(annotation, dict) else None
    frames = annotation.get("frames") if isinstance(annotation, dict) else None
    if not isinstance(objects, list) or not isinstance(frames, list):
        raise FrameError("corrupt_annotation", f"{where} lacks the 'objects' / 'frames' lists")
    if not frames or not isinstance(frames[0], dict):
        return []
    polygons = frames[0].get("polygon") or []
    masks: dict[int, np.ndarray] = {}
    for polygon in polygons if isinstance(polygons, list) else []:
        parsed = _valid_polygon(polygon, len(objects), objects, report, where)
        if parsed is None:
            continue
        index, xs, ys = parsed
        mask = polygon_mask(xs, ys, height, width)
        if not mask.any():
            report.drop("polygon_outside_image", f"{where}: object {index}: no pixel centre inside")
            continue
        masks[index] = masks[index] | mask if index in masks else mask
    return [
        SceneObject(name=normalize_object_name(objects[i]["name"]), box=box_of_mask(m), mask=m, instance_id=i)
        for i, m in sorted(masks.items())
    ]


def _check_depth_folder(depth_folder: str) -> None:
    if depth_folder not in DEPTH_FOLDERS:
        raise ValueError(f"depth_folder: expected one of {DEPTH_FOLDERS}, got {depth_folder!r}")


def read_scene_file(path: Path) -> str | None:
    """The raw label of a `scene.txt`: None when absent or undecided ("idk")."""
    if not path.is_file():
        return None
    with path.open(encoding="utf-8", errors="replace") as handle:
        raw = handle.read(MAX_SCENE_FILE_CHARS + 1).strip()
    return None if raw.lower() in UNKNOWN_SCENES else raw


def sun_scene_label(raw: str | None, report: ReadReport, where: str = "scene.txt") -> str | None:
    """The normalised scene class of a raw SUN RGB-D label; None (dropped and counted) when it is none."""
    if raw is None:
        return None
    label = known_scene_label(raw, SUNRGBD_SCENE_TYPES) if len(raw) <= MAX_SCENE_FILE_CHARS else None
    if label is None:
        report.drop("unknown_scene_label", f"{where}: {raw!r:.60} is not a SUN RGB-D scene label")
    return label


def read_sun_frame(
    folder: str | Path,
    depth_folder: str = "depth",
    with_rgb: bool = False,
    report: ReadReport | None = None,
    frame_id: str | None = None,
    min_valid_fraction: float = MIN_VALID_DEPTH_FRACTION,
) -> Scene:
    """One original-layout frame folder. Raises FrameError when this frame cannot be used."""
    from modeling_deepsight.depth_codec_deepsight import decode_depth  # heavy: see dataset_scripts.export

    _check_depth_folder(depth_folder)
    check_min_fraction(min_valid_fraction, "min_valid_fraction")
    folder = Path(folder)
    report = report if report is not None else ReadReport()
    depth_path = _single_file(folder / depth_folder, "*.png", "depth")
    raw = read_image_array(depth_path, "depth")
    if raw.dtype != np.uint16 or raw.ndim != 2:
        raise FrameError(
            "bad_depth_encoding",
            f"{folder / depth_folder}: expected 16-bit SUN depth, got {raw.dtype} {raw.shape}",
        )
    depth = decode_depth(raw, "sun", name=str(folder / depth_folder))
    check_valid_depth(depth, depth_path, min_valid_fraction)
    image_path = _single_file(folder / "image", "*.jpg", "image")
    rgb = read_image_array(image_path, "image") if with_rgb else None
    check_same_size(depth, rgb if rgb is not None else read_image_shape(image_path, "image"), "image")
    scene_raw = read_scene_file(folder / "scene.txt")
    annotation_path = folder / "annotation2Dfinal" / "index.json"
    objects = []
    if annotation_path.is_file():
        annotation = read_json(annotation_path, "annotation")
        objects = sun_annotation_objects(annotation, *depth.shape, report, where=str(annotation_path))
    return Scene(
        id=frame_id or f"sunrgbd_{folder.name}",
        source="sunrgbd",
        depth=depth,
        objects=objects,
        scene_type=sun_scene_label(scene_raw, report, where=str(folder / "scene.txt")),
        rgb=rgb if with_rgb else None,
        intrinsics=read_intrinsics(folder / "intrinsics.txt"),
        meta={
            "folder": str(folder),
            "depth_folder": depth_folder,
            "scene_type_raw": scene_raw,
            "annotated": annotation_path.is_file(),
        },
    )


def read_sunrgbd_original(
    root: str | Path,
    depth_folder: str = "depth",
    with_rgb: bool = False,
    report: ReadReport | None = None,
    min_valid_fraction: float = MIN_VALID_DEPTH_FRACTION,
) -> Iterator[Scene]:
    """Every frame folder under `root`; unusable frames are skipped and counted in `report`."""
    _check_depth_folder(depth_folder)
    check_min_fraction(min_valid_fraction, "min_valid_fraction")
    report = report if report is not None else ReadReport()
    root = Path(root)
    folders = find_sun_frame_folders(root)
    if not folders:
        raise ValueError(f"SUN RGB-D root {str(root)!r}: no frame folder (with image/ and depth/) found")
    for folder in folders:
        relative = folder.relative_to(root).parts or (folder.name,)
        frame_id = "sunrgbd_" + "_".join(relative)
        try:
            scene = read_sun_frame(folder, depth_folder, with_rgb, report, frame_id, min_valid_fraction)
        except Exception as err:  # whatever one frame's files raise, the other frames are still read
            report.skip(frame_id, as_frame_error(err, folder))
            continue
        report.frames_read += 1
        yield scene


# --------------------------------------------------------------------------------------------------
# votenet / mmdet3d `sunrgbd_trainval`
# --------------------------------------------------------------------------------------------------


def read_votenet_calib(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(Rtilt, K) from a votenet calib file: two lines of 9 numbers, column major."""
    try:
        return read_votenet_calib_file(path)
    except FileNotFoundError as err:
        raise FrameError("missing_calib", f"{path} not found") from err
    except ValueError as err:
        raise FrameError("corrupt_calib", str(err)) from err


def read_votenet_points(mat_path: Path) -> np.ndarray:
    """The upright point cloud (N x 6: x, y, z, r, g, b) of a votenet ``depth/<index>.mat``."""
    try:
        (instance,) = read_mat_variables(mat_path, ("instance",), "a votenet depth .mat with an 'instance' point cloud")
    except FileNotFoundError as err:
        raise FrameError("missing_depth", f"{mat_path} not found") from err
    except ValueError as err:
        raise FrameError("corrupt_depth", str(err)) from err
    try:
        points = np.asarray(instance, dtype=np.float64)
    except (ValueError, TypeError) as err:
        raise FrameError("corrupt_depth", f"{mat_path}: 'instance' is not a numeric point cloud ({err})") from err
    if points.ndim != 2 or points.shape[1] < 3:
        raise FrameError("corrupt_depth", f"{mat_path}: expected N x 6 points, got {points.shape}")
    return points


def project_upright_points(
    points: np.ndarray, rtilt: np.ndarray, k: np.ndarray, height: int, width: int
) -> np.ndarray:
    """Depth map (metres, 0 = no point) from a SUN upright point cloud; nearest point wins a pixel."""
    points = points[np.isfinite(points[:, :3]).all(axis=1)]  # a NaN / infinite point measured nothing
    camera = points[:, :3] @ rtilt  # rows of (Rtilt^T p): undo the tilt
    x, z, y = camera[:, 0], camera[:, 1], -camera[:, 2]
    front = z > 0
    x, y, z = x[front], y[front], z[front]
    intrinsics = CameraIntrinsics.from_matrix(k, pixel_origin=1.0)  # toolbox pixels are 1-based
    cols, rows = intrinsics.pixel_indices(*intrinsics.project(x, y, z))
    inside = (cols >= 0) & (cols < width) & (rows >= 0) & (rows < height)
    cols, rows, z = cols[inside], rows[inside], z[inside]
    depth = np.zeros((height, width), dtype=np.float32)
    order = np.argsort(-z, kind="stable")  # far first, so the nearest point is written last
    depth[rows[order], cols[order]] = z[order]
    return depth


def read_votenet_labels(
    path: Path, report: ReadReport, height: int | None = None, width: int | None = None
) -> list[SceneObject]:
    """2D boxes of a votenet label file (`name xmin ymin w h ...`); boxes only, no masks.

    With the image's `height` and `width`, a box lying wholly outside the image is dropped as well.
    """
    if not path.is_file():
        raise FrameError("missing_label", f"{path} not found")
    objects = []
    for number, line in enumerate(path.read_text(errors="replace").splitlines()):
        fields = line.split()
        if not fields:
            continue
        try:
            x, y, w, h = (float(v) for v in fields[1:5])
        except ValueError:
            report.drop("malformed_label_line", f"{path}:{number + 1}")
            continue
        if not (np.isfinite([x, y, w, h]).all() and x + w > x and y + h > y):  # w, h > 0 and not lost
            report.drop("degenerate_box", f"{path}:{number + 1}")
            continue
        inside = x < width and y < height and x + w > 0 and y + h > 0 if height and width else True
        if not inside:
            report.drop("box_outside_image", f"{path}:{number + 1}")
            continue
        if not is_known_object_name(fields[0]):
            report.drop("unknown_object_name", f"{path}:{number + 1}: {fields[0]!r:.60} is in no class list")
            continue
        objects.append(
            SceneObject(name=normalize_object_name(fields[0]), box=(x, y, x + w, y + h), instance_id=number)
        )
    return objects


def _votenet_split_of(root: Path) -> dict[str, str]:
    split_of = {}
    for split, file_name in (("train", "train_data_idx.txt"), ("val", "val_data_idx.txt")):
        path = root / file_name
        if path.is_file():
            split_of.update({f"{int(i):06d}": split for i in path.read_text().split()})
    return split_of


def read_sunrgbd_votenet(
    root: str | Path,
    with_rgb: bool = False,
    report: ReadReport | None = None,
    min_valid_fraction: float = MIN_VALID_DEPTH_FRACTION,
) -> Iterator[Scene]:
    """Frames of a `sunrgbd_trainval` folder (scene type unknown: votenet does not keep it)."""
    check_min_fraction(min_valid_fraction, "min_valid_fraction")
    root = require_dir(root, "votenet sunrgbd_trainval root")
    for sub in ("image", "depth", "calib", "label"):
        require_dir(root / sub, f"votenet {sub}/")
    report = report if report is not None else ReadReport()
    split_of = _votenet_split_of(root)
    for image_path in sorted((root / "image").glob("*.jpg")):
        index = image_path.stem
        frame_id = f"sunrgbd_votenet_{index}"
        try:
            rgb = read_image_array(image_path, "image") if with_rgb else None
            height, width = rgb.shape[:2] if rgb is not None else read_image_shape(image_path, "image")
            rtilt, k = read_votenet_calib(root / "calib" / f"{index}.txt")
            points = read_votenet_points(root / "depth" / f"{index}.mat")
            depth = project_upright_points(points, rtilt, k, height, width)
            check_valid_depth(depth, root / "depth" / f"{index}.mat", min_valid_fraction)
            objects = read_votenet_labels(root / "label" / f"{index}.txt", report, height, width)
        except Exception as err:  # whatever one frame's files raise, the other frames are still read
            report.skip(frame_id, as_frame_error(err, image_path))
            continue
        report.frames_read += 1
        yield Scene(
            id=frame_id,
            source="sunrgbd",
            depth=depth,
            objects=objects,
            rgb=rgb if with_rgb else None,
            intrinsics=k,
            split=split_of.get(index),
            meta={"layout": "votenet", "index": int(index), "rtilt": rtilt.tolist()},
        )
