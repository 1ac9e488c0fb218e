"""Object categories of the synthetic world: shape variants built from primitives, sizes, colours.

Each builder samples one shape variant at a plausible size and returns it in the object's local frame:
x along its width, y along its depth with the BACK at +y (the side that goes against a wall) and the
front at -y, z up from the floor (or from the surface it stands on). Names are the canonical ones of
`dataset_scripts.vocab` (SUN RGB-D / NYU spellings folded: "computer monitor", "white board", "book").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from dataset_scripts.synthetic.geometry import BOX, CYLINDER, ELLIPSOID

Part = tuple[str, tuple[float, float, float], tuple[float, float, float], float]  # kind, centre, half, yaw


@dataclass
class Shape:
    """One sampled object in its local frame."""

    parts: list[Part]
    size: tuple[float, float, float]  # width (x), depth (y), height (z) of the footprint box
    top: float | None = None  # height of the surface other objects can stand on (None: nothing can)
    top_region: str = "any"  # where on the top things go: "any" | "back" (monitors, pillows)
    extra: dict = field(default_factory=dict)


def block(x0: float, x1: float, y0: float, y1: float, z0: float, z1: float) -> Part:
    """A box part given by its extents."""
    return (
        BOX,
        ((x0 + x1) / 2, (y0 + y1) / 2, (z0 + z1) / 2),
        ((x1 - x0) / 2, (y1 - y0) / 2, (z1 - z0) / 2),
        0.0,
    )


def cylinder(x: float, y: float, z0: float, z1: float, rx: float, ry: float | None = None) -> Part:
    return (CYLINDER, (x, y, (z0 + z1) / 2), (rx, rx if ry is None else ry, (z1 - z0) / 2), 0.0)


def ellipsoid(x: float, y: float, z: float, rx: float, ry: float, rz: float, yaw: float = 0.0) -> Part:
    return (ELLIPSOID, (x, y, z), (rx, ry, rz), yaw)


def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


def _legs(w: float, d: float, z1: float, thickness: float, inset: float, round_legs: bool) -> list[Part]:
    parts = []
    for sx in (-1, 1):
        for sy in (-1, 1):
            x = sx * (w / 2 - inset - thickness / 2)
            y = sy * (d / 2 - inset - thickness / 2)
            if round_legs:
                parts.append(cylinder(x, y, 0.0, z1, thickness / 2))
            else:
                parts.append(
                    block(x - thickness / 2, x + thickness / 2, y - thickness / 2, y + thickness / 2, 0.0, z1)
                )
    return parts


# --------------------------------------------------------------------------------------------------
# Builders: (rng, context) -> Shape. context: {"mode": placement mode, "scene": scene type, "support": name}
# --------------------------------------------------------------------------------------------------


def build_bed(rng, ctx) -> Shape:
    w = float(rng.choice([_u(rng, 0.9, 1.05), _u(rng, 1.35, 1.6), _u(rng, 1.75, 2.0)]))
    d = _u(rng, 1.95, 2.2)
    top = _u(rng, 0.45, 0.65)
    head = _u(rng, 0.85, 1.3)
    hb = _u(rng, 0.05, 0.1)
    parts = [
        block(-w / 2, w / 2, -d / 2, d / 2 - hb, 0.08, top - 0.2),
        block(-w / 2 + 0.02, w / 2 - 0.02, -d / 2 + 0.02, d / 2 - hb - 0.01, top - 0.2, top),
        block(-w / 2, w / 2, d / 2 - hb, d / 2, 0.0, head),
    ]
    parts += _legs(w, d - hb, 0.08, 0.06, 0.02, False)
    if rng.random() < 0.4:
        parts.append(block(-w / 2, w / 2, -d / 2 - 0.05, -d / 2, 0.0, top + _u(rng, 0.0, 0.25)))
    return Shape(parts, (w, d, head), top=top, top_region="back")


def build_night_stand(rng, ctx) -> Shape:
    w, d, h = _u(rng, 0.4, 0.6), _u(rng, 0.35, 0.5), _u(rng, 0.45, 0.65)
    if rng.random() < 0.5:
        parts = [block(-w / 2, w / 2, -d / 2, d / 2, 0.0, h)]
    else:
        leg = _u(rng, 0.1, 0.2)
        parts = [block(-w / 2, w / 2, -d / 2, d / 2, leg, h)] + _legs(
            w, d, leg, 0.03, 0.01, rng.random() < 0.5
        )
    parts.append(block(-0.05, 0.05, -d / 2 - 0.02, -d / 2, h * 0.7, h * 0.7 + 0.02))  # drawer pull
    return Shape(parts, (w, d, h), top=h)


def build_lamp(rng, ctx) -> Shape:
    on_furniture = ctx.get("mode") == "on"
    r_shade = _u(rng, 0.1, 0.18) if on_furniture else _u(rng, 0.16, 0.25)
    pole = _u(rng, 0.18, 0.35) if on_furniture else _u(rng, 1.15, 1.55)
    shade_h = _u(rng, 0.15, 0.25) if on_furniture else _u(rng, 0.22, 0.32)
    r_base = _u(rng, 0.05, 0.09) if on_furniture else _u(rng, 0.12, 0.18)
    parts = [cylinder(0, 0, 0.0, 0.03, r_base), cylinder(0, 0, 0.03, pole, _u(rng, 0.008, 0.02))]
    if rng.random() < 0.6:
        parts.append(cylinder(0, 0, pole - shade_h * 0.3, pole + shade_h * 0.7, r_shade))
    else:
        parts.append(ellipsoid(0, 0, pole + shade_h * 0.2, r_shade, r_shade, shade_h * 0.55))
    return Shape(parts, (2 * r_shade, 2 * r_shade, pole + shade_h * 0.75))


def build_pillow(rng, ctx) -> Shape:
    if ctx.get("support") == "bed":
        w, d, h = _u(rng, 0.45, 0.7), _u(rng, 0.3, 0.45), _u(rng, 0.1, 0.18)
        return Shape([ellipsoid(0, 0, h / 2, w / 2, d / 2, h / 2)], (w, d, h))
    w, d, h = _u(rng, 0.35, 0.5), _u(rng, 0.1, 0.16), _u(rng, 0.35, 0.5)
    tilt_back = 0.05
    return Shape([ellipsoid(0, tilt_back, h / 2, w / 2, d / 2, h / 2)], (w, d + tilt_back, h))


def build_dresser(rng, ctx) -> Shape:
    w, d, h = _u(rng, 0.8, 1.6), _u(rng, 0.42, 0.6), _u(rng, 0.7, 1.15)
    plinth = _u(rng, 0.04, 0.12)
    parts = [
        block(-w / 2 + 0.02, w / 2 - 0.02, -d / 2 + 0.02, d / 2, 0.0, plinth),
        block(-w / 2, w / 2, -d / 2, d / 2, plinth, h - 0.03),
        block(-w / 2 - 0.015, w / 2 + 0.015, -d / 2 - 0.015, d / 2, h - 0.03, h),
    ]
    rows = int(rng.integers(2, 5))
    for i in range(rows):
        z = plinth + (h - plinth) * (i + 0.5) / rows
        parts.append(block(-0.08, 0.08, -d / 2 - 0.02, -d / 2, z - 0.01, z + 0.01))
    return Shape(parts, (w + 0.03, d + 0.015, h), top=h)


def build_wardrobe(rng, ctx) -> Shape:
    w, d, h = _u(rng, 0.8, 1.8), _u(rng, 0.55, 0.65), _u(rng, 1.8, 2.2)
    parts = [block(-w / 2, w / 2, -d / 2, d / 2, 0.0, h)]
    for x in (-0.04, 0.04):
        parts.append(cylinder(x, -d / 2 - 0.015, h * 0.45, h * 0.6, 0.01))
    return Shape(parts, (w, d + 0.03, h))


def build_sofa(rng, ctx) -> Shape:
    w, d = _u(rng, 1.5, 2.4), _u(rng, 0.8, 1.0)
    h, seat = _u(rng, 0.75, 0.95), _u(rng, 0.4, 0.48)
    arm, arm_h, back = _u(rng, 0.1, 0.25), _u(rng, 0.55, 0.7), _u(rng, 0.15, 0.25)
    base = _u(rng, 0.05, 0.12)
    parts = [
        block(-w / 2 + arm, w / 2 - arm, -d / 2, d / 2 - back, base, seat),
        block(-w / 2, w / 2, d / 2 - back, d / 2, base, h),
        block(-w / 2, -w / 2 + arm, -d / 2, d / 2 - back, base, arm_h),
        block(w / 2 - arm, w / 2, -d / 2, d / 2 - back, base, arm_h),
    ]
    parts += _legs(w, d, base, 0.05, 0.04, rng.random() < 0.5)
    return Shape(parts, (w, d, h), top=seat, top_region="back", extra={"seat_inset": arm})


def build_coffee_table(rng, ctx) -> Shape:
    h = _u(rng, 0.35, 0.5)
    variant = rng.integers(3)
    if variant == 0:  # four legs
        w, d = _u(rng, 0.8, 1.3), _u(rng, 0.45, 0.7)
        parts = [block(-w / 2, w / 2, -d / 2, d / 2, h - 0.04, h)] + _legs(w, d, h - 0.04, 0.05, 0.03, False)
    elif variant == 1:  # round on a pedestal
        r = _u(rng, 0.35, 0.5)
        w = d = 2 * r
        parts = [
            cylinder(0, 0, h - 0.04, h, r),
            cylinder(0, 0, 0.0, h - 0.04, _u(rng, 0.05, 0.1)),
            cylinder(0, 0, 0.0, 0.03, r * 0.5),
        ]
    else:  # solid block with a lower shelf
        w, d = _u(rng, 0.7, 1.2), _u(rng, 0.45, 0.7)
        parts = [
            block(-w / 2, w / 2, -d / 2, d / 2, h - 0.05, h),
            block(-w / 2, w / 2, -d / 2, d / 2, 0.0, 0.06),
            block(-w / 2, -w / 2 + 0.05, -d / 2, d / 2, 0.06, h - 0.05),
            block(w / 2 - 0.05, w / 2, -d / 2, d / 2, 0.06, h - 0.05),
        ]
    return Shape(parts, (w, d, h), top=h)


def build_television(rng, ctx) -> Shape:
    w = _u(rng, 0.7, 1.5)
    h_screen = w * _u(rng, 0.55, 0.6)
    t = _u(rng, 0.03, 0.08)
    if ctx.get("mode") == "mount":
        return Shape([block(-w / 2, w / 2, -t / 2, t / 2, 0.0, h_screen)], (w, t, h_screen))
    foot_w, foot_d, lift = _u(rng, 0.25, 0.5) * w, _u(rng, 0.18, 0.28), _u(rng, 0.06, 0.14)
    parts = [
        block(-foot_w / 2, foot_w / 2, -foot_d / 2, foot_d / 2, 0.0, 0.02),
        block(-0.03, 0.03, -0.02, 0.02, 0.02, lift + 0.05),
        block(-w / 2, w / 2, -t / 2, t / 2, lift, lift + h_screen),
    ]
    return Shape(parts, (w, max(foot_d, t), lift + h_screen))


def build_chair(rng, ctx) -> Shape:
    seat = _u(rng, 0.42, 0.5)
    w, d = _u(rng, 0.42, 0.56), _u(rng, 0.42, 0.55)
    top = seat + _u(rng, 0.35, 0.55)
    # armchairs only where people lounge; work and dining rooms get four-legged or swivel chairs
    variant = (
        2
        if ctx.get("scene") == "living room"
        else int(rng.integers(3 if ctx.get("scene") in ("bedroom", "home office", "bookstore") else 2))
    )
    if variant == 0:  # four-legged
        parts = [
            block(-w / 2, w / 2, -d / 2, d / 2, seat - 0.04, seat),
            block(-w / 2, w / 2, d / 2 - 0.04, d / 2, seat, top),
        ]
        parts += _legs(w, d, seat - 0.04, _u(rng, 0.025, 0.045), 0.0, rng.random() < 0.4)
    elif variant == 1:  # swivel office chair
        r_base = max(w, d) / 2
        parts = [
            cylinder(0, 0, 0.0, 0.06, r_base),
            cylinder(0, 0, 0.06, seat - 0.08, 0.03),
            block(-w / 2, w / 2, -d / 2, d / 2, seat - 0.08, seat),
            block(-w / 2 + 0.03, w / 2 - 0.03, d / 2 - 0.06, d / 2, seat + 0.08, top),
        ]
    else:  # upholstered armchair
        w, d = _u(rng, 0.7, 0.95), _u(rng, 0.7, 0.9)
        arm = _u(rng, 0.1, 0.18)
        parts = [
            block(-w / 2, w / 2, -d / 2, d / 2, 0.05, seat),
            block(-w / 2, w / 2, d / 2 - 0.18, d / 2, seat, top),
            block(-w / 2, -w / 2 + arm, -d / 2, d / 2 - 0.18, seat, seat + 0.2),
            block(w / 2 - arm, w / 2, -d / 2, d / 2 - 0.18, seat, seat + 0.2),
        ]
    return Shape(parts, (w, d, top))


def build_table(rng, ctx) -> Shape:
    h = _u(rng, 0.71, 0.78)
    big = ctx.get("scene") == "conference room"
    if big:
        w, d = _u(rng, 2.2, 3.6), _u(rng, 1.0, 1.4)
    else:
        w, d = _u(rng, 0.8, 1.9), _u(rng, 0.7, 1.0)
    t = _u(rng, 0.025, 0.06)
    if not big and rng.random() < 0.25:  # round pedestal table
        r = _u(rng, 0.4, 0.6)
        parts = [
            cylinder(0, 0, h - t, h, r),
            cylinder(0, 0, 0.0, h - t, _u(rng, 0.05, 0.09)),
            cylinder(0, 0, 0.0, 0.03, r * 0.55),
        ]
        return Shape(parts, (2 * r, 2 * r, h), top=h)
    parts = [block(-w / 2, w / 2, -d / 2, d / 2, h - t, h)]
    if rng.random() < 0.7:
        parts += _legs(w, d, h - t, _u(rng, 0.04, 0.08), _u(rng, 0.0, 0.08), rng.random() < 0.3)
    else:  # trestle: two end panels
        for sx in (-1, 1):
            x = sx * (w / 2 - 0.15)
            parts.append(block(x - 0.03, x + 0.03, -d / 2 + 0.1, d / 2 - 0.1, 0.0, h - t))
    return Shape(parts, (w, d, h), top=h)


def build_desk(rng, ctx) -> Shape:
    h = _u(rng, 0.7, 0.77)
    if ctx.get("scene") == "classroom":
        w, d = _u(rng, 0.6, 1.2), _u(rng, 0.45, 0.6)
    else:
        w, d = _u(rng, 1.0, 1.8), _u(rng, 0.55, 0.8)
    t = _u(rng, 0.025, 0.04)
    parts = [block(-w / 2, w / 2, -d / 2, d / 2, h - t, h)]
    variant = rng.integers(3)
    if variant == 0:  # side panels and a modesty panel at the back
        parts += [
            block(-w / 2, -w / 2 + 0.03, -d / 2, d / 2, 0.0, h - t),
            block(w / 2 - 0.03, w / 2, -d / 2, d / 2, 0.0, h - t),
            block(-w / 2, w / 2, d / 2 - 0.03, d / 2, 0.3, h - t),
        ]
    elif variant == 1:  # legs
        parts += _legs(w, d, h - t, 0.05, 0.02, rng.random() < 0.5)
    else:  # drawer pedestal on one side, a panel on the other
        pw = min(_u(rng, 0.35, 0.45), w * 0.45)
        side = 1 if rng.random() < 0.5 else -1
        x_in, x_out = side * (w / 2 - pw), side * w / 2
        parts += [
            block(min(x_in, x_out), max(x_in, x_out), -d / 2, d / 2, 0.0, h - t),
            block(-side * w / 2 - 0.015, -side * w / 2 + 0.015, -d / 2, d / 2, 0.0, h - t),
        ]
    return Shape(parts, (w, d, h), top=h, top_region="any")


def build_computer_monitor(rng, ctx) -> Shape:
    w = _u(rng, 0.4, 0.7)
    hs = w * _u(rng, 0.56, 0.66)
    t = _u(rng, 0.02, 0.06)
    lift = _u(rng, 0.07, 0.16)
    foot = _u(rng, 0.16, 0.24)
    parts = [
        block(-foot / 2, foot / 2, -foot / 2 + 0.04, foot / 2 + 0.04, 0.0, 0.015),
        block(-0.025, 0.025, 0.04, 0.07, 0.015, lift + 0.05),
        block(-w / 2, w / 2, -t / 2, t / 2, lift, lift + hs),
    ]
    return Shape(parts, (w, foot + 0.08, lift + hs))


def build_laptop(rng, ctx) -> Shape:
    w, d = _u(rng, 0.3, 0.38), _u(rng, 0.21, 0.26)
    screen = d * _u(rng, 0.9, 1.0)
    return Shape(
        [
            block(-w / 2, w / 2, -d / 2, d / 2, 0.0, 0.02),
            block(-w / 2, w / 2, d / 2 - 0.01, d / 2 + 0.005, 0.02, 0.02 + screen),
        ],
        (w, d + 0.01, 0.02 + screen),
    )


def build_bookshelf(rng, ctx) -> Shape:
    w, d, h = _u(rng, 0.6, 1.3), _u(rng, 0.25, 0.4), _u(rng, 1.0, 2.2)
    side = 0.02
    shelves = max(2, int(h / _u(rng, 0.3, 0.42)))
    parts = [
        block(-w / 2, -w / 2 + side, -d / 2, d / 2, 0.0, h),
        block(w / 2 - side, w / 2, -d / 2, d / 2, 0.0, h),
        block(-w / 2, w / 2, d / 2 - 0.01, d / 2, 0.0, h),
        block(-w / 2, w / 2, -d / 2, d / 2, h - side, h),
    ]
    for i in range(shelves):
        z = h * i / shelves
        parts.append(block(-w / 2 + side, w / 2 - side, -d / 2, d / 2, z, z + side))
        # rows of books: a few blocks of different heights and depths per shelf
        x = -w / 2 + side
        gap = h / shelves - side
        while x < w / 2 - side - 0.05:
            run = min(_u(rng, 0.08, 0.3), w / 2 - side - x)
            if rng.random() < 0.8:
                bh = gap * _u(rng, 0.55, 0.9)
                parts.append(
                    block(x, x + run, -d / 2 + _u(rng, 0.01, 0.06), d / 2 - 0.01, z + side, z + side + bh)
                )
            x += run
    return Shape(parts, (w, d, h), top=h)


def build_counter(rng, ctx) -> Shape:
    w, d, h = _u(rng, 1.2, 3.0), _u(rng, 0.58, 0.66), _u(rng, 0.86, 0.93)
    toe = _u(rng, 0.06, 0.1)
    parts = [
        block(-w / 2, w / 2, -d / 2 + 0.06, d / 2, 0.0, toe),
        block(-w / 2, w / 2, -d / 2 + 0.02, d / 2, toe, h - 0.04),
        block(-w / 2, w / 2, -d / 2 - 0.02, d / 2, h - 0.04, h),
    ]
    doors = max(1, int(w / 0.5))
    for i in range(doors):
        x = -w / 2 + w * (i + 0.5) / doors
        parts.append(block(x - 0.06, x + 0.06, -d / 2, -d / 2 + 0.02, h - 0.16, h - 0.14))
    return Shape(parts, (w, d + 0.02, h), top=h)


def build_cabinet(rng, ctx) -> Shape:
    if ctx.get("mode") == "mount":  # upper kitchen / bathroom cabinet
        w, d, h = _u(rng, 0.4, 1.2), _u(rng, 0.28, 0.36), _u(rng, 0.5, 0.8)
    elif rng.random() < 0.3:
        w, d, h = _u(rng, 0.45, 1.0), _u(rng, 0.4, 0.6), _u(rng, 1.5, 2.0)
    else:
        w, d, h = _u(rng, 0.4, 1.2), _u(rng, 0.4, 0.6), _u(rng, 0.55, 1.2)
    parts = [block(-w / 2, w / 2, -d / 2, d / 2, 0.0, h)]
    n_doors = 1 if w < 0.6 else 2
    for i in range(n_doors):
        x = 0.0 if n_doors == 1 else (-0.04 if i == 0 else 0.04)
        z = h * (0.2 if ctx.get("mode") == "mount" else 0.8)
        parts.append(block(x - 0.008, x + 0.008, -d / 2 - 0.02, -d / 2, z - 0.06, z + 0.06))
    return Shape(parts, (w, d + 0.02, h), top=h if h < 1.3 else None)


def build_refrigerator(rng, ctx) -> Shape:
    w, d, h = _u(rng, 0.6, 0.9), _u(rng, 0.6, 0.75), _u(rng, 1.5, 1.95)
    split = h * _u(rng, 0.3, 0.7)
    parts = [
        block(-w / 2, w / 2, -d / 2, d / 2, 0.0, split - 0.005),
        block(-w / 2, w / 2, -d / 2, d / 2, split + 0.005, h),
        block(-w / 2 + 0.01, w / 2 - 0.01, -d / 2 + 0.01, d / 2, split - 0.005, split + 0.005),
    ]
    hx = w / 2 - 0.06
    parts += [
        cylinder(hx, -d / 2 - 0.03, split - 0.35, split - 0.05, 0.012),
        cylinder(hx, -d / 2 - 0.03, split + 0.05, split + 0.4, 0.012),
    ]
    return Shape(parts, (w, d + 0.04, h))


def build_stove(rng, ctx) -> Shape:
    w, d, h = _u(rng, 0.55, 0.78), _u(rng, 0.58, 0.66), _u(rng, 0.86, 0.93)
    parts = [
        block(-w / 2, w / 2, -d / 2, d / 2, 0.0, h),
        block(-w / 2, w / 2, d / 2 - 0.06, d / 2, h, h + _u(rng, 0.05, 0.2)),  # back guard
        block(-w / 2 + 0.08, w / 2 - 0.08, -d / 2 - 0.035, -d / 2 - 0.015, h - 0.13, h - 0.1),  # oven handle
    ]
    for sx in (-1, 1):
        for sy in (-1, 1):
            parts.append(cylinder(sx * w / 4, sy * d / 5 - 0.02, h, h + 0.015, _u(rng, 0.06, 0.1)))
    return Shape(parts, (w, d + 0.035, h + 0.1))


def build_sink(rng, ctx) -> Shape:
    if ctx.get("mode") == "on":  # kitchen sink set into a counter: rim, basin edge and tap
        w, d = _u(rng, 0.45, 0.8), _u(rng, 0.38, 0.46)
        parts = [
            block(-w / 2, w / 2, -d / 2, d / 2, 0.0, 0.015),
            cylinder(0, d / 2 - 0.04, 0.0, _u(rng, 0.2, 0.35), 0.015),
        ]
        return Shape(parts, (w, d, 0.3))
    h = _u(rng, 0.78, 0.9)
    w, d = _u(rng, 0.45, 0.9), _u(rng, 0.4, 0.55)
    parts = []
    if rng.random() < 0.6:  # vanity unit
        parts.append(block(-w / 2, w / 2, -d / 2, d / 2, 0.0, h - 0.05))
    else:  # pedestal
        parts.append(cylinder(0, d / 6, 0.0, h - 0.12, _u(rng, 0.08, 0.12)))
    parts += [
        block(-w / 2, w / 2, -d / 2, d / 2, h - 0.05, h),
        ellipsoid(0, -0.02, h - 0.02, w * 0.35, d * 0.33, 0.05),
        cylinder(0, d / 2 - 0.06, h, h + _u(rng, 0.12, 0.22), 0.015),
    ]
    return Shape(parts, (w, d, h + 0.15))


def build_microwave(rng, ctx) -> Shape:
    w, d, h = _u(rng, 0.42, 0.56), _u(rng, 0.32, 0.42), _u(rng, 0.25, 0.33)
    return Shape(
        [
            block(-w / 2, w / 2, -d / 2, d / 2, 0.0, h),
            block(w / 2 - 0.1, w / 2 - 0.08, -d / 2 - 0.02, -d / 2, h * 0.2, h * 0.8),
        ],
        (w, d + 0.02, h),
    )


def build_toilet(rng, ctx) -> Shape:
    seat = _u(rng, 0.38, 0.44)
    rx, ry = _u(rng, 0.17, 0.21), _u(rng, 0.24, 0.3)
    tw, td, th = _u(rng, 0.38, 0.52), _u(rng, 0.15, 0.22), _u(rng, 0.3, 0.45)
    d = 2 * ry + td
    y_bowl = -d / 2 + ry
    parts = [
        cylinder(0, y_bowl + 0.04, 0.0, seat - 0.1, rx * 0.6, ry * 0.6),
        cylinder(0, y_bowl, seat - 0.1, seat, rx, ry),
        block(-tw / 2, tw / 2, d / 2 - td, d / 2, seat - 0.05, seat - 0.05 + th),
    ]
    return Shape(parts, (max(tw, 2 * rx), d, seat - 0.05 + th))


def build_bathtub(rng, ctx) -> Shape:
    w, d, h = _u(rng, 1.4, 1.8), _u(rng, 0.68, 0.82), _u(rng, 0.48, 0.6)
    rim = _u(rng, 0.06, 0.1)
    parts = [
        block(-w / 2, w / 2, -d / 2, d / 2, 0.0, 0.15),
        block(-w / 2, w / 2, -d / 2, -d / 2 + rim, 0.15, h),
        block(-w / 2, w / 2, d / 2 - rim, d / 2, 0.15, h),
        block(-w / 2, -w / 2 + rim, -d / 2 + rim, d / 2 - rim, 0.15, h),
        block(w / 2 - rim, w / 2, -d / 2 + rim, d / 2 - rim, 0.15, h),
    ]
    return Shape(parts, (w, d, h))


def build_towel(rng, ctx) -> Shape:
    w, h, t = _u(rng, 0.3, 0.6), _u(rng, 0.4, 0.75), _u(rng, 0.03, 0.06)
    return Shape(
        [block(-w / 2, w / 2, -t / 2, t / 2, 0.0, h), cylinder(0, t / 2, h - 0.02, h, 0.012)], (w, t, h)
    )


def build_white_board(rng, ctx) -> Shape:
    w, h, t = _u(rng, 1.2, 2.6), _u(rng, 0.9, 1.25), _u(rng, 0.015, 0.03)
    parts = [
        block(-w / 2, w / 2, -t / 2, t / 2, 0.0, h),
        block(-w / 2 + 0.1, w / 2 - 0.1, -t / 2 - 0.06, -t / 2, 0.0, 0.03),
    ]
    return Shape(parts, (w, t + 0.06, h))


def build_door(rng, ctx) -> Shape:
    w, h, t = _u(rng, 0.78, 0.95), _u(rng, 1.98, 2.12), _u(rng, 0.02, 0.05)
    knob_x = (w / 2 - 0.08) * (1 if rng.random() < 0.5 else -1)
    parts = [
        block(-w / 2, w / 2, -t / 2, t / 2, 0.0, h),
        block(-w / 2 - 0.05, w / 2 + 0.05, -t / 2 - 0.01, t / 2, h, h + 0.05),
        ellipsoid(knob_x, -t / 2 - 0.03, _u(rng, 0.95, 1.05), 0.03, 0.03, 0.03),
    ]
    return Shape(parts, (w + 0.1, t + 0.06, h + 0.05))


def build_window(rng, ctx) -> Shape:
    w, h = _u(rng, 0.7, 1.8), _u(rng, 0.9, 1.5)
    f, t = _u(rng, 0.04, 0.08), _u(rng, 0.03, 0.06)
    sill = _u(rng, 0.05, 0.18)
    parts = [
        block(-w / 2, w / 2, -t / 2, t / 2, h - f, h),
        block(-w / 2 - 0.03, w / 2 + 0.03, t / 2 - sill, t / 2, -0.03, f),
        block(-w / 2, -w / 2 + f, -t / 2, t / 2, 0.0, h),
        block(w / 2 - f, w / 2, -t / 2, t / 2, 0.0, h),
        block(-w / 2 + f, w / 2 - f, 0.0, t / 2, f, h - f),  # the pane sits back in the frame
    ]
    if w > 1.0 and rng.random() < 0.7:
        parts.append(block(-f / 3, f / 3, -t / 2, t / 2, f, h - f))
    return Shape(parts, (w + 0.06, max(t, sill), h + 0.03))


def build_picture(rng, ctx) -> Shape:
    w, h, t = _u(rng, 0.3, 1.2), _u(rng, 0.3, 0.9), _u(rng, 0.015, 0.05)
    return Shape([block(-w / 2, w / 2, -t / 2, t / 2, 0.0, h)], (w, t, h))


def build_mirror(rng, ctx) -> Shape:
    if rng.random() < 0.3:  # round: a disc flat against the wall
        r = _u(rng, 0.25, 0.4)
        return Shape([ellipsoid(0.0, 0.0, r, r, 0.012, r)], (2 * r, 0.024, 2 * r))
    w, h = _u(rng, 0.4, 1.0), _u(rng, 0.5, 1.0)
    return Shape([block(-w / 2, w / 2, -0.01, 0.01, 0.0, h)], (w, 0.02, h))


def build_plant(rng, ctx) -> Shape:
    small = ctx.get("mode") == "on"
    r_pot = _u(rng, 0.05, 0.1) if small else _u(rng, 0.12, 0.25)
    pot_h = _u(rng, 0.08, 0.16) if small else _u(rng, 0.2, 0.45)
    parts = [cylinder(0, 0, 0.0, pot_h, r_pot)]
    crown = _u(rng, 0.08, 0.18) if small else _u(rng, 0.18, 0.38)
    top = pot_h
    for _ in range(int(rng.integers(1, 4))):
        rz = crown * _u(rng, 0.8, 1.4)
        cz = pot_h + rz * _u(rng, 0.7, 1.2)
        dx, dy = (rng.uniform(-0.4, 0.4, size=2) * crown).tolist()
        parts.append(ellipsoid(dx, dy, cz, crown * _u(rng, 0.7, 1.1), crown * _u(rng, 0.7, 1.1), rz))
        top = max(top, cz + rz)
    return Shape(parts, (2.4 * crown, 2.4 * crown, top))


def build_box(rng, ctx) -> Shape:
    small = ctx.get("mode") == "on"
    scale = 0.5 if small else 1.0
    w, d, h = (_u(rng, 0.2, 0.6) * scale, _u(rng, 0.2, 0.5) * scale, _u(rng, 0.15, 0.5) * scale)
    parts = [block(-w / 2, w / 2, -d / 2, d / 2, 0.0, h)]
    if not small and rng.random() < 0.3:  # a second box stacked on the first
        w2, d2, h2 = w * _u(rng, 0.6, 0.95), d * _u(rng, 0.6, 0.95), h * _u(rng, 0.5, 1.0)
        parts.append(block(-w2 / 2, w2 / 2, -d2 / 2, d2 / 2, h, h + h2))
        h += h2
    return Shape(parts, (w, d, h), top=h)


def build_bag(rng, ctx) -> Shape:
    w, d, h = _u(rng, 0.28, 0.5), _u(rng, 0.14, 0.26), _u(rng, 0.28, 0.45)
    parts = [
        block(-w / 2, w / 2, -d / 2, d / 2, 0.0, h * 0.3),
        ellipsoid(0, 0, h * 0.45, w / 2, d / 2, h * 0.45),
    ]
    return Shape(parts, (w, d, h * 0.9))


def build_trash_can(rng, ctx) -> Shape:
    h = _u(rng, 0.28, 0.65)
    if rng.random() < 0.7:
        r = _u(rng, 0.11, 0.2)
        return Shape([cylinder(0, 0, 0.0, h, r)], (2 * r, 2 * r, h))
    w, d = _u(rng, 0.22, 0.4), _u(rng, 0.2, 0.35)
    return Shape([block(-w / 2, w / 2, -d / 2, d / 2, 0.0, h)], (w, d, h))


def build_book(rng, ctx) -> Shape:
    parts = []
    z = 0.0
    w_max = d_max = 0.0
    for _ in range(int(rng.integers(1, 5))):
        w, d, t = _u(rng, 0.14, 0.24), _u(rng, 0.19, 0.3), _u(rng, 0.015, 0.05)
        yaw = _u(rng, -0.3, 0.3)
        parts.append((BOX, (0.0, 0.0, z + t / 2), (w / 2, d / 2, t / 2), yaw))
        z += t
        w_max, d_max = max(w_max, w), max(d_max, d)
    reach = float(np.hypot(w_max, d_max))
    return Shape(parts, (reach, reach, z))


@dataclass(frozen=True)
class Category:
    name: str
    build: Callable[[np.random.Generator, dict], Shape]
    colours: tuple[tuple[int, int, int], ...]  # base albedos (a scene picks one, then jitters it)


CATEGORIES: dict[str, Category] = {
    c.name: c
    for c in [
        Category("bed", build_bed, ((200, 190, 170), (150, 110, 80), (230, 230, 225), (120, 140, 170))),
        Category("night stand", build_night_stand, ((140, 100, 70), (220, 215, 205), (90, 70, 55))),
        Category("lamp", build_lamp, ((240, 230, 200), (200, 180, 140), (60, 60, 60))),
        Category(
            "pillow", build_pillow, ((240, 240, 235), (200, 160, 160), (150, 170, 200), (210, 200, 150))
        ),
        Category("dresser", build_dresser, ((150, 110, 75), (230, 225, 215), (100, 80, 60))),
        Category("wardrobe", build_wardrobe, ((170, 130, 90), (235, 235, 230), (110, 90, 70))),
        Category("sofa", build_sofa, ((120, 120, 130), (170, 60, 50), (200, 190, 170), (70, 90, 120))),
        Category("coffee table", build_coffee_table, ((130, 95, 65), (200, 200, 200), (60, 50, 45))),
        Category("television", build_television, ((25, 25, 28), (45, 45, 50))),
        Category(
            "chair",
            build_chair,
            ((120, 85, 55), (40, 40, 45), (180, 60, 50), (200, 200, 200), (60, 100, 140)),
        ),
        Category("table", build_table, ((160, 120, 80), (220, 215, 205), (90, 65, 45))),
        Category("desk", build_desk, ((170, 130, 90), (225, 225, 220), (80, 70, 60))),
        Category("computer monitor", build_computer_monitor, ((30, 30, 32), (200, 200, 205))),
        Category("laptop", build_laptop, ((170, 170, 175), (35, 35, 38))),
        Category("bookshelf", build_bookshelf, ((150, 110, 75), (230, 228, 220), (80, 60, 45))),
        Category("counter", build_counter, ((220, 215, 200), (120, 120, 125), (170, 140, 100))),
        Category("cabinet", build_cabinet, ((190, 160, 120), (235, 235, 230), (120, 125, 135))),
        Category("refrigerator", build_refrigerator, ((235, 235, 235), (190, 192, 195))),
        Category("stove", build_stove, ((215, 215, 215), (60, 60, 62))),
        Category("sink", build_sink, ((245, 245, 245), (200, 200, 205))),
        Category("microwave", build_microwave, ((230, 230, 230), (50, 50, 52))),
        Category("toilet", build_toilet, ((248, 248, 248),)),
        Category("bathtub", build_bathtub, ((248, 248, 245), (230, 235, 240))),
        Category("towel", build_towel, ((240, 240, 240), (120, 160, 200), (200, 120, 120))),
        Category("white board", build_white_board, ((250, 250, 250),)),
        Category("door", build_door, ((160, 120, 80), (235, 235, 230), (110, 80, 55))),
        Category("window", build_window, ((220, 225, 235), (190, 210, 230))),
        Category("picture", build_picture, ((180, 140, 90), (90, 120, 150), (200, 170, 120))),
        Category("mirror", build_mirror, ((200, 210, 220),)),
        Category("plant", build_plant, ((60, 120, 55), (80, 140, 60), (50, 100, 50))),
        Category("box", build_box, ((190, 150, 100), (210, 180, 130), (230, 230, 230))),
        Category("bag", build_bag, ((60, 60, 70), (150, 90, 60), (170, 40, 40))),
        Category("trash can", build_trash_can, ((90, 90, 95), (200, 200, 200), (60, 110, 160))),
        Category("book", build_book, ((180, 50, 40), (40, 80, 150), (230, 210, 150))),
    ]
}
