"""Metres and 3D points from a depth map: camera intrinsics, (back-)projection, a region's depth and XYZ.

Camera frame (OpenCV's): x right, y down, z forward along the optical axis, all in metres. A pixel at
(row, col) sits at image coordinates u = col + pixel_origin, v = row + pixel_origin: `pixel_origin` is 0 for
an OpenCV-style K (NYU's published constants, the synthetic cameras) and 1 for the MATLAB toolbox's K
(SUN RGB-D's `intrinsics.txt` and votenet's `calib/`, used with 1-based pixels by `read3dPoints.m`).

A region is a box ``[x0, y0, x1, y1]`` in pixels (rows ``round(y0):round(y1)``, columns
``round(x0):round(x1)``, as `dataset_scripts.scene.SceneObject.region`) or a boolean H x W mask. Its depth
is the median of its valid (finite, > 0) depths; its XYZ is the coordinate-wise median of its valid pixels
back-projected, so the point lies on the visible surface even when a mask's centre is not on the object,
and its z is the region's depth.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_HORIZONTAL_FOV_DEG = 60.0  # for a depth map without intrinsics; RGB-D cameras see 58-70 degrees


@dataclass(frozen=True)
class CameraIntrinsics:
    """A pinhole camera in pixels: focal lengths `fx`, `fy` and principal point (`cx`, `cy`)."""

    fx: float
    fy: float
    cx: float
    cy: float
    pixel_origin: float = 0.0  # image coordinate of the first pixel's centre (see the module docstring)

    def __post_init__(self) -> None:
        for name in ("fx", "fy", "cx", "cy", "pixel_origin"):
            value = getattr(self, name)
            if not isinstance(value, (int, float, np.number)) or not math.isfinite(value):
                raise ValueError(f"CameraIntrinsics: `{name}` must be a finite number; got {value!r}")
        if self.fx <= 0 or self.fy <= 0:
            raise ValueError(
                f"CameraIntrinsics: `fx` and `fy` must be > 0 pixels; got fx={self.fx}, fy={self.fy}"
            )

    @classmethod
    def from_matrix(cls, k: Any, pixel_origin: float = 0.0) -> CameraIntrinsics:
        """From a 3x3 pinhole matrix ``[[fx, 0, cx], [0, fy, cy], [0, 0, 1]]``."""
        try:
            matrix = np.asarray(k, dtype=np.float64)
        except (TypeError, ValueError) as error:
            raise ValueError(f"CameraIntrinsics: `K` must be a 3x3 matrix of numbers; got {k!r}") from error
        if matrix.shape != (3, 3):
            raise ValueError(f"CameraIntrinsics: `K` must be a 3x3 matrix; got shape {matrix.shape}")
        fx, fy, cx, cy = (float(matrix[i, j]) for i, j in ((0, 0), (1, 1), (0, 2), (1, 2)))
        return cls(fx, fy, cx, cy, pixel_origin)

    @classmethod
    def from_fov(
        cls, width: int, height: int, horizontal_fov_deg: float = DEFAULT_HORIZONTAL_FOV_DEG
    ) -> CameraIntrinsics:
        """Square pixels, the principal point at the image centre, and `horizontal_fov_deg` across `width`."""
        if width <= 0 or height <= 0:
            raise ValueError(f"CameraIntrinsics: image size must be positive; got {width}x{height}")
        if not 0 < horizontal_fov_deg < 180:
            raise ValueError(f"CameraIntrinsics: `fov` must be in (0, 180) degrees; got {horizontal_fov_deg}")
        focal = (width / 2.0) / math.tan(math.radians(horizontal_fov_deg) / 2.0)
        return cls(focal, focal, (width - 1) / 2.0, (height - 1) / 2.0)

    @classmethod
    def nyu(cls, height: int = 480, width: int = 640) -> CameraIntrinsics:
        """NYU Depth V2's published RGB intrinsics (NYU toolbox), scaled to a (downsampled) frame size."""
        sx, sy = width / 640.0, height / 480.0
        k = NYU_INTRINSICS_640x480
        return cls(k.fx * sx, k.fy * sy, k.cx * sx, k.cy * sy)

    @classmethod
    def from_sunrgbd_file(cls, path: str | Path) -> CameraIntrinsics:
        """From a SUN RGB-D frame folder's ``intrinsics.txt`` (3x3, row major; 1-based pixels)."""
        return cls.from_matrix(read_sunrgbd_intrinsics(path), pixel_origin=1.0)

    @classmethod
    def from_votenet_calib(cls, path: str | Path) -> CameraIntrinsics:
        """From a votenet ``calib/NNNNNN.txt`` (Rtilt then K, column major; 1-based pixels)."""
        return cls.from_matrix(read_votenet_calib(path)[1], pixel_origin=1.0)

    def matrix(self) -> np.ndarray:
        """The 3x3 pinhole matrix K (float64)."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    def normalized_coordinates(self, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        """Per column x/z and per row y/z of the pixel centres: shapes (width,) and (height,), float64."""
        x = (np.arange(width) + self.pixel_origin - self.cx) / self.fx
        y = (np.arange(height) + self.pixel_origin - self.cy) / self.fy
        return x, y

    def project(self, x: Any, y: Any, z: Any) -> tuple[np.ndarray, np.ndarray]:
        """Camera-frame points -> image coordinates (u, v) in this K's convention (z must be non-zero)."""
        return np.asarray(x) * self.fx / z + self.cx, np.asarray(y) * self.fy / z + self.cy

    def pixel_indices(self, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Image coordinates -> the nearest pixel's 0-based (col, row) as int64, possibly outside the map."""
        origin = int(self.pixel_origin)
        return np.rint(u).astype(np.int64) - origin, np.rint(v).astype(np.int64) - origin


# NYU toolbox camera_params.m: the RGB camera, to which the labeled and sync depth are registered (640x480)
NYU_INTRINSICS_640x480 = CameraIntrinsics(518.8579, 519.46961, 325.58245, 253.73617)


def back_project(depth: Any, intrinsics: CameraIntrinsics) -> np.ndarray:
    """Every pixel's camera-frame point: (H, W, 3) float64 metres; a pixel without depth gets z = 0."""
    metres = check_depth_map(depth)
    x, y = intrinsics.normalized_coordinates(*metres.shape)
    z = metres.astype(np.float64)
    return np.stack([x[None, :] * z, y[:, None] * z, z], axis=-1)


# --------------------------------------------------------------------------------------------------
# Calibration files (SUN RGB-D)
# --------------------------------------------------------------------------------------------------


def _numbers_of(path: Path, what: str) -> np.ndarray:
    try:
        return np.array(path.read_text().split(), dtype=np.float64)
    except ValueError as error:
        raise ValueError(f"{what} {path}: not numbers ({error})") from error


def read_sunrgbd_intrinsics(path: str | Path) -> np.ndarray:
    """3x3 K from a SUN RGB-D ``intrinsics.txt`` (9 numbers, row major); FileNotFoundError when absent."""
    values = _numbers_of(Path(path), "SUN RGB-D intrinsics")
    if values.size != 9:
        raise ValueError(f"SUN RGB-D intrinsics {path}: expected 9 numbers, got {values.size}")
    return values.reshape(3, 3)


def read_votenet_calib(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(Rtilt, K) from a votenet calib file: two lines of 9 numbers each, column major."""
    lines = [line.split() for line in Path(path).read_text().splitlines() if line.strip()]
    try:
        rtilt = np.array(lines[0], dtype=np.float64).reshape(3, 3, order="F")
        k = np.array(lines[1], dtype=np.float64).reshape(3, 3, order="F")
    except (IndexError, ValueError) as error:
        raise ValueError(f"votenet calib {path}: expected two lines of 9 numbers ({error})") from error
    return rtilt, k


# --------------------------------------------------------------------------------------------------
# Regions
# --------------------------------------------------------------------------------------------------


def check_depth_map(depth: Any, name: str = "depth") -> np.ndarray:
    """`depth` as a 2-D float array of metres (0, NaN or inf = invalid), or a ValueError naming it."""
    try:
        metres = np.asarray(depth, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"`{name}` must be an H x W array of metres; got {type(depth).__name__}") from error
    if metres.ndim != 2 or metres.size == 0:
        raise ValueError(f"`{name}` must be an H x W array of metres; got shape {metres.shape}")
    return metres


def region_mask(region: Any, shape: tuple[int, int], name: str = "region") -> np.ndarray:
    """The boolean H x W mask of a box ``[x0, y0, x1, y1]`` or of a mask, or a ValueError naming `name`."""
    array = np.asarray(region)
    if array.ndim == 2:
        if array.shape != tuple(shape):
            raise ValueError(f"`{name}` mask has shape {array.shape}; expected the map's {tuple(shape)}")
        mask = array.astype(bool)
        if not mask.any():
            raise ValueError(f"`{name}` mask is empty; expected at least one pixel set")
        return mask
    try:
        box = [float(v) for v in np.asarray(region, dtype=np.float64).reshape(-1)]
    except (TypeError, ValueError) as error:
        message = f"`{name}` must be a box [x0, y0, x1, y1] or an H x W mask; got {region!r}"
        raise ValueError(message) from error
    if len(box) != 4 or not all(math.isfinite(v) for v in box):
        raise ValueError(f"`{name}` must be a box of four finite numbers [x0, y0, x1, y1]; got {region!r}")
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"`{name}` box {box} is empty; expected x0 < x1 and y0 < y1")
    height, width = shape
    if x1 <= 0 or y1 <= 0 or x0 >= width or y0 >= height:
        raise ValueError(f"`{name}` box {box} is outside the {width}x{height} depth map")
    mask = np.zeros(shape, dtype=bool)
    mask[max(y0, 0) : y1, max(x0, 0) : x1] = True
    return mask


def _valid_region(depth: Any, region: Any) -> tuple[np.ndarray, np.ndarray]:
    """(metres, mask of the region's valid pixels), or a ValueError when the region has no valid depth."""
    metres = check_depth_map(depth)
    mask = region_mask(region, metres.shape)
    valid = mask & np.isfinite(metres) & (metres > 0)
    if not valid.any():
        raise ValueError("`region` holds no valid depth (all 0, NaN or inf); expected some depth > 0 in it")
    return metres, valid


def depth_at_region(depth: Any, region: Any) -> float:
    """The median of the region's valid depths, in metres."""
    metres, valid = _valid_region(depth, region)
    return float(np.median(metres[valid]))


def region_xyz(depth: Any, region: Any, intrinsics: CameraIntrinsics) -> tuple[float, float, float]:
    """The region's point (x right, y down, z forward; metres, camera frame): coordinate-wise median of its
    valid pixels back-projected."""
    metres, valid = _valid_region(depth, region)
    rows, cols = np.nonzero(valid)
    x, y = intrinsics.normalized_coordinates(*metres.shape)
    z = metres[rows, cols]
    return float(np.median(x[cols] * z)), float(np.median(y[rows] * z)), float(np.median(z))
