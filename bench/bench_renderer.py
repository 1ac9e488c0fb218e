"""Synthetic renderer throughput: scenes per second on one core, against the 20 scenes/s goal.

    .venv/bin/python bench/bench_renderer.py [--scenes 80] [--width 320 --height 240]

Prints scenes/s without and with sensor noise, the ratio to the goal, the per-stage split of the time
and, as a floor for comparison measured in the same process, the cost of merely allocating and filling
the buffers one scene needs (depth, ids, normals, rays, RGB).
"""

from __future__ import annotations

import argparse
import os
import time

# one core, as the goal is stated (set before numpy loads its BLAS)
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

from dataset_scripts import synthetic  # noqa: E402

GOAL_SCENES_PER_SECOND = 20.0


def time_scenes(num_scenes: int, width: int, height: int, noise: bool):
    """(scenes per CPU second, scenes per wall second, stage shares of wall time, objects per scene)."""
    timings: dict[str, float] = {}
    objects = 0
    start, start_cpu = time.perf_counter(), time.process_time()
    for seed in range(num_scenes):
        scene = synthetic._render_scene(seed, None, width, height, noise, timings)
        objects += len(scene.objects)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - start_cpu
    return (
        num_scenes / cpu,
        num_scenes / elapsed,
        {k: v / elapsed for k, v in timings.items()},
        objects / num_scenes,
    )


def time_buffer_fill(num_scenes: int, width: int, height: int) -> float:
    start = time.process_time()
    for _ in range(num_scenes):
        depth = np.zeros((height, width), np.float32)
        depth.fill(1.0)
        ids = np.zeros((height, width), np.int32)
        ids.fill(1)
        for _ in range(2):  # normals and ray directions
            planes = np.zeros((3, height, width), np.float32)
            planes.fill(1.0)
        rgb = np.zeros((height, width, 3), np.uint8)
        rgb.fill(128)
    return num_scenes / (time.process_time() - start)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scenes", type=int, default=80)
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    args = parser.parse_args()

    synthetic.render_scene(0, width=args.width, height=args.height)  # warm-up: imports, caches
    rate, wall_rate, split, mean_objects = time_scenes(args.scenes, args.width, args.height, noise=False)
    noisy_rate, noisy_wall, _, _ = time_scenes(args.scenes, args.width, args.height, noise=True)
    fill_rate = time_buffer_fill(args.scenes, args.width, args.height)

    print(f"synthetic renderer, {args.width}x{args.height}, {args.scenes} scenes, one thread")
    print(
        "(per CPU second of this process, which is what one core gives; wall-clock rates depend on the load)"
    )
    print(f"{'':<28}{'scenes/s':>10}{'x goal (20/s)':>15}{'wall scenes/s':>15}")
    print(f"{'render_scene':<28}{rate:>10.1f}{rate / GOAL_SCENES_PER_SECOND:>15.2f}{wall_rate:>15.1f}")
    noisy_ratio = noisy_rate / GOAL_SCENES_PER_SECOND
    print(f"{'render_scene(noise=True)':<28}{noisy_rate:>10.1f}{noisy_ratio:>15.2f}{noisy_wall:>15.1f}")
    print(f"{'reference: buffer fill':<28}{fill_rate:>10.1f}{fill_rate / GOAL_SCENES_PER_SECOND:>15.2f}")
    print(f"renderer / buffer fill: {rate / fill_rate:.3f}; annotated objects per scene: {mean_objects:.1f}")
    print("\nshare of render_scene time per stage (no noise)")
    for stage, share in sorted(split.items(), key=lambda kv: -kv[1]):
        print(f"  {stage:<20}{100 * share:>6.1f} %")
    print(f"  {'other':<20}{100 * (1 - sum(split.values())):>6.1f} %")


if __name__ == "__main__":
    main()
