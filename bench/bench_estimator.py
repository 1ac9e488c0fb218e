"""Cost per image of estimating depth from an RGB photo, beside the DeepSight forward that reads the result.

All in this process, round by round on the same seeded photos: for each tiny random estimator (GLPN, DPT, Depth
Anything; the sizes of `save_tiny_random_depth_estimator`), the estimator alone, the image processor on the photo
(estimate + preprocess) and, once, the image processor on a depth map and the tiny DeepSight's forward (32x32 depth,
16 image tokens, one short prompt). Ratios are over that forward. Tiny sizes: the ratios show where time goes at
this scale, not a real checkpoint's cost (pass --estimator PATH to time a local real one beside them).

    .venv/bin/python bench/bench_estimator.py [--images 8] [--rounds 3] [--size 240x320] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dataset_scripts.export import markdown_table  # noqa: E402
from dataset_scripts.sources.depth_estimation import (  # noqa: E402
    TINY_ESTIMATOR_ARCHITECTURES,
    save_tiny_random_depth_estimator,
)
from deepsight.tiny import build_processor, build_tiny_deepsight  # noqa: E402
from modeling_deepsight.image_processing_deepsight import DeepSightImageProcessor  # noqa: E402


def seconds_per_image(fn, items: list, rounds: int) -> float:
    """Median over `rounds` of the mean time per item of `fn(item)`."""
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for item in items:
            fn(item)
        times.append((time.perf_counter() - start) / len(items))
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--size", default="240x320", help="photo HEIGHTxWIDTH")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--estimator", action="append", default=[], help="also time this local checkpoint")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    height, width = (int(side) for side in args.size.split("x"))
    rng = np.random.default_rng(0)
    photos = [(rng.random((height, width, 3)) * 255).astype(np.uint8) for _ in range(args.images)]

    model, processor = build_tiny_deepsight(seed=0)
    text = "<|user|>\n<image>\nHow far is the chair?"
    depth_processor = DeepSightImageProcessor(size=model.config.vision_config.image_size)

    with tempfile.TemporaryDirectory() as folder:
        estimators = {name: str(save_tiny_random_depth_estimator(Path(folder) / name, name))
                      for name in TINY_ESTIMATOR_ARCHITECTURES}
        estimators.update({Path(path).name: path for path in args.estimator})
        depths = {}
        rows = []
        for name, path in estimators.items():
            photo_processor = build_processor(processor.tokenizer, model.config, depth_estimator=path)
            estimator = photo_processor.image_processor.get_depth_estimator()
            estimator([photos[0]])  # warm-up
            depths[name] = [estimator([photo])[0] for photo in photos]
            estimate = seconds_per_image(lambda photo: estimator([photo]), photos, args.rounds)
            preprocess_photo = seconds_per_image(photo_processor.image_processor, photos, args.rounds)
            rows.append([name, estimate, preprocess_photo])

        maps = next(iter(depths.values()))
        inputs = [processor(images=metres, text=text, return_tensors="pt") for metres in maps]
        with torch.inference_mode():
            model(**inputs[0])  # warm-up
            forward = seconds_per_image(lambda batch: model(**batch), inputs, args.rounds)
        preprocess_depth = seconds_per_image(depth_processor, maps, args.rounds)

    table = [
        [name, f"{estimate * 1e3:.2f}", f"{photo * 1e3:.2f}", f"{estimate / forward:.2f}"]
        for name, estimate, photo in rows
    ]
    table.append(["(depth map in: processor only)", "-", f"{preprocess_depth * 1e3:.2f}", "-"])
    table.append(["(DeepSight forward, tiny)", "-", "-", f"{forward * 1e3:.2f} ms = 1.00"])
    print(f"{args.images} photos {height}x{width}, {args.rounds} rounds, {args.threads} thread(s), CPU; ms per image")
    print(markdown_table(["estimator", "estimate ms", "processor on photo ms", "estimate / forward"], table))


if __name__ == "__main__":
    main()
