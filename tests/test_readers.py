"""NYU Depth V2 and SUN RGB-D readers: fixtures written in each exact format, and ../shared/realdata."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dataset_scripts.synthetic import world as synthetic
from tests.fixtures.real_formats import (
    FixtureObject,
    visible_mask,
    write_nyu_labeled_mat,
    write_nyu_splits_mat,
    write_sun_frame,
    write_votenet_frame,
)
from dataset_scripts.sources.files import ReadReport
from dataset_scripts.sources.nyu import (
    kinect_disparity_to_metres,
    load_nyu_split,
    read_kinect_disparity_pgm,
    read_nyu_labeled,
    read_nyu_raw_frame,
    read_nyu_sync,
)
from dataset_scripts.sources.sunrgbd import (
    polygon_mask,
    read_sun_frame,
    read_sunrgbd_original,
    read_sunrgbd_votenet,
)
from dataset_scripts.vocab import (
    confusable,
    is_question_worthy,
    normalize_object_name,
    nyu10_scene_class,
    scenes_confusable,
)

REALDATA = Path(__file__).resolve().parents[1].parent / "shared" / "realdata"
needs_realdata = pytest.mark.skipif(not REALDATA.is_dir(), reason="../shared/realdata is absent")

H, W = 48, 64


# --------------------------------------------------------------------------------------------------
# NYU labeled .mat
# --------------------------------------------------------------------------------------------------


def _nyu_frame(scene: str, shift: int = 0) -> dict:
    depth = (1.0 + 0.05 * np.arange(W)[None, :] + 0.01 * np.arange(H)[:, None]).astype(np.float32)
    labels = np.zeros((H, W), np.uint16)
    instances = np.zeros((H, W), np.uint8)
    labels[5:20, 5 + shift : 20 + shift], instances[5:20, 5 + shift : 20 + shift] = 1, 1  # chair #1
    labels[5:20, 30:40], instances[5:20, 30:40] = 1, 2  # chair #2: same label, another instance
    labels[25:40, 10:50], instances[25:40, 10:50] = 2, 1  # night stand
    labels[44:48, 0:4] = 2  # labelled but instance 0: not an instance (NYU toolbox)
    return {"depth": depth, "labels": labels, "instances": instances, "scene": scene}


@pytest.fixture()
def nyu_mat(tmp_path):
    frames = [_nyu_frame("living_room"), _nyu_frame("basement", shift=2), _nyu_frame("home_office")]
    path = write_nyu_labeled_mat(tmp_path / "nyu_depth_v2_labeled.mat", frames, ["chair", "Night_Stand"])
    write_nyu_splits_mat(tmp_path / "splits.mat", train_1based=[2], test_1based=[1, 3])
    return path, frames


def test_nyu_labeled_reads_official_split_with_untransposed_axes(nyu_mat):
    path, frames = nyu_mat
    scenes = list(read_nyu_labeled(path, split="test"))
    assert [s.id for s in scenes] == ["nyu_0001", "nyu_0003"]
    for scene, frame in zip(scenes, (frames[0], frames[2])):
        assert scene.depth.shape == (H, W)
        np.testing.assert_allclose(scene.depth, frame["depth"])  # x-gradient lands on columns, not rows
        assert scene.split == "test"
    assert [s.id for s in read_nyu_labeled(path, split="train")] == ["nyu_0002"]


def test_nyu_instances_are_label_instance_pairs_with_exact_masks(nyu_mat):
    path, frames = nyu_mat
    scene = next(iter(read_nyu_labeled(path, split="all")))
    frame = frames[0]
    assert sorted(o.name for o in scene.objects) == ["chair", "chair", "night stand"]
    for obj in scene.objects:
        label, instance = divmod(obj.instance_id, 1000)
        expected = (frame["labels"] == label) & (frame["instances"] == instance)
        np.testing.assert_array_equal(obj.mask, expected)
        rows, cols = np.nonzero(expected)
        assert obj.box == (cols.min(), rows.min(), cols.max() + 1, rows.max() + 1)
        assert obj.mean_depth(scene.depth) == pytest.approx(float(frame["depth"][expected].mean()), rel=1e-6)


def test_nyu_scene_types_map_to_the_10_class_protocol(nyu_mat):
    path, _ = nyu_mat
    scenes = list(read_nyu_labeled(path, split="all"))
    assert [s.scene_type for s in scenes] == ["living room", "basement", "home office"]
    assert [s.meta["nyu10"] for s in scenes] == ["living room", "others", "home office"]


def test_nyu_labeled_bad_inputs(tmp_path, nyu_mat):
    with pytest.raises(ValueError, match="does not exist"):
        list(read_nyu_labeled(tmp_path / "missing.mat"))
    not_hdf5 = tmp_path / "v5.mat"
    write_nyu_splits_mat(not_hdf5, [1], [2])  # a MATLAB v5 file, not v7.3
    with pytest.raises(ValueError, match="v7.3"):
        list(read_nyu_labeled(not_hdf5, split="all"))
    lonely = tmp_path / "lonely" / "nyu.mat"
    lonely.parent.mkdir()
    lonely.write_bytes(nyu_mat[0].read_bytes())
    with pytest.raises(ValueError, match="split"):
        list(read_nyu_labeled(lonely, split="test"))
    with pytest.raises(ValueError, match="split"):
        list(read_nyu_labeled(nyu_mat[0], split="validation"))


def test_nyu_labeled_missing_variable_is_a_clear_error(tmp_path):
    import h5py

    path = tmp_path / "partial.mat"
    with h5py.File(path, "w") as h5:
        h5.create_dataset("depths", data=np.zeros((1, W, H), np.float32))
    with pytest.raises(ValueError, match="labels"):
        list(read_nyu_labeled(path, split="all"))


def test_nyu_frames_whose_labels_mismatch_depth_size_are_skipped_and_counted(tmp_path):
    import h5py

    good = _nyu_frame("kitchen")
    path = write_nyu_labeled_mat(tmp_path / "nyu.mat", [good, good], ["chair", "night stand"])
    with h5py.File(path, "r+") as h5:  # labels written 4 rows short of the depth maps
        cropped = h5["labels"][:, :, : H - 4]
        del h5["labels"]
        h5.create_dataset("labels", data=cropped)
    report = ReadReport()
    assert list(read_nyu_labeled(path, split="all", report=report)) == []
    assert report.skipped_frames == {"size_mismatch": 2} and report.frames_read == 0
    assert "64x48" in report.messages[0] and "64x44" in report.messages[0]


@needs_realdata
@pytest.mark.realdata
def test_nyu_official_split_mat_and_json_twin_agree():
    meta = REALDATA / "nyu" / "metadata"
    split = load_nyu_split(meta / "splits.mat")
    assert (len(split["train"]), len(split["test"])) == (795, 654)
    assert split == load_nyu_split(meta / "nyu_class_and_split_lists.json")
    assert not split["train"] & split["test"]


@needs_realdata
@pytest.mark.realdata
def test_nyu_10_class_mapping_matches_the_published_test_split_counts():
    lists = json.loads((REALDATA / "nyu" / "metadata" / "nyu_class_and_split_lists.json").read_text())
    counts: dict[str, int] = {}
    for scene in lists["bts_test_scene_by_labeled_index_0based"].values():
        cls = nyu10_scene_class(scene)
        counts[cls] = counts.get(cls, 0) + 1
    # realdata/class_lists/zero_shot_scene_classes.json: bedroom 191 ... others 41 on the 654 test images
    assert counts["bedroom"] == 191 and counts["others"] == 41 and sum(counts.values()) == 654


# --------------------------------------------------------------------------------------------------
# NYU sync layout and raw Kinect
# --------------------------------------------------------------------------------------------------


def test_nyu_sync_layout_reads_mm_depth_and_counts_corrupt_frames(tmp_path):
    root = tmp_path / "kitchen_0028a"
    (root / "rgb").mkdir(parents=True)
    (root / "depth").mkdir()
    mm = (np.arange(H * W, dtype=np.uint16).reshape(H, W) % 5000) + 500
    mm[0, 0] = 0
    Image.fromarray(mm).save(root / "depth" / "sync_depth_00001.png")
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(root / "rgb" / "rgb_00001.jpg")
    (root / "depth" / "sync_depth_00002.png").write_bytes(b"\x89PNG not really")
    Image.fromarray(mm).save(root / "depth" / "sync_depth_00003.png")
    Image.fromarray(np.zeros((H + 2, W, 3), np.uint8)).save(root / "rgb" / "rgb_00003.jpg")
    report = ReadReport()
    scenes = list(read_nyu_sync(tmp_path, report=report))
    assert [s.id for s in scenes] == ["nyu_sync_kitchen_0028a_00001"]
    np.testing.assert_allclose(scenes[0].depth, mm / 1000.0, rtol=1e-6)
    assert scenes[0].scene_type == "kitchen" and scenes[0].meta["nyu10"] == "kitchen"
    assert report.skipped_frames == {"corrupt_depth": 1, "size_mismatch": 1}
    with pytest.raises(ValueError, match="does not exist"):
        list(read_nyu_sync(tmp_path / "nope"))


def test_kinect_pgm_is_little_endian_disparity_despite_its_header(tmp_path):
    raw = np.array([[1000, 2047], [839, 0]], dtype="<u2")
    path = tmp_path / "d.pgm"
    path.write_bytes(b"P5\n# kinect\n2 2\n65535\n" + raw.tobytes())
    np.testing.assert_array_equal(read_kinect_disparity_pgm(path), raw)
    metres = kinect_disparity_to_metres(raw)
    assert metres[0, 0] == pytest.approx(351.3 / (1092.5 - 1000), rel=1e-6)
    assert metres[0, 1] == 0.0  # 2047 = no return
    assert metres[1, 0] == pytest.approx(351.3 / (1092.5 - 839), rel=1e-6)
    truncated = tmp_path / "short.pgm"
    truncated.write_bytes(b"P5 4 4 65535\n" + raw.tobytes())
    with pytest.raises(ValueError, match="bytes"):
        read_kinect_disparity_pgm(truncated)


@needs_realdata
@pytest.mark.realdata
def test_realdata_nyu_sync_and_raw_kinect_decode_to_the_documented_ranges():
    scenes = list(read_nyu_sync(REALDATA / "nyu" / "bts_sync_metric3d_demo"))
    assert len(scenes) == 3
    valid = np.concatenate([s.depth[s.depth > 0] for s in scenes])
    assert valid.min() == pytest.approx(0.713, abs=1e-3) and valid.max() == pytest.approx(8.266, abs=1e-3)
    raw = read_nyu_raw_frame(REALDATA / "nyu" / "raw_kinect_open3d" / "NYU_depth.pgm")
    valid = raw.depth[raw.depth > 0]
    assert raw.depth.shape == (480, 640)
    assert 1.38 < valid.min() < 1.40 and 6.68 < valid.max() < 6.70  # README: 1.39-6.69 m


@needs_realdata
@pytest.mark.realdata
def test_realdata_flat_nyu_pair_takes_its_scene_from_the_sequence_name():
    scenes = list(read_nyu_sync(REALDATA / "nyu" / "mmseg_pseudo_nyu"))
    assert [s.id for s in scenes] == ["nyu_sync_bookstore_0001d_00001"]
    assert scenes[0].scene_type == "bookstore" and scenes[0].meta["nyu10"] == "bookstore"
    assert scenes[0].depth.shape == (120, 160) and (scenes[0].depth > 0).mean() > 0.5


# --------------------------------------------------------------------------------------------------
# SUN RGB-D original layout
# --------------------------------------------------------------------------------------------------

SUN_OBJECTS = [
    FixtureObject("Night_Stand", (5, 10, 25, 40), 2.0),
    FixtureObject("chair", (40, 20, 70, 55), 3.25),
]


def test_sun_depth_bit_rotation_matches_the_toolbox_values(tmp_path):
    # read3dPoints.m: bitor(bitshift(d, -3), bitshift(d, 16 - 3)): raw 8000 -> 1000 mm, 8001 -> 1000 + 8192 mm
    folder = tmp_path / "frame"
    write_sun_frame(folder, SUN_OBJECTS, height=H, width=W)
    raw = np.full((H, W), 8000, np.uint16)
    raw[0, 0] = 8001
    png = next((folder / "depth").glob("*.png"))
    Image.fromarray(raw).save(png)
    scene = read_sun_frame(folder)
    assert scene.depth[1, 1] == pytest.approx(1.0) and scene.depth[0, 0] == pytest.approx(9.192)


def test_sun_frame_objects_masks_scene_and_intrinsics(tmp_path):
    folder = tmp_path / "kv2" / "frame1"
    written = write_sun_frame(folder, SUN_OBJECTS, scene="bedroom", height=H, width=W, holes=3)
    scene = read_sun_frame(folder)
    np.testing.assert_allclose(scene.depth, written, atol=5e-4)
    assert (scene.depth[:3] == 0).all()  # raw depth/ keeps its holes
    assert scene.scene_type == "bedroom" and scene.intrinsics[0, 0] == pytest.approx(W * 0.8)
    assert [o.name for o in scene.objects] == ["night stand", "chair"]
    for i, obj in enumerate(scene.objects):
        np.testing.assert_array_equal(
            obj.mask, visible_mask(SUN_OBJECTS, i, H, W) | _box_mask(SUN_OBJECTS[i].box)
        )
        assert obj.box == tuple(float(v) for v in _clip(SUN_OBJECTS[i].box))
    filled = read_sun_frame(folder, depth_folder="depth_bfx")
    assert (filled.depth > 0).all()


def _clip(box):
    x0, y0, x1, y1 = box
    return (x0, y0, min(x1, W), min(y1, H))


def _box_mask(box):
    mask = np.zeros((H, W), bool)
    x0, y0, x1, y1 = box
    mask[y0:y1, x0:x1] = True
    return mask


def test_sun_idk_scene_means_unknown(tmp_path):
    write_sun_frame(tmp_path / "f", SUN_OBJECTS, scene="idk", height=H, width=W)
    assert read_sun_frame(tmp_path / "f").scene_type is None


def test_polygon_rasterisation_uses_pixel_centres():
    mask = polygon_mask([2, 6, 6, 2], [1, 1, 4, 4], 8, 8)
    expected = np.zeros((8, 8), bool)
    expected[1:4, 2:6] = True
    np.testing.assert_array_equal(mask, expected)
    triangle = polygon_mask([0, 7.8, 0], [0, 0, 7.8], 8, 8)
    assert triangle.sum() == 28  # centres (c + .5, r + .5) with c + r + 1 < 7.8


def test_sun_broken_annotations_are_dropped_and_counted_never_fatal(tmp_path):
    folder = tmp_path / "frame"
    extra_objects = [None, {"name": ""}]  # indices 2 (null) and 3 (unnamed)
    extra_polygons = [
        {"x": [1, 5, 5], "y": [1, 1, 5], "object": 2},
        {"x": [1, 5, 5], "y": [1, 1, 5], "object": 3},
        {"x": [1, 5, 5], "y": [1, 1, 5], "object": 17},
        {"x": [1, 5, 5], "y": [1, 1, 5], "object": -1},
        {"x": [1, 5, 5], "y": [1, 1, 5], "object": None},
        {"x": [1, 2], "y": [1, 2], "object": 0},  # two points
        {"x": [1, 2, 3], "y": [1, 2, 3], "object": 0},  # collinear: zero area
        {"x": ["a", 2, 3], "y": [1, 2, 9], "object": 0},
        {"x": [500, 600, 600], "y": [500, 500, 600], "object": 1},  # off the image
        "not a polygon",
    ]
    write_sun_frame(
        folder, SUN_OBJECTS, height=H, width=W, extra_polygons=extra_polygons, extra_objects=extra_objects
    )
    report = ReadReport()
    scene = read_sun_frame(folder, report=report)
    assert [o.name for o in scene.objects] == ["night stand", "chair"]
    assert report.dropped_annotations == {
        "null_object": 1,
        "unnamed_object": 1,
        "object_index_out_of_range": 3,
        "degenerate_polygon": 3,
        "polygon_outside_image": 1,
        "malformed_polygon": 1,
    }


def test_sun_bad_frames_are_skipped_with_reasons_and_bad_roots_raise(tmp_path):
    root = tmp_path / "sun"
    write_sun_frame(root / "good", SUN_OBJECTS, height=H, width=W)
    write_sun_frame(root / "badjson", SUN_OBJECTS, height=H, width=W)
    (root / "badjson" / "annotation2Dfinal" / "index.json").write_text("{not json")
    write_sun_frame(root / "badpng", SUN_OBJECTS, height=H, width=W)
    next((root / "badpng" / "depth").glob("*.png")).write_bytes(b"garbage")
    write_sun_frame(root / "mismatch", SUN_OBJECTS, height=H, width=W)
    Image.fromarray(np.zeros((H, W + 1, 3), np.uint8)).save(next((root / "mismatch" / "image").glob("*.jpg")))
    write_sun_frame(root / "badjpg", SUN_OBJECTS, height=H, width=W)
    next((root / "badjpg" / "image").glob("*.jpg")).write_bytes(b"\xff\xd8 not a jpeg")
    write_sun_frame(root / "nodepth", SUN_OBJECTS, height=H, width=W)
    for png in (root / "nodepth" / "depth").glob("*.png"):
        png.unlink()
    report = ReadReport()
    scenes = list(read_sunrgbd_original(root, report=report))
    assert [s.id for s in scenes] == ["sunrgbd_good"]
    assert report.skipped_frames == {
        "corrupt_image": 1,
        "corrupt_annotation": 1,
        "corrupt_depth": 1,
        "size_mismatch": 1,
        "missing_depth": 1,
    }
    with pytest.raises(ValueError, match="does not exist"):
        list(read_sunrgbd_original(tmp_path / "absent"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no frame folder"):
        list(read_sunrgbd_original(tmp_path / "empty"))
    with pytest.raises(ValueError, match="depth_folder"):
        read_sun_frame(root / "good", depth_folder="depth_fancy")


@needs_realdata
@pytest.mark.realdata
def test_realdata_sun_original_layout_frames():
    report = ReadReport()
    scenes = {s.id: s for s in read_sunrgbd_original(REALDATA / "sunrgbd" / "original_layout", report=report)}
    assert report.frames_read == 2 and not report.skipped_frames
    kv2 = scenes["sunrgbd_2014-12-18_11-31-54_260595134347"]
    kv1 = scenes["sunrgbd_img_0063"]
    assert kv2.depth.shape == (530, 730) and kv1.depth.shape == (427, 561)
    assert kv2.scene_type == kv1.scene_type == "office"
    assert kv2.intrinsics[0, 0] == pytest.approx(529.5) and kv1.intrinsics[1, 2] == pytest.approx(215.115)
    for scene in scenes.values():
        valid = scene.depth[scene.depth > 0]
        assert 0.6 < valid.min() and valid.max() < 8.1  # README: 0.64-8.03 m
        assert 0.05 < (scene.depth == 0).mean() < 0.35  # raw depth/: 9-32 % holes
        bfx = read_sun_frame(Path(scene.meta["folder"]), depth_folder="depth_bfx")
        assert (bfx.depth > 0).all()


# --------------------------------------------------------------------------------------------------
# votenet sunrgbd_trainval
# --------------------------------------------------------------------------------------------------


def test_votenet_point_cloud_projects_back_to_the_depth_it_came_from(tmp_path):
    objects = [
        FixtureObject("night_stand", (5, 10, 25, 40), 2.0),
        FixtureObject("sofa", (30, 20, 60, 45), 3.5),
    ]
    depth = write_votenet_frame(tmp_path, 7, objects, height=H, width=W, tilt_degrees=8.0, split="val")
    scene = next(iter(read_sunrgbd_votenet(tmp_path)))
    assert scene.id == "sunrgbd_votenet_000007" and scene.split == "val"
    np.testing.assert_allclose(scene.depth, depth, atol=1e-4)
    assert [o.name for o in scene.objects] == ["night stand", "sofa"]
    assert scene.objects[0].box == (5.0, 10.0, 25.0, 40.0) and scene.objects[0].mask is None


def test_votenet_bad_files_are_counted_skips(tmp_path):
    objects = [FixtureObject("bed", (5, 10, 25, 40), 2.0)]
    for index in (1, 2, 3):
        write_votenet_frame(tmp_path, index, objects, height=H, width=W)
    (tmp_path / "depth" / "000002.mat").write_bytes(b"MATLAB garbage")
    (tmp_path / "calib" / "000003.txt").write_text("1 2 3\n")
    (tmp_path / "label" / "000001.txt").write_text("bed 1 2 0 5 0 0 0\nchair x y 3 3\n")
    report = ReadReport()
    scenes = list(read_sunrgbd_votenet(tmp_path, report=report))
    assert [s.id for s in scenes] == ["sunrgbd_votenet_000001"] and scenes[0].objects == []
    assert report.skipped_frames == {"corrupt_depth": 1, "corrupt_calib": 1}
    assert report.dropped_annotations == {"degenerate_box": 1, "malformed_label_line": 1}
    with pytest.raises(ValueError, match="calib"):
        (tmp_path / "calib" / "000001.txt").unlink()
        import shutil

        shutil.rmtree(tmp_path / "calib")
        list(read_sunrgbd_votenet(tmp_path))


@needs_realdata
@pytest.mark.realdata
def test_realdata_votenet_depth_matches_the_sun_rgbd_raw_depth_png():
    from modeling_deepsight.depth_codec_deepsight import load_depth

    root = REALDATA / "sunrgbd" / "votenet_format_mmdet3d" / "sunrgbd_trainval"
    scenes = list(read_sunrgbd_votenet(root))
    assert [s.meta["index"] for s in scenes] == [1, 2, 3, 4]
    for scene in scenes:
        reference, _ = load_depth(
            REALDATA / "sunrgbd" / "sun_rgbd_is_kv2" / "train_depth_raw" / f"{scene.meta['index']:06d}.png",
            "sun",
        )
        assert scene.depth.shape == reference.shape == (530, 730)
        np.testing.assert_array_equal(scene.depth > 0, reference > 0)
        assert np.median(np.abs(scene.depth - reference)[reference > 0]) < 2e-5
    first = scenes[0]
    assert first.object_names[:2] == ["bed", "night stand"]
    assert first.objects[0].box == (328.0, 152.0, 674.0, 472.0)


# --------------------------------------------------------------------------------------------------
# Vocabulary and the synthetic world written as SUN RGB-D
# --------------------------------------------------------------------------------------------------


def test_confusable_names_and_scenes_are_never_fair_distractors():
    assert confusable("table", "coffee table") and confusable("desk", "table") and confusable("sofa", "sofa")
    assert not confusable("bed", "sink") and not confusable("lamp", "toilet")
    assert scenes_confusable("dining room", "dining area") and not scenes_confusable("bedroom", "kitchen")
    assert (
        is_question_worthy("chair") and not is_question_worthy("wall") and not is_question_worthy("otherprop")
    )


def test_object_names_are_normalised_to_one_vocabulary():
    assert normalize_object_name("Night_Stand") == "night stand"
    assert normalize_object_name("nightstand") == "night stand"
    assert normalize_object_name("couch") == "sofa"
    assert normalize_object_name("refridgerator") == "refrigerator"
    assert normalize_object_name("chair_2") == "chair"


def test_synthetic_scenes_written_as_sun_layout_read_back_through_the_sun_reader(tmp_path):
    scenes = list(synthetic.generate_scenes(3, 0, split="test", width=96, height=72))
    synthetic.write_sunrgbd_layout(scenes, tmp_path)
    report = ReadReport()
    back = list(read_sunrgbd_original(tmp_path, report=report))
    assert report.frames_read == 3 and not report.skipped_frames
    for original, read in zip(sorted(scenes, key=lambda s: s.id), back):
        np.testing.assert_allclose(read.depth, original.depth, atol=5e-4)
        assert read.scene_type == original.scene_type
        assert sorted(read.object_names) == sorted(normalize_object_name(n) for n in original.object_names)
        for obj in read.objects:
            # the writer outlines each instance's largest connected part: the polygon lies inside the mask
            best = max(original.objects, key=lambda o: (o.mask & obj.mask).sum())
            assert normalize_object_name(best.name) == obj.name
            assert (best.mask & obj.mask).sum() / obj.mask.sum() > 0.9
