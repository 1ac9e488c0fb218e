"""`deepsight data pairs`: depth-text-bbox pairs (paper §4), from COCO + a depth estimator or from the
synthetic world.

Row: `id, source, depth, caption, captions, caption_scores, boxes, labels, scene, depth_is_predicted`
(docs/CONTRACTS.md), and `depth_preview` (export's picture for viewers). `boxes` are int32 pixels of `depth`
(`integer_box`: grown outward to whole pixels, clipped to the map). `--test-fraction` also writes a held-out
`test` split, chosen by a hash of the row id. `depth` is a 16-bit PNG in millimetres; for COCO it is *predicted*
by the estimator, for the synthetic world it is the renderer's exact depth.

Caption scoring (the paper keeps, of COCO's ~5 captions, the one its depth-text encoder likes best):
`--scorer PATH_OR_ID` loads any dual encoder with `get_image_features` / `get_text_features`
(DeepSight's stage-0 `DeepSightDualEncoder`, fed the depth and the boxes; or a CLIP-like checkpoint,
fed the depth as an 8-bit gray image). Without `--scorer` the captions are ranked by how many of the
annotated object names they mention (`label-overlap`). All scores are stored.

Scale: `--shard-index I --num-shards N` makes a process handle the images whose position in the id-sorted
list is I mod N (the defaults come from `RANK` / `WORLD_SIZE`, which `torchrun` and `accelerate launch`
set, so `accelerate launch --multi_gpu --num_processes N -m dataset_scripts.builders.pairs ...` or `torchrun
--nproc_per_node N -m dataset_scripts.builders.pairs ...` splits COCO over N GPUs, each on `cuda:$LOCAL_RANK`; both
also work on CPU, checked here). Each shard writes `<output>/parts/part-I-of-N/` (parquet chunks, so
memory stays flat); the process that finds all N parts complete merges them into the published folder.
Depth maps are cached per estimator and image id in `<output>/.cache/depth/`, so a rerun (after a crash,
or to merge) only estimates what is missing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import re
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from functools import partial
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

import datasets
from dataset_scripts.builders.benchmark_questions import integer_box
from dataset_scripts.builders.instructions.offline import object_list, scene_facts, scene_phrase
from dataset_scripts.export import CardInfo, depth_to_image_value, export_dataset, markdown_table
from dataset_scripts.scene import Scene
from dataset_scripts.sources.coco import load_rgb, read_coco
from dataset_scripts.sources.depth_estimation import (
    DEFAULT_ESTIMATOR,
    DepthCache,
    DepthEstimator,
    EstimatorUnavailable,
    estimate_depths,
    pick_device,
)
from dataset_scripts.synthetic import world as synthetic
from deepsight.cli import HelpFormatter, existing_path, existing_path_or_hub_id
from deepsight.depth_rendering import metres_to_rgb
from deepsight.paths import add_trust_remote_code_argument

logger = logging.getLogger(__name__)

STALE_LOCK_SECONDS = 3600

PAIRS_FEATURES = datasets.Features(
    {
        "id": datasets.Value("string"),
        "source": datasets.Value("string"),
        "depth": datasets.Image(),
        "caption": datasets.Value("string"),
        "captions": datasets.List(datasets.Value("string")),
        "caption_scores": datasets.List(datasets.Value("float32")),
        "boxes": datasets.List(datasets.List(datasets.Value("int32"))),  # [x0, y0, x1, y1] pixels of `depth`
        "labels": datasets.List(datasets.Value("string")),
        "scene": datasets.Value("string"),
        "depth_is_predicted": datasets.Value("bool"),
    }
)


# --------------------------------------------------------------------------------------------------
# Caption scoring
# --------------------------------------------------------------------------------------------------


class LabelOverlapScorer:
    """Fraction of the scene's distinct object names a caption mentions (the fallback without a model)."""

    name = "label-overlap"

    def score(self, scene: Scene, captions: list[str]) -> list[float]:
        names = {obj.name.lower() for obj in scene.objects}
        if not names:
            return [0.0] * len(captions)
        return [
            sum(re.search(rf"\b{re.escape(n)}(e?s)?\b", c.lower()) is not None for n in names) / len(names)
            for c in captions
        ]


