"""Real dataset files with quirks (issue 25, point 3): each bad label, frame, file or record is skipped or
dropped and counted with its path, never an answer and never the end of a run. Property tests (point 6)
of the readers' record parsing: every generated record is refused and counted, or read into finite
boxes and masks of the documented shapes."""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from dataset_scripts.builders.benchmark_questions import dataset_statistics, summarize_scene
from dataset_scripts.sources.coco import (
    OUTSIDE_IMAGE_TOLERANCE,
    decode_segmentation,
    parse_coco,
    read_coco,
)
from dataset_scripts.sources.files import FrameError, ReadReport
from dataset_scripts.sources.nyu import nyu_scene_meta, read_nyu_labeled, read_nyu_sync
from dataset_scripts.sources.sunrgbd import (
    read_sun_frame,
    read_sunrgbd_original,
    read_sunrgbd_votenet,
    read_votenet_labels,
    sun_annotation_objects,
    sun_scene_label,
)
from dataset_scripts.vocab import (
    KNOWN_OBJECT_NAMES,
    NYU_SCENE_TYPES,
    SUNRGBD_SCENE_TYPES,
    normalize_scene_name,
)
from tests.fixtures.real_formats import (
    FixtureObject,
    write_nyu_labeled_mat,
    write_sun_frame,
    write_votenet_frame,
)

REALDATA = Path(__file__).resolve().parents[1].parent / "shared" / "realdata"
needs_realdata = pytest.mark.skipif(not REALDATA.is_dir(), reason="../shared/realdata is absent")
PROPERTY = settings(max_examples=60, deadline=None, derandomize=True)

H, W = 48, 64
OBJECTS = [FixtureObject("night_stand", (5, 10, 25, 40), 2.0), FixtureObject("chair", (40, 20, 60, 45), 3.25)]
UNKNOWN_NAMES = ["xyzzy", "椅子"]  # not a class of any list, and non-Latin


def _sun_frame_with_unknown_names(folder: Path, scene: str = "bedroom") -> None:
    extra_objects = [{"name": name} for name in UNKNOWN_NAMES]
    extra_polygons = [
        {"x": [2, 30, 30, 2], "y": [2, 2, 8, 8], "object": len(OBJECTS) + i}
        for i in range(len(UNKNOWN_NAMES))
    ]
    write_sun_frame(
        folder, OBJECTS, scene=scene, height=H, width=W, extra_objects=extra_objects,
        extra_polygons=extra_polygons,
    )  # fmt: skip


def _zero_depth(folder: Path, depth_folder: str = "depth") -> None:
    png = next((folder / depth_folder).glob("*.png"))
    Image.fromarray(np.zeros((H, W), np.uint16)).save(png)


# --------------------------------------------------------------------------------------------------
# SUN RGB-D
# --------------------------------------------------------------------------------------------------


def test_sun_garbage_scene_txt_is_no_scene_class_and_is_counted(tmp_path):
    write_sun_frame(tmp_path / "garbage", OBJECTS, scene="asdf qwerty", height=H, width=W)
    write_sun_frame(tmp_path / "known", OBJECTS, scene="furniture_store", height=H, width=W)
    report = ReadReport()
    assert read_sun_frame(tmp_path / "garbage", report=report).scene_type is None
    assert read_sun_frame(tmp_path / "known", report=report).scene_type == "furniture store"
    assert report.dropped_annotations == {"unknown_scene_label": 1}
    assert str(tmp_path / "garbage" / "scene.txt") in report.messages[0]


def test_sun_unknown_object_names_are_dropped_counted_and_never_another_scenes_option(tmp_path):
    _sun_frame_with_unknown_names(tmp_path / "sun" / "a", scene="bedroom")
    write_sun_frame(tmp_path / "sun" / "b", OBJECTS, scene="office", height=H, width=W)
    report = ReadReport()
    scenes = list(read_sunrgbd_original(tmp_path / "sun", report=report))
    assert [s.object_names for s in scenes] == [["night stand", "chair"]] * 2
    assert report.dropped_annotations == {"unknown_object_name": 2}
    assert any("xyzzy" in m and "index.json" in m for m in report.messages)
    vocabulary = dataset_statistics([summarize_scene(s) for s in scenes]).object_vocabulary
    assert not set(UNKNOWN_NAMES) & set(vocabulary)


