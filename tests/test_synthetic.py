"""The synthetic indoor depth world: exact geometry, determinism, annotations, noise, SUN RGB-D files."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from matplotlib.path import Path as PolygonPath
from PIL import Image
from scipy import ndimage

from dataset_scripts.synthetic import world as synthetic
from dataset_scripts.synthetic.world import (
    OBJECT_CATEGORIES,
    SCENE_TYPES,
    apply_sensor_noise,
    generate_scenes,
    load_scene_npz,
    render_scene,
    scene_object_vocabulary,
    write_sunrgbd_layout,
)
from dataset_scripts.synthetic.geometry import (
    NUM_ROOM_SURFACES,
    Camera,
    Primitive,
    camera_rotation,
    intrinsics_matrix,
    render_primitives,
)
from modeling_deepsight.depth_codec_deepsight import decode_depth

REALDATA = Path(__file__).resolve().parents[1].parent / "shared" / "realdata"


def _level_camera(position, width=160, height=120, pitch=0.0, yaw=0.0):
    K = intrinsics_matrix(130.0, 131.0, (width - 1) / 2, (height - 1) / 2)
    return Camera(K, camera_rotation(yaw, pitch, 0.0), np.asarray(position, dtype=float), width, height)


# ---------------------------------------------------------------------------------------------- geometry


@pytest.mark.parametrize("distance", [0.8, 2.5, 6.0])
def test_box_straight_ahead_renders_its_front_face_distance(distance):
    camera = _level_camera([3.0, 0.5, 1.2])
    half = (0.4, 0.3, 0.35)
    box = Primitive("box", (3.0, 0.5 + distance + half[1], 1.2), half)
    buffers = render_primitives(camera, (6.0, 9.0, 3.0), [(0, box)])
    face = buffers.ids == NUM_ROOM_SURFACES
    # only the front face is visible from inside its x/z extent; every pixel of it is `distance` away
    assert face.sum() > 20
    np.testing.assert_allclose(buffers.depth[face], distance, atol=1e-3)
    # and it covers the pixels the pinhole model predicts: |u - cx| < fx * half_x / distance
    fx, cx = camera.K[0, 0], camera.K[0, 2]
    cols = np.flatnonzero(face.any(axis=0))
    expected = np.flatnonzero(np.abs(np.arange(camera.width) - cx) < fx * half[0] / distance)
    np.testing.assert_array_equal(cols, expected)


def test_floor_depth_matches_analytic_plane_intersection():
    height_above_floor = 1.45
    camera = _level_camera([2.0, 0.4, height_above_floor], pitch=-0.35, yaw=0.2)
    buffers = render_primitives(camera, (4.0, 12.0, 3.0), [])
    floor = buffers.ids == 0
    rows, cols = np.nonzero(floor)
    assert rows.size > 1000
    fx, fy, cx, cy = camera.K[0, 0], camera.K[1, 1], camera.K[0, 2], camera.K[1, 2]
    rays = np.stack([(cols - cx) / fx, (rows - cy) / fy, np.ones(rows.size)])
    world_z = (camera.rotation @ rays)[2]
    expected = height_above_floor / -world_z  # camera-z of the ray is 1, so t is the depth
    np.testing.assert_allclose(buffers.depth[rows, cols], expected, rtol=1e-5, atol=1e-4)


def test_curved_primitives_render_at_their_surface_distance():
    camera = _level_camera([3.0, 0.5, 1.0], width=161, height=121)
    cylinder = Primitive("cylinder", (3.0, 4.0, 1.0), (0.3, 0.3, 0.5))
    sphere = Primitive("ellipsoid", (3.0, 4.0, 1.0), (0.5, 0.5, 0.5))
    room = (6.0, 8.0, 3.0)
    centre = (60, 80)  # the pixel whose ray is the optical axis (cx = 80, cy = 60)
    for primitive, nearest in ((cylinder, 3.5 - 0.3), (sphere, 3.5 - 0.5)):
        buffers = render_primitives(camera, room, [(0, primitive)])
        assert buffers.ids[centre] == NUM_ROOM_SURFACES
        assert abs(buffers.depth[centre] - nearest) < 2e-3
        assert buffers.depth[buffers.ids == NUM_ROOM_SURFACES].min() >= nearest - 1e-3


def test_nearer_primitive_occludes_farther_one():
    camera = _level_camera([3.0, 0.5, 1.0])
    far = Primitive("box", (3.0, 5.0, 1.0), (1.0, 0.1, 1.0))
    near = Primitive("box", (3.0, 2.0, 1.0), (0.2, 0.1, 0.2))
    buffers = render_primitives(camera, (6.0, 8.0, 3.0), [(0, far), (1, near)])
    assert buffers.ids[60, 80] == NUM_ROOM_SURFACES + 1
    assert buffers.ids[60, 55] == NUM_ROOM_SURFACES  # beside the near box the far one shows


# ---------------------------------------------------------------------------------------------- scenes


def test_same_seed_gives_identical_scene():
    a, b = render_scene(11), render_scene(11)
    np.testing.assert_array_equal(a.depth, b.depth)
    np.testing.assert_array_equal(a.rgb, b.rgb)
    assert a.captions == b.captions and a.meta == b.meta and a.scene_type == b.scene_type
    assert [o.box for o in a.objects] == [o.box for o in b.objects]
    c = render_scene(12)
    assert not np.array_equal(a.depth, c.depth)


def test_generate_scenes_is_deterministic_and_splits_are_disjoint():
    first = list(generate_scenes(4, seed=3, split="train", width=96, height=72))
    again = list(generate_scenes(4, seed=3, split="train", width=96, height=72))
    test = list(generate_scenes(4, seed=3, split="test", width=96, height=72))
    for a, b in zip(first, again):
        assert a.id == b.id and a.split == "train"
        np.testing.assert_array_equal(a.depth, b.depth)
    train_seeds = {s.meta["seed"] for s in first}
    test_seeds = {s.meta["seed"] for s in test}
    assert not train_seeds & test_seeds
    assert all(not np.array_equal(a.depth, b.depth) for a in first for b in test)
    assert len({s.id for s in first + test}) == 8


def test_generate_scenes_cycles_through_every_scene_type():
    scenes = list(generate_scenes(2 * len(SCENE_TYPES), seed=0, width=64, height=48))
    assert Counter(s.scene_type for s in scenes) == {t: 2 for t in SCENE_TYPES}


def test_world_has_enough_scene_types_and_categories():
    assert len(SCENE_TYPES) >= 8 and len(OBJECT_CATEGORIES) >= 20
    used = {c for t in SCENE_TYPES for c in scene_object_vocabulary(t)}
    assert used == set(OBJECT_CATEGORIES)


def test_category_names_are_the_canonical_vocabulary_spelling():
    vocab = pytest.importorskip("dataset_scripts.vocab")
    assert [vocab.normalize_object_name(c) for c in OBJECT_CATEGORIES] == OBJECT_CATEGORIES
    assert all(vocab.is_question_worthy(c) for c in OBJECT_CATEGORIES)


@pytest.mark.parametrize("scene_type", SCENE_TYPES)
def test_every_scene_type_renders_with_plausible_objects(scene_type):
    for seed in (1, 2):
        scene = render_scene(seed, scene_type, width=160, height=120)
        assert scene.scene_type == scene_type and scene.source == "synthetic"
        assert len(scene.objects) >= 1
        assert set(scene.object_names) <= set(scene_object_vocabulary(scene_type))
        absent = set(scene.meta["absent_categories"])
        placed = {o["category"] for o in scene.meta["scene_graph"]}
        assert not absent & placed and absent <= set(scene_object_vocabulary(scene_type))


def _object_frame_points(scene, obj):
    """Mask pixels back-projected into the object's local frame (x, y from its centre, z above its base)."""
    cam = scene.meta["camera"]
    rotation = camera_rotation(*np.radians([cam["yaw_deg"], cam["pitch_deg"], cam["roll_deg"]]))
    K = scene.intrinsics
    rows, cols = np.nonzero(obj.mask)
    z = scene.depth[rows, cols]
    rays = np.stack([(cols - K[0, 2]) / K[0, 0], (rows - K[1, 2]) / K[1, 1], np.ones(rows.size)])
    points = (rotation @ (rays * z)).T + np.asarray(cam["position"])
    node = scene.meta["scene_graph"][obj.instance_id]
    yaw = np.radians(node["yaw_deg"])
    rel = points - np.asarray(node["position"])
    local_x = np.cos(yaw) * rel[:, 0] + np.sin(yaw) * rel[:, 1]
    local_y = -np.sin(yaw) * rel[:, 0] + np.cos(yaw) * rel[:, 1]
    return local_x, local_y, rel[:, 2], node["size"]


