"""Pinhole camera and numpy-vectorised ray casting of rooms furnished with primitives.

World frame: x to the right along the near wall, y into the room, z up; the floor is ``z = 0`` and the
room is the axis-aligned box ``[0, W] x [0, D] x [0, H]``. The camera frame is OpenCV's (x right,
y down, z forward). Ray directions are scaled so that their camera-z component is 1, which makes the
ray parameter ``t`` of a hit equal to its z-depth: the value a Kinect-like sensor reports.

A primitive is a box, a vertical cylinder or an ellipsoid given by its centre, half extents and a yaw
about the vertical axis. Intersections are computed in the primitive's local frame after dividing by
the half extents; an affine change of frame keeps the ray parameter, so the unit shapes need no
special cases. Each primitive is tested only against the rays of the screen rectangle its bounding
box projects to, which keeps the cost proportional to the pixels it covers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deepsight.spatial import CameraIntrinsics

DTYPE = np.float32
NEAR_PLANE = 0.05  # metres; hits closer than this are ignored (the camera never sits inside an object)

BOX, CYLINDER, ELLIPSOID = "box", "cylinder", "ellipsoid"
PRIMITIVE_KINDS = (BOX, CYLINDER, ELLIPSOID)

# Room surfaces get ids 0..5 in the id buffer; object instances start at NUM_ROOM_SURFACES.
ROOM_SURFACES = ("floor", "ceiling", "left wall", "right wall", "near wall", "far wall")
NUM_ROOM_SURFACES = len(ROOM_SURFACES)


def yaw_matrix(yaw: float) -> np.ndarray:
    """Rotation about the world z axis by `yaw` radians (counter-clockwise seen from above)."""
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def camera_rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """Camera-to-world rotation (columns: camera x, y, z axes in world coordinates).

    yaw = 0, pitch = 0, roll = 0 looks along +y with the image x axis along +x; positive pitch looks up,
    positive yaw turns left (towards -x), roll turns the image clockwise.
    """
    level = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])  # cam x->+x, y->-z, z->+y
    cp, sp = np.cos(pitch), np.sin(pitch)
    pitch_about_x = np.array([[1.0, 0.0, 0.0], [0.0, cp, -sp], [0.0, sp, cp]])
    cr, sr = np.cos(roll), np.sin(roll)
    roll_about_optical_axis = np.array([[cr, -sr, 0.0], [sr, cr, 0.0], [0.0, 0.0, 1.0]])
    return yaw_matrix(yaw) @ pitch_about_x @ level @ roll_about_optical_axis


def intrinsics_matrix(fx: float, fy: float, cx: float, cy: float) -> np.ndarray:
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


@dataclass(frozen=True)
class Camera:
    """A pinhole camera: `K` in pixels, `rotation` camera-to-world, `position` in metres."""

    K: np.ndarray
    rotation: np.ndarray
    position: np.ndarray
    width: int
    height: int

    def __post_init__(self) -> None:
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"Camera size must be positive, got width={self.width}, height={self.height}.")
        if np.shape(self.K) != (3, 3) or np.shape(self.rotation) != (3, 3) or np.shape(self.position) != (3,):
            raise ValueError("Camera needs K (3x3), rotation (3x3) and position (3,).")

    @property
    def intrinsics(self) -> CameraIntrinsics:
        return CameraIntrinsics.from_matrix(self.K)

    def ray_directions(self) -> np.ndarray:
        """World ray directions, shape (3, H, W), with unit camera-z component (t == depth)."""
        # OpenCV's convention, as NYU's K: pixel (row, col) is centred at u = col, v = row
        x, y = self.intrinsics.normalized_coordinates(self.height, self.width)
        x, y = x.astype(DTYPE), y.astype(DTYPE)
        R = self.rotation.astype(DTYPE)
        # R @ (x, y, 1) for every pixel, written as broadcast sums (no (H*W, 3) temporary).
        return (
            R[:, 0, None, None] * x[None, None, :]
            + R[:, 1, None, None] * y[None, :, None]
            + R[:, 2, None, None]
        )

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """World points (N, 3) -> pixel coordinates u, v (u = column of the pixel centre) and depth z."""
        cam = (np.asarray(points, dtype=np.float64) - self.position) @ self.rotation
        z = cam[:, 2]
        safe_z = np.where(np.abs(z) > 1e-9, z, 1e-9)
        u, v = self.intrinsics.project(cam[:, 0], cam[:, 1], safe_z)
        return u, v, z


@dataclass(frozen=True)
class Primitive:
    """One convex shape of an object, in world coordinates."""

    kind: str
    center: tuple[float, float, float]
    half: tuple[float, float, float]  # half extents along the local x, y, z axes (radii for curved kinds)
    yaw: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in PRIMITIVE_KINDS:
            raise ValueError(f"Primitive kind must be one of {PRIMITIVE_KINDS}, got {self.kind!r}.")
        if min(self.half) <= 0:
            raise ValueError(f"Primitive half extents must be positive, got {self.half}.")

    def corners(self) -> np.ndarray:
        """The 8 corners of the (yawed) bounding box, shape (8, 3)."""
        signs = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], dtype=float)
        return np.asarray(self.center) + (signs * np.asarray(self.half)) @ yaw_matrix(self.yaw).T


@dataclass
class RenderBuffers:
    """Per-pixel results of ray casting: z-depth, surface / instance id, world normal."""

    depth: np.ndarray  # float32 (H, W) metres
    ids: np.ndarray  # int32 (H, W): 0..5 room surfaces, NUM_ROOM_SURFACES + k for instance k
    normals: np.ndarray  # float32 (3, H, W) unit world normals
    directions: np.ndarray | None = None  # float32 (3, H, W) the rays (camera-z component 1)


def _reciprocal(values: np.ndarray) -> np.ndarray:
    """1 / values with +-inf for zero components (a ray parallel to a slab never crosses it)."""
    with np.errstate(divide="ignore"):
        return DTYPE(1.0) / values


# room surface id hit when the ray leaves through each axis's (low, high) bound
_ROOM_EXIT_IDS = np.array([[2, 3], [4, 5], [0, 1]], dtype=np.int32)


def render_room(
    camera: Camera, room_size: tuple[float, float, float], directions: np.ndarray
) -> RenderBuffers:
    """Depth, surface ids and normals of the empty room's interior seen from inside."""
    origin = camera.position
    if not all(0 < origin[i] < room_size[i] for i in range(3)):
        raise ValueError(f"Camera position {origin.tolist()} is outside the room {tuple(room_size)}.")
    # leaving an axis-aligned box from inside: per axis the bound the ray moves towards, then the nearest
    forward = directions > 0
    low = DTYPE(0.0) - origin.astype(DTYPE)[:, None, None]
    high = np.asarray(room_size, dtype=DTYPE)[:, None, None] - origin.astype(DTYPE)[:, None, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        t_axes = np.where(forward, high, low) / directions
    t_axes[~(t_axes > 0)] = np.inf  # parallel rays (0 or -0 components) never leave through that axis
    exit_axis = np.argmin(t_axes, axis=0)
    t_exit = np.take_along_axis(t_axes, exit_axis[None], axis=0)[0]
    exit_forward = np.take_along_axis(forward, exit_axis[None], axis=0)[0]
    ids = _ROOM_EXIT_IDS[exit_axis, exit_forward.astype(np.intp)]
    normals = np.zeros_like(directions)
    for axis in range(3):
        # an interior surface faces into the room, against the ray
        normals[axis] = np.where(exit_axis == axis, np.where(exit_forward, DTYPE(-1), DTYPE(1)), DTYPE(0))
    return RenderBuffers(depth=t_exit.astype(DTYPE), ids=ids, normals=normals, directions=directions)


def screen_rects(camera: Camera, primitives: list[Primitive]) -> np.ndarray:
    """Per primitive the pixel rectangle (x0, y0, x1, y1), end exclusive, that can see it; all -1 if none.

    The rectangle bounds the projection of the primitive's bounding-box corners; a primitive with a
    corner behind the camera gets the whole image (its projection would be wrong).
    """
    rects = np.full((len(primitives), 4), -1, dtype=np.int64)
    if not primitives:
        return rects
    corners = np.concatenate([p.corners() for p in primitives])
    u, v, z = camera.project(corners)
    u, v, z = u.reshape(-1, 8), v.reshape(-1, 8), z.reshape(-1, 8)
    behind = z <= NEAR_PLANE
    # pixel centres inside [u.min, u.max], with a pixel of slack against rounding
    x0 = np.clip(np.floor(u.min(axis=1)) - 1, 0, camera.width).astype(np.int64)
    y0 = np.clip(np.floor(v.min(axis=1)) - 1, 0, camera.height).astype(np.int64)
    x1 = np.clip(np.ceil(u.max(axis=1)) + 2, 0, camera.width).astype(np.int64)
    y1 = np.clip(np.ceil(v.max(axis=1)) + 2, 0, camera.height).astype(np.int64)
    straddles = behind.any(axis=1) & ~behind.all(axis=1)
    x0[straddles], y0[straddles], x1[straddles], y1[straddles] = 0, 0, camera.width, camera.height
    visible = ~behind.all(axis=1) & (x0 < x1) & (y0 < y1)
    rects[visible] = np.stack([x0, y0, x1, y1], axis=1)[visible]
    return rects


def _to_local(primitive: Primitive, origin: np.ndarray, directions: np.ndarray):
    """Ray origin (3,) and directions (3, h, w) in the primitive's unit frame (divided by half extents)."""
    c, s = np.cos(primitive.yaw), np.sin(primitive.yaw)
    hx, hy, hz = primitive.half
    rel = origin - np.asarray(primitive.center)
    local_origin = np.array([(c * rel[0] + s * rel[1]) / hx, (-s * rel[0] + c * rel[1]) / hy, rel[2] / hz])
    dx, dy, dz = directions
    if s == 0.0:  # unrotated: skip the mixing of x and y
        local_dirs = (dx * DTYPE(c / hx), dy * DTYPE(c / hy), dz * DTYPE(1.0 / hz))
    else:
        local_dirs = (
            dx * DTYPE(c / hx) + dy * DTYPE(s / hx),
            dx * DTYPE(-s / hy) + dy * DTYPE(c / hy),
            dz * DTYPE(1.0 / hz),
        )
    return local_origin.astype(DTYPE), local_dirs


def _local_normal_to_world(primitive: Primitive, nx, ny, nz, normalise: bool = True) -> np.ndarray:
    c, s = DTYPE(np.cos(primitive.yaw)), DTYPE(np.sin(primitive.yaw))
    world = np.stack([c * nx - s * ny, s * nx + c * ny, nz])
    if not normalise:
        return world
    norm = np.sqrt((world * world).sum(axis=0))
    return world / np.maximum(norm, DTYPE(1e-12))


# Each intersector returns (t, hit, normals_of) where normals_of(selection) gives the world normals of
# the selected rays only: normals are needed just where the primitive ends up in front.


def _intersect_box(primitive, o, d):
    t_near = t_far = near_axis = None
    for axis in range(3):
        inv = _reciprocal(d[axis])
        t1 = (DTYPE(-1.0) - o[axis]) * inv
        t2 = (DTYPE(1.0) - o[axis]) * inv
        lo, hi = np.minimum(t1, t2), np.maximum(t1, t2)
        if t_near is None:
            t_near, t_far, near_axis = lo, hi, np.zeros(lo.shape, np.int8)
        else:
            near_axis[lo > t_near] = axis
            np.maximum(t_near, lo, out=t_near)
            np.minimum(t_far, hi, out=t_far)
    hit = (t_near <= t_far) & (t_near > NEAR_PLANE)

    def normals_of(selection):
        axis = near_axis[selection]
        # the face hit first faces against the ray along the axis that set t_near
        n = [np.where(axis == k, -np.sign(d[k][selection]), DTYPE(0)).astype(DTYPE) for k in range(3)]
        return _local_normal_to_world(primitive, *n, normalise=False)

    return t_near, hit, normals_of


def _intersect_cylinder(primitive, o, d):
    hx, hy, _ = primitive.half
    a = d[0] * d[0] + d[1] * d[1]
    b = DTYPE(2.0) * (o[0] * d[0] + o[1] * d[1])
    c = DTYPE(o[0] * o[0] + o[1] * o[1] - 1.0)
    disc = b * b - DTYPE(4.0) * a * c
    with np.errstate(invalid="ignore", divide="ignore"):
        t_side = (-b - np.sqrt(np.maximum(disc, 0))) / (DTYPE(2.0) * a)
    z_side = o[2] + t_side * d[2]
    side_hit = (disc >= 0) & (a > 1e-12) & (np.abs(z_side) <= 1) & (t_side > NEAR_PLANE)
    # the cap facing the camera: top when the camera is above the centre
    cap_z = DTYPE(1.0 if o[2] > 0 else -1.0)
    t_cap = (cap_z - o[2]) * _reciprocal(d[2])
    cx_, cy_ = o[0] + t_cap * d[0], o[1] + t_cap * d[1]
    cap_hit = (cx_ * cx_ + cy_ * cy_ <= 1) & (t_cap > NEAR_PLANE)
    use_cap = cap_hit & (~side_hit | (t_cap < t_side))
    t = np.where(use_cap, t_cap, t_side)
    hit = side_hit | cap_hit

    def normals_of(selection):
        cap, ts = use_cap[selection], t[selection]
        px, py = o[0] + ts * d[0][selection], o[1] + ts * d[1][selection]
        nx = np.where(cap, DTYPE(0), px / DTYPE(hx))
        ny = np.where(cap, DTYPE(0), py / DTYPE(hy))
        nz = np.where(cap, cap_z, DTYPE(0))
        return _local_normal_to_world(primitive, nx, ny, nz)

    return t, hit, normals_of


def _intersect_ellipsoid(primitive, o, d):
    hx, hy, hz = primitive.half
    a = d[0] * d[0] + d[1] * d[1] + d[2] * d[2]
    b = DTYPE(2.0) * (o[0] * d[0] + o[1] * d[1] + o[2] * d[2])
    c = DTYPE(float(o @ o) - 1.0)
    disc = b * b - DTYPE(4.0) * a * c
    t = (-b - np.sqrt(np.maximum(disc, 0))) / (DTYPE(2.0) * a)
    hit = (disc >= 0) & (t > NEAR_PLANE)

    def normals_of(selection):
        ts = t[selection]
        n = [(o[k] + ts * d[k][selection]) / DTYPE(h) for k, h in enumerate((hx, hy, hz))]
        return _local_normal_to_world(primitive, *n)

    return t, hit, normals_of


_INTERSECTORS = {BOX: _intersect_box, CYLINDER: _intersect_cylinder, ELLIPSOID: _intersect_ellipsoid}


def intersect(primitive: Primitive, origin: np.ndarray, directions: np.ndarray):
    """Ray parameter (== depth), hit mask and a normals(selection) function for rays (3, h, w)."""
    local_origin, local_dirs = _to_local(primitive, origin, directions)
    with np.errstate(invalid="ignore", over="ignore"):
        return _INTERSECTORS[primitive.kind](primitive, local_origin, local_dirs)


def render_primitives(
    camera: Camera,
    room_size: tuple[float, float, float],
    primitives: list[tuple[int, Primitive]],
) -> RenderBuffers:
    """Ray-cast the room and every (instance index, primitive) pair; the nearest surface wins per pixel."""
    directions = camera.ray_directions()
    buffers = render_room(camera, room_size, directions)
    origin = camera.position.astype(DTYPE)
    rects = screen_rects(camera, [p for _, p in primitives])
    for (instance, primitive), (x0, y0, x1, y1) in zip(primitives, rects.tolist()):
        if x0 < 0:
            continue
        with np.errstate(invalid="ignore", over="ignore"):
            t, hit, normals_of = intersect(primitive, origin, directions[:, y0:y1, x0:x1])
            depth_view = buffers.depth[y0:y1, x0:x1]
            closer = hit & (t < depth_view)
        if not closer.any():
            continue
        depth_view[closer] = t[closer]
        buffers.ids[y0:y1, x0:x1][closer] = NUM_ROOM_SURFACES + instance
        buffers.normals[:, y0:y1, x0:x1][:, closer] = normals_of(closer)
    return buffers