def test_sun_frame_with_all_invalid_depth_is_skipped_and_counted(tmp_path):
    write_sun_frame(tmp_path / "sun" / "empty", OBJECTS, height=H, width=W)
    _zero_depth(tmp_path / "sun" / "empty")
    write_sun_frame(tmp_path / "sun" / "good", OBJECTS, height=H, width=W)
    report = ReadReport()
    assert [s.id for s in read_sunrgbd_original(tmp_path / "sun", report=report)] == ["sunrgbd_good"]
    assert report.skipped_frames == {"too_little_valid_depth": 1}
    assert "0.0% of the depth pixels" in report.messages[0] and "empty" in report.messages[0]
    # the threshold is an argument: 0 keeps the frame
    assert len(list(read_sunrgbd_original(tmp_path / "sun", min_valid_fraction=0.0))) == 2
    with pytest.raises(ValueError, match="min_valid_fraction"):
        list(read_sunrgbd_original(tmp_path / "sun", min_valid_fraction=1.5))


def test_report_messages_name_each_skip_once_when_a_builder_reads_the_scenes_twice(tmp_path):
    write_sun_frame(tmp_path / "sun" / "badpng", OBJECTS, height=H, width=W)
    next((tmp_path / "sun" / "badpng" / "depth").glob("*.png")).write_bytes(b"garbage")
    write_sun_frame(tmp_path / "sun" / "garbage", OBJECTS, scene="xyzzy", height=H, width=W)
    report = ReadReport()
    for _ in range(2):  # the benchmark builder's two passes share one report
        list(read_sunrgbd_original(tmp_path / "sun", report=report))
    assert len(report.messages) == len(set(report.messages)) == 2


def test_sun_deeply_nested_index_json_skips_that_frame_only_with_its_path(tmp_path):
    write_sun_frame(tmp_path / "sun" / "deep", OBJECTS, height=H, width=W)
    (tmp_path / "sun" / "deep" / "annotation2Dfinal" / "index.json").write_text("[" * 100_000 + "]" * 100_000)
    write_sun_frame(tmp_path / "sun" / "good", OBJECTS, height=H, width=W)
    report = ReadReport()
    assert [s.id for s in read_sunrgbd_original(tmp_path / "sun", report=report)] == ["sunrgbd_good"]
    assert report.skipped_frames == {"corrupt_annotation": 1}
    assert "sunrgbd_deep" in report.messages[0] and "index.json" in report.messages[0]


def test_sun_any_exception_of_one_frame_skips_it_with_its_path(tmp_path, monkeypatch):
    # a PNG over PIL's pixel limit raises DecompressionBombError, which no reader check names
    write_sun_frame(tmp_path / "sun" / "bomb", OBJECTS, height=2 * H, width=2 * W)
    write_sun_frame(tmp_path / "sun" / "good", OBJECTS, height=H, width=W)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", H * W)
    report = ReadReport()
    assert [s.id for s in read_sunrgbd_original(tmp_path / "sun", report=report)] == ["sunrgbd_good"]
    assert report.skipped_frames == {"corrupt_depth": 1}
    assert str(tmp_path / "sun" / "bomb") in report.messages[0]


