"""Throughput of `deepsight data pairs --source coco` on CPU with a tiny random GLPN: 1 process vs 2 shards.

Both runs build the same fake COCO folder (random JPEGs + instances/captions json) from scratch, side
by side in this script, each process limited to one thread (OMP_NUM_THREADS=1) so the ratio shows how
the --shard-index/--num-shards split scales across processes. Prints images/s end to end (process
start, model load, estimation, scoring, parquet) and of the depth-estimation stage alone.

    .venv/bin/python bench/bench_pairs.py --images 32 --size 320x240
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dataset_scripts.sources.depth_estimation import save_tiny_random_glpn  # noqa: E402
from dataset_scripts.export import markdown_table  # noqa: E402


def fake_coco(root: Path, count: int, width: int, height: int) -> Path:
    rng = np.random.default_rng(0)
    (root / "annotations").mkdir(parents=True)
    (root / "val2017").mkdir()
    images, instances, captions = [], [], []
    for i in range(1, count + 1):
        Image.fromarray((rng.random((height, width, 3)) * 255).astype("uint8")).save(
            root / "val2017" / f"{i:012d}.jpg"
        )
        images.append({"id": i, "file_name": f"{i:012d}.jpg", "width": width, "height": height})
        instances.append(
            {
                "id": i,
                "image_id": i,
                "category_id": 62,
                "iscrowd": 0,
                "bbox": [10, 10, 50, 40],
                "segmentation": [[10, 10, 60, 10, 60, 50, 10, 50]],
            }
        )
        captions += [{"id": 10 * i + k, "image_id": i, "caption": f"a chair in a room {k}"} for k in range(5)]
    categories = [{"id": 62, "name": "chair", "supercategory": "furniture"}]
    (root / "annotations" / "instances_val2017.json").write_text(
        json.dumps({"images": images, "annotations": instances, "categories": categories})
    )
    (root / "annotations" / "captions_val2017.json").write_text(
        json.dumps({"images": images, "annotations": captions})
    )
    return root


def run(shards: int, coco: Path, estimator: str, output: Path) -> tuple[float, float]:
    """Wall seconds of the whole run, and the longest depth-stage seconds among its processes."""
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    command = [
        sys.executable,
        "-m",
        "dataset_scripts.builders.pairs",
        "--source",
        "coco",
        "--coco-dir",
        str(coco),
        "--estimator",
        estimator,
        "--output",
        str(output),
        "--no-progress",
        "--batch-size",
        "8",
        "--num-shards",
        str(shards),
    ]
    started = time.perf_counter()
    processes = [
        subprocess.Popen(
            command + ["--shard-index", str(i)],
            cwd=REPO,
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        for i in range(shards)
    ]
    outputs = [p.communicate()[0] for p in processes]
    wall = time.perf_counter() - started
    if any(p.returncode for p in processes):
        raise SystemExit(f"a pairs process failed:\n{outputs}")
    depth = max(float(re.search(r"\| depth seconds \| ([\d.]+) \|", out).group(1)) for out in outputs)
    return wall, depth


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--size", default="320x240", help="WIDTHxHEIGHT of the fake COCO images")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        coco = fake_coco(tmp / "coco", args.images, width, height)
        estimator = str(save_tiny_random_glpn(tmp / "glpn"))
        results = {shards: run(shards, coco, estimator, tmp / f"out{shards}") for shards in (1, 2)}
    rows = [
        (
            f"{shards} process{'es' if shards > 1 else ''}",
            f"{wall:.1f}",
            f"{args.images / wall:.2f}",
            f"{args.images / depth:.2f}",
        )
        for shards, (wall, depth) in results.items()
    ]
    print(f"{args.images} images of {width}x{height}, tiny random GLPN, CPU, 1 thread per process")
    print(markdown_table(["run", "wall s", "images/s end to end", "images/s depth stage"], rows))
    (wall1, depth1), (wall2, depth2) = results[1], results[2]
    print(f"speed-up with 2 processes: {wall1 / wall2:.2f}x end to end, {depth1 / depth2:.2f}x depth stage")


if __name__ == "__main__":
    main()
