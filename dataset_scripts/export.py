"""Write a `datasets.Dataset` / `DatasetDict` as a Hub-style folder: parquet shards + README.md card.

The folder is what `datasets.load_dataset(<folder>)` reads offline and what `publish` pushes: the
card's YAML front matter lists `configs:` (data files per split) and `dataset_info:` (features,
example counts), followed by free-form sections (sources, licence, statistics).

Depth columns are `datasets.Image()` values holding a 16-bit PNG in millimetres. We hand the PNG bytes
to `datasets` ourselves because `datasets.Image` re-encodes a PIL `I;16` image as TIFF. Viewers show such a PNG
almost black, so every exported dataset with depth also gets `depth_preview`: a small 8-bit colour-mapped
picture of it (the depth column stays the data).

Writing is resumable: each shard is written to a temporary file and renamed into place, and a small
state file records the fingerprint of the data each split was written from; a rerun with the same data
skips the shards already on disk.
"""

from __future__ import annotations

import hashlib
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
from deepsight.depth_rendering import metres_to_rgb

STATE_FILE = ".export_state.json"
DEFAULT_MAX_ROWS_PER_SHARD = 1000
PREVIEW_COLUMN = "depth_preview"
PREVIEW_LONG_SIDE = 128  # pixels: enough to see the room in the Hub's dataset viewer, ~10-20 KB a row
PREVIEW_NOTE = (
    f"`{PREVIEW_COLUMN}` is a small 8-bit picture of the depth map for viewers ({PREVIEW_LONG_SIDE} px on the long "
    "side, turbo colours, warmer = closer, black = invalid, normalised per map): it carries no metric depth. The "
    "16-bit millimetre PNG is the data every DeepSight script reads; a 16-bit PNG shows almost black in viewers."
)


# --------------------------------------------------------------------------------------------------
# Depth <-> datasets.Image value
# --------------------------------------------------------------------------------------------------


def png_bytes_from_mm(depth_mm: np.ndarray) -> bytes:
    """Encode an HxW uint16 millimetre map as 16-bit grayscale PNG bytes (lossless)."""
    depth_mm = np.asarray(depth_mm)
    if depth_mm.ndim != 2 or depth_mm.dtype != np.uint16:
        raise ValueError(
            f"depth_mm: expected an HxW uint16 array, got shape {depth_mm.shape} dtype {depth_mm.dtype}"
        )
    buffer = io.BytesIO()
    Image.fromarray(depth_mm).save(buffer, format="PNG")
    return buffer.getvalue()


def depth_to_image_value(depth_metres: np.ndarray) -> dict[str, Any]:
    """Metric depth (float metres, 0 = invalid) -> a `datasets.Image()` value (16-bit PNG, mm)."""
    # modeling_deepsight loads torch + transformers (~4 s): `deepsight data` imports it only to encode depth
    from modeling_deepsight.depth_codec_deepsight import depth_to_png_mm

    return {"bytes": png_bytes_from_mm(depth_to_png_mm(np.asarray(depth_metres))), "path": None}


def mm_from_image_value(value: Any) -> np.ndarray:
    """The uint16 millimetres of a depth column value (decoded PIL image, bytes/path dict, PNG bytes)."""
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
        raise ValueError(
            f"depth value: expected a PIL image, a dict with 'bytes' or PNG bytes, got {type(value).__name__}"
        )
    if value.mode not in ("I;16", "I;16B", "I;16L", "I"):
        raise ValueError(f"depth value: expected a 16-bit PNG in millimetres, got PIL mode {value.mode!r}")
    array = np.asarray(value)
    if array.dtype != np.uint16:
        if array.min() < 0 or array.max() > np.iinfo(np.uint16).max:
            raise ValueError("depth value: 32-bit image holds values outside the uint16 millimetre range")
        array = array.astype(np.uint16)
    return array


def depth_preview_value(value: Any) -> dict[str, Any]:
    """A depth column value -> a `datasets.Image()` value for viewers: 8-bit RGB PNG, turbo colours (warmer =
    closer, per-map range), invalid pixels black, `PREVIEW_LONG_SIDE` px on the long side. A picture, not data."""
    depth = Image.fromarray(mm_from_image_value(value).astype(np.float32))
    scale = PREVIEW_LONG_SIDE / max(depth.size)
    if scale < 1:  # nearest: averaging would blend invalid (0) pixels into their neighbours' depth
        depth = depth.resize((max(1, round(depth.width * scale)), max(1, round(depth.height * scale))), Image.NEAREST)
    # the per-map range makes the unit irrelevant: millimetres render as metres would
    image = metres_to_rgb(np.asarray(depth), "colormap")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)  # 4x faster to write, a little larger
    return {"bytes": buffer.getvalue(), "path": None}