def test_sun_unexpected_errors_are_counted_under_their_type(tmp_path, monkeypatch):
    import dataset_scripts.sources.sunrgbd as sunrgbd

    write_sun_frame(tmp_path / "sun" / "a", OBJECTS, height=H, width=W)
    write_sun_frame(tmp_path / "sun" / "b", OBJECTS, height=H, width=W)
    original = sunrgbd.read_intrinsics

    def flaky(path):
        if path.parent.name == "a":
            raise MemoryError("the allocator gave up")
        return original(path)

    monkeypatch.setattr(sunrgbd, "read_intrinsics", flaky)
    report = ReadReport()
    assert [s.id for s in read_sunrgbd_original(tmp_path / "sun", report=report)] == ["sunrgbd_b"]
    assert report.skipped_frames == {"unexpected_MemoryError": 1}
    assert str(tmp_path / "sun" / "a") in report.messages[0]


def test_votenet_infinite_points_boxes_and_unknown_names_are_dropped(tmp_path):
    import scipy.io

    write_votenet_frame(tmp_path, 1, OBJECTS, height=H, width=W)
    mat = tmp_path / "depth" / "000001.mat"
    points = scipy.io.loadmat(str(mat))["instance"]
    points[:5, :3] = np.inf
    points[5:10, :3] = np.nan
    scipy.io.savemat(str(mat), {"instance": points})
    with open(tmp_path / "label" / "000001.txt", "a") as labels:
        labels.write("bed 1 2 inf 5 0 0 0\nxyzzy 1 2 5 5 0 0 0\nlamp 500 500 5 5 0 0 0\n")
    report = ReadReport()
    (scene,) = read_sunrgbd_votenet(tmp_path, report=report)
    assert np.isfinite(scene.depth).all()
    assert scene.object_names == ["night stand", "chair"]
    assert report.dropped_annotations == {
        "degenerate_box": 1,
        "unknown_object_name": 1,
        "box_outside_image": 1,
    }


def test_votenet_frame_with_no_valid_depth_is_skipped(tmp_path):
    import scipy.io

    write_votenet_frame(tmp_path, 1, OBJECTS, height=H, width=W)
    write_votenet_frame(tmp_path, 2, OBJECTS, height=H, width=W)
    behind_the_camera = np.zeros((3, 6))
    scipy.io.savemat(str(tmp_path / "depth" / "000001.mat"), {"instance": behind_the_camera})
    report = ReadReport()
    assert [s.id for s in read_sunrgbd_votenet(tmp_path, report=report)] == ["sunrgbd_votenet_000002"]
    assert report.skipped_frames == {"too_little_valid_depth": 1}


# --------------------------------------------------------------------------------------------------
# NYU Depth V2
# --------------------------------------------------------------------------------------------------


def _sync_frame(root: Path, number: int, mm: np.ndarray) -> None:
    (root / "depth").mkdir(parents=True, exist_ok=True)
    Image.fromarray(mm.astype(np.uint16)).save(root / "depth" / f"sync_depth_{number:05d}.png")


def test_nyu_sync_all_invalid_depth_frames_are_skipped_and_counted(tmp_path):
    _sync_frame(tmp_path / "kitchen_0001a", 1, np.zeros((H, W)))
    _sync_frame(tmp_path / "kitchen_0001a", 2, np.full((H, W), 1500))
    report = ReadReport()
    scenes = list(read_nyu_sync(tmp_path, report=report))
    assert [s.id for s in scenes] == ["nyu_sync_kitchen_0001a_00002"]
    assert report.skipped_frames == {"too_little_valid_depth": 1}
    assert "sync_depth_00001.png" in report.messages[0]


def test_nyu_sync_unknown_sequence_scene_is_no_scene_class(tmp_path):
    _sync_frame(tmp_path / "xyzzy_0001a", 1, np.full((H, W), 1500))
    report = ReadReport()
    (scene,) = read_nyu_sync(tmp_path, report=report)
    assert scene.scene_type is None and scene.meta["nyu10"] is None
    assert report.dropped_annotations == {"unknown_scene_label": 1}


