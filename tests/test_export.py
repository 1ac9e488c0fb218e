"""export.py: parquet shards + card that `datasets.load_dataset(folder)` reads back offline, losslessly."""

from __future__ import annotations

import numpy as np
import pytest

import datasets
from dataset_scripts.export import (
    CardInfo,
    depth_to_image_value,
    export_dataset,
    image_value_to_depth,
    mm_from_image_value,
    png_bytes_from_mm,
)

FEATURES = datasets.Features({"id": datasets.Value("string"), "depth": datasets.Image()})


def _depth_dataset(n: int, seed: int = 0) -> tuple[datasets.Dataset, list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    maps = []
    for _ in range(n):
        mm = rng.integers(0, 65536, size=(7, 9), dtype=np.uint16)
        mm[0, 0], mm[0, 1] = 0, 65535  # the extremes must survive too
        maps.append(mm)
    rows = {
        "id": [f"row{i}" for i in range(n)],
        "depth": [{"bytes": png_bytes_from_mm(m), "path": None} for m in maps],
    }
    return datasets.Dataset.from_dict(rows, features=FEATURES), maps


def test_uint16_depth_round_trips_exactly_through_parquet_and_load_dataset(tmp_path):
    ds, maps = _depth_dataset(5)
    export_dataset(datasets.DatasetDict({"test": ds}), tmp_path, CardInfo("t"), max_rows_per_shard=2)
    loaded = datasets.load_dataset(str(tmp_path), split="test")
    assert loaded["id"] == ds["id"]
    for row, expected in zip(loaded, maps):
        assert row["depth"].mode.startswith("I")
        np.testing.assert_array_equal(mm_from_image_value(row["depth"]), expected)


def test_metres_helper_is_exact_to_the_millimetre():
    rng = np.random.default_rng(1)
    metres = np.round(rng.uniform(0.3, 9.0, size=(6, 8)), 3).astype(np.float32)
    metres[2, 3] = 0.0
    back = image_value_to_depth(depth_to_image_value(metres))
    assert back.dtype == np.float32
    np.testing.assert_allclose(back, metres, atol=5e-4)
    assert back[2, 3] == 0.0


def test_card_lists_configs_splits_and_counts_and_each_config_loads(tmp_path):
    ds, _ = _depth_dataset(3)
    card = CardInfo("Depth thing", sections={"Sources": "made up", "Licence": "CC0"})
    export_dataset(
        datasets.DatasetDict({"test": ds, "train": ds.select([0])}), tmp_path, card, config_name="nyu"
    )
    export_dataset(ds.select([0, 1]), tmp_path, card, config_name="synthetic", split="test")
    readme = (tmp_path / "README.md").read_text()
    assert "config_name: nyu" in readme and "config_name: synthetic" in readme
    assert "## Sources" in readme and "| nyu | train | 1 |" in readme and "| synthetic | test | 2 |" in readme
    assert len(datasets.load_dataset(str(tmp_path), "nyu", split="test")) == 3
    assert len(datasets.load_dataset(str(tmp_path), "synthetic", split="test")) == 2


def test_rerun_with_same_data_skips_finished_shards_and_changed_data_rewrites(tmp_path):
    ds, _ = _depth_dataset(4)
    export_dataset(ds, tmp_path, CardInfo("t"), split="test", max_rows_per_shard=2)
    first = sorted((tmp_path / "data").glob("test-*.parquet"))
    assert len(first) == 2
    mtimes = [p.stat().st_mtime_ns for p in first]
    first[1].unlink()  # an interrupted run: the second shard never landed
    export_dataset(ds, tmp_path, CardInfo("t"), split="test", max_rows_per_shard=2)
    assert first[0].stat().st_mtime_ns == mtimes[0]
    assert first[1].exists()
    # other data (3 rows, now 1 shard): the old shards are removed, not mixed in
    export_dataset(ds.select([0, 1, 2]), tmp_path, CardInfo("t"), split="test", max_rows_per_shard=5)
    assert [p.name for p in (tmp_path / "data").glob("test-*.parquet")] == ["test-00000-of-00001.parquet"]
    assert len(datasets.load_dataset(str(tmp_path), split="test")) == 3


def test_bad_inputs_raise_value_errors_naming_them(tmp_path):
    with pytest.raises(ValueError, match="depth_mm"):
        png_bytes_from_mm(np.zeros((3, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="config_name"):
        export_dataset(_depth_dataset(1)[0], tmp_path, CardInfo("t"), config_name="a b")
    with pytest.raises(ValueError, match="16-bit"):
        from PIL import Image

        mm_from_image_value(Image.new("RGB", (2, 2)))


def test_export_killed_halfway_resumes_keeping_the_finished_shards(tmp_path, monkeypatch):
    ds, maps = _depth_dataset(6)
    real_to_parquet = datasets.Dataset.to_parquet
    calls = []

    def dies_on_third_shard(self, path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 3:
            raise KeyboardInterrupt("killed")
        return real_to_parquet(self, path, *args, **kwargs)

    monkeypatch.setattr(datasets.Dataset, "to_parquet", dies_on_third_shard)
    with pytest.raises(KeyboardInterrupt):
        export_dataset(ds, tmp_path, CardInfo("t"), split="test", max_rows_per_shard=2)
    finished = sorted((tmp_path / "data").glob("test-*.parquet"))
    assert [p.name for p in finished] == ["test-00000-of-00003.parquet", "test-00001-of-00003.parquet"]
    mtimes = [p.stat().st_mtime_ns for p in finished]
    monkeypatch.setattr(datasets.Dataset, "to_parquet", real_to_parquet)
    export_dataset(ds, tmp_path, CardInfo("t"), split="test", max_rows_per_shard=2)
    assert [p.stat().st_mtime_ns for p in finished] == mtimes
    loaded = datasets.load_dataset(str(tmp_path), split="test")
    for row, expected in zip(loaded, maps):
        np.testing.assert_array_equal(mm_from_image_value(row["depth"]), expected)


def test_union_config_is_the_default_and_reads_every_config(tmp_path):
    ds, _ = _depth_dataset(3)
    export_dataset(ds, tmp_path, CardInfo("t"), config_name="nyu", split="test", union_config="all")
    export_dataset(
        ds.select([0]), tmp_path, CardInfo("t"), config_name="sunrgbd", split="test", union_config="all"
    )
    both = datasets.load_dataset(str(tmp_path), split="test")  # no name: the union config
    assert sorted(both["id"]) == sorted([*ds["id"], "row0"])
    assert len(datasets.load_dataset(str(tmp_path), "sunrgbd", split="test")) == 1
    assert "| all | test | 4 |" in (tmp_path / "README.md").read_text()
    with pytest.raises(ValueError, match="union_config"):
        export_dataset(ds, tmp_path, CardInfo("t"), config_name="all", union_config="all")
