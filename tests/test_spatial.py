"""Metres and 3D points out: `deepsight.spatial` (intrinsics, region depth, XYZ), the depth tools, the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from tokenizers import Tokenizer, models
from transformers import PreTrainedTokenizerFast

from dataset_scripts.sources.sunrgbd import read_sunrgbd_votenet
from dataset_scripts.synthetic.geometry import camera_rotation, yaw_matrix
from dataset_scripts.synthetic.world import render_scene
from deepsight.cli import main as deepsight_main
from deepsight.spatial import (
    DEFAULT_HORIZONTAL_FOV_DEG,
    CameraIntrinsics,
    back_project,
    depth_at_region,
    read_votenet_calib,
    region_xyz,
)
from deepsight.tools import DEPTH_TOOLS, call_tool
from modeling_deepsight.depth_codec_deepsight import load_depth

REALDATA = Path(__file__).resolve().parents[1].parent / "shared" / "realdata"
VOTENET = REALDATA / "sunrgbd" / "votenet_format_mmdet3d" / "sunrgbd_trainval"
SUN_IS_DEPTH_RAW = REALDATA / "sunrgbd" / "sun_rgbd_is_kv2" / "train_depth_raw"
needs_realdata = pytest.mark.skipif(not VOTENET.is_dir(), reason="../shared/realdata is absent")

INTRINSICS = CameraIntrinsics(fx=100.0, fy=110.0, cx=31.5, cy=23.5)


# --------------------------------------------------------------------------------------------------
# Exact geometry
# --------------------------------------------------------------------------------------------------


def test_plane_at_known_depth_gives_the_exact_point_of_a_box():
    depth = np.full((48, 64), 2.5, dtype=np.float32)
    x, y, z = region_xyz(depth, [40, 30, 50, 40], INTRINSICS)
    # columns 40..49 and rows 30..39: their medians are the centres 44.5 and 34.5
    assert (x, y, z) == pytest.approx(((44.5 - 31.5) * 2.5 / 100.0, (34.5 - 23.5) * 2.5 / 110.0, 2.5))
    assert depth_at_region(depth, [40, 30, 50, 40]) == 2.5


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    z=st.floats(0.3, 9.0),
    col=st.integers(0, 63),
    row=st.integers(0, 47),
    origin=st.sampled_from([0.0, 1.0]),
)
def test_one_pixel_region_back_projects_and_projects_back_to_itself(z, col, row, origin):
    intrinsics = CameraIntrinsics(90.0, 95.0, 30.2, 22.7, pixel_origin=origin)
    depth = np.full((48, 64), z)
    point = region_xyz(depth, [col, row, col + 1, row + 1], intrinsics)
    u, v = intrinsics.project(*point)
    assert tuple(int(i) for i in intrinsics.pixel_indices(u, v)) == (col, row)
    assert point[2] == pytest.approx(z)


def test_mask_region_uses_its_valid_pixels_only_and_ignores_holes():
    depth = np.full((20, 30), 4.0)
    depth[5:10, 5:10] = 1.0
    depth[5, 5] = 0.0  # a hole inside the mask
    depth[6, 6] = np.nan
    mask = np.zeros((20, 30), dtype=bool)
    mask[5:10, 5:10] = True
    assert depth_at_region(depth, mask) == 1.0
    assert region_xyz(depth, mask, INTRINSICS)[2] == 1.0


def test_back_project_matches_region_xyz_of_each_pixel():
    depth = np.random.default_rng(0).uniform(0.5, 5.0, size=(6, 8))
    points = back_project(depth, INTRINSICS)
    assert points.shape == (6, 8, 3)
    assert tuple(points[4, 7]) == pytest.approx(region_xyz(depth, [7, 4, 8, 5], INTRINSICS))


def test_intrinsics_from_matrix_fov_and_nyu():
    k = [[500.0, 0.0, 320.0], [0.0, 505.0, 240.0], [0.0, 0.0, 1.0]]
    assert CameraIntrinsics.from_matrix(k) == CameraIntrinsics(500.0, 505.0, 320.0, 240.0)
    assert np.array_equal(CameraIntrinsics.from_matrix(k).matrix(), np.asarray(k))
    fov = CameraIntrinsics.from_fov(640, 480)
    assert 2 * math.degrees(math.atan(320 / fov.fx)) == pytest.approx(DEFAULT_HORIZONTAL_FOV_DEG)
    assert (fov.cx, fov.cy) == (319.5, 239.5)
    half = CameraIntrinsics.nyu(240, 320)
    assert (half.fx, half.cx) == pytest.approx((518.8579 / 2, 325.58245 / 2))


def test_synthetic_objects_xyz_lies_on_the_object_in_the_world():
    """The region's point, taken to the world with the rendering camera, is inside the object's box."""
    checked = 0
    for seed in (3, 11):
        scene = render_scene(seed, width=160, height=120)
        camera = scene.meta["camera"]
        rotation = camera_rotation(*np.radians([camera["yaw_deg"], camera["pitch_deg"], camera["roll_deg"]]))
        intrinsics = CameraIntrinsics.from_matrix(scene.intrinsics)
        placed = {entry["index"]: entry for entry in scene.meta["scene_graph"]}
        for obj in scene.objects:
            world = rotation @ np.array(region_xyz(scene.depth, obj.mask, intrinsics)) + camera["position"]
            entry = placed[obj.instance_id]
            local = yaw_matrix(np.radians(entry["yaw_deg"])).T @ (world - entry["position"])
            half_x, half_y, height = entry["size"][0] / 2, entry["size"][1] / 2, entry["size"][2]
            tolerance = 0.03  # metres: the rounded scene graph and the pixel grid
            assert abs(local[0]) <= half_x + tolerance and abs(local[1]) <= half_y + tolerance, obj.name
            assert -tolerance <= local[2] <= height + tolerance, obj.name
            checked += 1
    assert checked >= 5


# --------------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("region", "match"),
    [
        ([10, 10, 10, 20], "empty"),
        ([100, 100, 120, 120], "outside"),
        ([0, 0, 5], "four finite numbers"),
        ([0, 0, float("nan"), 5], "four finite numbers"),
        (np.zeros((48, 64), dtype=bool), "mask is empty"),
        (np.ones((10, 10), dtype=bool), "shape"),
        ("a box", "box"),
    ],
)
def test_bad_region_raises_value_error_naming_it(region, match):
    with pytest.raises(ValueError, match=match) as error:
        region_xyz(np.ones((48, 64)), region, INTRINSICS)
    assert "region" in str(error.value)


def test_region_with_no_valid_depth_raises_value_error():
    depth = np.ones((48, 64))
    depth[0:10, 0:10] = 0.0
    with pytest.raises(ValueError, match="region.*no valid depth"):
        depth_at_region(depth, [0, 0, 10, 10])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"fx": 0.0}, "fx"), ({"cx": float("inf")}, "cx"), ({"fy": "1"}, "fy")],
)
def test_bad_intrinsics_raise_value_error_naming_them(kwargs, match):
    values = {"fx": 100.0, "fy": 100.0, "cx": 10.0, "cy": 10.0, **kwargs}
    with pytest.raises(ValueError, match=match):
        CameraIntrinsics(**values)


def test_depth_that_is_not_a_map_raises_value_error():
    with pytest.raises(ValueError, match="`depth` must be an H x W"):
        depth_at_region(np.ones(5), [0, 0, 1, 1])


# --------------------------------------------------------------------------------------------------
# Tools
# --------------------------------------------------------------------------------------------------


def test_depth_tools_are_chat_template_function_specs():
    names = [tool["function"]["name"] for tool in DEPTH_TOOLS]
    assert names == ["depth_at_region", "xyz_of_region"]
    for tool in DEPTH_TOOLS:
        assert tool["type"] == "function"
        assert tool["function"]["parameters"]["required"] == ["box"]
        assert tool["function"]["parameters"]["properties"]["box"]["type"] == "array"
    json.dumps(DEPTH_TOOLS)


def test_depth_tools_render_in_a_chat_template():
    vocabulary = models.WordLevel({"[UNK]": 0}, unk_token="[UNK]")
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(vocabulary))
    tokenizer.chat_template = "{% for tool in tools %}{{ tool.function.name }};{% endfor %}"
    chat = [{"role": "user", "content": "hi"}]
    text = tokenizer.apply_chat_template(chat, tools=DEPTH_TOOLS, tokenize=False)
    assert text == "depth_at_region;xyz_of_region;"


def test_call_tool_answers_json_from_dict_or_string_arguments():
    depth = np.full((48, 64), 2.0)
    answer = call_tool("depth_at_region", {"box": [0, 0, 10, 10]}, depth)
    assert answer == {"box": [0, 0, 10, 10], "depth_m": 2.0}
    answer = call_tool("xyz_of_region", '{"box": [40, 30, 50, 40]}', depth, INTRINSICS)
    assert (answer["x_m"], answer["y_m"], answer["z_m"]) == (0.26, 0.2, 2.0)
    json.dumps(answer)
    default = call_tool("xyz_of_region", {"box": [0, 0, 64, 48]}, depth)
    assert (default["x_m"], default["y_m"]) == (0.0, 0.0)  # the default camera looks at the map's centre


@pytest.mark.parametrize(
    ("name", "arguments", "match"),
    [
        ("distance", {"box": [0, 0, 1, 1]}, "tool `name`"),
        ("depth_at_region", "{not json", "not valid JSON"),
        ("depth_at_region", {"region": [0, 0, 1, 1]}, "`box`"),
    ],
)
def test_call_tool_bad_call_raises_value_error(name, arguments, match):
    with pytest.raises(ValueError, match=match):
        call_tool(name, arguments, np.ones((4, 4)))


# --------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------


def test_cli_xyz_prints_the_point_of_a_box_and_of_a_mask(tmp_path, capsys):
    depth_path = tmp_path / "plane.npy"
    np.save(depth_path, np.full((48, 64), 2.5, dtype=np.float32))
    intrinsics = ["100", "110", "31.5", "23.5"]
    xyz = ["xyz", "--depth", str(depth_path)]
    assert deepsight_main([*xyz, "--box", "40", "30", "50", "40", "--intrinsics", *intrinsics, "--json"]) == 0
    point = json.loads(capsys.readouterr().out)
    assert (point["x_m"], point["y_m"], point["z_m"]) == pytest.approx((0.325, 0.25, 2.5))
    mask = np.zeros((48, 64), dtype=np.uint8)
    mask[30:40, 40:50] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    assert deepsight_main([*xyz, "--mask", str(tmp_path / "mask.png"), "--intrinsics", *intrinsics]) == 0
    assert "0.325 0.250 2.500" in capsys.readouterr().out
    assert deepsight_main([*xyz, "--box", "0", "0", "64", "48", "--fov", "60"]) == 0
    assert "0.000 0.000 2.500" in capsys.readouterr().out


def test_cli_xyz_bad_region_is_a_usage_error_naming_it(tmp_path, capsys):
    depth_path = tmp_path / "plane.npy"
    np.save(depth_path, np.full((48, 64), 2.5, dtype=np.float32))
    with pytest.raises(SystemExit) as exit_info:
        deepsight_main(["xyz", "--depth", str(depth_path), "--box", "100", "100", "120", "120"])
    assert exit_info.value.code == 2
    assert "region" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------------
# Real data: SUN RGB-D, votenet format
# --------------------------------------------------------------------------------------------------


def _votenet_camera_points(index: str) -> np.ndarray:
    """votenet's upright cloud in the camera frame (x right, y down, z forward): Rtilt, axis swap undone."""
    from scipy.io import loadmat  # noqa: PLC0415 - optional dependency

    points = loadmat(VOTENET / "depth" / f"{index}.mat")["instance"][:, :3].astype(np.float64)
    rtilt, _ = read_votenet_calib(VOTENET / "calib" / f"{index}.txt")
    upright = points @ rtilt
    return np.stack([upright[:, 0], -upright[:, 2], upright[:, 1]], axis=1)