def _nyu_labeled_frame(scene: str) -> dict:
    labels = np.zeros((H, W), np.uint16)
    instances = np.zeros((H, W), np.uint8)
    labels[5:20, 5:20], instances[5:20, 5:20] = 1, 1
    labels[25:40, 10:50], instances[25:40, 10:50] = 2, 1
    depth = np.full((H, W), 2.0, np.float32)
    return {"depth": depth, "labels": labels, "instances": instances, "scene": scene}


def test_nyu_labeled_unknown_scene_types_and_names_are_dropped_and_counted(tmp_path):
    frames = [_nyu_labeled_frame("xyzzy_room"), _nyu_labeled_frame("kitchen")]
    path = write_nyu_labeled_mat(tmp_path / "nyu.mat", frames, ["chair", "xyzzy"])
    report = ReadReport()
    scenes = list(read_nyu_labeled(path, split="all", report=report))
    assert [(s.scene_type, s.meta["nyu10"]) for s in scenes] == [(None, None), ("kitchen", "kitchen")]
    assert [s.object_names for s in scenes] == [["chair"], ["chair"]]
    assert report.dropped_annotations == {"unknown_scene_label": 1, "unknown_object_name": 2}


def test_nyu_labeled_one_unreadable_frame_is_skipped_with_the_file_and_frame(tmp_path):
    import h5py

    frames = [_nyu_labeled_frame("kitchen"), _nyu_labeled_frame("bedroom")]
    frames[1]["depth"][:] = np.nan
    frames.append(_nyu_labeled_frame("office"))
    path = write_nyu_labeled_mat(tmp_path / "nyu.mat", frames, ["chair", "night stand"])
    with h5py.File(path, "r+") as h5:  # `instances` one frame short: the last frame's read raises
        short = h5["instances"][:2]
        del h5["instances"]
        h5.create_dataset("instances", data=short)
    report = ReadReport()
    scenes = list(read_nyu_labeled(path, split="all", report=report))
    assert [s.id for s in scenes] == ["nyu_0001"]
    assert report.skipped_frames["too_little_valid_depth"] == 1  # the NaN frame
    ((reason, count),) = [(r, c) for r, c in report.skipped_frames.items() if r.startswith("unexpected_")]
    assert count == 1 and any(f"{path} frame 3" in m for m in report.messages)


# --------------------------------------------------------------------------------------------------
# COCO
# --------------------------------------------------------------------------------------------------

COCO_IMAGE = {"id": 1, "file_name": "000000000001.jpg", "width": W, "height": H}
COCO_CATEGORIES = [
    {"id": 62, "name": "chair", "supercategory": "furniture"},
    {"id": 90, "name": "xyzzy", "supercategory": "furniture"},
]


def _annotation(i: int, bbox, segmentation=None, category_id: int = 62) -> dict:
    return {"id": i, "image_id": 1, "category_id": category_id, "iscrowd": 0, "bbox": bbox,
            "segmentation": segmentation}  # fmt: skip


def test_coco_nan_infinite_negative_and_outside_boxes_and_absurd_polygons_are_dropped():
    good_polygon = [[2, 3, 22, 3, 22, 13, 2, 13]]
    annotations = [
        _annotation(1, [2, 3, 20, 10], good_polygon),
        _annotation(2, [float("nan"), 3, 20, 10]),
        _annotation(3, [2, 3, float("inf"), 10]),
        _annotation(4, [2, 3, -20, 10]),
        _annotation(5, [2, 3, 0, 10]),
        _annotation(6, [500, 300, 20, 10]),
        _annotation(7, [2, 3, 20, 10], [[2, 3, float("nan"), 3, 22, 13]]),
        _annotation(8, [2, 3, 20, 10], [[2, 3, 1e12, 3, 22, 13]]),
        _annotation(9, [2, 3, 20, 10], [[2, 3, 22, 3, 22]]),
        _annotation(10, [2, 3, 20, 10], [[2, 3, 2, 3, 2, 3]]),
        _annotation(11, [2, 3, 20, 10], {"size": [H, W], "counts": [5, 3]}),
        _annotation(12, [2, 3, 20, 10], good_polygon, category_id=90),
    ]
    coco = parse_coco({"annotations": []}, {"images": [COCO_IMAGE], "annotations": annotations,
                                            "categories": COCO_CATEGORIES})  # fmt: skip
    assert [o.annotation_id for o in coco.images[1].objects] == [1]
    assert coco.skipped == {
        "annotation with a NaN or infinite bbox": 2,
        "annotation with an empty bbox": 2,
        "annotation with a bbox outside its image": 1,
        "annotation with an absurd polygon": 4,
        "annotation with an RLE that does not cover its image": 1,
        "category of an unknown name": 1,
        "annotation of an unknown category": 1,
    }