@pytest.mark.parametrize("seed", [0, 5, 9, 21])
def test_masks_and_boxes_are_consistent_with_depth_and_scene_graph(seed):
    scene = render_scene(seed)
    coverage = np.zeros(scene.depth.shape, dtype=int)
    for obj in scene.objects:
        rows, cols = np.nonzero(obj.mask)
        assert obj.box == (cols.min(), rows.min(), cols.max() + 1, rows.max() + 1)
        coverage += obj.mask
        # every mask pixel is a point of that object: inside its placed box (10 cm slack for trim)
        x, y, z, (w, d, h) = _object_frame_points(scene, obj)
        slack = 0.1
        assert np.all(np.abs(x) <= w / 2 + slack) and np.all(np.abs(y) <= d / 2 + slack), obj.name
        assert np.all(z >= -slack) and np.all(z <= h + slack), obj.name
    assert coverage.max() <= 1  # instance masks are disjoint


def test_many_seeds_render_valid_scenes():
    for seed in range(100, 220):
        scene = render_scene(seed, width=64, height=48)
        room = scene.meta["room"]
        diagonal = np.sqrt(room["width"] ** 2 + room["depth"] ** 2 + room["height"] ** 2)
        assert scene.depth.dtype == np.float32 and np.isfinite(scene.depth).all()
        assert (scene.depth > 0).all() and scene.depth.max() <= diagonal
        assert scene.rgb.shape == (48, 64, 3) and scene.rgb.dtype == np.uint8
        assert scene.captions and all(c.endswith(".") for c in scene.captions)
        assert 1.0 <= scene.meta["camera"]["position"][2] <= 1.8
        json.dumps(scene.meta)  # the scene graph is plain JSON
        for obj in scene.objects:
            x0, y0, x1, y1 = obj.box
            assert 0 <= x0 < x1 <= 64 and 0 <= y0 < y1 <= 48