def _embedding(output, *fields: str):
    """`get_*_features` return an output holding it (DeepSight, CLIP in v5) or a tensor (transformers 4)."""
    import torch  # torch and transformers: only the (optional) caption scorer needs them

    if isinstance(output, torch.Tensor):
        return output
    for name in fields:
        value = getattr(output, name, None)
        if value is not None:
            return value
    raise TypeError(f"cannot find an embedding among {fields} in {type(output).__name__}")


class DualEncoderScorer:
    """Cosine similarity between a depth map and each caption under a dual encoder loaded by path or id."""

    def __init__(self, model_name_or_path: str, device: str | None = None, trust_remote_code: bool = False):
        from transformers import AutoConfig, AutoModel

        from deepsight.checkpoints import checked_source, load_pretrained  # imports transformers

        self.name = str(model_name_or_path)
        self.device = pick_device(device)
        source = checked_source(model_name_or_path, trust_remote_code=trust_remote_code)
        config = AutoConfig.from_pretrained(source, trust_remote_code=trust_remote_code)
        self.is_depth_model = str(getattr(config, "model_type", "")).startswith("deepsight")
        self.model = load_pretrained(AutoModel, source, trust_remote_code=trust_remote_code).to(self.device).eval()
        self.processor, self.image_processor, self.tokenizer = self._load_preprocessors(source, trust_remote_code)
        for method in ("get_image_features", "get_text_features"):
            if not hasattr(self.model, method):
                raise ValueError(
                    f"--scorer {model_name_or_path}: {type(self.model).__name__} has no {method}; "
                    "a dual encoder (DeepSightDualEncoder, CLIP-like) is needed"
                )

    @staticmethod
    def _load_preprocessors(model_name_or_path: str, trust_remote_code: bool):
        """(processor or None, image processor, tokenizer): from a saved processor, or saved separately."""
        from transformers import AutoImageProcessor, AutoProcessor, AutoTokenizer

        try:
            processor = AutoProcessor.from_pretrained(model_name_or_path, trust_remote_code=trust_remote_code)
        except (OSError, ValueError, TypeError, KeyError):
            processor = None
        if (
            processor is not None
            and hasattr(processor, "image_processor")
            and hasattr(processor, "tokenizer")
        ):
            return processor, processor.image_processor, processor.tokenizer
        return (
            None,
            AutoImageProcessor.from_pretrained(model_name_or_path, trust_remote_code=trust_remote_code),
            AutoTokenizer.from_pretrained(model_name_or_path, trust_remote_code=trust_remote_code),
        )

    def score(self, scene: Scene, captions: list[str]) -> list[float]:
        import torch

        if not captions:
            return []
        if self.is_depth_model:
            boxes = [[list(obj.box) for obj in scene.objects]]
            image_inputs = self.image_processor(
                images=[scene.depth], boxes=boxes, depth_encoding="metres", return_tensors="pt"
            )
        else:
            # RGB encoders see the depth in gray, brighter = closer (the `gray8` convention)
            gray = metres_to_rgb(scene.depth, "gray", scale="far")
            image_inputs = self.image_processor(images=[gray], return_tensors="pt")
        if self.is_depth_model and self.processor is not None:
            # The DeepSight processor tokenizes captions exactly as stage 0 trained on them.
            text = self.processor(text=captions, padding=True, return_tensors="pt")
        else:
            text = self.tokenizer(captions, padding=True, truncation=True, return_tensors="pt")
        with torch.inference_mode():
            # Only tensors the encoder takes: processors may also report e.g. the depth encoding they assumed.
            wanted = ("pixel_values", "bbox_mask") if self.is_depth_model else ("pixel_values",)
            image_kwargs = {k: image_inputs[k].to(self.device) for k in wanted if k in image_inputs}
            image = _embedding(self.model.get_image_features(**image_kwargs), "image_embeds", "pooler_output")
            words = _embedding(
                self.model.get_text_features(
                    input_ids=text["input_ids"].to(self.device),
                    attention_mask=text["attention_mask"].to(self.device),
                ),
                "text_embeds",
                "pooler_output",
            )
        image = torch.nn.functional.normalize(image.float(), dim=-1)
        words = torch.nn.functional.normalize(words.float(), dim=-1)
        return (words @ image[0]).cpu().tolist()