def test_coco_one_bad_caption_record_is_skipped_with_its_file_and_position(tmp_path):
    (tmp_path / "annotations").mkdir()
    captions = [
        {"id": 1, "image_id": 1, "caption": "a chair by the wall"},
        {"id": 2, "image_id": "not a number", "caption": "a table"},
        ["not", "a", "record"],
        {"id": 4, "image_id": 1, "caption": {"text": "nested"}},
    ]
    (tmp_path / "annotations" / "captions_val2017.json").write_text(json.dumps({"annotations": captions}))
    (tmp_path / "annotations" / "instances_val2017.json").write_text(
        json.dumps({"images": [COCO_IMAGE], "annotations": [], "categories": COCO_CATEGORIES[:1]})
    )
    coco = read_coco(tmp_path, "val2017")
    assert coco.images[1].captions == ["a chair by the wall"]
    assert coco.skipped == {"malformed caption record": 2, "caption that is no text": 1}
    assert any("captions_val2017.json annotations[1] (id 2)" in m for m in coco.report.messages)
    assert any("captions_val2017.json annotations[2]" in m for m in coco.report.messages)


def test_coco_unreadable_annotation_file_is_a_value_error_naming_it(tmp_path):
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "captions_val2017.json").write_text("[" * 100_000)
    (tmp_path / "annotations" / "instances_val2017.json").write_text("{}")
    with pytest.raises(ValueError, match="captions_val2017.json"):
        read_coco(tmp_path, "val2017")


# --------------------------------------------------------------------------------------------------
# Real samples: still read in full
# --------------------------------------------------------------------------------------------------


@needs_realdata
@pytest.mark.realdata
def test_realdata_samples_read_fully_with_their_labels_and_names():
    sun = ReadReport()
    original = list(read_sunrgbd_original(REALDATA / "sunrgbd" / "original_layout", report=sun))
    trainval = REALDATA / "sunrgbd" / "votenet_format_mmdet3d" / "sunrgbd_trainval"
    votenet = list(read_sunrgbd_votenet(trainval, report=sun))
    assert [s.scene_type for s in original] == ["office", "office"] and len(votenet) == 4
    names = {n for s in votenet for n in s.object_names}
    assert names == {"bed", "night stand", "stool", "mirror", "dresser", "lamp"}
    nyu = ReadReport()
    sync = [*read_nyu_sync(REALDATA / "nyu" / "bts_sync_metric3d_demo", report=nyu)]
    sync += read_nyu_sync(REALDATA / "nyu" / "mmseg_pseudo_nyu", report=nyu)
    assert len(sync) == 4 and sync[-1].scene_type == "bookstore"
    for report in (sun, nyu):
        assert not report.skipped_frames and not report.dropped_annotations
    coco = read_coco(REALDATA / "coco", "val2017")
    assert len(coco.images) == 16 and sum(len(i.objects) for i in coco.images.values()) == 183
    assert coco.skipped == {"crowd annotation": 1}


# --------------------------------------------------------------------------------------------------
# Property tests of the record parsers
# --------------------------------------------------------------------------------------------------

