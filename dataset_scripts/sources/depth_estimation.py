"""RGB -> metric depth with any transformers depth-estimation checkpoint, batched, cached and resumable.

The paper converts COCO's RGB images to depth with GLPN (`vinvino02/glpn-nyu`, trained on NYU, so it
predicts metres). Depth-Anything-V2 is the better option today; use its *metric* checkpoints
(`depth-anything/Depth-Anything-V2-Metric-Indoor-Small-hf`), the relative ones predict disparity.

Every prediction is written to `<cache_dir>/<image_id>.png` (16-bit PNG, millimetres) as soon as its
batch finishes, so an interrupted run resumes where it stopped and N processes can share one cache
directory (each image id is written by exactly one shard).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from dataset_scripts.export import depth_to_image_value, image_value_to_depth
from deepsight.checkpoints import checked_source
from modeling_deepsight.depth_estimation_deepsight import MetricDepthEstimator

logger = logging.getLogger(__name__)

DEFAULT_ESTIMATOR = "vinvino02/glpn-nyu"
MAX_STORABLE_METRES = np.iinfo(np.uint16).max / 1000.0


class EstimatorUnavailable(RuntimeError):
    """The depth-estimation model cannot be loaded: fatal for the run, not a per-image skip."""


@dataclass
class DepthCache:
    """One 16-bit millimetre PNG per image id; writes are atomic so a killed run never leaves half a file."""

    directory: Path

    def __post_init__(self) -> None:
        self.directory = Path(self.directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def path(self, image_id: str) -> Path:
        return self.directory / f"{image_id}.png"

    def __contains__(self, image_id: str) -> bool:
        return self.path(image_id).exists()

    def save(self, image_id: str, depth: np.ndarray) -> None:
        target = self.path(image_id)
        partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
        partial.write_bytes(depth_to_image_value(depth)["bytes"])
        partial.replace(target)

    def load(self, image_id: str) -> np.ndarray:
        return image_value_to_depth(self.path(image_id).read_bytes())


@dataclass
class EstimationReport:
    """What a run did: the ids estimated now, the ids already cached, and the ids that failed (with why)."""

    estimated: list[str] = field(default_factory=list)
    cached: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)

    def summary(self) -> str:
        return (
            f"depth: {len(self.estimated)} estimated, {len(self.cached)} from cache, "
            f"{len(self.failed)} skipped (failed)"
        )


def pick_device(device: str | None = None) -> str:
    if device:
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


class DepthEstimator:
    """A transformers depth-estimation model (GLPN, Depth-Anything, DPT, ...) loaded by hub id or local path.

    `predict(images)` returns one float32 HxW array in metres per image, resized to the image's size and clipped
    to what a uint16 millimetre PNG of the cache holds. The estimation itself is `MetricDepthEstimator`'s.
    """

    def __init__(
        self, model_name_or_path: str = DEFAULT_ESTIMATOR, device: str | None = None, batch_size: int = 8
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.name = str(model_name_or_path)
        self.estimator = MetricDepthEstimator(
            checked_source(model_name_or_path), device=pick_device(device), batch_size=batch_size
        )
        self.device = str(self.estimator.device)
        self.batch_size = batch_size
        self.processor, self.model = self.estimator.processor, self.estimator.model

    def predict(self, images: Sequence[Image.Image]) -> list[np.ndarray]:
        # outdoor metric models reach 80 m, beyond what a uint16 millimetre PNG holds
        return [np.minimum(depth, MAX_STORABLE_METRES) for depth in self.estimator(images)]


def _batched(items: Sequence, size: int) -> Iterable[Sequence]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def estimate_depths(
    predict: Callable[[Sequence[Image.Image]], list[np.ndarray]],
    image_loaders: dict[str, Callable[[], Image.Image]],
    cache: DepthCache,
    batch_size: int = 8,
    progress: bool = True,
) -> EstimationReport:
    """Fill `cache` with a depth map for every image id not yet in it.

    `image_loaders` maps id -> a function returning the RGB image (loading lazily keeps memory flat).
    A batch that raises is retried image by image so one bad file only skips itself.
    """
    report = EstimationReport()
    todo = []
    for image_id in image_loaders:
        (report.cached if image_id in cache else todo).append(image_id)
    bar = tqdm(total=len(todo), desc="depth estimation", unit="img", disable=not progress)
    for batch_ids in _batched(todo, batch_size):
        images, ok_ids = [], []
        for image_id in batch_ids:
            try:
                images.append(image_loaders[image_id]())
                ok_ids.append(image_id)
            except Exception as error:  # unreadable file: skip it, keep the run going
                report.failed[image_id] = f"load: {error}"
        try:
            results = list(zip(ok_ids, predict(images))) if images else []
        except EstimatorUnavailable:
            raise
        except Exception:
            results = []
            for image_id, image in zip(ok_ids, images):
                try:
                    results.append((image_id, predict([image])[0]))
                except Exception as error:
                    report.failed[image_id] = f"estimate: {error}"
        for image_id, depth in results:
            cache.save(image_id, depth)
            report.estimated.append(image_id)
        bar.update(len(batch_ids))
    bar.close()
    for image_id, reason in report.failed.items():
        logger.warning("skipped image %s (%s)", image_id, reason)
    return report


def save_tiny_random_glpn(path: str | Path, seed: int = 0) -> Path:
    """A random GLPN a few hundred kB big, saved like a hub checkpoint: tests and benches load it by path."""
    from transformers import GLPNConfig, GLPNForDepthEstimation, GLPNImageProcessor

    torch.manual_seed(seed)
    config = GLPNConfig(
        num_encoder_blocks=2,
        depths=[1, 1],
        sr_ratios=[2, 1],
        hidden_sizes=[8, 16],
        patch_sizes=[7, 3],
        strides=[4, 2],
        num_attention_heads=[1, 1],
        mlp_ratios=[2, 2],
        decoder_hidden_size=8,
        max_depth=10,
    )
    path = Path(path)
    GLPNForDepthEstimation(config).eval().save_pretrained(path)
    GLPNImageProcessor(size_divisor=32).save_pretrained(path)
    return path


TINY_ESTIMATOR_ARCHITECTURES = ("glpn", "dpt", "depth-anything")


def _tiny_dinov2_backbone():
    from transformers import Dinov2Config

    return Dinov2Config(
        hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32, image_size=28,
        patch_size=14, out_features=["stage1", "stage2"], reshape_hidden_states=False,
    )


def save_tiny_random_depth_estimator(path: str | Path, architecture: str = "glpn", seed: int = 0) -> Path:
    """A random metric depth estimator of `architecture` (`TINY_ESTIMATOR_ARCHITECTURES`), a few hundred kB big,
    saved like a hub checkpoint (safetensors + image processor) for tests and benches to load by path."""
    from transformers import (
        DepthAnythingConfig,
        DepthAnythingForDepthEstimation,
        DPTConfig,
        DPTForDepthEstimation,
        DPTImageProcessor,
    )

    if architecture == "glpn":
        return save_tiny_random_glpn(path, seed=seed)
    path = Path(path)
    torch.manual_seed(seed)
    if architecture == "dpt":
        config = DPTConfig(
            hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32, image_size=32,
            patch_size=8, backbone_out_indices=[0, 1], neck_hidden_sizes=[8, 16], reassemble_factors=[2, 1],
            fusion_hidden_size=8, head_in_index=-1,
        )
        model = DPTForDepthEstimation(config)
        with torch.no_grad():  # random DPT heads end in a ReLU that outputs ~0: lift them into metres
            model.head.head[-2].bias.fill_(2.0)
        processor = DPTImageProcessor(size={"height": 32, "width": 32})
    elif architecture == "depth-anything":
        config = DepthAnythingConfig(
            backbone_config=_tiny_dinov2_backbone(), reassemble_hidden_size=16, neck_hidden_sizes=[8, 16],
            fusion_hidden_size=8, head_hidden_size=8, reassemble_factors=[2, 1], depth_estimation_type="metric",
            max_depth=10,
        )
        model = DepthAnythingForDepthEstimation(config)
        processor = DPTImageProcessor(size={"height": 28, "width": 28}, keep_aspect_ratio=True, ensure_multiple_of=14)
    else:
        raise ValueError(f"`architecture` must be one of {TINY_ESTIMATOR_ARCHITECTURES}; got {architecture!r}.")
    model.eval().save_pretrained(path)
    processor.save_pretrained(path)
    return path