def test_tiny_and_hidden_objects_are_dropped_and_counted():
    scenes = [render_scene(seed, width=96, height=72) for seed in range(12)]
    for scene in scenes:
        graph = scene.meta["scene_graph"]
        annotated = [n for n in graph if n["annotated"]]
        assert len(annotated) == len(scene.objects)
        assert scene.meta["num_placed"] == len(annotated) + sum(scene.meta["dropped_objects"].values())
        assert all(n["visible_pixels"] >= synthetic.MIN_VISIBLE_PIXELS for n in annotated)
        hidden = [n for n in graph if not n["annotated"]]
        assert (
            sum(n["visible_pixels"] == 0 for n in hidden)
            == scene.meta["dropped_objects"]["occluded_or_outside"]
        )
        tiny = [n for n in hidden if n["visible_pixels"] > 0]
        assert len(tiny) == scene.meta["dropped_objects"]["tiny"]
        assert all(n["visible_pixels"] < synthetic.MIN_VISIBLE_PIXELS for n in tiny)
    assert sum(s.meta["dropped_objects"]["occluded_or_outside"] for s in scenes) > 0
    assert sum(s.meta["dropped_objects"]["tiny"] for s in scenes) > 0


def _mentioned(text: str, name: str) -> bool:
    return re.search(rf"\b{re.escape(name)}(s|es)?\b", text) is not None


