"""Depth tools a chat model can call between turns: "depth at region" and "XYZ of region".

`DEPTH_TOOLS` are JSON-schema function specs (derived by transformers' `get_json_schema` from the typed,
documented signatures below) to pass as ``tools=`` to `apply_chat_template`; `call_tool` runs the call the
model wrote against the depth map and intrinsics the application holds, and returns a JSON-able dict for the
``{"role": "tool", ...}`` turn. The rules (median of the region's valid depths; camera frame x right, y down,
z forward) are `deepsight.spatial`'s.
"""

from __future__ import annotations

import json
from typing import Any

from transformers.utils import get_json_schema

from deepsight import spatial


def depth_at_region(box: list[float]) -> dict:
    """
    Distance from the camera to a region of the depth map: the median of its valid depths, in metres.

    Args:
        box: The region as [x0, y0, x1, y1] in pixels of the depth map.
    """
    raise NotImplementedError("a schema: `call_tool` runs it against a depth map")


def xyz_of_region(box: list[float]) -> dict:
    """
    3D point of a region in the camera frame, in metres: x to the right, y down, z forward from the camera.

    Args:
        box: The region as [x0, y0, x1, y1] in pixels of the depth map.
    """
    raise NotImplementedError("a schema: `call_tool` runs it against a depth map")


DEPTH_TOOLS: list[dict] = [get_json_schema(depth_at_region), get_json_schema(xyz_of_region)]
TOOL_NAMES = tuple(tool["function"]["name"] for tool in DEPTH_TOOLS)


def _arguments_of(name: str, arguments: Any) -> dict:
    """A tool call's arguments as a dict (models write them as a dict or as a JSON string)."""
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError as error:
            message = f"tool `{name}`: `arguments` is not valid JSON ({error}); got {arguments!r}"
            raise ValueError(message) from error
    if not isinstance(arguments, dict) or "box" not in arguments:
        raise ValueError(f"tool `{name}`: `arguments` must be an object with a `box`; got {arguments!r}")
    return arguments


def call_tool(
    name: str, arguments: Any, depth: Any, intrinsics: spatial.CameraIntrinsics | None = None
) -> dict[str, Any]:
    """Run the depth tool `name` with the model's `arguments` on `depth` (H x W metres).

    Without `intrinsics`, ``xyz_of_region`` assumes `spatial.DEFAULT_HORIZONTAL_FOV_DEG` across the map.
    Returns a JSON-able dict, metres rounded to the millimetre.
    """
    if name not in TOOL_NAMES:
        raise ValueError(f"tool `name` must be one of {TOOL_NAMES}; got {name!r}")
    box = _arguments_of(name, arguments)["box"]
    if name == "depth_at_region":
        return {"box": box, "depth_m": round(spatial.depth_at_region(depth, box), 3)}
    metres = spatial.check_depth_map(depth)
    if intrinsics is None:
        intrinsics = spatial.CameraIntrinsics.from_fov(metres.shape[1], metres.shape[0])
    x, y, z = spatial.region_xyz(metres, box, intrinsics)
    metres_xyz = {"x_m": round(x, 3), "y_m": round(y, 3), "z_m": round(z, 3)}
    return {"box": box, **metres_xyz, "frame": "camera: x right, y down, z forward"}