def load_scorer(name_or_path: str | None, device: str | None = None, trust_remote_code: bool = False):
    if not name_or_path:
        return LabelOverlapScorer()
    return DualEncoderScorer(name_or_path, device=device, trust_remote_code=trust_remote_code)


# --------------------------------------------------------------------------------------------------
# Rows
# --------------------------------------------------------------------------------------------------


def scene_captions(scene: Scene) -> list[str]:
    """The scene's captions; for a scene without any, one written from its scene graph."""
    if scene.captions:
        return list(scene.captions)
    facts = scene_facts(scene)
    room = scene_phrase(facts.scene_type)
    return [f"{room} with {object_list(facts)}" if facts.objects else room]


def pair_row(scene: Scene, scorer) -> dict:
    captions = scene_captions(scene)
    scores = [float(s) for s in scorer.score(scene, captions)]
    best = int(np.argmax(scores)) if scores else 0  # ties keep the first caption, as COCO lists them
    return {
        "id": scene.id,
        "source": scene.source,
        "depth": depth_to_image_value(scene.depth),
        "caption": captions[best],
        "captions": captions,
        "caption_scores": scores,
        "boxes": [list(integer_box(obj.box, *scene.depth.shape)) for obj in scene.objects],
        "labels": [obj.name for obj in scene.objects],
        "scene": scene.scene_type or "",
        "depth_is_predicted": bool(scene.depth_is_predicted),
    }


# --------------------------------------------------------------------------------------------------
# Sources
# --------------------------------------------------------------------------------------------------


def shard_of(items: list, shard_index: int, num_shards: int) -> list:
    if num_shards < 1 or not 0 <= shard_index < num_shards:
        raise ValueError(f"shard: need 0 <= --shard-index < --num-shards, got {shard_index} of {num_shards}")
    return items[shard_index::num_shards]


def coco_scenes(
    coco_dir: str | Path,
    split: str,
    estimator_name: str,
    cache_dir: Path,
    stats: Counter,
    shard_index: int = 0,
    num_shards: int = 1,
    batch_size: int = 8,
    limit: int | None = None,
    device: str | None = None,
    progress: bool = True,
) -> Iterator[Scene]:
    """COCO images of this shard as Scenes with estimated depth (estimated once, then read from the cache)."""
    annotations = read_coco(coco_dir, split)
    stats.update({f"skipped: {k}": v for k, v in annotations.skipped.items()})
    images = list(annotations.images.values())[:limit]
    images = shard_of(images, shard_index, num_shards)
    cache = DepthCache(cache_dir)
    loaders = {image.scene_id: partial(load_rgb, annotations.image_path(image)) for image in images}
    missing = [image_id for image_id in loaders if image_id not in cache]
    started = time.perf_counter()
    if missing:
        estimator: list[DepthEstimator] = []

        def predict(images):
            # Loaded on the first readable image: a rerun whose only missing images are unreadable files
            # never pays for the model.
            if not estimator:
                try:
                    estimator.append(DepthEstimator(estimator_name, device=device, batch_size=batch_size))
                except (OSError, ValueError, ImportError) as error:
                    raise EstimatorUnavailable(
                        f"--estimator {estimator_name}: cannot load it ({error})"
                    ) from error
            return estimator[0].predict(images)

        report = estimate_depths(predict, loaders, cache, batch_size=batch_size, progress=progress)
        logger.info(report.summary())
        reasons = Counter(reason.split(":", 1)[0] for reason in report.failed.values())
        stats["skipped: image unreadable"] += reasons["load"]
        stats["skipped: depth estimation failed"] += reasons["estimate"]
        stats["depth estimated"] += len(report.estimated)
        stats["depth seconds"] += time.perf_counter() - started
    stats["depth from cache"] += len(images) - len(missing)
    for image in images:
        if image.scene_id in cache:
            yield image.to_scene(cache.load(image.scene_id), split=split)


def synthetic_scenes(
    num_scenes: int,
    seed: int,
    shard_index: int = 0,
    num_shards: int = 1,
    width: int = 320,
    height: int = 240,
    split: str = "train",
) -> Iterator[Scene]:
    """The scenes of `synthetic.generate_scenes(num_scenes, seed, split)` that fall in this shard.

    Pairs and instructions built with the same seed therefore describe the same rooms. A shard renders
    only its own indices (`synthetic.scene_at`).
    """
    if num_shards == 1:
        yield from synthetic.generate_scenes(
            num_scenes, seed, split=split, width=width, height=height, noise=False
        )
        return
    for index in shard_of(list(range(num_scenes)), shard_index, num_shards):
        yield synthetic.scene_at(seed, split, index, width=width, height=height, noise=False)