def test_captions_mention_only_present_objects():
    for seed in range(30):
        scene = render_scene(seed, width=160, height=120)
        present = set(scene.object_names)
        assert scene.captions
        for caption in scene.captions:
            text = caption.lower().replace("bookshelves", "bookshelf")
            for name in sorted(present, key=len, reverse=True):  # "coffee table" hides "table"
                text = re.sub(rf"\b{re.escape(name)}(s|es)?\b", "<present>", text)
            absent = [n for n in OBJECT_CATEGORIES if n not in present and _mentioned(text, n)]
            assert not absent, (caption, absent)
        if present:
            assert any(
                _mentioned(" ".join(scene.captions).lower().replace("bookshelves", "bookshelf"), n)
                for n in present
            )
        else:
            article = "An" if scene.scene_type[0] in "aeiou" else "A"
            assert scene.captions == [f"{article} {scene.scene_type} with no furniture in view."]
        assert scene.scene_type in scene.captions[0]


# ---------------------------------------------------------------------------------------------- noise


def test_sensor_noise_zeroes_exactly_the_reported_holes():
    clean = render_scene(4).depth
    noisy, holes = apply_sensor_noise(clean, np.random.default_rng(0), max_range=4.0, num_patches=3)
    union = holes["beyond_range"] | holes["discontinuity"] | holes["patch"]
    np.testing.assert_array_equal(noisy == 0, union)
    assert holes["beyond_range"].any() and holes["discontinuity"].any() and holes["patch"].any()
    assert np.all(clean[holes["beyond_range"]] > 4.0) and not np.any((clean > 4.0) & (noisy > 0))
    valid = noisy > 0
    sigma = 0.0012 + 0.0019 * (clean[valid] - 0.4) ** 2
    step = synthetic.KINECT_DEPTH_STEP_PER_M2 * clean[valid] ** 2
    assert np.all(np.abs(noisy[valid] - clean[valid]) <= 6 * sigma + step + 0.002)
    assert np.abs(noisy[valid] - clean[valid]).mean() > 1e-3  # there is noise


def test_noisy_scene_keeps_clean_annotations_and_counts_invalid_pixels():
    clean, noisy = render_scene(8, noise=False), render_scene(8, noise=True)
    assert [o.box for o in clean.objects] == [o.box for o in noisy.objects]
    assert clean.captions == noisy.captions
    zeros = int((noisy.depth == 0).sum())
    assert zeros == noisy.meta["noise"]["invalid_pixels"] > 0
    assert zeros <= sum(noisy.meta["noise"]["holes"].values())
    assert (clean.depth > 0).all()


# ---------------------------------------------------------------------------------------------- writers


