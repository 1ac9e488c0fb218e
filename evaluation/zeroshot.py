"""Zero-shot scene classification of a depth encoder (the paper's Table 3).

Each class is embedded as the mean of its L2-normalised text embeddings over the depth-photo prompt
templates ("a bad depth photo of the {}." ...; CLIP-style prompt ensembling); each depth map is
classified as the class with the highest cosine similarity; the score is top-1 accuracy.

Works for a stage-0 `DeepSightDualEncoder` folder (metric depth + all-ones box mask, as the paper's
whole-scene setting) and for CLIP-like models (`get_image_features` / `get_text_features`), which see
the depth rendered as a 3-channel image. The class lists are LanguageBind's 10 NYU-D and 19 SUN-D
classes (see `zero_shot_scene_classes.json` for the source).
"""

from __future__ import annotations

import json
import os
import random
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import AutoModel

from deepsight.checkpoints import load_checkpoint
from deepsight.depth_rendering import DEPTH_AS_CHOICES, metres_to_rgb
from evaluation.depth_template_accuracy.depth_template_accuracy import wilson_interval
from evaluation.runner import depth_of_row, load_benchmark_dataset

CLASS_LISTS_PATH = Path(__file__).resolve().parent / "zero_shot_scene_classes.json"
DATASET_CHOICES = ("nyu", "sun", "auto")
NYU_OTHERS = "others"


def class_lists() -> dict[str, Any]:
    return json.loads(CLASS_LISTS_PATH.read_text())


def depth_templates() -> list[str]:
    return list(class_lists()["templates"])


def normalise_scene(scene: str) -> str:
    """'living_room' / 'Living Room' -> 'living room' (the class lists' spelling)."""
    return " ".join(str(scene).replace("_", " ").lower().split())


def resolve_classes(dataset: str, scenes: list[str]) -> list[str]:
    if dataset not in DATASET_CHOICES:
        raise ValueError(f"dataset: expected one of {DATASET_CHOICES}, got {dataset!r}")
    if dataset == "auto":
        return sorted({normalise_scene(s) for s in scenes if s})
    return list(class_lists()[dataset])


def label_of(scene: str, classes: list[str], dataset: str) -> str | None:
    """The class a sample counts as, or None when it is outside the list (SUN-D / auto: left out).

    NYU-D keeps 9 named scene types and folds every other NYU scene type into 'others', as LanguageBind's
    NYU-D split does.
    """
    name = normalise_scene(scene)
    if name in classes:
        return name
    if dataset == "nyu" and name:
        return NYU_OTHERS
    return None


class SceneEncoder(Protocol):
    """What zero-shot classification needs; stub encoders in the tests implement the same two methods."""

    name: str

    def encode_depths(self, depths: list[np.ndarray]) -> torch.Tensor:
        """[B, D] embeddings of metric depth maps."""

    def encode_texts(self, texts: list[str]) -> torch.Tensor:
        """[T, D] embeddings of prompts."""


class DualEncoderModel:
    """`SceneEncoder` for a DeepSightDualEncoder folder or a CLIP-like model folder (with its processor)."""

    def __init__(self, model, processor, depth_as: str = "gray", name: str | None = None):
        if depth_as not in DEPTH_AS_CHOICES:
            raise ValueError(f"depth_as: expected one of {DEPTH_AS_CHOICES}, got {depth_as!r}")
        for method in ("get_image_features", "get_text_features"):
            if not hasattr(model, method):
                raise ValueError(f"model: {type(model).__name__} has no {method}; expected a dual (CLIP-like) encoder")
        self.model = model.eval()
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.depth_as = depth_as
        self.name = name or type(model).__name__
        self.takes_depth = getattr(model.config, "model_type", None) == "deepsight_dual_encoder"

    @classmethod
    def from_pretrained(cls, path: str, depth_as: str = "gray", trust_remote_code: bool = False):
        """A dual encoder folder or Hub id; `trust_remote_code=True` runs its own modeling code (load_checkpoint)."""
        model, processor = load_checkpoint(path, model_class=AutoModel, trust_remote_code=trust_remote_code)
        return cls(model, processor, depth_as=depth_as, name=str(path))

    @torch.inference_mode()
    def encode_depths(self, depths: list[np.ndarray]) -> torch.Tensor:
        if self.takes_depth:
            inputs = self.processor.image_processor(depths, depth_encoding="metres", return_tensors="pt")
            return self.model.get_image_features(inputs["pixel_values"], inputs.get("bbox_mask")).pooler_output
        images = [metres_to_rgb(depth, self.depth_as) for depth in depths]
        inputs = self.processor.image_processor(images=images, return_tensors="pt")
        return self.model.get_image_features(pixel_values=inputs["pixel_values"]).pooler_output

    @torch.inference_mode()
    def encode_texts(self, texts: list[str]) -> torch.Tensor:
        inputs = self.tokenizer(texts, padding=True, truncation=True, return_tensors="pt")
        return self.model.get_text_features(
            input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]
        ).pooler_output