def iter_pair_rows(
    scenes: Iterable[Scene], scorer, progress: bool = True, total: int | None = None
) -> Iterator[dict]:
    for scene in tqdm(scenes, total=total, desc="pairs", unit="img", disable=not progress):
        yield pair_row(scene, scorer)


# --------------------------------------------------------------------------------------------------
# Output: each shard writes its part in chunks (memory stays flat at 118k images); the last one merges
# --------------------------------------------------------------------------------------------------

CHUNK_ROWS = 500


def part_paths(output: Path, shard_index: int, num_shards: int) -> tuple[Path, Path]:
    """(folder of the shard's parquet chunks, json of its statistics written last = part complete)."""
    stem = output / "parts" / f"part-{shard_index:05d}-of-{num_shards:05d}"
    return stem, stem.with_suffix(".json")


def write_part(
    rows: Iterable[dict],
    stats: Counter,
    output: Path,
    shard_index: int,
    num_shards: int,
    chunk_rows: int = CHUNK_ROWS,
) -> int:
    """Write this shard's rows as parquet chunks, then its statistics; returns the number of rows."""
    folder, meta = part_paths(output, shard_index, num_shards)
    meta.unlink(missing_ok=True)
    if folder.exists():  # an earlier, unfinished or superseded run of this shard
        for stale in folder.glob("*.parquet"):
            stale.unlink()
    folder.mkdir(parents=True, exist_ok=True)
    count, chunk, written = 0, [], 0

    def flush(index: int) -> None:
        target = folder / f"chunk-{index:05d}.parquet"
        tmp = target.with_name(f".{target.name}.tmp")
        datasets.Dataset.from_list(chunk, features=PAIRS_FEATURES).to_parquet(str(tmp))
        tmp.replace(target)

    for row in rows:
        chunk.append(row)
        count += 1
        if len(chunk) == chunk_rows:
            flush(written)
            chunk, written = [], written + 1
    if chunk:
        flush(written)
    meta.write_text(json.dumps({**stats, "rows": count}))
    return count