def _read_png(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


def test_sunrgbd_layout_round_trips_depth_intrinsics_and_polygons(tmp_path):
    scenes = [render_scene(3), render_scene(14, noise=True)]
    folders = write_sunrgbd_layout(scenes, tmp_path)
    assert len(folders) == 2
    checked = 0
    for scene, folder in zip(scenes, folders):
        name = folder.name
        depth = decode_depth(_read_png(folder / "depth" / f"{name}.png"), "sun")
        assert np.all(np.abs(depth - scene.depth) <= 0.0005 + 1e-6)
        np.testing.assert_array_equal(depth == 0, scene.depth == 0)
        filled = decode_depth(_read_png(folder / "depth_bfx" / f"{name}.png"), "sun")
        assert (filled > 0).all()
        np.testing.assert_array_equal(filled[depth > 0], depth[depth > 0])
        K = np.loadtxt(folder / "intrinsics.txt")
        np.testing.assert_allclose(K, scene.intrinsics, atol=1e-5)
        assert (folder / "scene.txt").read_text() == scene.scene_type.replace(" ", "_")
        rgb = Image.open(folder / "image" / f"{name}.jpg")
        assert rgb.size == (scene.width, scene.height) and rgb.mode == "RGB"

        index = json.loads((folder / "annotation2Dfinal" / "index.json").read_text())
        polygons = index["frames"][0]["polygon"]
        assert [o["name"] for o in index["objects"]] == scene.object_names
        assert len(polygons) == len(scene.objects)
        rows, cols = np.mgrid[: scene.height, : scene.width]
        centres = np.stack([cols.ravel() + 0.5, rows.ravel() + 0.5], axis=1)
        for polygon in polygons:
            obj = scene.objects[polygon["object"]]
            inside = PolygonPath(np.stack([polygon["x"], polygon["y"]], axis=1)).contains_points(centres)
            inside = inside.reshape(scene.depth.shape)
            iou = (inside & obj.mask).sum() / (inside | obj.mask).sum()
            assert inside.sum() <= obj.mask.sum() * 1.05 + 5  # one component, never more than the object
            labels, _ = ndimage.label(obj.mask)
            largest = np.bincount(labels.ravel())[1:].max()
            if largest >= 0.9 * obj.mask.sum():
                assert iou > 0.8, (obj.name, iou)
                checked += 1
    assert checked >= 5


def test_sun_extrinsics_level_the_floor(tmp_path):
    scene = render_scene(17, "bedroom")
    folder = write_sunrgbd_layout([scene], tmp_path)[0]
    extrinsics = np.loadtxt(folder / "extrinsics" / f"{folder.name}.txt")
    rtilt = extrinsics[:, :3]
    np.testing.assert_allclose(rtilt @ rtilt.T, np.eye(3), atol=1e-5)
    np.testing.assert_allclose(extrinsics[:, 3], 0.0)
    # back-project floor pixels the way the SUN toolbox does: Rtilt @ [x, z, -y]
    floor = np.zeros(scene.depth.shape, bool)
    floor[-20:] = True
    for obj in scene.objects:
        floor &= ~obj.mask
    rows, cols = np.nonzero(floor)
    K, z = scene.intrinsics, scene.depth[rows, cols]
    x = (cols - K[0, 2]) / K[0, 0] * z  # OpenCV pixel convention, as NYU's and SUN's K
    y = (rows - K[1, 2]) / K[1, 1] * z
    upright = rtilt @ np.stack([x, z, -y])
    camera_height = scene.meta["camera"]["position"][2]
    np.testing.assert_allclose(upright[2], -camera_height, atol=2e-3)


def test_sunrgbd_layout_writes_scenes_of_other_sources(tmp_path):
    from dataset_scripts.scene import Scene, SceneObject

    depth = np.full((30, 40), 2.0, np.float32)
    depth[5:15, 10:30] = 1.25
    mask = depth < 2.0
    hand_made = Scene(
        id="kitchen/frame 7",
        source="nyu",
        depth=depth,
        objects=[SceneObject("table", (10, 5, 30, 15), mask=mask), SceneObject("chair", (0, 0, 5, 5))],
        scene_type="kitchen",
    )
    folder = write_sunrgbd_layout([hand_made], tmp_path)[0]
    assert folder.name == "kitchen_frame_7" and not (folder / "extrinsics").exists()
    np.testing.assert_allclose(decode_depth(_read_png(folder / "depth" / f"{folder.name}.png"), "sun"), depth)
    assert Image.open(folder / "image" / f"{folder.name}.jpg").size == (40, 30)
    index = json.loads((folder / "annotation2Dfinal" / "index.json").read_text())
    assert [o["name"] for o in index["objects"]] == ["table"]  # the box-only chair has no outline
    polygon = index["frames"][0]["polygon"][0]
    assert (min(polygon["x"]), max(polygon["x"]), min(polygon["y"]), max(polygon["y"])) == (10, 30, 5, 15)


@pytest.mark.realdata
def test_sunrgbd_layout_matches_real_frame_folders(tmp_path):
    real = REALDATA / "sunrgbd" / "original_layout"
    if not real.is_dir():
        pytest.skip("../shared/realdata is not available")
    ours = write_sunrgbd_layout([render_scene(2, width=96, height=72)], tmp_path)[0]
    for frame in sorted(p for p in real.iterdir() if p.is_dir()):
        for entry in ("image", "depth", "depth_bfx", "intrinsics.txt", "scene.txt"):
            assert (frame / entry).exists() and (ours / entry).exists(), entry
        assert (
            np.loadtxt(frame / "intrinsics.txt").shape == np.loadtxt(ours / "intrinsics.txt").shape == (3, 3)
        )
        real_depth = decode_depth(_read_png(next((frame / "depth").glob("*.png"))), "sun")
        assert 0.3 < np.median(real_depth[real_depth > 0]) < 10  # same encoding, same metric range
        assert (
            _read_png(next((ours / "depth").glob("*.png"))).dtype
            == _read_png(next((frame / "depth").glob("*.png"))).dtype
        )


def test_cli_writes_npz_scenes_that_load_back(tmp_path, capsys):
    code = synthetic.main(
        [
            "--num-scenes",
            "3",
            "--seed",
            "5",
            "--split",
            "val",
            "--output",
            str(tmp_path),
            "--format",
            "npz",
            "--width",
            "96",
            "--height",
            "72",
            "--noise",
        ]
    )
    assert code == 0
    files = sorted((tmp_path / "val").glob("*.npz"))
    assert len(files) == 3
    expected = list(generate_scenes(3, seed=5, split="val", width=96, height=72, noise=True))
    for path, scene in zip(files, expected):
        loaded = load_scene_npz(path)
        assert loaded.id == scene.id and loaded.captions == scene.captions and loaded.meta == scene.meta
        np.testing.assert_array_equal(loaded.depth, scene.depth)
        for a, b in zip(loaded.objects, scene.objects):
            assert a.name == b.name and a.box == b.box
            np.testing.assert_array_equal(a.mask, b.mask)
    out = capsys.readouterr().out
    assert "scene type" in out and "object category" in out
    preview = Image.open(tmp_path / "preview_val.png")
    assert preview.size == (3 * 96, 3 * 72)  # rgb | depth | boxes, one row per scene


def test_cli_writes_sunrgbd_folders(tmp_path):
    assert (
        synthetic.main(["--num-scenes", "2", "--output", str(tmp_path), "--width", "64", "--height", "48"])
        == 0
    )
    folders = sorted(p for p in (tmp_path / "train").iterdir() if p.is_dir())
    assert len(folders) == 2 and all((f / "annotation2Dfinal" / "index.json").is_file() for f in folders)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--num-scenes", "0"], "--num-scenes"),
        (["--num-scenes", "2", "--seed", "-1"], "--seed"),
        (["--num-scenes", "2", "--width", "8"], "--width"),
        (["--num-scenes", "2", "--format", "png"], "--format"),
    ],
)
def test_cli_rejects_bad_arguments_with_a_usage_error(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        synthetic.main([*argv, "--output", str(tmp_path)])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # nothing rendered or written


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: render_scene(0, "spaceship"), "scene_type"),
        (lambda: render_scene(-1), "seed"),
        (lambda: render_scene(0, width=8), "width"),
        (lambda: list(generate_scenes(-2, 0)), "num_scenes"),
        (lambda: list(generate_scenes(1, 0, split="")), "split"),
        (lambda: scene_object_vocabulary("garage"), "scene_type"),
        (lambda: apply_sensor_noise(np.ones((4, 4, 3)), np.random.default_rng(0)), "HxW"),
        (lambda: write_sunrgbd_layout(["not a scene"], "/tmp/unused-synthetic-out"), "Scene"),
    ],
)
def test_bad_input_raises_value_error_naming_it(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_sun_reader_reads_written_frames_back(tmp_path):
    readers = pytest.importorskip("dataset_scripts.sources.sunrgbd")
    scenes = [render_scene(seed, width=160, height=120) for seed in (6, 7)]
    write_sunrgbd_layout(scenes, tmp_path)
    read = sorted(readers.read_sunrgbd_original(tmp_path), key=lambda s: s.meta["folder"])
    assert len(read) == 2
    for original, back in zip(scenes, read):
        assert back.scene_type == original.scene_type
        assert back.object_names == original.object_names
        np.testing.assert_allclose(back.intrinsics, original.intrinsics, atol=1e-5)
        assert np.abs(back.depth - original.depth).max() <= 0.0005 + 1e-6
        for a, b in zip(original.objects, back.objects):
            assert (a.mask & b.mask).sum() >= 0.5 * a.mask.sum()  # the polygon covers the instance's bulk