def with_depth_preview(dataset: datasets.Dataset) -> datasets.Dataset:
    """`dataset` with a `depth_preview` column drawn from its `depth` column (or the first of its `images`);
    unchanged when it has neither or already has a preview."""
    source = next((name for name in ("depth", "images") if name in dataset.column_names), None)
    if source is None or PREVIEW_COLUMN in dataset.column_names:
        return dataset
    # read the stored PNG bytes as they are: decoding and re-encoding would rewrite the depth column
    undecoded = datasets.Image(decode=False)
    raw = dataset.cast_column(source, undecoded if source == "depth" else datasets.List(undecoded))

    drawn: dict[bytes, dict] = {}  # the rows of a scene share its depth map: each map is drawn once

    def preview(value: Any) -> dict | None:
        if value is None:
            return None
        key = hashlib.sha1(value["bytes"] if value.get("bytes") is not None else str(value["path"]).encode()).digest()
        if key not in drawn:
            if len(drawn) >= 4096:  # ~40 MB of previews at most
                drawn.clear()
            drawn[key] = depth_preview_value(value)
        return drawn[key]

    def add_previews(batch: dict[str, list]) -> dict[str, list]:
        values = batch[source] if source == "depth" else [images[0] if images else None for images in batch[source]]
        return {PREVIEW_COLUMN: [preview(value) for value in values]}

    features = datasets.Features({**raw.features, PREVIEW_COLUMN: datasets.Image()})
    previewed = raw.map(add_previews, batched=True, batch_size=100, features=features, desc="depth previews")
    return previewed.cast_column(source, dataset.features[source])


def image_value_to_depth(value: Any) -> np.ndarray:
    """A depth column value -> float32 metres (0 = invalid); the inverse of `depth_to_image_value`."""
    from modeling_deepsight.depth_codec_deepsight import decode_depth

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


class _PlainDumper(yaml.SafeDumper):
    """Writes shared objects (the same features in several configs) out in full, not as &anchors."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


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


def _config_yaml(
    config_name: str, splits: Mapping[str, datasets.Dataset], data_dir: str
) -> tuple[dict, dict]:
    data_files = [{"split": split, "path": f"{data_dir}/{split}-*.parquet"} for split in splits]
    first = next(iter(splits.values()))
    info = {
        "config_name": config_name,
        "features": first.features._to_yaml_list(),
        "splits": [
            {"name": split, "num_bytes": int(ds.data.nbytes), "num_examples": len(ds)}
            for split, ds in splits.items()
        ],
    }
    return {"config_name": config_name, "data_files": data_files}, info


def _merge_by_config_name(existing: list[dict] | dict | None, new: dict) -> list[dict]:
    if isinstance(existing, dict):
        existing = [existing]
    merged = [entry for entry in (existing or []) if entry.get("config_name") != new["config_name"]]
    merged.append(new)
    return sorted(merged, key=lambda entry: (entry["config_name"] != "default", entry["config_name"]))


def _union_entries(metadata: dict[str, Any], name: str) -> tuple[dict, dict]:
    """A config reading every other config's files split by split; the default of `load_dataset(folder)`."""
    paths: dict[str, list[str]] = {}
    for config in metadata["configs"]:
        if config["config_name"] != name:
            for entry in config["data_files"]:
                paths.setdefault(entry["split"], []).append(entry["path"])
    totals: dict[str, dict[str, int]] = {}
    infos = [info for info in metadata["dataset_info"] if info["config_name"] != name]
    for info in infos:
        for split in info["splits"]:
            total = totals.setdefault(split["name"], {"num_bytes": 0, "num_examples": 0})
            total["num_bytes"] += split["num_bytes"]
            total["num_examples"] += split["num_examples"]
    config_entry = {
        "config_name": name,
        "default": True,
        "data_files": [{"split": split, "path": p} for split, p in paths.items()],
    }
    info_entry = {
        "config_name": name,
        "features": infos[0]["features"],
        "splits": [{"name": split, **total} for split, total in totals.items()],
    }
    return config_entry, info_entry


