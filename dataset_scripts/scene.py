"""The common record every depth source is read into (see ../shared/DESIGN.md).

Readers (NYU, SUN RGB-D, COCO + depth estimator, the synthetic world) produce `Scene`s; the three
dataset builders consume them. Depth is metric: metres, float32, 0 = invalid/missing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class SceneObject:
    """One annotated object instance."""

    name: str  # class name, lower case, words separated by spaces ("night stand")
    box: tuple[float, float, float, float]  # [x0, y0, x1, y1] in pixels of the scene's depth map
    mask: np.ndarray | None = None  # bool HxW instance mask; None when the source has boxes only
    instance_id: int = -1

    def mean_depth(self, depth: np.ndarray) -> float:
        """Mean of the valid (> 0) depth under the instance mask (or the box when there is no mask)."""
        region = self.region(depth.shape)
        values = depth[region]
        values = values[values > 0]
        return float(values.mean()) if values.size else float("nan")

    def region(self, shape: tuple[int, int]) -> np.ndarray:
        if self.mask is not None:
            return self.mask.astype(bool)
        x0, y0, x1, y1 = (int(round(v)) for v in self.box)
        region = np.zeros(shape, dtype=bool)
        region[max(y0, 0) : max(y1, 0), max(x0, 0) : max(x1, 0)] = True
        return region


@dataclass
class Scene:
    """A depth frame with its objects, scene label and captions."""

    id: str
    source: str  # "nyu" | "sunrgbd" | "synthetic" | "coco"
    depth: np.ndarray  # float32 HxW metres, 0 = invalid
    objects: list[SceneObject] = field(default_factory=list)
    scene_type: str | None = None  # e.g. "bedroom"; None when unknown
    rgb: np.ndarray | None = None  # uint8 HxWx3 (pseudo-RGB for synthetic scenes), optional
    captions: list[str] = field(default_factory=list)
    intrinsics: np.ndarray | None = None  # 3x3 pinhole K in pixels of `depth`
    depth_is_predicted: bool = False  # True when a depth estimator produced `depth` (COCO pairs)
    split: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.depth.ndim != 2:
            raise ValueError(f"Scene {self.id!r}: depth must be HxW, got shape {self.depth.shape}")

    @property
    def height(self) -> int:
        return int(self.depth.shape[0])

    @property
    def width(self) -> int:
        return int(self.depth.shape[1])

    @property
    def object_names(self) -> list[str]:
        return [obj.name for obj in self.objects]
