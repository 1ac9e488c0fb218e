"""Write a `datasets.Dataset` / `DatasetDict` as a Hub-style folder: parquet shards + README.md card.

The folder is what `datasets.load_dataset(<folder>)` reads offline and what `publish` pushes: the
card's YAML front matter lists `configs:` (data files per split) and `dataset_info:` (features,
example counts), followed by free-form sections (sources, licence, statistics).

Depth columns are `datasets.Image()` values holding a 16-bit PNG in millimetres. We hand the PNG bytes
to `datasets` ourselves because `datasets.Image` re-encodes a PIL `I;16` image as TIFF.

Writing is resumable: each shard is written to a temporary file and renamed into place, and a small
state file records the fingerprint of the data each split was written from; a rerun with the same data
skips the shards already on disk.
"""

from __future__ import annotations

import io
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from PIL import Image

import datasets

STATE_FILE = ".export_state.json"
DEFAULT_MAX_ROWS_PER_SHARD = 1000


# --------------------------------------------------------------------------------------------------
# Depth <-> datasets.Image value
# --------------------------------------------------------------------------------------------------


def png_bytes_from_mm(depth_mm: np.ndarray) -> bytes:
    """Encode an HxW uint16 millimetre map as 16-bit grayscale PNG bytes (lossless)."""
    depth_mm = np.asarray(depth_mm)
    if depth_mm.ndim != 2 or depth_mm.dtype != np.uint16:
        raise ValueError(f"depth_mm: expected an HxW uint16 array, got shape {depth_mm.shape} dtype {depth_mm.dtype}")
    buffer = io.BytesIO()
    Image.fromarray(depth_mm).save(buffer, format="PNG")
    return buffer.getvalue()


def depth_to_image_value(depth_metres: np.ndarray) -> dict[str, Any]:
    """Metric depth (float metres, 0 = invalid) -> the value of a `datasets.Image()` column (16-bit PNG mm)."""
    from modeling_deepsight.image_processing_deepsight import depth_to_png_mm

    return {"bytes": png_bytes_from_mm(depth_to_png_mm(np.asarray(depth_metres))), "path": None}


def mm_from_image_value(value: Any) -> np.ndarray:
    """The uint16 millimetre array of a depth column value (decoded PIL image, {"bytes"/"path"} dict or bytes)."""
    if isinstance(value, Mapping):
        if value.get("bytes") is not None:
            value = value["bytes"]
        elif value.get("path"):
            value = Image.open(value["path"])
        else:
            raise ValueError(f"depth value: expected 'bytes' or 'path', got keys {sorted(value)}")
    if isinstance(value, (bytes, bytearray)):
        value = Image.open(io.BytesIO(value))
    if not isinstance(value, Image.Image):
        raise ValueError(f"depth value: expected a PIL image, a dict with 'bytes' or PNG bytes, got {type(value).__name__}")
    if value.mode not in ("I;16", "I;16B", "I;16L", "I"):
        raise ValueError(f"depth value: expected a 16-bit PNG in millimetres, got PIL mode {value.mode!r}")
    array = np.asarray(value)
    if array.dtype != np.uint16:
        if array.min() < 0 or array.max() > np.iinfo(np.uint16).max:
            raise ValueError("depth value: 32-bit image holds values outside the uint16 millimetre range")
        array = array.astype(np.uint16)
    return array


def image_value_to_depth(value: Any) -> np.ndarray:
    """A depth column value -> float32 metres (0 = invalid); the inverse of `depth_to_image_value`."""
    from modeling_deepsight.image_processing_deepsight import decode_depth

    return decode_depth(mm_from_image_value(value), "mm")


# --------------------------------------------------------------------------------------------------
# Card
# --------------------------------------------------------------------------------------------------