def write_card(
    output_dir: Path,
    config_name: str,
    splits: Mapping[str, datasets.Dataset],
    data_dir: str,
    card: CardInfo,
    union_config: str | None = None,
) -> Path:
    """(Re)write README.md: YAML front matter merged with other configs already in the folder + sections.

    `union_config` names an extra config, the default one, that reads all the others together.
    """
    readme = output_dir / "README.md"
    metadata = _read_card_yaml(readme)
    config_entry, info_entry = _config_yaml(config_name, splits, data_dir)
    metadata["configs"] = _merge_by_config_name(metadata.get("configs"), config_entry)
    metadata["dataset_info"] = _merge_by_config_name(metadata.get("dataset_info"), info_entry)
    if union_config is not None:
        for config in metadata["configs"]:
            config.pop("default", None)
        union, union_info = _union_entries(metadata, union_config)
        metadata["configs"] = _merge_by_config_name(metadata["configs"], union)
        metadata["dataset_info"] = _merge_by_config_name(metadata["dataset_info"], union_info)
    metadata["license"] = card.license
    metadata["pretty_name"] = card.pretty_name
    if card.tags:
        metadata["tags"] = card.tags
    if card.task_categories:
        metadata["task_categories"] = card.task_categories

    counts = markdown_table(
        ["config", "split", "examples"],
        [
            (info["config_name"], s["name"], s["num_examples"])
            for info in metadata["dataset_info"]
            for s in info["splits"]
        ],
    )
    body = [
        f"# {card.pretty_name}",
        "",
        card.description.strip(),
        "",
        "## Loading",
        "",
        "```python",
        "from datasets import load_dataset",
        "",
        f'ds = load_dataset("path/to/this/folder", "{config_name}")'
        + (f"  # or no name: the '{union_config}' config, every config together" if union_config else ""),
        "```",
        "",
        "## Counts",
        "",
        counts,
        "",
    ]
    for title, text in card.sections.items():
        body += [f"## {title}", "", text.strip(), ""]
    if PREVIEW_COLUMN in next(iter(splits.values())).column_names:
        body += ["## Depth preview", "", PREVIEW_NOTE, ""]
    front = yaml.dump(metadata, Dumper=_PlainDumper, sort_keys=False, allow_unicode=True, width=1000)
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
    keep_existing: bool = False,
    before_writing=None,
) -> list[Path]:
    """Write one split as `<split>-NNNNN-of-MMMMM.parquet`.

    With `keep_existing` (the shards on disk were cut from this very data) finished shards are kept and
    only the missing ones written; otherwise every old shard of the split goes first, since a leftover
    from other data or another shard count would be read along with the new ones. `before_writing` is
    called once the old shards are gone and before the first new one lands (to record what is written).
    """
    if max_rows_per_shard < 1:
        raise ValueError(f"max_rows_per_shard: expected >= 1, got {max_rows_per_shard}")
    num_shards = max(1, -(-len(dataset) // max_rows_per_shard))
    names = shard_file_names(split, num_shards)
    data_path.mkdir(parents=True, exist_ok=True)
    for stale in data_path.glob(f"{split}-*.parquet"):
        if stale.name not in names or not keep_existing:
            stale.unlink()
    if before_writing is not None:
        before_writing()
    written = []
    for index, name in enumerate(names):
        target = data_path / name
        if not target.exists():
            shard = dataset.shard(num_shards=num_shards, index=index, contiguous=True)
            tmp = target.with_name(f".{name}.tmp")
            shard.to_parquet(str(tmp))
            os.replace(tmp, target)  # atomic: a shard on disk is always complete
        written.append(target)
    return written


def export_dataset(
    dataset: datasets.Dataset | datasets.DatasetDict,
    output_dir: str | os.PathLike,
    card: CardInfo,
    config_name: str = "default",
    split: str = "train",
    max_rows_per_shard: int = DEFAULT_MAX_ROWS_PER_SHARD,
    union_config: str | None = None,
) -> Path:
    """Write `dataset` (a Dataset is written as `split`) to `output_dir` as parquet shards + README.md.

    Data files go to `data/` for the `default` config and to `<config_name>/` otherwise, so several
    configs (e.g. one per source) can share one folder; the card's `configs:` lists them all. With
    `union_config` (say "all") the card also gets that config, marked default, reading all of them.
    """
    if isinstance(dataset, datasets.Dataset):
        dataset = datasets.DatasetDict({split: dataset})
    if not isinstance(dataset, datasets.DatasetDict) or not len(dataset):
        raise ValueError(
            f"dataset: expected a non-empty Dataset or DatasetDict, got {type(dataset).__name__}"
        )
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", config_name):
        raise ValueError(f"config_name: expected letters, digits, '_', '-' or '.', got {config_name!r}")
    if union_config is not None and union_config in (config_name, "default"):
        raise ValueError(f"union_config: {union_config!r} must differ from config_name and from 'default'")
    dataset = datasets.DatasetDict({name: with_depth_preview(rows) for name, rows in dataset.items()})
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    data_dir = "data" if config_name == "default" else config_name
    state = _load_state(output_dir)
    config_state = state.setdefault(config_name, {})
    for split_name, split_ds in dataset.items():
        if not re.fullmatch(r"\w+", split_name):
            raise ValueError(f"split name: expected letters, digits or '_', got {split_name!r}")
        fingerprint = f"{split_ds._fingerprint}:{max_rows_per_shard}"
        same_data = config_state.get(split_name) == fingerprint

        def record_split(split_name=split_name, fingerprint=fingerprint):
            # recorded before the shards are written, so a run killed halfway resumes instead of restarting
            config_state[split_name] = fingerprint
            _atomic_write_bytes(
                output_dir / STATE_FILE, json.dumps(state, indent=1, sort_keys=True), text=True
            )

        write_split_shards(
            split_ds, output_dir / data_dir, split_name, max_rows_per_shard, same_data, record_split
        )
    write_card(output_dir, config_name, dict(dataset.items()), data_dir, card, union_config)
    return output_dir
