"""The depth view: a colormapped depth map with the boxes drawn on it and a colorbar legend in metres.

The view is one PNG: the depth map on the left at a known scale (`display_scale`), so a click on it
maps back to depth-map pixels exactly, and a matplotlib colorbar on the right.
"""

from __future__ import annotations

import io

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from PIL import Image, ImageDraw

from deepsight.spatial import DEFAULT_HORIZONTAL_FOV_DEG, CameraIntrinsics, region_xyz

COLORMAP = "turbo_r"  # near = red, far = blue
INVALID_COLOUR = (40, 40, 40)
BOX_COLOURS = [(255, 255, 255), (255, 0, 255), (0, 255, 255), (255, 255, 0)]
# The displayed map's longer side is kept between these (small maps are enlarged so boxes stay visible).
MIN_DISPLAY_SIDE = 320
MAX_DISPLAY_SIDE = 720


def display_scale(height: int, width: int) -> float:
    """Displayed pixels per depth-map pixel."""
    longer = max(height, width)
    if longer > MAX_DISPLAY_SIDE:
        return MAX_DISPLAY_SIDE / longer
    if longer < MIN_DISPLAY_SIDE:
        return float(MIN_DISPLAY_SIDE // longer or 1)
    return 1.0


def to_depth_pixels(x: float, y: float, height: int, width: int) -> tuple[float, float] | None:
    """A click on the view (view pixels) -> depth-map pixels; None when it lands on the legend."""
    scale = display_scale(height, width)
    dx, dy = x / scale, y / scale
    if not (0 <= dx <= width and 0 <= dy <= height):
        return None
    return round(dx, 1), round(dy, 1)


def depth_range(metres: np.ndarray) -> tuple[float, float]:
    """Robust colour range (2nd-98th percentile of valid depth) so a few outliers do not wash out the map."""
    valid = metres[metres > 0]
    if valid.size == 0:
        return 0.0, 1.0
    low, high = np.percentile(valid, [2, 98])
    if high - low < 1e-3:
        low, high = float(valid.min()), float(valid.min()) + 1e-3
    return float(low), float(high)


def colorize(metres: np.ndarray, low: float, high: float) -> np.ndarray:
    """uint8 H x W x 3 colours of the depth; invalid pixels dark grey."""
    norm = Normalize(vmin=low, vmax=high, clip=True)
    rgb = (colormaps[COLORMAP](norm(metres))[..., :3] * 255).astype(np.uint8)
    rgb[~(metres > 0)] = INVALID_COLOUR
    return rgb


def render_colorbar(low: float, high: float, height: int) -> Image.Image:
    """A vertical colorbar labelled in metres, `height` pixels tall."""
    # A bare Figure (not pyplot): pyplot's global state is not safe across gradio's worker threads.
    dpi = 100
    figure = Figure(figsize=(1.05, max(height, 120) / dpi), dpi=dpi)
    FigureCanvasAgg(figure)
    axis = figure.add_axes([0.08, 0.06, 0.22, 0.88])
    bar = figure.colorbar(ScalarMappable(norm=Normalize(vmin=low, vmax=high), cmap=COLORMAP), cax=axis)
    bar.set_label("depth (m)", fontsize=8)
    bar.ax.tick_params(labelsize=7)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, facecolor="white")
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")


def render_depth_view(
    metres: np.ndarray,
    boxes: list[list[float]] | None = None,
    pending_corner: tuple[float, float] | None = None,
) -> Image.Image:
    """The depth map in colour with numbered boxes (and a half-drawn box's first corner), plus its legend."""
    height, width = metres.shape
    scale = display_scale(height, width)
    low, high = depth_range(metres)
    view = Image.fromarray(colorize(metres, low, high))
    if scale != 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        view = view.resize(size, Image.Resampling.NEAREST if scale > 1 else Image.Resampling.BILINEAR)
    draw = ImageDraw.Draw(view)
    for index, (x0, y0, x1, y1) in enumerate(boxes or []):
        colour = BOX_COLOURS[index % len(BOX_COLOURS)]
        corners = [x0 * scale, y0 * scale, x1 * scale - 1, y1 * scale - 1]
        draw.rectangle(corners, outline=colour, width=2)
        draw.text((corners[0] + 3, corners[1] + 2), str(index + 1), fill=colour)
    if pending_corner is not None:
        x, y = pending_corner[0] * scale, pending_corner[1] * scale
        draw.line([x - 6, y, x + 6, y], fill=(255, 255, 255), width=2)
        draw.line([x, y - 6, x, y + 6], fill=(255, 255, 255), width=2)
    legend = render_colorbar(low, high, view.height)
    canvas = Image.new("RGB", (view.width + legend.width, max(view.height, legend.height)), "white")
    canvas.paste(view, (0, 0))
    canvas.paste(legend, (view.width, 0))
    return canvas


def summarize_depth(metres: np.ndarray) -> str:
    """One line: size, valid fraction and depth range."""
    valid = metres[metres > 0]
    height, width = metres.shape
    if valid.size == 0:
        return f"{width}x{height} px, no valid depth"
    return (
        f"{width}x{height} px, {100.0 * valid.size / metres.size:.0f}% valid, "
        f"depth {valid.min():.2f}-{valid.max():.2f} m (median {np.median(valid):.2f} m)"
    )


def describe_region_points(metres: np.ndarray, boxes: list[list[float]]) -> str:
    """Per box, its camera-frame XYZ in metres (`deepsight.spatial`'s rule; the default field of view)."""
    height, width = metres.shape
    intrinsics = CameraIntrinsics.from_fov(width, height)
    points = []
    for index, box in enumerate(boxes, start=1):
        try:
            x, y, z = region_xyz(metres, box, intrinsics)
        except ValueError:  # a box over holes only has no point
            points.append(f"box {index}: no valid depth")
            continue
        points.append(f"box {index}: ({x:.2f}, {y:.2f}, {z:.2f})")
    frame = f"x right, y down, z forward; {DEFAULT_HORIZONTAL_FOV_DEG:g}° FOV assumed"
    return f"XYZ m ({frame}): " + ", ".join(points)