def is_held_out(example_id: str, test_fraction: float) -> bool:
    """Whether a row belongs to the held-out `test` split: decided by a hash of its id, so a rerun, a resumed
    run or another shard count splits the same rows the same way."""
    digest = hashlib.sha256(example_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < test_fraction


def split_held_out(dataset: datasets.Dataset, test_fraction: float) -> datasets.DatasetDict:
    """`train`, plus with a `test_fraction` a `test` split of the rows `is_held_out` picks (at least one)."""
    if test_fraction <= 0:
        return datasets.DatasetDict({"train": dataset})
    ids = dataset["id"]
    held_out = [is_held_out(example_id, test_fraction) for example_id in ids]
    if not any(held_out) and len(ids) > 1:  # a small build still gets an evaluation row: the lowest hash
        held_out[min(range(len(ids)), key=lambda i: hashlib.sha256(ids[i].encode("utf-8")).digest())] = True
    return datasets.DatasetDict({
        "train": dataset.select([i for i, out in enumerate(held_out) if not out]),
        "test": dataset.select([i for i, out in enumerate(held_out) if out]),
    })


def try_merge(output: Path, num_shards: int, card_settings: dict, test_fraction: float = 0.0) -> bool:
    """Merge when every part is complete; one process wins the lock, the others leave it to it."""
    parts = [part_paths(output, i, num_shards) for i in range(num_shards)]
    if not all(meta.exists() for _, meta in parts):
        return False
    lock = output / "parts" / f".merge-{num_shards}.lock"
    if lock.exists() and time.time() - lock.stat().st_mtime > STALE_LOCK_SECONDS:
        lock.unlink(missing_ok=True)  # left by a merge that crashed; merging is idempotent
    try:
        descriptor = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        logger.info("another shard is merging %s", output)
        return False
    try:
        os.close(descriptor)
        stats: Counter = Counter()
        for _, meta in parts:
            stats.update(json.loads(meta.read_text()))
        stats.pop("rows", None)
        chunks = sorted(str(path) for folder, _ in parts for path in folder.glob("chunk-*.parquet"))
        if not chunks:
            raise SystemExit("no pairs were produced (every image was skipped); see the warnings above")
        merged = datasets.Dataset.from_parquet(chunks, features=PAIRS_FEATURES)
        ids = merged["id"]
        merged = merged.select(sorted(range(len(ids)), key=ids.__getitem__))  # the single-process order
        card = pairs_card(merged, stats, **card_settings, test_fraction=test_fraction)
        export_dataset(split_held_out(merged, test_fraction), output, card)
        return True
    finally:
        lock.unlink(missing_ok=True)


def pairs_card(
    dataset: datasets.Dataset,
    stats: Counter,
    source: str,
    estimator: str | None,
    scorer: str,
    test_fraction: float = 0.0,
) -> CardInfo:
    scenes = Counter(dataset["scene"])
    boxes = [len(b) for b in dataset["boxes"]]
    best = [max(s) for s in dataset["caption_scores"] if s]
    rows = [
        ("pairs", len(dataset)),
        ("mean objects per depth map", f"{np.mean(boxes):.2f}" if boxes else "0"),
        ("mean best caption score", f"{np.mean(best):.3f}" if best else "n/a"),
    ]
    rows += [(f"scene = {name or 'unknown'}", n) for name, n in sorted(scenes.items())]
    rows += [(k, v if isinstance(v, int) else f"{v:.1f}") for k, v in sorted(stats.items())]
    if source == "coco":
        depth_text = (
            f"**The depth is predicted, not measured**: `{estimator}` (a transformers depth-estimation "
            "model) turned each COCO RGB image into metric depth, as the paper did with GLPN. Boxes, "
            "instance masks, labels and captions are COCO's own annotations (CC BY 4.0). The `scene` "
            "column is a coarse indoor/outdoor flag derived from the objects' supercategories "
            "(empty = undecided)."
        )
    else:
        depth_text = (
            "The depth is the synthetic renderer's exact metric depth (not predicted); boxes, labels, "
            "scene types and captions come from the scene graph."
        )
    return CardInfo(
        pretty_name="DeepSight depth-text-bbox pairs",
        description=(
            "Depth maps (16-bit PNG, millimetres; 0 = invalid) with object boxes `[x0, y0, x1, y1]` (int32 pixels "
            "of the depth map, grown outward to whole pixels), "
            "object labels and captions, for DeepSight's stage 0 (depth-text contrastive) and stage 1 "
            "(alignment). `caption` is the best-scoring of `captions`; `caption_scores` holds every score."
            + (
                f" The `test` split holds about {test_fraction:.0%} of the rows, picked by a hash of their `id`: "
                "the held-out depth maps on which stage 0 measures zero-shot scene accuracy."
                if test_fraction > 0
                else ""
            )
        ),
        license="cc-by-4.0" if source == "coco" else "other",
        tags=["depth", "image-text", "deepsight"],
        task_categories=["zero-shot-image-classification", "image-to-text"],
        sections={
            "Depth": depth_text,
            "Caption scoring": f"Scorer: `{scorer}` (cosine similarity of depth and caption embeddings, or the "
            "fraction of object names a caption mentions for `label-overlap`).",
            "Statistics": markdown_table(["what", "value"], rows),
        },
    )


# --------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------


def depth_cache_dir(output: Path, estimator: str) -> Path:
    """One cache per estimator, so rerunning with another model never reuses the first one's depth."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "--", str(estimator).strip("/"))[-80:]
    digest = hashlib.sha256(str(estimator).encode()).hexdigest()[:8]
    return output / ".cache" / "depth" / f"{slug}-{digest}"


def distributed_defaults() -> tuple[int, int]:
    """(rank, world size) from torchrun / accelerate launch, (0, 1) when run alone."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def build_parser() -> argparse.ArgumentParser:
    rank, world = distributed_defaults()
    parser = argparse.ArgumentParser(
        prog="deepsight data pairs", description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter
    )
    parser.add_argument("--source", choices=["coco", "synthetic"], required=True)
    parser.add_argument("--coco-dir", type=existing_path, help="folder with annotations/ and <split>/ images")
    parser.add_argument("--split", default="val2017", help="COCO split, e.g. train2017 or val2017")
    parser.add_argument("--limit", type=int, help="use only the first N COCO images (by id)")
    parser.add_argument("--num-scenes", type=int, default=100, help="synthetic scenes to render")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument(
        "--estimator", type=existing_path_or_hub_id, default=DEFAULT_ESTIMATOR, help="depth-estimation model id or local path"
    )
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--device", help="default: cuda:$LOCAL_RANK when a GPU is present, else cpu")
    parser.add_argument(
        "--scorer", type=existing_path_or_hub_id, help="dual encoder id or path for caption scoring (default: label overlap)"
    )
    add_trust_remote_code_argument(parser)  # for --scorer
    parser.add_argument("--shard-index", type=int, default=rank, help="this process's shard (default: $RANK)")
    parser.add_argument(
        "--num-shards", type=int, default=world, help="number of shards (default: $WORLD_SIZE)"
    )
    parser.add_argument(
        "--test-fraction",
        type=float,
        default=0.0,
        help="share of the rows (by a hash of their id) written as a held-out `test` split, the one stage 0's "
        "recipes evaluate zero-shot scene accuracy on (e.g. 0.1); 0: `train` only",
    )
    parser.add_argument("--output", required=True)
    parser.add_argument("--no-progress", action="store_true")
    return parser


def _device(requested: str | None) -> str | None:
    """`--device`, else under torchrun this process's GPU (`cuda:$LOCAL_RANK`) or the CPU; None = library default."""
    if requested is None and "LOCAL_RANK" in os.environ:
        import torch

        return f"cuda:{os.environ['LOCAL_RANK']}" if torch.cuda.is_available() else "cpu"
    return requested


def _scenes(args: argparse.Namespace, output: Path, stats: Counter, device: str | None) -> tuple[Iterator[Scene], str | None]:
    """This shard's scenes for `--source`, and the depth estimator they come from (None: true depth)."""
    if args.source == "coco":
        if not args.coco_dir:
            raise SystemExit(
                "--source coco needs --coco-dir (a folder with annotations/ and the split's images)"
            )
        scenes = coco_scenes(
            args.coco_dir,
            args.split,
            args.estimator,
            depth_cache_dir(output, args.estimator),
            stats,
            args.shard_index,
            args.num_shards,
            args.batch_size,
            args.limit,
            device,
            progress=not args.no_progress,
        )
        return scenes, args.estimator
    if args.num_scenes < 1:
        raise SystemExit(f"--num-scenes must be >= 1, got {args.num_scenes}")
    scenes = synthetic_scenes(args.num_scenes, args.seed, args.shard_index, args.num_shards, args.width, args.height)
    return scenes, None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    output = Path(args.output)
    if not 0 <= args.shard_index < args.num_shards:
        raise SystemExit(f"--shard-index must be in [0, {args.num_shards}), got {args.shard_index}")
    if not 0.0 <= args.test_fraction < 1.0:
        raise SystemExit(f"--test-fraction must be in [0, 1), got {args.test_fraction}")
    device = _device(args.device)
    stats: Counter = Counter()
    scorer = load_scorer(args.scorer, device, trust_remote_code=args.trust_remote_code)
    started = time.perf_counter()
    scenes, estimator = _scenes(args, output, stats, device)
    settings = {"source": args.source, "estimator": estimator, "scorer": scorer.name}
    try:
        count = write_part(
            iter_pair_rows(scenes, scorer, progress=not args.no_progress),
            stats,
            output,
            args.shard_index,
            args.num_shards,
        )
    except EstimatorUnavailable as error:
        print(f"deepsight data pairs: {error}", file=sys.stderr)
        return 2
    elapsed = time.perf_counter() - started
    merged = try_merge(output, args.num_shards, settings, args.test_fraction)
    print(
        markdown_table(
            ["what", "value"],
            [
                ("shard", f"{args.shard_index} of {args.num_shards}"),
                ("pairs", count),
                ("seconds", f"{elapsed:.1f}"),
                ("pairs/s", f"{count / max(elapsed, 1e-9):.2f}"),
            ]
            + [(k, v if isinstance(v, int) else f"{v:.2f}") for k, v in sorted(stats.items())],
        )
    )
    print(
        f"wrote {output}"
        if merged
        else f"wrote part {args.shard_index} of {args.num_shards} to {output / 'parts'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