@dataclass
class CardInfo:
    """What the dataset card says besides what is computed from the data."""

    pretty_name: str
    description: str = ""
    license: str = "other"
    sections: dict[str, str] = field(default_factory=dict)  # title -> markdown body, in order
    tags: list[str] = field(default_factory=list)
    task_categories: list[str] = field(default_factory=list)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub markdown table (used in cards and closing summaries)."""
    lines = ["| " + " | ".join(str(h) for h in headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _read_card_yaml(readme: Path) -> dict[str, Any]:
    if not readme.exists():
        return {}
    text = readme.read_text(encoding="utf-8")
    match = re.match(r"^---\n(.*?)\n---\n", text, flags=re.S)
    if not match:
        return {}
    try:
        return yaml.safe_load(match.group(1)) or {}
    except yaml.YAMLError as err:
        raise ValueError(f"{readme}: existing dataset card has invalid YAML front matter ({err})") from err


def _config_yaml(config_name: str, splits: Mapping[str, datasets.Dataset], data_dir: str) -> tuple[dict, dict]:
    data_files = [{"split": split, "path": f"{data_dir}/{split}-*.parquet"} for split in splits]
    first = next(iter(splits.values()))
    info = {
        "config_name": config_name,
        "features": first.features._to_yaml_list(),
        "splits": [
            {"name": split, "num_bytes": int(ds.data.nbytes), "num_examples": len(ds)} for split, ds in splits.items()
        ],
    }
    return {"config_name": config_name, "data_files": data_files}, info


def _merge_by_config_name(existing: list[dict] | dict | None, new: dict) -> list[dict]:
    if isinstance(existing, dict):
        existing = [existing]
    merged = [entry for entry in (existing or []) if entry.get("config_name") != new["config_name"]]
    merged.append(new)
    return sorted(merged, key=lambda entry: (entry["config_name"] != "default", entry["config_name"]))


def write_card(output_dir: Path, config_name: str, splits: Mapping[str, datasets.Dataset], data_dir: str, card: CardInfo) -> Path:
    """(Re)write README.md: YAML front matter merged with other configs already in the folder + sections."""
    readme = output_dir / "README.md"
    metadata = _read_card_yaml(readme)
    config_entry, info_entry = _config_yaml(config_name, splits, data_dir)
    metadata["configs"] = _merge_by_config_name(metadata.get("configs"), config_entry)
    metadata["dataset_info"] = _merge_by_config_name(metadata.get("dataset_info"), info_entry)
    metadata["license"] = card.license
    metadata["pretty_name"] = card.pretty_name
    if card.tags:
        metadata["tags"] = card.tags
    if card.task_categories:
        metadata["task_categories"] = card.task_categories

    counts = markdown_table(
        ["config", "split", "examples"],
        [(info["config_name"], s["name"], s["num_examples"]) for info in metadata["dataset_info"] for s in info["splits"]],
    )
    body = [f"# {card.pretty_name}", "", card.description.strip(), "", "## Loading", "",
            "```python", "from datasets import load_dataset", "",
            f"ds = load_dataset(\"path/to/this/folder\", \"{config_name}\")", "```", "",
            "## Counts", "", counts, ""]
    for title, text in card.sections.items():
        body += [f"## {title}", "", text.strip(), ""]
    front = yaml.safe_dump(metadata, sort_keys=False, allow_unicode=True, width=1000)
    _atomic_write_bytes(readme, f"---\n{front}---\n\n" + "\n".join(body), text=True)
    return readme


# --------------------------------------------------------------------------------------------------
# Shards
# --------------------------------------------------------------------------------------------------


def _atomic_write_bytes(path: Path, data: bytes | str, text: bool = False) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    if text:
        tmp.write_text(data, encoding="utf-8")
    else:
        tmp.write_bytes(data)
    os.replace(tmp, path)


def _load_state(output_dir: Path) -> dict[str, Any]:
    path = output_dir / STATE_FILE
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return {}  # a torn state file only costs a rewrite of the shards


def shard_file_names(split: str, num_shards: int) -> list[str]:
    return [f"{split}-{i:05d}-of-{num_shards:05d}.parquet" for i in range(num_shards)]


def write_split_shards(
    dataset: datasets.Dataset,
    data_path: Path,
    split: str,
    max_rows_per_shard: int = DEFAULT_MAX_ROWS_PER_SHARD,
    resume_fingerprint: str | None = None,
    state: dict[str, Any] | None = None,
) -> list[Path]:
    """Write one split as `<split>-NNNNN-of-MMMMM.parquet`; skip shards already written from the same data."""
    if max_rows_per_shard < 1:
        raise ValueError(f"max_rows_per_shard: expected >= 1, got {max_rows_per_shard}")
    num_shards = max(1, -(-len(dataset) // max_rows_per_shard))
    names = shard_file_names(split, num_shards)
    data_path.mkdir(parents=True, exist_ok=True)
    # Shards of this split from an earlier run with another shard count or other data would be read too.
    same_data = resume_fingerprint is not None and state is not None and state.get(split) == resume_fingerprint
    for stale in data_path.glob(f"{split}-*.parquet"):
        if stale.name not in names or not same_data:
            stale.unlink()
    written = []
    for index, name in enumerate(names):
        target = data_path / name
        if not target.exists():
            shard = dataset.shard(num_shards=num_shards, index=index, contiguous=True)
            tmp = target.with_name(f".{name}.tmp")
            shard.to_parquet(str(tmp))
            os.replace(tmp, target)
        written.append(target)
    return written


def export_dataset(
    dataset: datasets.Dataset | datasets.DatasetDict,
    output_dir: str | os.PathLike,
    card: CardInfo,
    config_name: str = "default",
    split: str = "train",
    max_rows_per_shard: int = DEFAULT_MAX_ROWS_PER_SHARD,
) -> Path:
    """Write `dataset` (a Dataset is written as `split`) to `output_dir` as parquet shards + README.md.

    Data files go to `data/` for the `default` config and to `<config_name>/` otherwise, so several
    configs (e.g. one per source) can share one folder; the card's `configs:` lists them all.
    """
    if isinstance(dataset, datasets.Dataset):
        dataset = datasets.DatasetDict({split: dataset})
    if not isinstance(dataset, datasets.DatasetDict) or not len(dataset):
        raise ValueError(f"dataset: expected a non-empty Dataset or DatasetDict, got {type(dataset).__name__}")
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", config_name):
        raise ValueError(f"config_name: expected letters, digits, '_', '-' or '.', got {config_name!r}")
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    data_dir = "data" if config_name == "default" else config_name
    state = _load_state(output_dir)
    config_state = state.setdefault(config_name, {})
    for split_name, split_ds in dataset.items():
        if not re.fullmatch(r"\w+", split_name):
            raise ValueError(f"split name: expected letters, digits or '_', got {split_name!r}")
        fingerprint = f"{split_ds._fingerprint}:{max_rows_per_shard}"
        write_split_shards(split_ds, output_dir / data_dir, split_name, max_rows_per_shard, fingerprint, config_state)
        config_state[split_name] = fingerprint
        _atomic_write_bytes(output_dir / STATE_FILE, json.dumps(state, indent=1, sort_keys=True), text=True)
    write_card(output_dir, config_name, dict(dataset.items()), data_dir, card)
    return output_dir