def class_embeddings(encoder: SceneEncoder, classes: list[str], templates: list[str]) -> torch.Tensor:
    """[C, D]: per class, the re-normalised mean of its normalised template embeddings (prompt ensembling)."""
    if not templates or any("{}" not in t for t in templates):
        raise ValueError(f"templates: expected prompts with a '{{}}' for the class name, got {templates!r}")
    rows = []
    for name in classes:
        embeddings = torch.nn.functional.normalize(encoder.encode_texts([t.format(name) for t in templates]).float(), dim=-1)
        rows.append(torch.nn.functional.normalize(embeddings.mean(0), dim=-1))
    return torch.stack(rows)


def load_scene_samples(path_or_id: str, split: str | None = None, config: str | None = None):
    """Rows with `depth` and `scene`; for a benchmark, only its scene_classification rows (one per image)."""
    dataset = load_benchmark_dataset(path_or_id, split, required=("depth", "scene"), config=config)
    if "task" in dataset.column_names:
        dataset = dataset.filter(lambda task: task == "scene_classification", input_columns="task")
    return dataset


def run_zeroshot(
    model: str | SceneEncoder,
    benchmark: str,
    dataset: str = "nyu",
    split: str | None = None,
    config: str | None = None,
    limit: int | None = None,
    batch_size: int = 16,
    depth_as: str = "gray",
    seed: int = 0,
    templates: list[str] | None = None,
    output_dir: str | os.PathLike | None = None,
    progress: bool = True,
    trust_remote_code: bool = False,
) -> dict[str, Any]:
    """Top-1 zero-shot accuracy of `model` on the scenes of `benchmark`; writes zeroshot.json/.md if asked.

    `trust_remote_code`: a `model` path may run its own modeling code (default: the installed classes only)."""
    encoder = (
        DualEncoderModel.from_pretrained(model, depth_as=depth_as, trust_remote_code=trust_remote_code)
        if isinstance(model, (str, os.PathLike))
        else model
    )
    samples = load_scene_samples(benchmark, split, config)
    scenes = list(samples["scene"])
    classes = resolve_classes(dataset, scenes)
    labelled = [(i, label_of(s, classes, dataset)) for i, s in enumerate(scenes)]
    kept = [(i, label) for i, label in labelled if label is not None]
    if not kept:
        raise ValueError(f"benchmark {benchmark}: no sample has a scene among the {dataset} classes {classes}")
    if limit is not None:
        if limit <= 0:
            raise ValueError(f"limit: expected a positive number of samples, got {limit}")
        if limit < len(kept):
            kept = sorted(random.Random(seed).sample(kept, limit))
    templates = templates or depth_templates()
    text = class_embeddings(encoder, classes, templates)
    predictions = []
    for start in tqdm(range(0, len(kept), batch_size), desc="zero-shot", unit="batch", disable=not progress):
        chunk = kept[start : start + batch_size]
        depths = [depth_of_row(samples[i]) for i, _ in chunk]
        images = torch.nn.functional.normalize(encoder.encode_depths(depths).float(), dim=-1)
        predictions += (images @ text.T).argmax(-1).tolist()
    truth = [classes.index(label) for _, label in kept]
    correct = sum(int(p == t) for p, t in zip(predictions, truth))
    per_class = {}
    for index, name in enumerate(classes):
        members = [p for p, t in zip(predictions, truth) if t == index]
        if members:
            per_class[name] = {"n": len(members), "accuracy": sum(int(p == index) for p in members) / len(members)}
    results = {
        "model": getattr(encoder, "name", type(encoder).__name__),
        "benchmark": str(benchmark),
        "dataset": dataset,
        "classes": classes,
        "templates": templates,
        "n": len(kept),
        "left_out": sum(label is None for _, label in labelled),
        "top1": correct / len(kept),
        "ci95": wilson_interval(correct, len(kept)),
        "per_class": per_class,
        "predicted_counts": dict(Counter(classes[p] for p in predictions).most_common()),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if output_dir is not None:
        output_dir = Path(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "zeroshot.json").write_text(json.dumps(results, indent=2) + "\n")
        (output_dir / "zeroshot.md").write_text(zeroshot_markdown(results))
    return results


def zeroshot_markdown(results: dict[str, Any]) -> str:
    low, high = results["ci95"]
    lines = [
        f"# Zero-shot scene classification: {results['model']}",
        "",
        f"{results['dataset'].upper()} classes ({len(results['classes'])}), {results['n']} samples"
        + (f" ({results['left_out']} outside the class list left out)" if results["left_out"] else "")
        + f", {len(results['templates'])} prompt templates ensembled.",
        "",
        f"**Top-1 accuracy: {100 * results['top1']:.1f}%** (95% Wilson CI {100 * low:.1f} - {100 * high:.1f})",
        "",
        "| Class | n | Accuracy (%) |",
        "|---|---:|---:|",
    ]
    lines += [f"| {name} | {entry['n']} | {100 * entry['accuracy']:.1f} |" for name, entry in results["per_class"].items()]
    return "\n".join(lines) + "\n"
