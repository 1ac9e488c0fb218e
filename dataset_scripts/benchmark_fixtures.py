"""Tiny files in each real source format, written from known ground truth (tests, demos, smoke runs).

Nobody can download NYU Depth V2 or SUN RGB-D here, so the readers are exercised on files these
writers lay out exactly as the originals: the NYU labeled set as MATLAB v7.3 (HDF5 with a MATLAB
user block, column-major axes, cell arrays of char as object references), SUN RGB-D original frame
folders (bit-rotated depth, SUN3D polygon JSON) and votenet's `sunrgbd_trainval` (upright point
clouds + column-major calib). Scenes are flat rectangles at known depths, so every derived quantity
(mask, box, mean depth) is known exactly.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

MATLAB_V73_HEADER = (
    b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 ."
)


@dataclass
class FixtureObject:
    """An axis-aligned rectangle of constant depth: pixels [y0:y1, x0:x1]."""

    name: str
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive)
    depth: float  # metres


def render_fixture_depth(
    objects: Sequence[FixtureObject], height: int, width: int, background: float = 4.5
) -> np.ndarray:
    """Depth of the background wall with the rectangles painted in order (later ones in front)."""
    depth = np.full((height, width), background, dtype=np.float32)
    for obj in objects:
        x0, y0, x1, y1 = obj.box
        depth[y0:y1, x0:x1] = obj.depth
    return depth


def visible_mask(objects: Sequence[FixtureObject], index: int, height: int, width: int) -> np.ndarray:
    """Pixels where object `index` is the last painted (visible) one."""
    owner = np.full((height, width), -1)
    for i, obj in enumerate(objects):
        x0, y0, x1, y1 = obj.box
        owner[y0:y1, x0:x1] = i
    return owner == index


# --------------------------------------------------------------------------------------------------
# NYU labeled .mat (v7.3)
# --------------------------------------------------------------------------------------------------


def _write_matlab_strings(h5, name: str, strings: Sequence[str]) -> None:
    import h5py

    refs = h5.require_group("#refs#")
    ref_values = []
    for i, text in enumerate(strings):
        data = refs.create_dataset(
            f"{name}_{i}", data=np.array([[ord(c)] for c in text], dtype=np.uint16).reshape(-1, 1)
        )
        data.attrs["MATLAB_class"] = np.bytes_("char")
        ref_values.append(data.ref)
    cell = h5.create_dataset(name, shape=(1, len(strings)), dtype=h5py.ref_dtype)
    cell[0, :] = ref_values
    cell.attrs["MATLAB_class"] = np.bytes_("cell")


def write_nyu_labeled_mat(path: str | Path, frames: Sequence[dict], names: Sequence[str]) -> Path:
    """A `nyu_depth_v2_labeled.mat` with the frames given.

    Each frame: {"depth": HxW metres, "labels": HxW uint16 (1-based into `names`, 0 = unlabeled),
    "instances": HxW uint8, "scene": "living_room", optional "rgb": HxWx3 uint8}. Arrays are stored
    the way MATLAB writes v7.3: axes reversed (N, W, H), so frame i reads back as `depths[i].T`.
    """
    import h5py

    path = Path(path)
    with h5py.File(path, "w", userblock_size=512) as h5:

        def stack(key, dtype):
            return np.stack([np.asarray(f[key], dtype=dtype).T for f in frames])

        h5.create_dataset("depths", data=stack("depth", np.float32))
        h5.create_dataset("labels", data=stack("labels", np.uint16))
        h5.create_dataset("instances", data=stack("instances", np.uint8))
        rgbs = [
            f.get("rgb") if f.get("rgb") is not None else np.zeros((*f["depth"].shape, 3), np.uint8)
            for f in frames
        ]
        h5.create_dataset("images", data=np.stack([np.asarray(r, np.uint8).transpose(2, 1, 0) for r in rgbs]))
        _write_matlab_strings(h5, "names", names)
        _write_matlab_strings(h5, "sceneTypes", [f["scene"] for f in frames])
    with open(path, "r+b") as f:  # MATLAB's 128-byte text header inside the HDF5 user block
        f.write(MATLAB_V73_HEADER.ljust(116) + b"\x00" * 8 + b"\x00\x02IM")
    return path


def write_nyu_splits_mat(path: str | Path, train_1based: Sequence[int], test_1based: Sequence[int]) -> Path:
    import scipy.io

    scipy.io.savemat(
        str(path),
        {
            "trainNdxs": np.array(train_1based, dtype=np.float64).reshape(-1, 1),
            "testNdxs": np.array(test_1based, dtype=np.float64).reshape(-1, 1),
        },
    )
    return Path(path)


# --------------------------------------------------------------------------------------------------
# SUN RGB-D original layout
# --------------------------------------------------------------------------------------------------


def write_sun_frame(
    folder: str | Path,
    objects: Sequence[FixtureObject],
    scene: str | None = "bedroom",
    height: int = 60,
    width: int = 80,
    holes: int = 0,
    extra_polygons: Sequence[dict] = (),
    extra_objects: Sequence = (),
) -> np.ndarray:
    """One original-layout frame folder; returns the metric depth written (raw depth/ has `holes` zero rows).

    Each object is one rectangle polygon; `extra_polygons` / `extra_objects` are appended verbatim to
    the SUN3D JSON (to reproduce the broken annotations real files hold).
    """
    from modeling_deepsight.image_processing_deepsight import encode_depth

    folder = Path(folder)
    for sub in ("image", "depth", "depth_bfx", "annotation2Dfinal"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    filled = render_fixture_depth(objects, height, width)
    raw = filled.copy()
    raw[:holes] = 0.0
    Image.fromarray(encode_depth(raw, "sun")).save(folder / "depth" / f"{folder.name}.png")
    Image.fromarray(encode_depth(filled, "sun")).save(folder / "depth_bfx" / f"{folder.name}.png")
    gray = (255 * (1 - np.clip(filled / 10.0, 0, 1))).astype(np.uint8)
    Image.fromarray(np.repeat(gray[..., None], 3, axis=2)).save(folder / "image" / f"{folder.name}.jpg")
    if scene is not None:
        (folder / "scene.txt").write_text(scene)
    (folder / "intrinsics.txt").write_text(
        f"{width * 0.8:.6f} 0 {width / 2:.6f}\n0 {width * 0.8:.6f} {height / 2:.6f}\n0 0 1\n"
    )
    polygons = [
        {
            "x": [o.box[0], o.box[2], o.box[2], o.box[0]],
            "y": [o.box[1], o.box[1], o.box[3], o.box[3]],
            "object": i,
        }
        for i, o in enumerate(objects)
    ]
    annotation = {
        "name": folder.name,
        "objects": [{"name": o.name} for o in objects] + list(extra_objects),
        "frames": [{"polygon": polygons + list(extra_polygons)}],
    }
    (folder / "annotation2Dfinal" / "index.json").write_text(json.dumps(annotation))
    return raw


# --------------------------------------------------------------------------------------------------
# votenet sunrgbd_trainval
# --------------------------------------------------------------------------------------------------


def upright_points_from_depth(depth: np.ndarray, rtilt: np.ndarray, k: np.ndarray) -> np.ndarray:
    """The SUNRGBD toolbox `read3dPoints.m` forward model: N x 6 upright xyzrgb of the valid pixels."""
    height, width = depth.shape
    u, v = np.meshgrid(np.arange(1, width + 1), np.arange(1, height + 1))  # 1-based pixels
    valid = depth > 0
    z = depth[valid].astype(np.float64)
    x = (u[valid] - k[0, 2]) * z / k[0, 0]
    y = (v[valid] - k[1, 2]) * z / k[1, 1]
    camera = np.column_stack([x, z, -y])
    upright = camera @ rtilt.T
    return np.column_stack([upright, np.full((upright.shape[0], 3), 0.5)])


def write_votenet_frame(
    root: str | Path,
    index: int,
    objects: Sequence[FixtureObject],
    height: int = 60,
    width: int = 80,
    tilt_degrees: float = 5.0,
    split: str = "train",
) -> np.ndarray:
    """One `sunrgbd_trainval` sample; returns the metric depth its point cloud was made from."""
    import scipy.io

    root = Path(root)
    for sub in ("image", "depth", "calib", "label"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    depth = render_fixture_depth(objects, height, width)
    angle = np.deg2rad(tilt_degrees)
    rtilt = np.array([[1, 0, 0], [0, np.cos(angle), -np.sin(angle)], [0, np.sin(angle), np.cos(angle)]])
    k = np.array([[width * 0.8, 0, width / 2], [0, width * 0.8, height / 2], [0, 0, 1]])
    stem = f"{index:06d}"
    Image.fromarray(np.zeros((height, width, 3), np.uint8)).save(root / "image" / f"{stem}.jpg")
    scipy.io.savemat(
        str(root / "depth" / f"{stem}.mat"), {"instance": upright_points_from_depth(depth, rtilt, k)}
    )
    column_major = lambda m: " ".join(f"{v:.6f}" for v in m.ravel(order="F"))  # noqa: E731
    (root / "calib" / f"{stem}.txt").write_text(f"{column_major(rtilt)}\n{column_major(k)}\n")
    lines = [
        f"{o.name.replace(' ', '_')} {o.box[0]} {o.box[1]} {o.box[2] - o.box[0]} {o.box[3] - o.box[1]} "
        "0 1 0 0.5 0.5 0.5 1 0"
        for o in objects
    ]
    (root / "label" / f"{stem}.txt").write_text("\n".join(lines) + "\n")
    with open(root / f"{'train' if split == 'train' else 'val'}_data_idx.txt", "a") as f:
        f.write(f"{index}\n")
    return depth
