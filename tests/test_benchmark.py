"""Depth Template Benchmark builder: answers re-checked against ground truth, determinism, balance, export."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

import datasets
from dataset_scripts.builders import benchmark
from dataset_scripts.synthetic import world as synthetic
from dataset_scripts.builders.benchmark import DepthTemplateBenchmark, benchmark_card, load_build_stats
from tests.fixtures.real_formats import (
    FixtureObject,
    write_nyu_labeled_mat,
    write_nyu_splits_mat,
    write_sun_frame,
    write_votenet_frame,
)
from dataset_scripts.builders.benchmark_questions import PAPER_TARGET_COUNTS, QuestionSettings
from dataset_scripts.export import export_dataset, image_value_to_depth
from dataset_scripts.sources.sunrgbd import read_sunrgbd_original
from dataset_scripts.vocab import NYU10_CLASSES, confusable, scenes_confusable
from deepsight.tasks import CHANCE, NUM_OPTIONS, TASK_NAMES, TASK_SHORT_TITLES, TASK_TITLES, TASKS, ordered_tasks

NAMES = [
    "bed",
    "chair",
    "lamp",
    "sofa",
    "television",
    "plant",
    "sink",
    "toilet",
    "desk",
    "box",
    "door",
    "pillow",
]
SCENE_TYPES = ["bedroom", "office", "kitchen"]
H, W = 64, 96


def _write_sun_fixture(root: Path, num_frames: int = 12, seed: int = 0) -> Path:
    """Frames of 5 side-by-side objects at random depths, 3 scene types, in the SUN original layout."""
    rng = np.random.default_rng(seed)
    for k in range(num_frames):
        picks = rng.choice(len(NAMES), 5, replace=False)
        objects = [
            FixtureObject(NAMES[p], (2 + 18 * j, 8, 16 + 18 * j, 56), float(rng.uniform(1.0, 6.0)))
            for j, p in enumerate(picks)
        ]
        write_sun_frame(root / f"frame{k:02d}", objects, SCENE_TYPES[k % 3], height=H, width=W, holes=2)
    return root


@pytest.fixture(scope="module")
def sun_root(tmp_path_factory) -> Path:
    return _write_sun_fixture(tmp_path_factory.mktemp("sun"))


def _build(cache: Path, source: str, data_dir=None, **kwargs):
    builder = DepthTemplateBenchmark(
        config_name=source,
        cache_dir=str(cache),
        data_dir=str(data_dir) if data_dir else None,
        source=source,
        **kwargs,
    )
    builder.download_and_prepare()
    return benchmark.as_dataset_or_empty(builder), load_build_stats(builder), builder.config


@pytest.fixture(scope="module")
def sun_build(sun_root, tmp_path_factory):
    return _build(tmp_path_factory.mktemp("cache"), "sunrgbd", sun_root, seed=3)


@pytest.fixture(scope="module")
def sun_scenes(sun_root):
    return {s.id: s for s in read_sunrgbd_original(sun_root)}


def _scene_id(row) -> str:
    return row["id"].split("/", 3)[3]


def _by_name(scene, name):
    matches = [o for o in scene.objects if o.name == name]
    assert len(matches) == 1, f"{name!r} must name exactly one object in {scene.id}"
    return matches[0]


def test_every_task_is_built_with_the_contract_schema(sun_build):
    ds, stats, _ = sun_build
    assert set(ds.features) == set(benchmark.FEATURES)
    assert Counter(ds["task"]).keys() == {
        "scene_classification",
        "recognition",
        "distance_judgment",
        "security",
    }
    for row in ds:
        assert len(row["options"]) == NUM_OPTIONS[row["task"]]
        assert row["options"][row["answer_index"]] == row["answer"]
        assert len(set(row["options"])) == len(row["options"])
        assert "A." not in row["question"] and "\n" not in row["question"]  # options are added at evaluation
    assert stats["tasks"]["recognition"]["selected"] == Counter(ds["task"])["recognition"]


def test_every_distance_answer_is_the_object_with_the_larger_masked_mean_depth(sun_build, sun_scenes):
    ds, _, config = sun_build
    settings = config.settings
    rows = [r for r in ds if r["task"] == "distance_judgment"]
    assert len(rows) > 10
    for row in rows:
        scene = sun_scenes[_scene_id(row)]
        objects = [_by_name(scene, name) for name in row["options"]]
        depths = [obj.mean_depth(scene.depth) for obj in objects]  # mean VALID depth over the instance mask
        assert all(obj.mask is not None for obj in objects)
        assert row["answer_index"] == int(np.argmax(depths))
        gap = abs(depths[0] - depths[1])
        assert gap >= settings.min_absolute_gap and gap / min(depths) >= settings.min_relative_gap
        assert row["boxes"] == [
            [int(v) for v in obj.box] for obj in objects
        ]  # one box per option, same order
        np.testing.assert_allclose(image_value_to_depth(row["depth"]), scene.depth, atol=5e-4)


def test_chance_is_one_over_the_option_count_and_every_title_follows_the_papers_task_order():
    assert list(NUM_OPTIONS) == list(CHANCE) == list(TASKS)
    assert CHANCE == {"scene_classification": 1 / 3, "recognition": 1 / 4, "distance_judgment": 1 / 2, "security": 1 / 4}
    assert list(TASK_TITLES) == list(TASK_NAMES) == list(TASK_SHORT_TITLES) == list(TASKS)
    assert ordered_tasks(["security", "depth_estimation", "recognition", "area"]) == [
        "recognition", "security", "area", "depth_estimation"]


def test_answer_positions_are_balanced_across_options(sun_build):
    ds, _, _ = sun_build
    for task, num_options in NUM_OPTIONS.items():
        positions = Counter(r["answer_index"] for r in ds if r["task"] == task)
        counts = [positions.get(p, 0) for p in range(num_options)]
        assert max(counts) - min(counts) <= 1, f"{task}: {counts}"


def test_security_absent_object_is_truly_absent_plausible_and_the_others_present(sun_build, sun_scenes):
    ds, _, _ = sun_build
    rows = [r for r in ds if r["task"] == "security"]
    assert rows
    for row in rows:
        scene = sun_scenes[_scene_id(row)]
        present = set(scene.object_names)
        absent = row["answer"]
        assert absent not in present and not any(confusable(absent, p) for p in present)
        assert all(opt in present for i, opt in enumerate(row["options"]) if i != row["answer_index"])
        same_type = [s for s in sun_scenes.values() if s.scene_type == scene.scene_type]
        assert any(absent in s.object_names for s in same_type), "absent object never seen in this scene type"


def test_recognition_box_is_the_answer_object_and_distractors_are_neither_present_nor_confusable(
    sun_build, sun_scenes
):
    ds, _, _ = sun_build
    for row in (r for r in ds if r["task"] == "recognition"):
        scene = sun_scenes[_scene_id(row)]
        boxed = [o.name for o in scene.objects if [int(v) for v in o.box] == row["boxes"][0]]
        assert boxed == [row["answer"]]
        for i, option in enumerate(row["options"]):
            if i != row["answer_index"]:
                assert option not in scene.object_names and not confusable(option, row["answer"])


def test_scene_classification_distractors_are_other_non_confusable_classes(sun_build, sun_scenes):
    ds, _, _ = sun_build
    rows = [r for r in ds if r["task"] == "scene_classification"]
    assert len(rows) == len(sun_scenes)
    for row in rows:
        assert row["answer"] == sun_scenes[_scene_id(row)].scene_type == row["scene"]
        assert not any(
            scenes_confusable(o, row["answer"])
            for i, o in enumerate(row["options"])
            if i != row["answer_index"]
        )


def test_same_seed_gives_identical_parquet_bytes_and_another_seed_other_questions(
    sun_root, sun_build, tmp_path
):
    first, stats, config = sun_build
    again, _, _ = _build(tmp_path / "cache2", "sunrgbd", sun_root, seed=3)
    other, _, _ = _build(tmp_path / "cache3", "sunrgbd", sun_root, seed=4)
    card = benchmark_card({config.source: stats})
    export_dataset(first, tmp_path / "a", card, config_name="sunrgbd", split="test")
    export_dataset(again, tmp_path / "b", card, config_name="sunrgbd", split="test")
    files_a = sorted((tmp_path / "a" / "sunrgbd").glob("*.parquet"))
    assert files_a and [f.read_bytes() for f in files_a] == [
        f.read_bytes() for f in sorted((tmp_path / "b" / "sunrgbd").glob("*.parquet"))
    ]
    assert list(zip(first["id"], first["question"], first["answer"])) != list(
        zip(other["id"], other["question"], other["answer"])
    )


def test_distance_filters_are_counted_per_reason(tmp_path):
    objects = [
        FixtureObject("bed", (2, 8, 20, 56), 2.0),
        FixtureObject("sofa", (22, 8, 40, 56), 2.1),  # 0.1 m behind the bed: below the absolute gap
        FixtureObject("desk", (42, 8, 60, 56), 5.0),
        FixtureObject("picture", (43, 10, 59, 50), 4.0),  # in front of the desk, inside its box
        FixtureObject("lamp", (62, 8, 65, 11), 1.0),  # 9 pixels: tiny mask
        FixtureObject("chair", (70, 8, 80, 30), 3.0),
        FixtureObject("chair", (82, 8, 94, 30), 4.5),  # two chairs: "the chair" is ambiguous
        FixtureObject("television", (70, 40, 94, 62), 8.0),
        FixtureObject("sink", (2, 58, 60, 64), 7.8),  # 0.2 m from the television, but only 2.6 %
    ]
    write_sun_frame(tmp_path / "sun" / "f", objects, "office", height=H, width=W, holes=0)
    _, stats, _ = _build(
        tmp_path / "cache",
        "sunrgbd",
        tmp_path / "sun",
        tasks=("distance_judgment",),
        settings=QuestionSettings(min_absolute_gap=0.15, min_relative_gap=0.04),
    )
    task = stats["tasks"]["distance_judgment"]
    assert task["filtered"] == {
        "tiny_mask": 1,
        "ambiguous_name_in_scene": 2,
        "overlapping_boxes": 1,
        "gap_below_absolute_threshold": 1,
        "gap_below_relative_threshold": 1,
    }
    # 6 usable objects -> 15 pairs, 3 filtered; at most 4 questions per scene by default
    assert task["candidates"] == 12 and task["selected"] == 4


def test_votenet_scenes_have_boxes_only_so_distance_judgment_is_reported_impossible(tmp_path):
    for index, names in enumerate([("bed", "night_stand"), ("sofa", "lamp"), ("toilet", "sink")], start=1):
        objects = [
            FixtureObject(names[0], (5, 10, 30, 40), 2.0),
            FixtureObject(names[1], (40, 20, 60, 45), 3.5),
        ]
        write_votenet_frame(tmp_path / "sunrgbd_trainval", index, objects, height=H, width=W, split="val")
    ds, stats, _ = _build(tmp_path / "cache", "sunrgbd", tmp_path, tasks=("recognition", "distance_judgment"))
    assert Counter(ds["task"]) == {"recognition": 6}
    assert stats["tasks"]["distance_judgment"]["filtered"]["no_instance_mask"] == 6
    assert "boxes only" in stats["tasks"]["distance_judgment"]["note"]


def _nyu_fixture(folder: Path) -> Path:
    frames = []
    for scene in ["living_room", "basement", "bedroom", "kitchen", "study", "bathroom"]:
        labels = np.zeros((48, 64), np.uint16)
        instances = np.zeros((48, 64), np.uint8)
        labels[5:40, 5:30], instances[5:40, 5:30] = 1, 1
        labels[5:40, 35:60], instances[5:40, 35:60] = 2, 1
        depth = np.where(np.arange(64)[None, :] < 32, 2.0, 4.0) * np.ones((48, 1))
        frames.append({"depth": depth, "labels": labels, "instances": instances, "scene": scene})
    folder.mkdir(parents=True, exist_ok=True)
    return write_nyu_labeled_mat(folder / "nyu_depth_v2_labeled.mat", frames, ["chair", "table"])


def test_nyu_scene_classification_follows_the_10_class_protocol(tmp_path):
    mat = _nyu_fixture(tmp_path)
    write_nyu_splits_mat(tmp_path / "splits.mat", [1], [2, 3, 4, 5, 6])
    ds, _, _ = _build(tmp_path / "cache", "nyu", mat, split_name="test")
    rows = sorted((r for r in ds if r["task"] == "scene_classification"), key=_scene_id)
    assert [r["answer"] for r in rows] == ["others", "bedroom", "kitchen", "others", "bathroom"]
    assert all(set(r["options"]) <= set(NYU10_CLASSES) for r in rows)
    distance = [r for r in ds if r["task"] == "distance_judgment"]
    assert distance and all(
        r["answer"] == "table" for r in distance
    )  # the table stands at 4 m, the chair at 2 m


def test_task_caps_and_paper_targets(sun_root, tmp_path):
    ds, stats, config = _build(tmp_path / "cache", "sunrgbd", sun_root, max_per_task=5, target_counts="paper")
    assert all(count <= 5 for count in Counter(ds["task"]).values())
    assert config.task_cap("distance_judgment") == 5
    paper = benchmark.DepthBenchmarkConfig(name="x", target_counts="paper")
    assert {t: paper.task_cap(t) for t in PAPER_TARGET_COUNTS} == {
        "scene_classification": 1786,
        "recognition": 3793,
        "distance_judgment": 5737,
        "security": 2157,
    }
    with pytest.raises(ValueError, match="target_counts"):
        benchmark.DepthBenchmarkConfig(name="x", target_counts="most")
    with pytest.raises(ValueError, match="source"):
        benchmark.DepthBenchmarkConfig(name="x", source="kinect")


def test_cli_writes_a_folder_load_dataset_reads_offline_and_a_restart_gives_the_same_files(
    sun_root, tmp_path, capsys
):
    argv = [
        "--source",
        "sunrgbd",
        "--data-dir",
        str(sun_root),
        "--output",
        str(tmp_path / "out"),
        "--seed",
        "1",
        "--cache-dir",
        str(tmp_path / "cache"),
        "--max-rows-per-shard",
        "40",
    ]
    assert benchmark.main(argv) == 0
    printed = capsys.readouterr().out
    assert "| distance_judgment |" in printed and "questions from 12 scenes" in printed
    shards = sorted((tmp_path / "out" / "sunrgbd").glob("test-*.parquet"))
    assert len(shards) > 1
    contents = [s.read_bytes() for s in shards]
    shards[-1].unlink()  # as if the run died before its last shard landed
    assert benchmark.main(argv) == 0
    assert [s.read_bytes() for s in sorted((tmp_path / "out" / "sunrgbd").glob("test-*.parquet"))] == contents
    loaded = datasets.load_dataset(str(tmp_path / "out"), "sunrgbd", split="test")
    assert loaded.features["depth"] == datasets.Image() and len(loaded) > 50
    card = (tmp_path / "out" / "README.md").read_text()
    assert "config_name: sunrgbd" in card and "## Sources and licences" in card and "gap_below" in card
    assert "## Statistics: sunrgbd" in card
    assert f"| sunrgbd | test | {len(loaded)} |" in card
    # a mistyped --data-dir is refused while the arguments are read, naming it
    with pytest.raises(SystemExit):
        benchmark.main(
            [
                "--source",
                "nyu",
                "--data-dir",
                str(tmp_path / "missing"),
                "--output",
                str(tmp_path / "o"),
                "--cache-dir",
                str(tmp_path / "cache"),
            ]
        )
    assert f"not found: {tmp_path / 'missing'}" in capsys.readouterr().err


def test_synthetic_benchmark_rendered_directly_checks_out_against_the_rendered_masks(tmp_path):
    ds, stats, _ = _build(
        tmp_path / "cache", "synthetic", None, num_scenes=16, scene_width=160, scene_height=120, seed=2
    )
    scenes = {s.id: s for s in synthetic.generate_scenes(16, 2, split="test", width=160, height=120)}
    assert Counter(ds["task"])["scene_classification"] == 16
    for row in ds:
        scene = scenes[_scene_id(row)]
        assert row["source"] == "synthetic" and row["scene"] == scene.scene_type
        if row["task"] == "distance_judgment":
            depths = [_by_name(scene, n).mean_depth(scene.depth) for n in row["options"]]
            assert row["answer_index"] == int(np.argmax(depths))
        if row["task"] == "security":
            assert row["answer"] not in scene.object_names
            assert row["answer"] in synthetic.scene_object_vocabulary(scene.scene_type)


def test_synthetic_scenes_written_in_sun_layout_become_a_benchmark(tmp_path):
    scenes = list(synthetic.generate_scenes(8, 5, split="test", width=160, height=120))
    synthetic.write_sunrgbd_layout(scenes, tmp_path / "sun")
    ds, stats, _ = _build(tmp_path / "cache", "synthetic", tmp_path / "sun")
    assert set(ds["source"]) == {"synthetic"} and stats["scenes"] == 8
    assert {"scene_classification", "recognition"} <= set(ds["task"])
    read_back = {s.id: s for s in read_sunrgbd_original(tmp_path / "sun")}
    for row in (r for r in ds if r["task"] == "distance_judgment"):
        scene = read_back[_scene_id(row)]
        depths = [_by_name(scene, n).mean_depth(scene.depth) for n in row["options"]]
        assert row["answer_index"] == int(np.argmax(depths))


def test_max_per_scene_gives_distinct_scene_classification_variants(sun_root, tmp_path):
    settings = QuestionSettings()
    settings.max_per_scene.update(benchmark.parse_task_counts(["scene_classification=3"], "--max-per-scene"))
    ds, _, _ = _build(
        tmp_path / "cache", "sunrgbd", sun_root, tasks=("scene_classification",), settings=settings
    )
    per_scene: dict[str, list] = {}
    for row in ds:
        per_scene.setdefault(_scene_id(row), []).append(frozenset(row["options"]))
    assert all(len(v) == 3 and len(set(v)) == 3 for v in per_scene.values())
    with pytest.raises(ValueError, match="TASK=N"):
        benchmark.parse_task_counts(["recognition=0"], "--max-per-scene")


def test_nyu_cli_reads_the_split_file_given_and_rejects_unknown_splits(tmp_path, capsys):
    _nyu_fixture(tmp_path / "data")
    split_file = write_nyu_splits_mat(tmp_path / "meta_splits.mat", [1, 2, 3], [4, 5, 6])
    common = ["--source", "nyu", "--data-dir", str(tmp_path / "data"), "--cache-dir", str(tmp_path / "cache")]
    out = tmp_path / "out"
    assert (
        benchmark.main([*common, "--split-file", str(split_file), "--output", str(out), "--split", "train"])
        == 0
    )
    assert "questions from 3 scenes" in capsys.readouterr().out
    loaded = datasets.load_dataset(str(out), "nyu", split="train")
    assert {r["id"].split("/")[3] for r in loaded} == {"nyu_0001", "nyu_0002", "nyu_0003"}
    with pytest.raises(ValueError, match="split"):
        benchmark.main([*common, "--split-file", str(split_file), "--output", str(out), "--split", "val"])
    with pytest.raises(ValueError, match="splits.mat"):  # no split file given, none beside the .mat
        benchmark.main([*common, "--output", str(out)])


REALDATA = Path(__file__).resolve().parents[1].parent / "shared" / "realdata"


@pytest.mark.realdata
@pytest.mark.skipif(not REALDATA.is_dir(), reason="../shared/realdata is absent")
def test_realdata_votenet_frames_give_recognition_questions_on_their_labelled_boxes(tmp_path):
    from dataset_scripts.sources.sunrgbd import read_sunrgbd_votenet

    root = REALDATA / "sunrgbd" / "votenet_format_mmdet3d"
    ds, stats, _ = _build(tmp_path / "cache", "sunrgbd", root, split_name="all")
    scenes = {s.id: s for s in read_sunrgbd_votenet(root / "sunrgbd_trainval")}
    recognition = [r for r in ds if r["task"] == "recognition"]
    assert recognition and "distance_judgment" not in ds["task"]
    for row in recognition:
        scene = scenes[_scene_id(row)]
        named = [
            o.name
            for o in scene.objects
            if [int(np.floor(o.box[0])), int(np.floor(o.box[1]))] == row["boxes"][0][:2]
        ]
        assert row["answer"] in named
    assert stats["reader"]["frames_read"] == 4