ANY_NUMBER = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(10**7), 10**7),
    st.floats(-5, 2 * max(H, W)),
)
JUNK = st.one_of(st.none(), st.booleans(), st.text(max_size=3), st.integers(-3, 3))
COORDINATES = st.one_of(
    st.lists(st.one_of(ANY_NUMBER, JUNK), max_size=7), st.lists(ANY_NUMBER, min_size=3, max_size=7), JUNK
)
NAMES = st.one_of(
    st.sampled_from(["chair", "Night_Stand", "garbage_bin", "xyzzy", "椅子", "", "  ", "_2"]),
    st.text(max_size=8),
)
SUN_OBJECTS = st.lists(st.one_of(st.fixed_dictionaries({"name": st.one_of(NAMES, JUNK)}), JUNK), max_size=5)
SUN_POLYGONS = st.lists(
    st.one_of(
        st.fixed_dictionaries(
            {"x": COORDINATES, "y": COORDINATES, "object": st.one_of(st.integers(-2, 6), ANY_NUMBER, JUNK)}
        ),
        JUNK,
    ),
    max_size=6,
)


def _rectangles_on(names: list[str]):
    """A well-formed annotation: rectangles (partly off the image, some) of the objects `names`."""
    def rectangle(index: int, x: int, y: int, w: int, h: int) -> dict:
        return {"x": [x, x + w, x + w, x], "y": [y, y, y + h, y + h], "object": index}

    sizes = st.integers(1, 40)
    index = st.integers(0, len(names) - 1)
    rectangles = st.builds(rectangle, index, st.integers(-5, W), st.integers(-5, H), sizes, sizes)
    objects = [{"name": name} for name in names]
    return st.lists(rectangles, max_size=4).map(lambda ps: {"objects": objects, "frames": [{"polygon": ps}]})


SUN_ANNOTATIONS = st.one_of(
    st.lists(NAMES, min_size=1, max_size=4).flatmap(_rectangles_on),
    st.fixed_dictionaries(
        {
            "objects": SUN_OBJECTS,
            "frames": st.lists(st.one_of(st.fixed_dictionaries({"polygon": SUN_POLYGONS}), JUNK), max_size=2),
        }
    ),
    st.fixed_dictionaries({"objects": st.one_of(SUN_OBJECTS, JUNK)}),
    JUNK,
)


def _assert_usable_box(box, height: int, width: int, tolerance: float = 0.0) -> None:
    x0, y0, x1, y1 = box
    assert np.isfinite(box).all() and x0 < x1 and y0 < y1
    assert -tolerance <= x0 and -tolerance <= y0 and x1 <= width + tolerance and y1 <= height + tolerance


@PROPERTY
@given(SUN_ANNOTATIONS)
def test_property_sun_annotation_is_refused_or_read_into_masks_counting_every_polygon(annotation):
    report = ReadReport()
    try:
        objects = sun_annotation_objects(annotation, H, W, report, where="x/index.json")
    except FrameError as err:
        assert err.reason == "corrupt_annotation" and "x/index.json" in str(err)
        return
    frame = annotation["frames"][0] if annotation["frames"] else None
    polygons = frame.get("polygon") if isinstance(frame, dict) else None
    count = len(polygons) if isinstance(polygons, list) else 0
    kept = count - sum(report.dropped_annotations.values())
    assert kept >= len(objects) and (kept > 0) == bool(objects)
    for obj in objects:
        assert obj.mask.dtype == bool and obj.mask.shape == (H, W) and obj.mask.any()
        assert obj.name in KNOWN_OBJECT_NAMES
        _assert_usable_box(obj.box, H, W)


SCENE_TEXTS = st.one_of(st.text(max_size=30), st.sampled_from([*SUNRGBD_SCENE_TYPES, *NYU_SCENE_TYPES]))


