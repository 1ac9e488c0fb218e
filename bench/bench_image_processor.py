"""Throughput of DeepSightImageProcessor vs transformers' CLIPImageProcessorPil on the same depth maps.

Both run in this process, interleaved round by round, on the same 64 synthetic 480x640 depth maps
(seeded). CLIP gets them as the 8-bit grayscale images it can read (PIL ``L``; it converts them to RGB,
resizes the shortest edge to 224 with bicubic, centre-crops and normalises); DeepSight gets the same 8-bit
images and, in a second row, the lossless uint16 millimetre maps (with encoding detection, invalid-pixel
handling and a box mask each). The ratio is CLIP's time over DeepSight's: >= 1.0 means DeepSight is at
least as fast (the goal).

    .venv/bin/python bench/bench_image_processor.py [--images 64] [--rounds 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from transformers import CLIPImageProcessorPil  # noqa: E402

from modeling_deepsight.depth_codec_deepsight import encode_depth  # noqa: E402
from modeling_deepsight.image_processing_deepsight import DeepSightImageProcessor  # noqa: E402


def make_depth_maps(count: int, height: int, width: int, seed: int) -> list[np.ndarray]:
    """Room-like metric depth maps: a floor-to-wall ramp, a few boxes in front, ~10% invalid pixels."""
    rng = np.random.default_rng(seed)
    rows = np.linspace(1.0, 0.0, height, dtype=np.float32)[:, None]
    cols = np.linspace(-0.5, 0.5, width, dtype=np.float32)[None, :]
    maps = []
    for _ in range(count):
        metres = 1.0 + rng.uniform(3, 7) * rows**0.5 + rng.uniform(-1, 1) * cols
        for _ in range(3):
            y0, x0 = rng.integers(0, height - 100), rng.integers(0, width - 100)
            metres[y0 : y0 + rng.integers(30, 100), x0 : x0 + rng.integers(30, 100)] = rng.uniform(0.8, 3.0)
        metres[rng.random((height, width)) < 0.1] = 0.0
        maps.append(metres.astype(np.float32))
    return maps


def time_call(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the machine is shared)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    metres = make_depth_maps(args.images, args.height, args.width, args.seed)
    gray_images = [Image.fromarray(encode_depth(m, "gray8")) for m in metres]
    mm_arrays = [encode_depth(m, "mm") for m in metres]
    boxes = [[[100, 80, 300, 400]] for _ in metres]

    clip = CLIPImageProcessorPil()
    deepsight = DeepSightImageProcessor()
    runs = {
        "CLIPImageProcessorPil, 8-bit gray": lambda: clip(gray_images, return_tensors="pt"),
        "DeepSight, 8-bit gray": lambda: deepsight(gray_images, return_tensors="pt"),
        "DeepSight, uint16 mm + boxes": lambda: deepsight(mm_arrays, boxes=boxes, return_tensors="pt"),
    }
    for run in runs.values():  # warm-up (first-call imports and allocations)
        run()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in tqdm(range(args.rounds), desc="rounds"):
        for name, run in runs.items():  # interleaved, so machine load affects every row alike
            times[name].append(time_call(run))

    reference = statistics.median(times["CLIPImageProcessorPil, 8-bit gray"])
    print(
        f"\n{args.images} depth maps {args.height}x{args.width} -> 224x224, median of {args.rounds} rounds, "
        f"{args.threads} torch thread(s)"
    )
    print(f"{'processor':34s} {'s/batch':>9s} {'images/s':>9s} {'speed vs CLIP':>14s}")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:34s} {median:9.3f} {args.images / median:9.1f} {reference / median:13.2f}x")
    print("goal: DeepSight >= 1.00x CLIP")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
