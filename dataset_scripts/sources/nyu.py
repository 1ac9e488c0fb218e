"""NYU Depth V2 readers -> `Scene`: the labeled set (.mat v7.3), the "sync" layout, raw Kinect PGM.

The labeled set `nyu_depth_v2_labeled.mat` is MATLAB v7.3, i.e. HDF5. MATLAB stores arrays column
major, so h5py sees every array with its axes reversed: `depths` is (N, W, H) for MATLAB's H x W x N,
`images` (N, 3, W, H); frame i is `depths[i].T`. `names` and `sceneTypes` are cell arrays: datasets of
object references, each pointing at a uint16 array of character codes.

Instances follow the NYU toolbox `get_instance_masks.m`: one instance per (label, instance) pair with
label > 0 and instance > 0 (`instances` numbers objects within a class, so the pair is the identity).

Every reader drops (and counts in its `ReadReport`) a scene type outside NYU's 27 and an object name in
no known class list (`dataset_scripts.vocab`), and skips (and counts, with its path) a frame whose depth
is mostly invalid or whose reading raises anything.
"""

from __future__ import annotations

import json
import re
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
    read_mat_variables,
    require_dir,
)
from dataset_scripts.scene import Scene, SceneObject
from dataset_scripts.vocab import (
    NYU_SCENE_TYPES,
    is_known_object_name,
    known_scene_label,
    normalize_object_name,
    normalize_scene_name,
    nyu10_scene_class,
)
from deepsight.spatial import CameraIntrinsics

# NYU toolbox depth_rel2depth_abs.m: metres = 351.3 / (1092.5 - raw), raw 11-bit Kinect disparity
KINECT_DISPARITY_A, KINECT_DISPARITY_B, KINECT_MAX_DEPTH = 351.3, 1092.5, 10.0
KINECT_INVALID = 2047
LABELED_REQUIRED_KEYS = ("depths", "labels", "instances", "names", "sceneTypes")
SPLITS = ("train", "test", "all")


def nyu_scene_meta(raw: str | None, report: ReadReport, where: str) -> tuple[str | None, dict]:
    """(scene type, `scene_type_raw` / `nyu10` meta) of a raw NYU scene type; an unknown one is dropped."""
    label = known_scene_label(raw, NYU_SCENE_TYPES) if raw else None
    if raw and label is None:
        report.drop("unknown_scene_label", f"{where}: {raw!r:.60} is not one of NYU's scene types")
    return label, {"scene_type_raw": raw, "nyu10": nyu10_scene_class(raw) if label else None}


def scaled_nyu_intrinsics(height: int, width: int) -> np.ndarray:
    """The NYU RGB intrinsics scaled to a (possibly downsampled) frame size."""
    return CameraIntrinsics.nyu(height, width).matrix()


# --------------------------------------------------------------------------------------------------
# Official split
# --------------------------------------------------------------------------------------------------