def _votenet_boxes(index: str) -> list[tuple[str, list[float]]]:
    boxes = []
    for line in (VOTENET / "label" / f"{index}.txt").read_text().splitlines():
        name, x0, y0, w, h = line.split()[:5]
        boxes.append((name, [float(x0), float(y0), float(x0) + float(w), float(y0) + float(h)]))
    return boxes


@needs_realdata
@pytest.mark.realdata
@pytest.mark.parametrize("index", ["000001", "000002", "000003", "000004"])
def test_sun_votenet_region_xyz_matches_the_point_cloud_within_2cm(index):
    """XYZ from the decoded SUN depth PNG + votenet K is the median of votenet's own 3D points in the box."""
    pytest.importorskip("scipy")
    depth, _ = load_depth(SUN_IS_DEPTH_RAW / f"{index}.png", encoding="sun")
    intrinsics = CameraIntrinsics.from_votenet_calib(VOTENET / "calib" / f"{index}.txt")
    cloud = _votenet_camera_points(index)
    cloud = cloud[cloud[:, 2] > 0]
    cols, rows = intrinsics.pixel_indices(*intrinsics.project(cloud[:, 0], cloud[:, 1], cloud[:, 2]))
    for name, box in _votenet_boxes(index):
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        inside = (cols >= max(x0, 0)) & (cols < x1) & (rows >= max(y0, 0)) & (rows < y1)
        expected = np.median(cloud[inside], axis=0)
        # 2 cm is the bar; 1 mm also pins the 1-based pixel convention (off by one pixel is z / fx ~ 6 mm)
        assert np.abs(np.array(region_xyz(depth, box, intrinsics)) - expected).max() < 0.001, name
        assert depth_at_region(depth, box) == pytest.approx(expected[2], abs=0.02), name


