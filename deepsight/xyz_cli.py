"""`deepsight xyz`: the camera-frame point (metres) and the depth of a region of a depth map.

    deepsight xyz --depth scene.png --box 120 80 200 160 --fov 60
    deepsight xyz --depth scene.npy --mask chair.png --intrinsics 518.86 519.47 325.58 253.74

The rules are `deepsight.spatial`'s: depth = median of the region's valid depths; XYZ = coordinate-wise median
of its valid pixels back-projected (x right, y down, z forward).
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from PIL import Image

from deepsight.cli import HelpFormatter, existing_path
from deepsight.spatial import DEFAULT_HORIZONTAL_FOV_DEG, CameraIntrinsics, depth_at_region, region_xyz
from modeling_deepsight.depth_codec_deepsight import DEPTH_ENCODINGS, load_depth


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deepsight xyz", description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--depth", type=existing_path, required=True, help="depth map file (.png, .npy, ...)")
    parser.add_argument("--encoding", choices=DEPTH_ENCODINGS, help="depth encoding (default: detected)")
    region = parser.add_mutually_exclusive_group(required=True)
    region.add_argument("--box", type=float, nargs=4, metavar=("X0", "Y0", "X1", "Y1"), help="region, pixels")
    region.add_argument("--mask", type=existing_path, help="region mask image, non-zero = in")
    camera = parser.add_mutually_exclusive_group()
    camera.add_argument("--intrinsics", type=float, nargs=4, metavar=("FX", "FY", "CX", "CY"), help="pinhole")
    fov_help = f"horizontal field of view, degrees (default {DEFAULT_HORIZONTAL_FOV_DEG:g})"
    camera.add_argument("--fov", type=float, help=fov_help)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        depth, _ = load_depth(args.depth, encoding=args.encoding)
        region = np.asarray(Image.open(args.mask).convert("L")) > 0 if args.mask else args.box
        if args.intrinsics:
            intrinsics = CameraIntrinsics(*args.intrinsics)
        else:
            fov = DEFAULT_HORIZONTAL_FOV_DEG if args.fov is None else args.fov
            intrinsics = CameraIntrinsics.from_fov(depth.shape[1], depth.shape[0], fov)
        x, y, z = region_xyz(depth, region, intrinsics)
        depth_m = depth_at_region(depth, region)
    except ValueError as error:
        parser.error(str(error))
    if args.json:
        print(json.dumps({"x_m": x, "y_m": y, "z_m": z, "depth_m": depth_m}))
    else:
        print(f"xyz (m, camera frame: x right, y down, z forward): {x:.3f} {y:.3f} {z:.3f}")
        print(f"depth at region (m, median of valid): {depth_m:.3f}")
    return 0