def load_nyu_split(path: str | Path) -> dict[str, set[int]]:
    """The official 795/654 split as 0-based frame indices: from `splits.mat` or its JSON twin."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"NYU split file {str(path)!r} does not exist (expected splits.mat or a JSON twin)")
    if path.suffix == ".json":
        data = json.loads(path.read_text())
        try:
            train, test = data["train_indices_1based"], data["test_indices_1based"]
        except KeyError as err:
            raise ValueError(
                f"{path}: expected keys 'train_indices_1based' and 'test_indices_1based'"
            ) from err
    else:
        train, test = (
            indices.ravel()
            for indices in read_mat_variables(
                path, ("trainNdxs", "testNdxs"), "a NYU splits.mat with trainNdxs/testNdxs"
            )
        )
    return {"train": {int(i) - 1 for i in train}, "test": {int(i) - 1 for i in test}}


def find_nyu_split_file(mat_path: Path) -> Path | None:
    for candidate in (
        mat_path.parent / "splits.mat",
        mat_path.parent / "metadata" / "splits.mat",
        mat_path.parent / "nyu_class_and_split_lists.json",
        mat_path.parent / "metadata" / "nyu_class_and_split_lists.json",
    ):
        if candidate.is_file():
            return candidate
    return None


# --------------------------------------------------------------------------------------------------
# Labeled set (.mat v7.3)
# --------------------------------------------------------------------------------------------------


def _matlab_strings(h5file, dataset) -> list[str]:
    """A MATLAB cell array of char arrays (stored as object references) -> Python strings."""
    strings = []
    for ref in np.asarray(dataset).ravel():
        codes = np.asarray(h5file[ref]).ravel()
        strings.append("".join(chr(int(c)) for c in codes if c))
    return strings


def instance_objects(
    labels: np.ndarray, instances: np.ndarray, names: list[str], report: ReadReport
) -> list[SceneObject]:
    """One `SceneObject` per (label, instance) pair, label > 0 and instance > 0, as in the NYU toolbox."""
    keys = labels.astype(np.int64) * 65536 + instances.astype(np.int64)
    keys[(labels == 0) | (instances == 0)] = 0
    objects = []
    for key in np.unique(keys):
        if key == 0:
            continue
        label, instance = int(key // 65536), int(key % 65536)
        if label > len(names):
            report.drop("label_out_of_range", f"label {label} > {len(names)} names")
            continue
        if not is_known_object_name(names[label - 1]):
            report.drop("unknown_object_name", f"label {label} {names[label - 1]!r:.60} is in no class list")
            continue
        mask = keys == key
        objects.append(
            SceneObject(
                name=normalize_object_name(names[label - 1]),
                box=box_of_mask(mask),
                mask=mask,
                instance_id=label * 1000 + instance,
            )
        )
    return objects


def read_nyu_labeled(
    mat_path: str | Path,
    split: str = "test",
    split_file: str | Path | None = None,
    with_rgb: bool = False,
    report: ReadReport | None = None,
    min_valid_fraction: float = MIN_VALID_DEPTH_FRACTION,
) -> Iterator[Scene]:
    """Scenes of `nyu_depth_v2_labeled.mat` in the official `split` ("train" 795, "test" 654 or "all").

    `split_file` defaults to a `splits.mat` (or `nyu_class_and_split_lists.json`) next to the .mat file
    or in a `metadata/` folder beside it. Scene ids are `nyu_<1-based index>` as in the NYU toolbox.
    """
    import h5py

    if split not in SPLITS:
        raise ValueError(f"split: expected one of {SPLITS}, got {split!r}")
    check_min_fraction(min_valid_fraction, "min_valid_fraction")
    mat_path = Path(mat_path)
    if not mat_path.is_file():
        raise ValueError(f"NYU labeled file {str(mat_path)!r} does not exist")
    report = report if report is not None else ReadReport()
    split_of: dict[int, str] = {}
    if split != "all" or split_file is not None:
        split_file = Path(split_file) if split_file is not None else find_nyu_split_file(mat_path)
        if split_file is None:
            raise ValueError(
                f"split {split!r} needs the official split: pass split_file= (splits.mat) or put it "
                f"next to {mat_path}"
            )
        split_of = {i: name for name, indices in load_nyu_split(split_file).items() for i in indices}
    try:
        h5 = h5py.File(mat_path, "r")
    except OSError as err:
        raise ValueError(
            f"{mat_path}: not a MATLAB v7.3 (HDF5) file ({err}); the NYU labeled set is v7.3"
        ) from err
    with h5:
        missing = [key for key in LABELED_REQUIRED_KEYS + (("images",) if with_rgb else ()) if key not in h5]
        if missing:
            raise ValueError(
                f"{mat_path}: missing variables {missing}; expected {list(LABELED_REQUIRED_KEYS)}"
            )
        try:
            names = _matlab_strings(h5, h5["names"])
            scene_types = _matlab_strings(h5, h5["sceneTypes"])
            num_frames = h5["depths"].shape[0]
        except Exception as err:  # h5py raises KeyError, OSError, TypeError... on a damaged file
            raise ValueError(f"{mat_path}: cannot read 'names' / 'sceneTypes' / 'depths' ({err})") from err
        for index in range(num_frames):
            frame_split = split_of.get(index)
            if split != "all" and frame_split != split:
                continue
            frame_id = f"nyu_{index + 1:04d}"
            try:
                scene = _labeled_frame(
                    h5, index, frame_id, names, scene_types, frame_split, with_rgb, report, min_valid_fraction
                )
            except Exception as err:  # whatever one frame's arrays raise, the other frames are still read
                report.skip(frame_id, as_frame_error(err, f"{mat_path} frame {index + 1}"))
                continue
            report.frames_read += 1
            yield scene


def _labeled_frame(
    h5, index, frame_id, names, scene_types, split, with_rgb, report, min_valid_fraction
) -> Scene:
    depth = np.asarray(h5["depths"][index], dtype=np.float32).T
    labels = np.asarray(h5["labels"][index]).T
    instances = np.asarray(h5["instances"][index]).T
    check_same_size(depth, labels, "labels")
    check_same_size(depth, instances, "instances")
    depth = np.where(np.isfinite(depth) & (depth > 0), depth, 0).astype(np.float32)
    check_valid_depth(depth, f"{h5.filename} frame {index + 1}", min_valid_fraction)
    rgb = np.ascontiguousarray(np.asarray(h5["images"][index]).transpose(2, 1, 0)) if with_rgb else None
    if rgb is not None:
        check_same_size(depth, rgb, "image")
    if index >= len(scene_types):
        raise FrameError(
            "missing_scene_type", f"sceneTypes has {len(scene_types)} entries, frame {index + 1} has none"
        )
    scene_type, scene_meta = nyu_scene_meta(scene_types[index], report, f"sceneTypes[{index + 1}]")
    return Scene(
        id=frame_id,
        source="nyu",
        depth=depth,
        objects=instance_objects(labels, instances, names, report),
        scene_type=scene_type,
        rgb=rgb,
        intrinsics=scaled_nyu_intrinsics(*depth.shape),
        split=split,
        meta={**scene_meta, "index": index + 1},
    )


# --------------------------------------------------------------------------------------------------
# "sync" layout (BTS / Metric3D): rgb_XXXXX.jpg + sync_depth_XXXXX.png (uint16 mm)
# --------------------------------------------------------------------------------------------------

_NYU_SEQUENCE_RE = re.compile(r"^([a-z_]+?)_\d{4}[a-z]?(?:_out)?$")


def scene_type_from_sequence(path: Path) -> str | None:
    """'kitchen_0028a/...' -> 'kitchen'; None when no folder of `path` is a NYU sequence name."""
    for part in reversed(path.parts[:-1]):
        match = _NYU_SEQUENCE_RE.match(part)
        if match:
            return match.group(1)
    return None


def _sync_frame(depth_path: Path) -> tuple[str, list[Path], str | None]:
    """(frame key, candidate RGB files, sequence name in the file name) of a sync-style depth file.

    Two namings exist: BTS's `sync_depth_00050.png` beside `rgb_00050.jpg` (or in sibling `depth/` and
    `rgb/` folders), and the flat `bookstore_0001d_00001_depth.png` + `bookstore_0001d_00001.jpg`.
    """
    stem = depth_path.stem
    if stem.startswith("sync_depth_"):
        number = stem.removeprefix("sync_depth_")
        rgb = [
            depth_path.with_name(f"rgb_{number}.jpg"),
            depth_path.parent.parent / "rgb" / f"rgb_{number}.jpg",
        ]
        return number, rgb, None
    frame = stem.removesuffix("_depth")
    sequence = re.sub(r"_\d+$", "", frame)
    return frame, [depth_path.with_name(f"{frame}.jpg"), depth_path.with_name(f"{frame}.png")], sequence


def read_nyu_sync(
    root: str | Path,
    with_rgb: bool = False,
    report: ReadReport | None = None,
    min_valid_fraction: float = MIN_VALID_DEPTH_FRACTION,
) -> Iterator[Scene]:
    """Frames of a sync-layout folder (searched recursively); depth only, no object annotations."""
    from modeling_deepsight.depth_codec_deepsight import decode_depth  # heavy: see dataset_scripts.export

    check_min_fraction(min_valid_fraction, "min_valid_fraction")
    root = require_dir(root, "NYU sync root")
    report = report if report is not None else ReadReport()
    depth_paths = sorted(set(root.rglob("sync_depth_*.png")) | set(root.rglob("*_depth.png")))
    if not depth_paths:
        raise ValueError(f"NYU sync root {str(root)!r}: no sync_depth_*.png or *_depth.png found")
    for depth_path in depth_paths:
        frame, rgb_candidates, sequence = _sync_frame(depth_path)
        folders = [part for part in depth_path.relative_to(root).parent.parts if part != "depth"]
        frame_id = "_".join(["nyu_sync", *folders, frame])
        try:
            raw = read_image_array(depth_path, "depth")
            if raw.dtype != np.uint16:
                raise FrameError(
                    "bad_depth_encoding", f"{depth_path}: expected a 16-bit PNG in mm, got {raw.dtype}"
                )
            depth = decode_depth(raw, "mm", name=str(depth_path))
            check_valid_depth(depth, depth_path, min_valid_fraction)
            rgb_path = next((p for p in rgb_candidates if p.is_file()), None)
            rgb = None
            if rgb_path is not None:
                rgb = read_image_array(rgb_path, "image") if with_rgb else None
                check_same_size(
                    depth, rgb if rgb is not None else read_image_shape(rgb_path, "image"), "image"
                )
            scene_raw = scene_type_from_sequence(depth_path.relative_to(root))
            if scene_raw is None and sequence is not None:
                match = _NYU_SEQUENCE_RE.match(sequence)
                scene_raw = match.group(1) if match else None
            scene_type, scene_meta = nyu_scene_meta(scene_raw, report, str(depth_path))
            scene = Scene(
                id=frame_id,
                source="nyu",
                depth=depth,
                rgb=rgb if with_rgb else None,
                scene_type=scene_type,
                intrinsics=scaled_nyu_intrinsics(*depth.shape),
                meta={**scene_meta, "depth_path": str(depth_path)},
            )
        except Exception as err:  # whatever one frame's files raise, the other frames are still read
            report.skip(frame_id, as_frame_error(err, depth_path))
            continue
        report.frames_read += 1
        yield scene


# --------------------------------------------------------------------------------------------------
# Raw Kinect dump (PGM, little-endian 11-bit disparity)
# --------------------------------------------------------------------------------------------------


def _parse_pnm_header(data: bytes, path: Path) -> tuple[int, int, int, int]:
    """(width, height, maxval, offset of the pixels) of a binary P5 file; comments allowed."""
    tokens: list[bytes] = []
    pos = 0
    while len(tokens) < 4:
        while pos < len(data) and data[pos : pos + 1].isspace():
            pos += 1
        if data[pos : pos + 1] == b"#":
            pos = data.index(b"\n", pos) + 1
            continue
        start = pos
        while pos < len(data) and not data[pos : pos + 1].isspace():
            pos += 1
        if start == pos:
            raise ValueError(f"{path}: truncated PGM header")
        tokens.append(data[start:pos])
    if tokens[0] != b"P5":
        raise ValueError(f"{path}: expected a binary PGM (P5), got magic {tokens[0]!r}")
    width, height, maxval = (int(t) for t in tokens[1:])
    return width, height, maxval, pos + 1  # one whitespace byte ends the header


def read_kinect_disparity_pgm(path: str | Path) -> np.ndarray:
    """The raw uint16 disparity of a NYU raw-dump PGM.

    The header claims a big-endian 16-bit P5 like any PGM, but the NYU dumps hold little-endian
    samples (the toolbox reads them with `swapbytes(imread(...))`).
    """
    path = Path(path)
    data = path.read_bytes()
    width, height, maxval, offset = _parse_pnm_header(data, path)
    if maxval < 256:
        raise ValueError(f"{path}: expected 16-bit samples (maxval > 255), got maxval {maxval}")
    pixels = (
        np.frombuffer(data, dtype="<u2", count=width * height, offset=offset)
        if len(data) >= offset + 2 * width * height
        else None
    )
    if pixels is None:
        raise ValueError(
            f"{path}: {width}x{height} 16-bit PGM needs {2 * width * height} bytes of pixels, "
            f"file has {len(data) - offset}"
        )
    return pixels.reshape(height, width).copy()


def kinect_disparity_to_metres(disparity: np.ndarray) -> np.ndarray:
    """NYU toolbox `depth_rel2depth_abs.m`: 351.3 / (1092.5 - raw), clipped to [0, 10] m; 2047 = invalid."""
    raw = disparity.astype(np.float64)
    with np.errstate(divide="ignore"):
        metres = KINECT_DISPARITY_A / (KINECT_DISPARITY_B - raw)
    metres = np.clip(np.nan_to_num(metres, nan=0.0, posinf=0.0, neginf=0.0), 0.0, KINECT_MAX_DEPTH)
    metres[disparity >= KINECT_INVALID] = 0.0
    return metres.astype(np.float32)


def read_nyu_raw_frame(pgm_path: str | Path, scene_type: str | None = None) -> Scene:
    """One raw Kinect frame as a Scene (depth not registered to RGB nor undistorted; no intrinsics)."""
    pgm_path = Path(pgm_path)
    if not pgm_path.is_file():
        raise ValueError(f"raw Kinect depth {str(pgm_path)!r} does not exist")
    depth = kinect_disparity_to_metres(read_kinect_disparity_pgm(pgm_path))
    return Scene(
        id=f"nyu_raw_{pgm_path.stem}",
        source="nyu",
        depth=depth,
        scene_type=normalize_scene_name(scene_type) if scene_type else None,
        meta={"depth_path": str(pgm_path), "registered": False},
    )