@needs_realdata
@pytest.mark.realdata
def test_sun_votenet_reader_depth_gives_the_same_xyz_as_the_raw_png():
    pytest.importorskip("scipy")
    scene = next(iter(read_sunrgbd_votenet(VOTENET)))
    depth, _ = load_depth(SUN_IS_DEPTH_RAW / "000001.png", encoding="sun")
    intrinsics = CameraIntrinsics.from_matrix(scene.intrinsics, pixel_origin=1.0)
    for obj in scene.objects:
        from_reader = np.array(region_xyz(scene.depth, list(obj.box), intrinsics))
        from_png = np.array(region_xyz(depth, list(obj.box), intrinsics))
        assert np.abs(from_reader - from_png).max() < 0.02, obj.name


# --------------------------------------------------------------------------------------------------
# Demo
# --------------------------------------------------------------------------------------------------


def test_demo_status_shows_each_box_xyz_and_a_box_over_holes():
    pytest.importorskip("matplotlib")
    from spaces_demo.rendering import describe_region_points  # noqa: PLC0415 - needs the demo's extras

    depth = np.full((48, 64), 2.0, dtype=np.float32)
    depth[:10, :10] = 0.0
    text = describe_region_points(depth, [[10, 10, 54, 38], [0, 0, 10, 10]])  # box 1 centred, box 2 on holes
    assert "box 1: (0.00, 0.00, 2.00)" in text
    assert "box 2: no valid depth" in text
    assert "x right, y down, z forward" in text