@PROPERTY
@given(SCENE_TEXTS)
def test_property_scene_labels_are_a_known_class_or_none_and_counted(raw):
    report = ReadReport()
    label = sun_scene_label(raw, report)
    assert label is None or label in {normalize_scene_name(s) for s in SUNRGBD_SCENE_TYPES}
    assert report.dropped_annotations == ({"unknown_scene_label": 1} if label is None else {})
    report = ReadReport()
    label, meta = nyu_scene_meta(raw, report, "seq")
    assert label is None or label in {normalize_scene_name(s) for s in NYU_SCENE_TYPES}
    assert (meta["nyu10"] is None) == (label is None)
    assert sum(report.dropped_annotations.values()) == (1 if raw and label is None else 0)


VOTENET_FIELD = st.one_of(ANY_NUMBER.map(str), st.text(alphabet="0123456789.-einfa", max_size=6))
VOTENET_LINES = st.lists(
    st.tuples(
        st.one_of(NAMES.map(lambda n: n.replace(" ", "_")), st.just("bed")),
        st.lists(VOTENET_FIELD, max_size=8),
    ),
    max_size=6,
)


@PROPERTY
@given(VOTENET_LINES)
def test_property_votenet_label_lines_are_dropped_and_counted_or_finite_boxes(lines):
    text = "\n".join(" ".join([name, *fields]) for name, fields in lines)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "label.txt"
        path.write_text(text, encoding="utf-8")
        report = ReadReport()
        objects = read_votenet_labels(path, report, H, W)
    lines_with_fields = sum(bool(line.split()) for line in text.splitlines())
    assert len(objects) + sum(report.dropped_annotations.values()) == lines_with_fields
    for obj in objects:
        x0, y0, x1, y1 = obj.box
        assert np.isfinite(obj.box).all() and x0 < x1 and y0 < y1 and x0 < W and y0 < H and x1 > 0 and y1 > 0
        assert obj.name in KNOWN_OBJECT_NAMES


RLE = st.fixed_dictionaries(
    {
        "size": st.one_of(st.just([H, W]), st.lists(st.one_of(st.integers(-1, 80), JUNK), max_size=3)),
        "counts": st.one_of(
            st.just([H * W]),
            st.lists(st.integers(-5, H * W), max_size=5),
            st.text(alphabet=[chr(c) for c in range(48, 112)], max_size=10),
            JUNK,
        ),
    }
)
SEGMENTATIONS = st.one_of(st.none(), st.lists(COORDINATES, max_size=3), RLE, JUNK)
COCO_RECORDS = st.lists(
    st.one_of(
        st.fixed_dictionaries(
            {
                "image_id": st.sampled_from([1, "1", 2, None, 1.5, "x"]),
                "category_id": st.sampled_from([62, 90, 7, None]),
                "bbox": st.one_of(st.lists(ANY_NUMBER, min_size=4, max_size=4), COORDINATES),
                "segmentation": SEGMENTATIONS,
            },
            optional={"id": st.one_of(st.integers(0, 10**6), JUNK), "iscrowd": st.sampled_from([0, 1, None])},
        ),
        JUNK,
    ),
    max_size=8,
)


@PROPERTY
@given(COCO_RECORDS)
def test_property_coco_annotations_are_counted_or_finite_boxes_and_masks(records):
    instances = {"images": [COCO_IMAGE], "annotations": records, "categories": COCO_CATEGORIES}
    coco = parse_coco({"annotations": []}, instances)
    objects = coco.images[1].objects
    prefixes = ("annotation ", "crowd ", "malformed annotation ")
    about_annotations = Counter({r: c for r, c in coco.skipped.items() if r.startswith(prefixes)})
    assert len(objects) + sum(about_annotations.values()) == len(records)
    for obj in objects:
        _assert_usable_box(obj.box, H, W, OUTSIDE_IMAGE_TOLERANCE)
        if obj.segmentation is not None:
            mask = decode_segmentation(obj.segmentation, H, W)
            assert mask.dtype == bool and mask.shape == (H, W)
    scene = coco.images[1].to_scene(np.ones((H // 2, W // 2), np.float32))
    for obj in scene.objects:
        assert np.isfinite(obj.box).all() and (obj.mask is None or obj.mask.shape == (H // 2, W // 2))
