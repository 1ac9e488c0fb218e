"""Scene types as probability tables of objects, and the placement of sampled objects in a room.

A scene type lists, in placement order, which categories may appear (with a probability and a count
range) and how each is placed: against a wall, free on the floor, on top of another object, beside or
in front of an anchor, around a table, in rows, or mounted on a wall. Categories a scene type lists
but did not draw are "plausible but absent", which the Security task needs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dataset_scripts.synthetic.geometry import Primitive, yaw_matrix
from dataset_scripts.synthetic.objects import CATEGORIES, Shape

# placement modes
WALL, FREE, ON, BESIDE, FRONT, AROUND, ROWS, MOUNT, CENTER = (
    "wall",
    "free",
    "on",
    "beside",
    "front",
    "around",
    "rows",
    "mount",
    "center",
)

# walls objects can go against (the near wall is behind the camera); yaw that turns an object's back to it
WALL_YAW = {"far wall": 0.0, "left wall": np.pi / 2, "right wall": -np.pi / 2}
CLEARANCE = 0.05  # metres kept between footprints
CAMERA_KEEPOUT = 0.6  # metres of free floor around the camera


@dataclass(frozen=True)
class Rule:
    category: str
    probability: float
    count: tuple[int, int]
    mode: str
    targets: tuple[str, ...] = ()  # supports / anchors for on, beside, front, around
    mount_height: tuple[float, float] = (0.0, 0.0)  # bottom height range for mounted objects


@dataclass(frozen=True)
class SceneSpec:
    room: tuple[tuple[float, float], tuple[float, float], tuple[float, float]]  # width, depth, height ranges
    rules: tuple[Rule, ...]


def _rule(category, probability, count=(1, 1), mode=FREE, targets=(), mount_height=(0.0, 0.0)) -> Rule:
    return Rule(category, probability, count, mode, tuple(targets), mount_height)


_WINDOW = _rule("window", 0.65, (1, 2), MOUNT, mount_height=(0.75, 1.05))
_DOOR = _rule("door", 0.5, (1, 1), MOUNT, mount_height=(0.0, 0.0))
_PICTURE = _rule("picture", 0.5, (1, 2), MOUNT, mount_height=(1.2, 1.6))

SCENE_SPECS: dict[str, SceneSpec] = {
    "bedroom": SceneSpec(
        ((3.0, 5.0), (3.5, 5.5), (2.4, 3.0)),
        (
            _rule("bed", 1.0, (1, 1), WALL),
            _rule("night stand", 0.85, (1, 2), BESIDE, ("bed",)),
            _rule("dresser", 0.5, (1, 1), WALL),
            _rule("wardrobe", 0.4, (1, 1), WALL),
            _rule("desk", 0.25, (1, 1), WALL),
            _rule("chair", 0.35, (1, 1), AROUND, ("desk",)),
            _rule("bookshelf", 0.2, (1, 1), WALL),
            _rule("lamp", 0.7, (1, 2), ON, ("night stand", "dresser", "desk")),
            _rule("pillow", 0.8, (1, 3), ON, ("bed",)),
            _rule("television", 0.3, (1, 1), ON, ("dresser",)),
            _rule("box", 0.3, (1, 2), FREE),
            _rule("bag", 0.3, (1, 1), FREE),
            _rule("plant", 0.2, (1, 1), FREE),
            _rule("trash can", 0.15, (1, 1), FREE),
            _WINDOW,
            _DOOR,
            _PICTURE,
            _rule("mirror", 0.2, (1, 1), MOUNT, mount_height=(1.0, 1.3)),
        ),
    ),
    "kitchen": SceneSpec(
        ((2.6, 5.0), (3.0, 5.5), (2.4, 3.0)),
        (
            _rule("counter", 1.0, (1, 2), WALL),
            _rule("refrigerator", 0.9, (1, 1), WALL),
            _rule("stove", 0.8, (1, 1), WALL),
            _rule("cabinet", 0.8, (1, 3), MOUNT, mount_height=(1.4, 1.6)),
            _rule("table", 0.4, (1, 1), CENTER),
            _rule("chair", 0.4, (2, 4), AROUND, ("table",)),
            _rule("sink", 0.8, (1, 1), ON, ("counter",)),
            _rule("microwave", 0.5, (1, 1), ON, ("counter",)),
            _rule("plant", 0.2, (1, 1), ON, ("counter", "table")),
            _rule("box", 0.2, (1, 1), ON, ("counter", "table")),
            _rule("trash can", 0.5, (1, 1), FREE),
            _WINDOW,
            _DOOR,
        ),
    ),
    "bathroom": SceneSpec(
        ((1.8, 3.2), (2.2, 3.6), (2.3, 2.8)),
        (
            _rule("toilet", 1.0, (1, 1), WALL),
            _rule("sink", 0.95, (1, 1), WALL),
            _rule("bathtub", 0.6, (1, 1), WALL),
            _rule("cabinet", 0.3, (1, 1), WALL),
            _rule("mirror", 0.8, (1, 1), MOUNT, mount_height=(1.05, 1.3)),
            _rule("towel", 0.6, (1, 2), MOUNT, mount_height=(0.8, 1.2)),
            _rule("trash can", 0.4, (1, 1), FREE),
            _rule("plant", 0.1, (1, 1), ON, ("sink", "cabinet")),
            _rule("door", 0.6, (1, 1), MOUNT),
            _rule("window", 0.3, (1, 1), MOUNT, mount_height=(1.1, 1.4)),
        ),
    ),
    "living room": SceneSpec(
        ((3.5, 6.0), (4.0, 6.5), (2.4, 3.0)),
        (
            _rule("sofa", 1.0, (1, 2), WALL),
            _rule("coffee table", 0.85, (1, 1), FRONT, ("sofa",)),
            _rule("cabinet", 0.7, (1, 1), WALL),
            _rule("bookshelf", 0.4, (1, 1), WALL),
            _rule("chair", 0.5, (1, 2), FREE),
            _rule("television", 0.8, (1, 1), ON, ("cabinet",)),
            _rule("lamp", 0.6, (1, 2), FREE),
            _rule("pillow", 0.6, (1, 3), ON, ("sofa",)),
            _rule("book", 0.3, (1, 2), ON, ("coffee table",)),
            _rule("plant", 0.5, (1, 2), FREE),
            _rule("box", 0.15, (1, 1), FREE),
            _rule("window", 0.8, (1, 2), MOUNT, mount_height=(0.7, 1.0)),
            _rule("door", 0.4, (1, 1), MOUNT),
            _PICTURE,
        ),
    ),
    "office": SceneSpec(
        ((3.0, 6.0), (3.5, 6.0), (2.5, 3.2)),
        (
            _rule("desk", 1.0, (1, 3), WALL),
            _rule("chair", 0.95, (1, 3), AROUND, ("desk",)),
            _rule("cabinet", 0.6, (1, 2), WALL),
            _rule("bookshelf", 0.5, (1, 1), WALL),
            _rule("table", 0.2, (1, 1), CENTER),
            _rule("computer monitor", 0.9, (1, 3), ON, ("desk",)),
            _rule("laptop", 0.3, (1, 1), ON, ("desk", "table")),
            _rule("lamp", 0.3, (1, 1), ON, ("desk",)),
            _rule("book", 0.4, (1, 2), ON, ("desk", "table", "cabinet")),
            _rule("box", 0.4, (1, 2), FREE),
            _rule("trash can", 0.5, (1, 1), FREE),
            _rule("plant", 0.4, (1, 1), FREE),
            _rule("white board", 0.3, (1, 1), MOUNT, mount_height=(0.8, 1.0)),
            _WINDOW,
            _rule("door", 0.6, (1, 1), MOUNT),
            _rule("picture", 0.3, (1, 1), MOUNT, mount_height=(1.3, 1.6)),
        ),
    ),
    "home office": SceneSpec(
        ((2.5, 4.2), (3.0, 4.5), (2.4, 2.9)),
        (
            _rule("desk", 1.0, (1, 1), WALL),
            _rule("chair", 0.9, (1, 1), AROUND, ("desk",)),
            _rule("bookshelf", 0.6, (1, 2), WALL),
            _rule("cabinet", 0.4, (1, 1), WALL),
            _rule("sofa", 0.2, (1, 1), WALL),
            _rule("bed", 0.1, (1, 1), WALL),
            _rule("computer monitor", 0.7, (1, 2), ON, ("desk",)),
            _rule("laptop", 0.5, (1, 1), ON, ("desk",)),
            _rule("lamp", 0.6, (1, 1), ON, ("desk", "cabinet")),
            _rule("book", 0.5, (1, 2), ON, ("desk", "cabinet")),
            _rule("plant", 0.4, (1, 1), FREE),
            _rule("box", 0.3, (1, 1), FREE),
            _rule("bag", 0.2, (1, 1), FREE),
            _WINDOW,
            _DOOR,
            _PICTURE,
        ),
    ),
    "classroom": SceneSpec(
        ((5.0, 8.0), (6.0, 9.0), (2.8, 3.4)),
        (
            _rule("white board", 0.95, (1, 1), MOUNT, mount_height=(0.8, 1.0)),
            _rule("desk", 1.0, (4, 12), ROWS),
            _rule("chair", 1.0, (4, 12), AROUND, ("desk",)),
            _rule("table", 0.4, (1, 1), CENTER),
            _rule("bookshelf", 0.3, (1, 2), WALL),
            _rule("cabinet", 0.3, (1, 2), WALL),
            _rule("computer monitor", 0.2, (1, 2), ON, ("desk", "table")),
            _rule("trash can", 0.3, (1, 1), FREE),
            _rule("bag", 0.3, (1, 3), FREE),
            _rule("window", 0.7, (1, 3), MOUNT, mount_height=(0.8, 1.1)),
            _rule("door", 0.6, (1, 1), MOUNT),
            _rule("picture", 0.2, (1, 2), MOUNT, mount_height=(1.4, 1.8)),
        ),
    ),
    "dining room": SceneSpec(
        ((3.0, 5.5), (3.5, 6.0), (2.4, 3.0)),
        (
            _rule("table", 1.0, (1, 1), CENTER),
            _rule("chair", 1.0, (2, 6), AROUND, ("table",)),
            _rule("cabinet", 0.5, (1, 2), WALL),
            _rule("dresser", 0.2, (1, 1), WALL),
            _rule("plant", 0.4, (1, 1), ON, ("table", "cabinet")),
            _rule("lamp", 0.3, (1, 1), ON, ("cabinet", "dresser")),
            _rule("box", 0.1, (1, 1), FREE),
            _rule("television", 0.1, (1, 1), MOUNT, mount_height=(1.0, 1.4)),
            _rule("window", 0.7, (1, 2), MOUNT, mount_height=(0.7, 1.0)),
            _rule("door", 0.4, (1, 1), MOUNT),
            _rule("picture", 0.6, (1, 2), MOUNT, mount_height=(1.2, 1.6)),
        ),
    ),
    "library": SceneSpec(
        ((5.0, 9.0), (6.0, 10.0), (2.8, 3.6)),
        (
            _rule("bookshelf", 1.0, (2, 6), WALL),
            _rule("bookshelf", 0.6, (3, 10), ROWS),
            _rule("table", 0.8, (1, 2), CENTER),
            _rule("chair", 0.8, (2, 6), AROUND, ("table",)),
            _rule("desk", 0.3, (1, 1), WALL),
            _rule("computer monitor", 0.3, (1, 2), ON, ("table", "desk")),
            _rule("lamp", 0.3, (1, 2), ON, ("table", "desk")),
            _rule("book", 0.6, (1, 4), ON, ("table", "desk")),
            _rule("plant", 0.2, (1, 1), FREE),
            _rule("box", 0.2, (1, 1), FREE),
            _rule("window", 0.5, (1, 2), MOUNT, mount_height=(0.9, 1.2)),
            _rule("door", 0.5, (1, 1), MOUNT),
        ),
    ),
    "conference room": SceneSpec(
        ((4.0, 7.0), (5.0, 8.0), (2.6, 3.2)),
        (
            _rule("table", 1.0, (1, 1), CENTER),
            _rule("chair", 1.0, (4, 10), AROUND, ("table",)),
            _rule("cabinet", 0.3, (1, 1), WALL),
            _rule("white board", 0.6, (1, 1), MOUNT, mount_height=(0.8, 1.0)),
            _rule("television", 0.6, (1, 1), MOUNT, mount_height=(0.9, 1.3)),
            _rule("laptop", 0.5, (1, 3), ON, ("table",)),
            _rule("computer monitor", 0.2, (1, 1), ON, ("table", "cabinet")),
            _rule("plant", 0.3, (1, 2), FREE),
            _rule("window", 0.6, (1, 3), MOUNT, mount_height=(0.8, 1.0)),
            _rule("door", 0.6, (1, 1), MOUNT),
            _rule("picture", 0.3, (1, 2), MOUNT, mount_height=(1.3, 1.7)),
        ),
    ),
    "bookstore": SceneSpec(
        ((5.0, 9.0), (6.0, 10.0), (2.8, 3.6)),
        (
            _rule("bookshelf", 1.0, (2, 6), WALL),
            _rule("bookshelf", 0.7, (3, 10), ROWS),
            _rule("counter", 0.4, (1, 1), WALL),
            _rule("table", 0.6, (1, 2), CENTER),
            _rule("book", 0.8, (2, 5), ON, ("table", "counter")),
            _rule("computer monitor", 0.2, (1, 1), ON, ("counter",)),
            _rule("chair", 0.3, (1, 2), FREE),
            _rule("box", 0.5, (1, 3), FREE),
            _rule("plant", 0.3, (1, 1), FREE),
            _rule("window", 0.4, (1, 2), MOUNT, mount_height=(0.8, 1.1)),
            _rule("door", 0.5, (1, 1), MOUNT),
            _rule("picture", 0.3, (1, 2), MOUNT, mount_height=(1.5, 1.9)),
        ),
    ),
    "computer room": SceneSpec(
        ((4.0, 8.0), (5.0, 9.0), (2.6, 3.2)),
        (
            _rule("desk", 1.0, (4, 10), ROWS),
            _rule("chair", 1.0, (4, 10), AROUND, ("desk",)),
            _rule("cabinet", 0.4, (1, 2), WALL),
            _rule("computer monitor", 1.0, (4, 12), ON, ("desk",)),
            _rule("laptop", 0.2, (1, 2), ON, ("desk",)),
            _rule("white board", 0.5, (1, 1), MOUNT, mount_height=(0.8, 1.0)),
            _rule("trash can", 0.4, (1, 1), FREE),
            _rule("box", 0.3, (1, 2), FREE),
            _rule("window", 0.5, (1, 3), MOUNT, mount_height=(0.8, 1.1)),
            _rule("door", 0.6, (1, 1), MOUNT),
        ),
    ),
    "lecture theatre": SceneSpec(
        ((7.0, 11.0), (7.5, 12.0), (3.0, 4.2)),
        (
            _rule("white board", 0.8, (1, 2), MOUNT, mount_height=(0.9, 1.1)),
            _rule("television", 0.5, (1, 1), MOUNT, mount_height=(1.2, 1.8)),
            _rule("table", 0.6, (1, 1), WALL),
            _rule("chair", 1.0, (16, 48), ROWS),
            _rule("computer monitor", 0.3, (1, 1), ON, ("table",)),
            _rule("laptop", 0.3, (1, 1), ON, ("table",)),
            _rule("trash can", 0.3, (1, 1), FREE),
            _rule("door", 0.7, (1, 2), MOUNT),
            _rule("window", 0.4, (1, 3), MOUNT, mount_height=(1.0, 1.4)),
        ),
    ),
    "corridor": SceneSpec(
        ((1.6, 2.8), (6.0, 12.0), (2.4, 3.0)),
        (
            _rule("door", 1.0, (2, 5), MOUNT),
            _rule("cabinet", 0.3, (1, 2), WALL),
            _rule("chair", 0.3, (1, 2), WALL),
            _rule("trash can", 0.5, (1, 1), WALL),
            _rule("plant", 0.4, (1, 2), WALL),
            _rule("box", 0.3, (1, 2), WALL),
            _rule("white board", 0.2, (1, 1), MOUNT, mount_height=(0.9, 1.1)),
            _rule("picture", 0.5, (1, 3), MOUNT, mount_height=(1.3, 1.7)),
            _rule("window", 0.4, (1, 2), MOUNT, mount_height=(0.9, 1.2)),
        ),
    ),
    "furniture store": SceneSpec(
        ((6.0, 10.0), (6.0, 10.0), (2.8, 3.6)),
        (
            _rule("bed", 0.9, (1, 2), WALL),
            _rule("night stand", 0.5, (1, 2), BESIDE, ("bed",)),
            _rule("wardrobe", 0.4, (1, 2), WALL),
            _rule("dresser", 0.5, (1, 2), WALL),
            _rule("cabinet", 0.4, (1, 2), WALL),
            _rule("bookshelf", 0.3, (1, 2), WALL),
            _rule("bed", 0.5, (1, 2), FREE),
            _rule("sofa", 0.8, (1, 3), FREE),
            _rule("table", 0.6, (1, 2), FREE),
            _rule("coffee table", 0.5, (1, 2), FREE),
            _rule("chair", 0.8, (1, 5), FREE),
            _rule("lamp", 0.6, (1, 3), ON, ("night stand", "dresser", "table")),
            _rule("pillow", 0.7, (1, 4), ON, ("bed", "sofa")),
            _rule("plant", 0.3, (1, 2), FREE),
            _rule("box", 0.3, (1, 2), FREE),
            _rule("picture", 0.5, (1, 3), MOUNT, mount_height=(1.3, 1.7)),
            _rule("mirror", 0.3, (1, 1), MOUNT, mount_height=(0.9, 1.2)),
            _rule("window", 0.3, (1, 2), MOUNT, mount_height=(0.8, 1.1)),
            _rule("door", 0.3, (1, 1), MOUNT),
        ),
    ),
}


# how rows are laid out per category: spacing between neighbours (gap) and rows (aisle), distance of
# the first row from the far wall, free margin at the side walls, heading (0: front towards the camera)
ROW_STYLES: dict[str, dict] = {
    # a desk's user sits on its -y side, so yaw 0 makes students face the far wall
    "desk": {"gap": (0.3, 0.7), "aisle": (0.8, 1.1), "first_row": 2.0, "side_margin": 0.5, "yaw": 0.0},
    "bookshelf": {"gap": (0.08, 0.2), "aisle": (1.0, 1.5), "first_row": 1.2, "side_margin": 1.2, "yaw": 0.0},
    # a seat faces its -y side: turned by pi, the audience faces the far wall
    "chair": {"gap": (0.08, 0.25), "aisle": (0.45, 0.7), "first_row": 2.5, "side_margin": 0.8, "yaw": np.pi},
}


@dataclass
class PlacedObject:
    """One object of the scene graph, in world coordinates."""

    index: int
    category: str
    position: np.ndarray  # (x, y, z) of the footprint centre at the object's bottom
    yaw: float
    shape: Shape
    colour: tuple[int, int, int]
    relation: dict  # how it was placed: {"type": "against", "wall": ...} / {"type": "on", "target": i} ...
    on_top: list[tuple[float, float, float, float]] = field(default_factory=list)  # used rects, local frame

    @property
    def size(self) -> tuple[float, float, float]:
        return self.shape.size

    @property
    def top_height(self) -> float | None:
        return None if self.shape.top is None else float(self.position[2] + self.shape.top)

    def primitives(self) -> list[Primitive]:
        rotation = yaw_matrix(self.yaw)
        result = []
        for kind, centre, half, part_yaw in self.shape.parts:
            world = self.position + rotation @ np.asarray(centre)
            result.append(
                Primitive(
                    kind, tuple(float(v) for v in world), tuple(float(v) for v in half), self.yaw + part_yaw
                )
            )
        return result

    def footprint(self) -> tuple[float, float, float, float]:
        """Axis-aligned bounds (x0, y0, x1, y1) of the rotated footprint on the floor."""
        w, d, _ = self.shape.size
        corners = (
            np.array([[sx * w / 2, sy * d / 2] for sx in (-1, 1) for sy in (-1, 1)])
            @ yaw_matrix(self.yaw)[:2, :2].T
        )
        x, y = corners[:, 0] + self.position[0], corners[:, 1] + self.position[1]
        return float(x.min()), float(y.min()), float(x.max()), float(y.max())


def _overlap(a, b, margin: float = CLEARANCE) -> bool:
    return a[0] < b[2] + margin and b[0] < a[2] + margin and a[1] < b[3] + margin and b[1] < a[3] + margin


class RoomLayout:
    """Places objects in a room while keeping floor footprints and wall areas free of collisions."""

    def __init__(self, rng: np.random.Generator, room_size, camera_xy, scene_type: str):
        self.rng = rng
        self.room = room_size
        self.scene_type = scene_type
        self.objects: list[PlacedObject] = []
        cx, cy = camera_xy
        self.floor_rects: list[tuple[tuple[float, float, float, float], int]] = [
            ((cx - CAMERA_KEEPOUT, cy - CAMERA_KEEPOUT, cx + CAMERA_KEEPOUT, cy + CAMERA_KEEPOUT), -1)
        ]
        self.wall_spans: dict[str, list[tuple[float, float, float, float]]] = {w: [] for w in WALL_YAW}
        self.failed = 0

    # --- wall coordinates: s runs along the wall, the object's back touches it -----------------
    def wall_length(self, wall: str) -> float:
        return self.room[0] if wall == "far wall" else self.room[1]

    def wall_point(self, wall: str, s: float, depth_offset: float) -> tuple[float, float]:
        width, depth, _ = self.room
        if wall == "far wall":
            return s, depth - depth_offset
        if wall == "left wall":
            return depth_offset, s
        return width - depth_offset, s

    def _wall_free(self, wall, s0, s1, z0, z1) -> bool:
        return all(
            not (s0 < b + CLEARANCE and a < s1 + CLEARANCE and z0 < zb and za < z1)
            for a, b, za, zb in self.wall_spans[wall]
        )

    def _floor_free(self, rect, ignore: set[int] = frozenset()) -> bool:
        width, depth, _ = self.room
        if rect[0] < 0 or rect[1] < 0 or rect[2] > width or rect[3] > depth:
            return False
        return all(not _overlap(rect, other) for other, owner in self.floor_rects if owner not in ignore)

    def _pick_wall(self) -> str:
        walls = list(WALL_YAW)
        lengths = np.array([self.wall_length(w) for w in walls])
        # the far wall is what the camera sees best: weigh it up
        weights = lengths * np.array([1.6, 1.0, 1.0])
        return str(self.rng.choice(walls, p=weights / weights.sum()))

    def _colour(self, category: str) -> tuple[int, int, int]:
        options = CATEGORIES[category].colours
        base = np.asarray(options[self.rng.integers(len(options))], dtype=float)
        return tuple(
            int(v) for v in np.clip(base * self.rng.uniform(0.85, 1.1) + self.rng.normal(0, 6, 3), 0, 255)
        )

    def _add(self, category, shape, position, yaw, relation, footprint_owner=True) -> PlacedObject:
        obj = PlacedObject(
            len(self.objects),
            category,
            np.asarray(position, dtype=float),
            float(yaw),
            shape,
            self._colour(category),
            relation,
        )
        self.objects.append(obj)
        if footprint_owner:
            self.floor_rects.append((obj.footprint(), obj.index))
        return obj

    def _shape(self, category: str, mode: str, support: str | None = None) -> Shape:
        return CATEGORIES[category].build(
            self.rng, {"mode": mode, "scene": self.scene_type, "support": support}
        )

    # --- placement modes ------------------------------------------------------------------------
    def place_against_wall(self, category: str, tries: int = 12) -> PlacedObject | None:
        for _ in range(tries):
            shape = self._shape(category, WALL)
            w, d, h = shape.size
            wall = self._pick_wall()
            length = self.wall_length(wall)
            if w + 0.1 > length:
                continue
            s = self.rng.uniform(w / 2 + 0.05, length - w / 2 - 0.05)
            x, y = self.wall_point(wall, s, d / 2 + 0.005)
            yaw = WALL_YAW[wall] + self.rng.normal(0, 0.015)
            obj = PlacedObject(-1, category, np.array([x, y, 0.0]), yaw, shape, (0, 0, 0), {})
            if self._floor_free(obj.footprint()) and self._wall_free(wall, s - w / 2, s + w / 2, 0.0, h):
                self.wall_spans[wall].append((s - w / 2, s + w / 2, 0.0, h))
                placed = self._add(category, shape, (x, y, 0.0), yaw, {"type": "against", "wall": wall})
                placed.relation["s"] = float(s)
                return placed
        self.failed += 1
        return None

    def place_mounted(
        self, category: str, mount_height: tuple[float, float], tries: int = 12
    ) -> PlacedObject | None:
        for _ in range(tries):
            shape = self._shape(category, MOUNT)
            w, d, h = shape.size
            wall = self._pick_wall()
            length = self.wall_length(wall)
            z0 = float(self.rng.uniform(*mount_height))
            if w + 0.1 > length or z0 + h > self.room[2] - 0.05:
                continue
            s = self.rng.uniform(w / 2 + 0.05, length - w / 2 - 0.05)
            x, y = self.wall_point(wall, s, d / 2)
            if not self._wall_free(wall, s - w / 2, s + w / 2, z0, z0 + h):
                continue
            if category == "door":  # a door needs free floor in front of it
                clear = PlacedObject(
                    -1,
                    category,
                    np.array([*self.wall_point(wall, s, 0.45), 0.0]),
                    WALL_YAW[wall],
                    Shape([], (w, 0.9, h)),
                    (0, 0, 0),
                    {},
                )
                if not self._floor_free(clear.footprint()):
                    continue
                self.floor_rects.append((clear.footprint(), -2))
            self.wall_spans[wall].append((s - w / 2, s + w / 2, z0, z0 + h))
            return self._add(
                category,
                shape,
                (x, y, z0),
                WALL_YAW[wall],
                {"type": "mounted", "wall": wall},
                footprint_owner=False,
            )
        self.failed += 1
        return None

    def place_free(self, category: str, tries: int = 15) -> PlacedObject | None:
        width, depth, _ = self.room
        for _ in range(tries):
            shape = self._shape(category, FREE)
            w, d, _ = shape.size
            x = self.rng.uniform(w / 2 + 0.1, max(width - w / 2 - 0.1, w / 2 + 0.11))
            y = self.rng.uniform(d / 2 + 0.1, max(depth - d / 2 - 0.1, d / 2 + 0.11))
            yaw = self.rng.uniform(-np.pi, np.pi)
            obj = PlacedObject(-1, category, np.array([x, y, 0.0]), yaw, shape, (0, 0, 0), {})
            if self._floor_free(obj.footprint()):
                return self._add(category, shape, (x, y, 0.0), yaw, {"type": "floor"})
        self.failed += 1
        return None

    def place_center(self, category: str, tries: int = 10) -> PlacedObject | None:
        width, depth, _ = self.room
        for _ in range(tries):
            shape = self._shape(category, CENTER)
            x = self.rng.uniform(0.35, 0.65) * width
            y = self.rng.uniform(0.45, 0.7) * depth
            yaw = float(self.rng.choice([0.0, np.pi / 2])) + self.rng.normal(0, 0.05)
            obj = PlacedObject(-1, category, np.array([x, y, 0.0]), yaw, shape, (0, 0, 0), {})
            if self._floor_free(obj.footprint()):
                return self._add(category, shape, (x, y, 0.0), yaw, {"type": "center"})
        self.failed += 1
        return None

    def place_rows(self, category: str, count: int) -> list[PlacedObject]:
        """Rows facing the far wall: classroom desks, library shelves, lecture-theatre seats.

        One model per room, as schools and shops buy them; the row style (spacing, distance of the
        first row from the far wall, heading) comes from `ROW_STYLES`.
        """
        style = ROW_STYLES.get(category, ROW_STYLES["desk"])
        width, depth, _ = self.room
        shape = self._shape(category, ROWS)
        w, d, _ = shape.size
        gap_x, aisle = self.rng.uniform(*style["gap"]), self.rng.uniform(*style["aisle"])
        pitch_x, pitch_y = w + gap_x, d + aisle
        cols = max(1, int((width - 2 * style["side_margin"]) / pitch_x))
        rows = max(1, int((depth - style["first_row"] - 1.5) / pitch_y))
        x_start = (width - (cols - 1) * pitch_x) / 2
        placed = []
        for i in range(min(count, rows * cols)):
            r, c = divmod(i, cols)
            y = depth - style["first_row"] - r * pitch_y
            x = x_start + c * pitch_x + self.rng.normal(0, 0.03)
            yaw = style["yaw"] + self.rng.normal(0, 0.03)
            probe = PlacedObject(-1, category, np.array([x, y, 0.0]), yaw, shape, (0, 0, 0), {})
            if self._floor_free(probe.footprint()):
                placed.append(
                    self._add(category, shape, (x, y, 0.0), yaw, {"type": "row", "row": r, "column": c})
                )
        return placed

    def _anchors(self, targets) -> list[PlacedObject]:
        return [o for o in self.objects if o.category in targets]

    def place_on(self, category: str, targets, tries: int = 10) -> PlacedObject | None:
        supports = [o for o in self._anchors(targets) if o.shape.top is not None]
        for _ in range(tries):
            if not supports:
                break
            support = supports[self.rng.integers(len(supports))]
            shape = self._shape(category, ON, support.category)
            w, d, _ = shape.size
            sw, sd, _ = support.size
            inset = support.shape.extra.get("seat_inset", 0.0)
            if w > sw - 2 * inset or d > sd:
                continue
            x_lo, x_hi = -sw / 2 + inset + w / 2, sw / 2 - inset - w / 2
            y_lo, y_hi = -sd / 2 + d / 2, sd / 2 - d / 2
            if support.shape.top_region == "back":
                y_lo = max(y_lo, y_hi - 0.35 * sd)
            lx, ly = self.rng.uniform(x_lo, x_hi), self.rng.uniform(y_lo, y_hi)
            rect = (lx - w / 2, ly - d / 2, lx + w / 2, ly + d / 2)
            if any(_overlap(rect, used, 0.02) for used in support.on_top):
                continue
            support.on_top.append(rect)
            position = support.position + yaw_matrix(support.yaw) @ np.array([lx, ly, 0.0])
            position[2] = support.top_height
            yaw = support.yaw + self.rng.normal(0, 0.12)
            return self._add(
                category, shape, position, yaw, {"type": "on", "target": support.index}, footprint_owner=False
            )
        self.failed += 1
        return None

    def place_beside(self, category: str, targets, tries: int = 6) -> PlacedObject | None:
        anchors = [o for o in self._anchors(targets) if o.relation.get("type") == "against"]
        for _ in range(tries):
            if not anchors:
                break
            anchor = anchors[self.rng.integers(len(anchors))]
            shape = self._shape(category, BESIDE)
            w, d, h = shape.size
            side = 1 if self.rng.random() < 0.5 else -1  # +1: the anchor's local +x
            aw, ad, _ = anchor.size
            gap = self.rng.uniform(0.02, 0.15)
            local = np.array([side * (aw / 2 + gap + w / 2), ad / 2 - d / 2, 0.0])
            position = anchor.position + yaw_matrix(anchor.yaw) @ local
            yaw = anchor.yaw + self.rng.normal(0, 0.02)
            probe = PlacedObject(-1, category, position, yaw, shape, (0, 0, 0), {})
            if self._floor_free(probe.footprint()):
                wall = anchor.relation["wall"]
                s_centre = float(anchor.relation["s"]) + side * (aw / 2 + gap + w / 2) * (
                    -1 if wall == "right wall" else 1
                )
                self.wall_spans[wall].append((s_centre - w / 2, s_centre + w / 2, 0.0, h))
                return self._add(category, shape, position, yaw, {"type": "beside", "target": anchor.index})
        self.failed += 1
        return None

    def place_front(self, category: str, targets, tries: int = 6) -> PlacedObject | None:
        anchors = self._anchors(targets)
        for _ in range(tries):
            if not anchors:
                break
            anchor = anchors[self.rng.integers(len(anchors))]
            shape = self._shape(category, FRONT)
            _, d, _ = shape.size
            _, ad, _ = anchor.size
            local = np.array([self.rng.normal(0, 0.1), -(ad / 2 + self.rng.uniform(0.3, 0.55) + d / 2), 0.0])
            position = anchor.position + yaw_matrix(anchor.yaw) @ local
            yaw = anchor.yaw + self.rng.normal(0, 0.05)
            probe = PlacedObject(-1, category, position, yaw, shape, (0, 0, 0), {})
            if self._floor_free(probe.footprint()):
                return self._add(category, shape, position, yaw, {"type": "front", "target": anchor.index})
        self.failed += 1
        return None

    def place_around(self, category: str, targets, count: int) -> list[PlacedObject]:
        """Chairs at a table's sides or in front of desks, facing them."""
        placed = []
        anchors = self._anchors(targets)
        slots = []
        for anchor in anchors:
            aw, ad, _ = anchor.size
            if anchor.category == "desk":
                slots.append((anchor, 0.0, -1))
                continue
            per_side = max(1, int(aw / 0.65))
            for i in range(per_side):
                x = -aw / 2 + aw * (i + 0.5) / per_side
                slots += [(anchor, x, -1), (anchor, x, 1)]
            if ad > 0.7:
                slots += [(anchor, -1e9, 0), (anchor, 1e9, 0)]
        order = self.rng.permutation(len(slots))
        for slot_index in order:
            if len(placed) >= count:
                break
            anchor, x, side = slots[slot_index]
            shape = self._shape(category, AROUND)
            _, d, _ = shape.size
            aw, ad, _ = anchor.size
            push = self.rng.uniform(0.05, 0.3)
            if side == 0:  # at an end of the table
                local = np.array([np.sign(x) * (aw / 2 + push + d / 2), 0.0, 0.0])
            else:
                local = np.array([x, side * (ad / 2 + push + d / 2), 0.0])
            position = anchor.position + yaw_matrix(anchor.yaw) @ local
            to_anchor = anchor.position[:2] - position[:2]
            # the chair's front (local -y) faces the table
            yaw = float(np.arctan2(to_anchor[0], -to_anchor[1])) + self.rng.normal(0, 0.15)
            probe = PlacedObject(-1, category, position, yaw, shape, (0, 0, 0), {})
            if self._floor_free(probe.footprint(), ignore={anchor.index}):
                placed.append(
                    self._add(category, shape, position, yaw, {"type": "at", "target": anchor.index})
                )
        return placed

    def apply(self, rule: Rule, count: int) -> None:
        if rule.mode == ROWS:
            self.place_rows(rule.category, count)
            return
        if rule.mode == AROUND:
            self.place_around(rule.category, rule.targets, count)
            return
        for _ in range(count):
            if rule.mode == WALL:
                self.place_against_wall(rule.category)
            elif rule.mode == MOUNT:
                self.place_mounted(rule.category, rule.mount_height)
            elif rule.mode == FREE:
                self.place_free(rule.category)
            elif rule.mode == CENTER:
                self.place_center(rule.category)
            elif rule.mode == ON:
                self.place_on(rule.category, rule.targets)
            elif rule.mode == BESIDE:
                self.place_beside(rule.category, rule.targets)
            elif rule.mode == FRONT:
                self.place_front(rule.category, rule.targets)
            else:
                raise ValueError(f"Unknown placement mode {rule.mode!r} for {rule.category!r}.")


def furnish(
    rng: np.random.Generator, scene_type: str, room_size, camera_xy
) -> tuple[list[PlacedObject], dict]:
    """Sample the scene type's objects and place them; returns the objects and placement statistics."""
    spec = SCENE_SPECS[scene_type]
    layout = RoomLayout(rng, room_size, camera_xy, scene_type)
    drawn = {}
    for rule in spec.rules:
        if rng.random() >= rule.probability:
            continue
        count = int(rng.integers(rule.count[0], rule.count[1] + 1))
        if rule.mode == AROUND and rule.targets and rule.probability >= 1.0:
            # one chair per desk / a full table is what these rooms look like
            count = max(count, sum(o.category in rule.targets for o in layout.objects))
        drawn[rule.category] = drawn.get(rule.category, 0) + count
        layout.apply(rule, count)
    return layout.objects, {"drawn": drawn, "placement_failures": layout.failed}
