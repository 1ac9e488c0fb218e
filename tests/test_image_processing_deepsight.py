"""Tests of the depth codec and DeepSightImageProcessor.

(modeling_deepsight/depth_codec_deepsight.py, modeling_deepsight/image_processing_deepsight.py)
"""

from __future__ import annotations

import glob
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoImageProcessor

from modeling_deepsight.depth_codec_deepsight import (
    GRAY8_MAX_DEPTH,
    decode_depth,
    depth_to_png_mm,
    detect_depth_encoding,
    encode_depth,
    load_depth,
)
from modeling_deepsight.image_processing_deepsight import DeepSightImageProcessor
from tests.fixtures.png_files import write_header_bomb, write_png16

REALDATA = Path(__file__).resolve().parents[1].parent / "shared" / "realdata"
SUN_ORIGINAL_DEPTHS = sorted(
    glob.glob(str(REALDATA / "sunrgbd" / "original_layout" / "*" / "depth" / "*.png"))
)
OPEN3D_SUN_DEPTH = REALDATA / "sunrgbd" / "open3d_testdata" / "SUN_depth.png"
NYU_MM_DEPTHS = sorted(glob.glob(str(REALDATA / "nyu" / "bts_sync_metric3d_demo" / "depth" / "*.png")))


def synthetic_scene(height: int = 48, width: int = 64, seed: int = 0) -> np.ndarray:
    """A room-like depth map in metres: a floor-to-wall ramp, a box-shaped object, a few invalid holes."""
    rng = np.random.default_rng(seed)
    rows = np.linspace(1.0, 0.0, height, dtype=np.float32)[:, None]
    cols = np.linspace(-0.5, 0.5, width, dtype=np.float32)[None, :]
    metres = (
        1.2 + 6.0 * rows**0.5 + 0.8 * cols + rng.uniform(0.0, 0.05, size=(height, width)).astype(np.float32)
    )
    metres[height // 3 : height // 2, width // 4 : width // 2] = 1.5  # an object in front
    holes = rng.random((height, width)) < 0.05
    metres[holes] = 0.0
    return metres.astype(np.float32)


def normalised(processor: DeepSightImageProcessor, metres: float) -> float:
    """What the processor's documented formula makes of a valid depth (inverse transform)."""
    intensity = 1.0 - min(metres, processor.max_depth) / processor.max_depth
    return (intensity - processor.depth_mean) / processor.depth_std


# --------------------------------------------------------------------------------------------------
# decode / encode
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["mm", "sun"])
def test_lossless_encodings_decode_to_the_same_millimetre_metres(encoding):
    metres = synthetic_scene()
    stored = encode_depth(metres, encoding)
    assert stored.dtype == np.uint16
    decoded = decode_depth(stored, encoding)
    expected = np.round(metres.astype(np.float64) * 1000) / 1000
    assert decoded.dtype == np.float32
    np.testing.assert_allclose(decoded, expected, atol=1e-6)
    assert np.array_equal(decoded == 0, metres == 0)


def test_metres_decode_is_identity_and_marks_nan_inf_invalid():
    metres = synthetic_scene()
    with_bad = metres.copy()
    with_bad[0, 0], with_bad[0, 1], with_bad[0, 2] = np.nan, np.inf, -np.inf
    decoded = decode_depth(with_bad, "metres")
    assert decoded[0, :3].tolist() == [0.0, 0.0, 0.0]
    np.testing.assert_array_equal(decoded[1:], metres[1:])


def test_gray8_decodes_monotone_brighter_closer_within_one_level():
    metres = synthetic_scene()
    gray = encode_depth(metres, "gray8")
    assert gray.dtype == np.uint8
    decoded = decode_depth(gray, "gray8")
    valid = metres > 0
    assert np.array_equal(decoded > 0, valid)
    # same order of depths: sorting by true depth sorts the decoded depth (ties allowed by quantisation)
    order = np.argsort(metres[valid], kind="stable")
    assert np.all(np.diff(decoded[valid][order]) >= 0)
    # brighter = closer: the nearest valid pixel is the brightest
    assert gray[valid].max() == gray.flat[np.flatnonzero(valid.ravel())[np.argmin(metres[valid])]]
    # pseudo-metric scale: within one gray level of the truth when the truth is inside (0, GRAY8_MAX_DEPTH]
    np.testing.assert_allclose(decoded[valid], metres[valid], atol=GRAY8_MAX_DEPTH / 255)
    assert decoded.max() <= GRAY8_MAX_DEPTH


@pytest.mark.parametrize("encoding", ["mm", "sun", "gray8"])
def test_all_encodings_describe_the_same_scene(encoding):
    metres = synthetic_scene(seed=3)
    decoded = decode_depth(encode_depth(metres, encoding), encoding)
    tolerance = GRAY8_MAX_DEPTH / 255 if encoding == "gray8" else 5e-4
    np.testing.assert_allclose(decoded, metres, atol=tolerance)


def test_sun_rotation_matches_values_derived_from_the_toolbox_rule():
    # mm = ((d >> 3) | (d << 13)) & 0xFFFF, derived by hand:
    #   0x2EE0 = 12000: low bits 000, 12000 >> 3 = 1500 mm
    #   0x3E80 = 16000: 16000 >> 3 = 2000 mm
    #   0x0008 = 8: 1 mm
    #   0x0001: the low bit rotates to bit 13: 8192 mm
    #   0x0009 = 8 | 1: 1 + 8192 = 8193 mm
    #   0xFFFF: every bit set stays every bit set: 65535 mm
    raw = np.array([[0x2EE0, 0x3E80, 0x0008], [0x0001, 0x0009, 0xFFFF]], dtype=np.uint16)
    expected_mm = np.array([[1500, 2000, 1], [8192, 8193, 65535]], dtype=np.float32)
    np.testing.assert_allclose(decode_depth(raw, "sun"), expected_mm / 1000, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(encode_depth(expected_mm / 1000, "sun"), raw)


def test_depth_to_png_mm_writes_a_16_bit_png_that_loads_back(tmp_path):
    metres = synthetic_scene()
    path = tmp_path / "depth.png"
    Image.fromarray(depth_to_png_mm(metres)).save(path)
    assert Image.open(path).mode.startswith("I")
    loaded, encoding = load_depth(path)
    assert encoding == "mm"
    np.testing.assert_allclose(loaded, metres, atol=5e-4)


def test_gray8_scale_follows_max_depth():
    metres = synthetic_scene()
    gray = encode_depth(metres, "gray8", max_depth=20.0)
    np.testing.assert_allclose(decode_depth(gray, "gray8", max_depth=20.0), metres, atol=20.0 / 255)
    np.testing.assert_allclose(decode_depth(gray, "gray8", max_depth=5.0), decode_depth(gray, "gray8") / 2)


def test_encode_depth_rejects_depth_beyond_uint16_millimetres():
    with pytest.raises(ValueError, match="beyond the 65.535 m"):
        encode_depth(np.full((4, 4), 70.0, dtype=np.float32), "mm")


# --------------------------------------------------------------------------------------------------
# detection and loading
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["metres", "mm", "sun", "gray8"])
def test_detect_depth_encoding_recognises_each_encoding(encoding):
    metres = synthetic_scene()
    raw = metres if encoding == "metres" else encode_depth(metres, encoding)
    assert detect_depth_encoding(raw) == encoding


def test_detection_needs_sun_low_bits_clear_not_just_a_plausible_rotated_range():
    # millimetres 8k + 1 (0.8-4.8 m): rotated right they read 8.3-8.8 m, plausible, but the low bits are 001
    mm = (8 * np.random.default_rng(0).integers(100, 600, size=(48, 64)) + 1).astype(np.uint16)
    assert 8.0 < float(np.median(decode_depth(mm, "sun"))) < 9.0
    assert detect_depth_encoding(mm) == "mm"
    assert detect_depth_encoding(encode_depth(decode_depth(mm, "mm"), "sun")) == "sun"


def test_detect_treats_equal_rgb_channels_as_gray8_and_rejects_colour():
    gray = encode_depth(synthetic_scene(), "gray8")
    assert detect_depth_encoding(np.stack([gray] * 3, axis=-1)) == "gray8"
    colour = np.stack([gray, gray // 2, 255 - gray], axis=-1)
    with pytest.raises(ValueError, match="3 colour channels"):
        detect_depth_encoding(colour)


@pytest.mark.parametrize(
    "make_source, expected_encoding",
    [
        (lambda m: Image.fromarray(encode_depth(m, "mm")), "mm"),  # PIL I;16
        (lambda m: Image.fromarray(encode_depth(m, "mm").astype(np.int32)), "mm"),  # PIL I
        (lambda m: Image.fromarray(m, mode="F"), "metres"),  # PIL F
        (lambda m: Image.fromarray(encode_depth(m, "gray8")), "gray8"),  # PIL L
        (lambda m: Image.fromarray(encode_depth(m, "gray8")).convert("RGB"), "gray8"),  # gray saved as RGB
        (lambda m: torch.from_numpy(m), "metres"),
        (
            lambda m: torch.from_numpy(encode_depth(m, "sun").astype(np.int32))[None],
            "sun",
        ),  # 1 x H x W tensor
        (lambda m: encode_depth(m, "mm")[..., None], "mm"),  # H x W x 1
    ],
)
def test_load_depth_accepts_pil_modes_numpy_and_torch(make_source, expected_encoding):
    metres = synthetic_scene()
    loaded, encoding = load_depth(make_source(metres))
    assert encoding == expected_encoding
    tolerance = GRAY8_MAX_DEPTH / 255 if expected_encoding == "gray8" else 5e-4
    np.testing.assert_allclose(loaded, metres, atol=tolerance)


def test_load_depth_refuses_a_map_over_max_pixels_before_decoding_it(tmp_path):
    metres = synthetic_scene()  # 48 x 64 = 3072 pixels
    Image.fromarray(depth_to_png_mm(metres)).save(tmp_path / "depth.png")
    assert load_depth(metres, max_pixels=3072)[0].shape == (48, 64)
    for source, name in ((metres, "`depth`"), (tmp_path / "depth.png", f"`depth ({tmp_path / 'depth.png'})`")):
        with pytest.raises(ValueError, match=re.escape(f"{name} has 3,072 pixels, more than max_pixels=3,071")):
            load_depth(source, max_pixels=3071)


def test_load_depth_reads_npy_png8_and_gray_jpeg_files(tmp_path):
    metres = synthetic_scene()
    np.save(tmp_path / "depth.npy", metres)
    Image.fromarray(encode_depth(metres, "gray8")).save(tmp_path / "gray.png")
    Image.fromarray(encode_depth(metres, "gray8")).save(tmp_path / "gray.jpg", quality=95)
    loaded, encoding = load_depth(tmp_path / "depth.npy")
    assert encoding == "metres" and np.array_equal(loaded, metres)
    loaded, encoding = load_depth(str(tmp_path / "gray.png"))
    assert encoding == "gray8"
    np.testing.assert_allclose(loaded, metres, atol=GRAY8_MAX_DEPTH / 255)
    loaded, encoding = load_depth(tmp_path / "gray.jpg")
    assert encoding == "gray8"
    # JPEG is lossy: the ranking of far vs near survives
    assert loaded[metres > 0].mean() > 0 and np.corrcoef(loaded[metres > 3], metres[metres > 3])[0, 1] > 0.9


def test_gray_depth_saved_as_rgb_jpeg_is_detected_and_declared_gray8_reads_colour_by_luma(tmp_path):
    metres = synthetic_scene()
    gray = encode_depth(metres, "gray8")
    Image.fromarray(gray).convert("RGB").save(tmp_path / "gray_rgb.jpg", quality=90)
    loaded, encoding = load_depth(tmp_path / "gray_rgb.jpg")
    assert encoding == "gray8"
    assert np.corrcoef(loaded[metres > 3], metres[metres > 3])[0, 1] > 0.9
    colour = np.dstack([gray, gray // 2, 255 - gray])
    with pytest.raises(ValueError, match="3 colour channels"):
        load_depth(colour)
    declared, _ = load_depth(colour, encoding="gray8")
    luma = np.asarray(Image.fromarray(colour).convert("L"))
    np.testing.assert_allclose(declared, decode_depth(luma, "gray8"), atol=GRAY8_MAX_DEPTH / 255 + 1e-6)


def test_half_and_bfloat16_tensors_decode_as_metres():
    metres = torch.from_numpy(synthetic_scene())
    for dtype in (torch.float16, torch.bfloat16):
        loaded, encoding = load_depth(metres.to(dtype))
        assert encoding == "metres"
        np.testing.assert_allclose(loaded, metres.to(dtype).float().numpy())


def test_declared_encoding_overrides_detection():
    stored = encode_depth(synthetic_scene(), "sun")
    _, encoding = load_depth(stored, encoding="mm")
    assert encoding == "mm"


@pytest.mark.realdata
@pytest.mark.skipif(not SUN_ORIGINAL_DEPTHS, reason="../shared/realdata SUN RGB-D samples absent")
@pytest.mark.parametrize("path", SUN_ORIGINAL_DEPTHS, ids=lambda p: Path(p).parent.parent.name)
def test_real_sun_rgbd_depth_is_detected_and_decodes_to_indoor_range(path):
    metres, encoding = load_depth(path)
    assert encoding == "sun"
    valid = metres[metres > 0]
    # realdata/README.md: kv2/kv1 original-layout samples decode within 0.64-8.03 m, 9-32% zeros in raw depth/
    assert 0.5 <= valid.min() and valid.max() <= 10.0
    assert valid.min() >= 0.64 - 1e-3 and valid.max() <= 8.03 + 1e-3
    assert 0.05 < float(np.mean(metres == 0)) < 0.35


@pytest.mark.realdata
@pytest.mark.skipif(not OPEN3D_SUN_DEPTH.exists(), reason="../shared/realdata Open3D SUN sample absent")
def test_real_sun_sample_with_low_bits_set_matches_the_quoted_range():
    raw = np.asarray(Image.open(OPEN3D_SUN_DEPTH), dtype=np.uint16)
    assert np.any(raw & 0b111)  # the rotation, not a plain >> 3, matters here
    metres, encoding = load_depth(OPEN3D_SUN_DEPTH)
    assert encoding == "sun"
    valid = metres[metres > 0]
    # README: 1.06-9.87 m, the pixels with low bits set decode to 8.2-9.9 m
    assert abs(valid.min() - 1.06) < 0.01 and abs(valid.max() - 9.87) < 0.01
    low_bits = (raw & 0b111) != 0
    assert metres[low_bits].min() >= 8.19 and metres[low_bits].max() <= 9.9


@pytest.mark.realdata
@pytest.mark.skipif(not SUN_ORIGINAL_DEPTHS, reason="../shared/realdata SUN RGB-D samples absent")
def test_real_sun_depth_through_the_processor_keeps_its_holes_and_box():
    path = SUN_ORIGINAL_DEPTHS[0]
    metres, _ = load_depth(path)
    height, width = metres.shape
    processor = DeepSightImageProcessor(invalid_value=-9.0)
    box = [width // 4, height // 4, width // 2, height // 2]
    inputs = processor(path, boxes=[box])
    values = inputs["pixel_values"][0, 0]
    assert inputs["depth_encoding"] == ["sun"]
    assert torch.isfinite(values).all()
    # pad mode: the content fills the full width and a centred band of rows; the margins are invalid
    content_rows = round(height * 224 / width)
    top = (224 - content_rows) // 2
    assert torch.all(values[:top] == -9.0) and torch.all(values[top + content_rows :] == -9.0)
    content = values[top : top + content_rows]
    invalid_fraction = float((content == -9.0).float().mean())
    assert abs(invalid_fraction - float(np.mean(metres == 0))) < 0.1
    mask = inputs["bbox_mask"][0, 0]
    rows, cols = torch.nonzero(mask, as_tuple=True)
    scale = 224 / width
    assert cols.min() == int(box[0] * scale) and cols.max() == int(np.ceil(box[2] * scale)) - 1
    assert rows.min() == top + int(box[1] * scale)


@pytest.mark.realdata
@pytest.mark.skipif(not NYU_MM_DEPTHS, reason="../shared/realdata NYU samples absent")
def test_real_nyu_millimetre_png_is_detected_as_mm():
    for path in NYU_MM_DEPTHS:
        metres, encoding = load_depth(path)
        valid = metres[metres > 0]
        assert encoding == "mm"
        assert 0.7 <= valid.min() and valid.max() <= 8.27 + 1e-3  # README: 0.71-8.27 m


# --------------------------------------------------------------------------------------------------
# processor: outputs and geometry
# --------------------------------------------------------------------------------------------------


def test_processor_returns_documented_shapes_and_encodings():
    processor = DeepSightImageProcessor(size=32)
    metres = synthetic_scene()
    inputs = processor([metres, encode_depth(metres, "mm"), encode_depth(metres, "sun")])
    assert inputs["pixel_values"].shape == (3, 1, 32, 32) and inputs["pixel_values"].dtype == torch.float32
    assert inputs["bbox_mask"].shape == (3, 1, 32, 32) and inputs["bbox_mask"].dtype == torch.float32
    assert inputs["depth_encoding"] == ["metres", "mm", "sun"]
    assert inputs.to(torch.float64)["depth_encoding"] == ["metres", "mm", "sun"]  # moving keeps the report
    assert torch.all(inputs["bbox_mask"] == 1)  # no boxes -> all ones
    # the three encodings of one scene give the same model input
    torch.testing.assert_close(inputs["pixel_values"][0], inputs["pixel_values"][1], atol=1e-3, rtol=0)
    torch.testing.assert_close(inputs["pixel_values"][1], inputs["pixel_values"][2], atol=0, rtol=0)


def test_processor_numpy_output_and_batched_equals_one_by_one():
    processor = DeepSightImageProcessor(size=24)
    maps = [synthetic_scene(seed=s) for s in range(3)]
    boxes = [[[5, 5, 20, 30]], [], None]
    batched = processor(maps, boxes=boxes, return_tensors="np")
    assert isinstance(batched["pixel_values"], np.ndarray)
    for i, (depth, image_boxes) in enumerate(zip(maps, boxes, strict=True)):
        single = processor(depth, boxes=image_boxes)
        np.testing.assert_array_equal(batched["pixel_values"][i], single["pixel_values"][0].numpy())
        np.testing.assert_array_equal(batched["bbox_mask"][i], single["bbox_mask"][0].numpy())


def test_inverse_transform_is_brighter_closer_and_linear_is_the_opposite():
    metres = np.full((20, 20), 8.0, dtype=np.float32)
    metres[:, :10] = 1.0
    inverse = DeepSightImageProcessor(size=20, depth_transform="inverse")(metres)["pixel_values"][0, 0]
    linear = DeepSightImageProcessor(size=20, depth_transform="linear")(metres)["pixel_values"][0, 0]
    assert inverse[10, 2] > inverse[10, 17]
    assert linear[10, 2] < linear[10, 17]


def test_relative_transform_spans_the_whole_range_per_map_whatever_its_metres():
    processor = DeepSightImageProcessor(size=20, depth_transform="relative", depth_mean=0.0, depth_std=1.0)
    near_room = np.linspace(2.0, 3.0, 400, dtype=np.float32).reshape(20, 20)
    near_room[0, :5] = 0.0  # invalid pixels do not count as the nearest
    far_room = near_room * 4  # the same room four times as deep: the same relative image
    values = processor([near_room, far_room], resize_mode="stretch")["pixel_values"][:, 0]
    valid = torch.from_numpy(near_room > 0)
    assert float(values[0][valid].max()) == pytest.approx(1.0) and float(values[0][valid].min()) == pytest.approx(0.0)
    torch.testing.assert_close(values[0][valid], values[1][valid])
    assert values[0][0, 0] == pytest.approx(processor.invalid_value)
    flat = processor(np.full((20, 20), 3.0, dtype=np.float32), resize_mode="stretch")["pixel_values"][0, 0]
    assert torch.isfinite(flat).all()  # one depth everywhere: no division by zero


def test_a_list_of_transforms_gives_one_channel_each_in_order_with_one_box_mask():
    metres = synthetic_scene()
    box = [[4, 6, 20, 18]]
    both = DeepSightImageProcessor(size=24, depth_transform=["inverse", "relative"])
    assert both.num_channels == 2
    inputs = both(metres, boxes=box)
    assert inputs["pixel_values"].shape == (1, 2, 24, 24) and inputs["bbox_mask"].shape == (1, 1, 24, 24)
    for channel, transform in enumerate(["inverse", "relative"]):
        alone = DeepSightImageProcessor(size=24, depth_transform=transform)(metres, boxes=box)
        assert alone["pixel_values"].shape[1] == 1
        torch.testing.assert_close(inputs["pixel_values"][:, channel], alone["pixel_values"][:, 0])
        assert torch.equal(inputs["bbox_mask"], alone["bbox_mask"])


@pytest.mark.parametrize("depth_transform", [[], ["inverse", "inverse"], ["inverse", "log"], 3])
def test_a_bad_list_of_transforms_is_refused_naming_it(depth_transform):
    with pytest.raises(ValueError, match="`depth_transform` must be one of .* or a list of distinct ones"):
        DeepSightImageProcessor(depth_transform=depth_transform)


@pytest.mark.parametrize("max_depth", [10.0, 4.0])
def test_gray8_level_maps_to_the_papers_intensity_under_inverse(max_depth):
    processor = DeepSightImageProcessor(size=16, depth_mean=0.0, depth_std=1.0, max_depth=max_depth)
    levels = np.repeat(np.arange(1, 256, 17, dtype=np.uint8)[None, :], 16, axis=0)[:, :15]
    levels = np.pad(levels, ((0, 0), (0, 1)), mode="edge")  # 16 x 16, constant columns
    values = processor(levels, depth_encoding="gray8", resize_mode="stretch")["pixel_values"][0, 0]
    np.testing.assert_allclose(values[0].numpy(), (levels[0].astype(np.float32) - 1) / 255, atol=1e-5)


@pytest.mark.parametrize("resize_mode", ["pad", "stretch"])
@pytest.mark.parametrize("box", [[40, 30, 130, 90], [0, 0, 17, 119], [150, 100, 160, 120]])
def test_bbox_mask_follows_the_box_through_the_resize(resize_mode, box):
    height, width = 120, 160
    processor = DeepSightImageProcessor(size=32, resize_mode=resize_mode, depth_mean=0.0, depth_std=1.0)
    # encode the box as a depth value so the depth channel shows where the resize put it
    indicator = np.full((height, width), 9.0, dtype=np.float32)
    x0, y0, x1, y1 = box
    indicator[y0:y1, x0:x1] = 1.0
    inputs = processor(indicator, boxes=[box], resize_mode=resize_mode)
    mask = inputs["bbox_mask"][0, 0].numpy()
    values = inputs["pixel_values"][0, 0].numpy()
    far, near = normalised(processor, 9.0), normalised(processor, 1.0)
    touched = values > far + 1e-4  # any pixel the box contributes to
    mostly_box = values > (far + near) / 2  # pixels the box dominates
    assert set(np.unique(mask)) <= {0.0, 1.0}
    assert np.all(mask[mostly_box] == 1)
    assert np.all(touched[mask == 1])
    if resize_mode == "pad":  # 160x120 -> 32x24 centred: rows 0-3 and 28-31 are padding, never object
        assert mask[:4].sum() == 0 and mask[28:].sum() == 0


def test_bbox_mask_is_the_union_of_boxes_and_keeps_tiny_boxes():
    processor = DeepSightImageProcessor(size=16, resize_mode="stretch")
    metres = np.full((160, 160), 3.0, dtype=np.float32)
    mask = processor(metres, boxes=[[0, 0, 80, 80], [80, 80, 160, 160], [100, 2, 101, 3]])["bbox_mask"][0, 0]
    assert mask[:8, :8].all() and mask[8:, 8:].all()
    assert mask[0, 10] == 1  # the 1x1-pixel box survives a 10x downscale
    assert mask.sum() == 64 + 64 + 1


def test_single_image_boxes_may_be_passed_unwrapped():
    processor = DeepSightImageProcessor(size=16)
    metres = synthetic_scene()
    unwrapped = processor(metres, boxes=[[4, 4, 30, 30]])["bbox_mask"]
    wrapped = processor([metres], boxes=[[[4, 4, 30, 30]]])["bbox_mask"]
    as_array = processor(metres, boxes=np.array([[4, 4, 30, 30]]))["bbox_mask"]
    assert torch.equal(unwrapped, wrapped) and torch.equal(unwrapped, as_array)
    assert 0 < unwrapped.sum() < unwrapped.numel()


def test_slightly_overhanging_boxes_are_clipped():
    processor = DeepSightImageProcessor(size=16, resize_mode="stretch")
    metres = np.full((100, 100), 2.0, dtype=np.float32)
    clipped = processor(metres, boxes=[[-2, -2, 50, 102]])["bbox_mask"]
    inside = processor(metres, boxes=[[0, 0, 50, 100]])["bbox_mask"]
    assert torch.equal(clipped, inside)


def test_invalid_pixels_are_not_blended_into_valid_ones():
    processor = DeepSightImageProcessor(size=16, resize_mode="stretch", invalid_value=-5.0)
    metres = np.full((64, 64), 2.0, dtype=np.float32)
    metres[::2, ::3] = 0.0  # scattered invalid pixels among valid 2 m
    metres[1::4, 1::5] = np.nan
    metres[:, 48:] = 0.0  # a fully invalid band
    values = processor(metres)["pixel_values"][0, 0]
    expected_valid = normalised(processor, 2.0)
    assert torch.allclose(values[:, :11], torch.full_like(values[:, :11], expected_valid), atol=1e-5)
    assert torch.all(values[:, 13:] == processor.invalid_value)


def test_output_pixel_is_valid_when_most_of_its_footprint_is_valid():
    processor = DeepSightImageProcessor(size=4, resize_mode="stretch", invalid_value=-5.0)
    metres = np.full((64, 64), 2.0, dtype=np.float32)
    metres[:32, :32][np.arange(32 * 32).reshape(32, 32) % 4 != 0] = 0.0  # top-left: 25% valid
    metres[:32, 32:][np.arange(32 * 32).reshape(32, 32) % 4 == 0] = 0.0  # top-right: 75% valid
    values = processor(metres)["pixel_values"][0, 0]
    assert torch.all(values[:2, :2] == -5.0)
    assert torch.allclose(values[:2, 2:], torch.full((2, 2), normalised(processor, 2.0)), atol=1e-5)
    assert torch.allclose(values[2:], torch.full((2, 4), normalised(processor, 2.0)), atol=1e-5)


def test_depth_beyond_max_depth_is_clipped_not_invalid():
    processor = DeepSightImageProcessor(size=8, max_depth=5.0)
    values = processor(np.full((8, 8), 30.0, dtype=np.float32))["pixel_values"]
    assert torch.allclose(values, torch.full_like(values, normalised(processor, 5.0)))


def test_processor_config_round_trips_through_save_pretrained(tmp_path):
    processor = DeepSightImageProcessor(
        size=48,
        max_depth=8.0,
        depth_transform="linear",
        depth_mean=0.3,
        depth_std=0.2,
        invalid_value=-3.0,
        resize_mode="stretch",
        max_pixels=1_000_000,
        box_tolerance=0.1,
    )
    processor.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "preprocessor_config.json").read_text())
    assert saved["auto_map"]["AutoImageProcessor"].endswith("DeepSightImageProcessor")
    reloaded = DeepSightImageProcessor.from_pretrained(tmp_path)
    two_channels = DeepSightImageProcessor(depth_transform=("relative", "inverse"))
    two_channels.save_pretrained(tmp_path / "two_channels")
    assert DeepSightImageProcessor.from_pretrained(tmp_path / "two_channels").depth_transform == ["relative", "inverse"]
    for key in (
        "size",
        "max_depth",
        "depth_transform",
        "depth_mean",
        "depth_std",
        "invalid_value",
        "resize_mode",
        "max_pixels",
        "box_tolerance",
    ):
        assert getattr(reloaded, key) == getattr(processor, key), key
    metres = synthetic_scene()
    assert torch.equal(
        processor(metres, boxes=[[3, 3, 20, 20]])["pixel_values"],
        reloaded(metres, boxes=[[3, 3, 20, 20]])["pixel_values"],
    )


def test_auto_image_processor_loads_the_saved_module_with_remote_code(tmp_path):
    DeepSightImageProcessor(size=40, max_depth=6.0).save_pretrained(tmp_path)
    assert (tmp_path / "image_processing_deepsight.py").exists()
    assert (tmp_path / "depth_codec_deepsight.py").exists()  # its relative imports travel with it
    assert (tmp_path / "bbox_mask_deepsight.py").exists()
    loaded = AutoImageProcessor.from_pretrained(tmp_path, trust_remote_code=True)
    assert type(loaded).__name__ == "DeepSightImageProcessor"
    assert loaded.max_depth == 6.0 and loaded.size == {"height": 40, "width": 40}


@pytest.mark.slow
def test_saved_folder_preprocesses_identically_in_a_fresh_process_without_this_repo(tmp_path):
    processor = DeepSightImageProcessor(size=24, max_depth=7.0, resize_mode="stretch")
    processor.save_pretrained(tmp_path / "checkpoint")
    depth = encode_depth(synthetic_scene(), "sun")
    np.save(tmp_path / "depth.npy", depth)
    script = f"""
import json, sys
import numpy as np
sys.modules["modeling_deepsight"] = None  # any use of this repository's package fails loudly
from transformers import AutoImageProcessor
processor = AutoImageProcessor.from_pretrained({str(tmp_path / "checkpoint")!r}, trust_remote_code=True)
inputs = processor(np.load({str(tmp_path / "depth.npy")!r}), boxes=[[2, 3, 30, 20]])
np.save({str(tmp_path / "pixel_values.npy")!r}, inputs["pixel_values"].numpy())
np.save({str(tmp_path / "bbox_mask.npy")!r}, inputs["bbox_mask"].numpy())
print(json.dumps({{"module": type(processor).__module__, "encodings": inputs["depth_encoding"]}}))
"""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf_home")}
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["module"].startswith("transformers_modules") and report["encodings"] == ["sun"]
    expected = processor(depth, boxes=[[2, 3, 30, 20]])
    np.testing.assert_array_equal(np.load(tmp_path / "pixel_values.npy"), expected["pixel_values"].numpy())
    np.testing.assert_array_equal(np.load(tmp_path / "bbox_mask.npy"), expected["bbox_mask"].numpy())


# --------------------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------------------


def _valid_map() -> np.ndarray:
    return np.full((20, 30), 2.0, dtype=np.float32)


@pytest.mark.parametrize(
    "images, kwargs, message",
    [
        (np.zeros((2, 3, 4, 5), dtype=np.float32), {}, r"`images` as a single array must have shape"),
        (np.zeros((2, 2, 3, 4, 5), dtype=np.float32), {}, r"`images` as a single array must have shape"),
        ([np.zeros((2, 3, 4, 5), dtype=np.float32)], {}, r"`images\[0\]` must be a depth map of shape"),
        (np.zeros((0, 5), dtype=np.float32), {}, r"is empty"),
        ([], {}, r"`images` is an empty list"),
        (None, {}, r"`images` is None"),
        ([{"depth": 1}], {}, r"`images\[0\]` is a dict"),
        (np.zeros((20, 30), dtype=np.float32), {}, r"`images\[0\]` has no valid pixel"),
        (np.full((20, 30), np.nan, dtype=np.float32), {}, r"`images\[0\]` has no valid pixel"),
        (np.full((20, 30), -1.0, dtype=np.float32), {}, r"`images\[0\]` holds negative depth"),
        (np.full((20, 30), -5, dtype=np.int32), {}, r"`images\[0\]` holds negative values"),
        (
            np.dstack([np.full((20, 30), v, np.uint8) for v in (10, 90, 200)]),
            {},
            r"`images\[0\]` has 3 colour",
        ),
        (_valid_map(), {"depth_encoding": "kelvin"}, r"`depth_encoding` must be one of"),
        (np.full((20, 30), 300, np.uint16), {"depth_encoding": "gray8"}, r"values in \[0, 255\]"),
        (_valid_map(), {"depth_encoding": ["mm", "mm"]}, r"`depth_encoding` has 2 entries but 1 images"),
        (_valid_map(), {"boxes": [[40, 2, 50, 10]]}, r"box 0 .* entirely outside the 30x20"),
        (_valid_map(), {"boxes": [[-10, 2, 25, 10]]}, r"box 0 .* overhangs the 30x20"),
        (_valid_map(), {"boxes": [[20, 2, 10, 10]]}, r"box 0 .* inverted or empty"),
        (_valid_map(), {"boxes": [[10, 5, 10, 10]]}, r"box 0 .* inverted or empty"),
        (_valid_map(), {"boxes": [[1, 2, 3]]}, r"must be a list of \[x0, y0, x1, y1\] boxes"),
        (_valid_map(), {"boxes": [1, 2, 3, 4]}, r"looks like a single box"),
        (_valid_map(), {"boxes": [[1, 2, 3, 4], [1, 2]]}, r"must be a list of \[x0, y0, x1, y1\] boxes"),
        (_valid_map(), {"boxes": [[1, 2, "a", 4]]}, r"must be a list of \[x0, y0, x1, y1\] boxes"),
        (_valid_map(), {"boxes": [[1, 2, float("nan"), 4]]}, r"box 0 .* non-finite coordinate"),
        ([_valid_map(), _valid_map()], {"boxes": [[[1, 2, 3, 4]]]}, r"`boxes` has 1 box lists but 2 images"),
        (_valid_map(), {"max_pixels": 100}, r"`images\[0\]` has 600 pixels, more than max_pixels=100"),
    ],
)
def test_bad_input_raises_value_error_naming_the_input(images, kwargs, message):
    processor = DeepSightImageProcessor(size=8)
    with pytest.raises(ValueError, match=message):
        processor(images, **kwargs)


def test_default_max_pixels_rejects_an_image_far_larger_than_configured():
    processor = DeepSightImageProcessor(size=8)
    huge = np.broadcast_to(np.float32(2.0), (8000, 6000))  # 48 MP without allocating it
    with pytest.raises(ValueError, match="more than max_pixels=40,000,000"):
        processor(huge)


def test_bad_path_names_the_file(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        DeepSightImageProcessor(size=8)(str(tmp_path / "missing.png"))


@pytest.mark.parametrize(
    "setting, message",
    [
        ({"depth_transform": "log"}, "`depth_transform` must be one of"),
        ({"resize_mode": "crop"}, "`resize_mode` must be one of"),
        ({"max_depth": 0}, "`max_depth` must be > 0"),
        ({"depth_std": 0}, "`depth_std` must be > 0"),
        ({"size": "big"}, "`size` must be an int"),
    ],
)
def test_bad_settings_raise_value_error(setting, message):
    with pytest.raises(ValueError, match=message):
        DeepSightImageProcessor(**setting)


# --------------------------------------------------------------------------------------------------
# inputs the processor cannot read correctly are refused, naming them (issue 25)
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "image, kwargs",
    [
        (np.full((20, 30), True), {}),
        (torch.ones((20, 30), dtype=torch.bool), {}),
        (np.full((20, 30), 2.0 + 1.0j, np.complex64), {"depth_encoding": "metres"}),
        (torch.full((20, 30), 2.0 + 1.0j), {}),
        (np.full((20, 30), 2.0, dtype=object), {"depth_encoding": "metres"}),
    ],
    ids=["numpy-bool", "torch-bool", "complex-declared-metres", "torch-complex", "object"],
)
def test_bool_complex_and_object_arrays_are_refused_naming_the_dtype(image, kwargs):
    with pytest.raises(ValueError, match=r"`images\[0\]` has dtype (bool|complex|object).*real numbers"):
        DeepSightImageProcessor(size=8)(image, **kwargs)


def test_a_one_bit_image_is_refused_as_a_mask_not_depth():
    with pytest.raises(ValueError, match=r"`images\[0\]` is a 1-bit .* a mask, not a depth map"):
        DeepSightImageProcessor(size=8)(Image.fromarray(np.eye(20, 30, dtype=bool)))


@pytest.mark.parametrize(
    "image",
    [
        np.random.default_rng(0).integers(0, 256, (3, 20, 30), dtype=np.uint8),
        torch.rand(3, 20, 30, generator=torch.Generator().manual_seed(0)),  # torchvision's ToTensor range
        np.random.default_rng(0).integers(0, 256, (4, 20, 30), dtype=np.uint8),
    ],
    ids=["uint8-chw", "float01-chw-tensor", "uint8-rgba-chw"],
)
def test_channel_first_colour_array_is_refused_not_read_as_several_depth_maps(image):
    with pytest.raises(ValueError, match=r"`images` has shape \([34], 20, 30\).*channel-first colour image"):
        DeepSightImageProcessor(size=8)(image)
    with pytest.raises(ValueError, match=r"`images\[0\]` .*channel-first colour image"):
        DeepSightImageProcessor(size=8)([image])


def test_batches_of_three_depth_maps_in_one_array_are_still_read():
    processor = DeepSightImageProcessor(size=8)
    metres = np.stack([synthetic_scene(20, 30, seed) for seed in range(3)])
    for batch in (metres, encode_depth(metres.reshape(60, 30), "mm").reshape(3, 20, 30), torch.from_numpy(metres)):
        out = processor(batch)
        assert out["pixel_values"].shape == (3, 1, 8, 8)
        assert torch.allclose(out["pixel_values"][1], processor(list(metres))["pixel_values"][1], atol=1e-3)


@pytest.mark.parametrize("colour", ["rgb", "rgba", "gray_alpha"])
def test_16_bit_colour_png_is_refused_not_read_as_8_bit_gray(tmp_path, colour):
    samples = {"rgb": 3, "rgba": 4, "gray_alpha": 2}[colour]
    path = write_png16(tmp_path / "depth16.png", np.full((20, 30, samples), 1230, np.uint16), colour)  # 1.23 m
    with pytest.raises(ValueError, match=r"depth16\.png\)` is a 16-bit .* PIL reads as 8 bits per channel"):
        DeepSightImageProcessor(size=8)(str(path))
    with pytest.raises(ValueError, match=r"`images\[0\]` is a 16-bit"):  # opened by the caller, not decoded yet
        DeepSightImageProcessor(size=8)(Image.open(path))


def test_16_bit_gray_png_is_still_read_as_millimetres(tmp_path):
    path = write_png16(tmp_path / "depth16.png", np.full((20, 30, 1), 1230, np.uint16), "gray")
    metres, encoding = load_depth(path)
    assert encoding == "mm" and np.allclose(metres, 1.23)


@pytest.mark.parametrize(
    "write, message",
    [
        (lambda p, good: p.write_bytes(good[: len(good) // 2]), "is corrupt or truncated"),
        (lambda p, good: p.write_bytes(b"not an image at all"), "is not a readable depth file"),
        (lambda p, good: p.write_bytes(good[:40]), "is not a readable depth file|is corrupt or truncated"),
    ],
    ids=["truncated", "garbage", "header-only"],
)
def test_corrupt_and_truncated_files_are_value_errors_naming_the_file(tmp_path, write, message):
    good = tmp_path / "good.png"
    Image.fromarray(depth_to_png_mm(synthetic_scene())).save(good)
    bad = tmp_path / "bad.png"
    write(bad, good.read_bytes())
    with pytest.raises(ValueError, match=rf"`images\[0\] \({re.escape(str(bad))}\)` ({message})"):
        DeepSightImageProcessor(size=8)(str(bad))


def test_a_truncated_image_opened_by_the_caller_is_a_value_error_naming_it(tmp_path):
    good = tmp_path / "good.png"
    Image.fromarray(depth_to_png_mm(synthetic_scene())).save(good)
    (tmp_path / "bad.png").write_bytes(good.read_bytes()[:200])
    with pytest.raises(ValueError, match=r"`images\[1\]` is corrupt or truncated"):
        DeepSightImageProcessor(size=8)([str(good), Image.open(tmp_path / "bad.png")])


_BROKEN_NPY_HEADER = b"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3\n"  # unclosed: numpy's tokenizer fails


@pytest.mark.parametrize(
    "content",
    [b"\x93NUMPY garbage", b"\x93NUMPY\x01\x00" + len(_BROKEN_NPY_HEADER).to_bytes(2, "little") + _BROKEN_NPY_HEADER,
     None],
    ids=["garbage", "broken-header", "pickled-objects"],
)
def test_unreadable_npy_files_are_value_errors_naming_the_file(tmp_path, content):
    path = tmp_path / "depth.npy"
    if content is None:
        np.save(path, np.array([[1.0, 2.0]], dtype=object), allow_pickle=True)
    else:
        path.write_bytes(content)
    with pytest.raises(ValueError, match=r"depth\.npy\)` is not a readable depth file"):
        DeepSightImageProcessor(size=8)(str(path))


def test_pixel_limit_is_checked_from_the_png_header_before_decoding(tmp_path):
    # the header claims 7000 x 7000 (49 MP, within PIL's own limit): decoding would start; the header check refuses
    bomb = write_header_bomb(tmp_path / "bomb.png", 7000, 7000)
    with pytest.raises(ValueError, match=r"bomb\.png\)` has 49,000,000 pixels, more than max_pixels=40,000,000"):
        DeepSightImageProcessor(size=8)(str(bomb))


def test_pixel_limit_is_checked_from_the_npy_header_before_reading(tmp_path):
    path = tmp_path / "huge.npy"
    np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(8000, 6000)).flush()  # sparse on disk
    with pytest.raises(ValueError, match=r"huge\.npy\)` has 48,000,000 pixels, more than max_pixels"):
        DeepSightImageProcessor(size=8)(str(path))


def test_decompression_bomb_beyond_pils_own_limit_is_a_value_error_naming_the_file(tmp_path):
    bomb = write_header_bomb(tmp_path / "bomb.png", 20000, 20000)
    with pytest.raises(ValueError, match=r"bomb\.png\)` is not a readable depth file.*decompression bomb"):
        DeepSightImageProcessor(size=8, max_pixels=10**9)(str(bomb))


def test_float_millimetres_passed_as_metres_are_refused_with_a_hint():
    millimetres = synthetic_scene() * 1000.0
    with pytest.raises(ValueError, match=r"`images\[0\]` is read as metres but .* beyond 100 m .* millimetres"):
        DeepSightImageProcessor(size=8)(millimetres)
    with pytest.raises(ValueError, match=r"beyond 100 m"):
        DeepSightImageProcessor(size=8)(encode_depth(synthetic_scene(), "mm"), depth_encoding="metres")
    with pytest.raises(ValueError, match=r"beyond 800 m .* max_depth=80 m"):  # the threshold follows max_depth
        DeepSightImageProcessor(size=8, max_depth=80.0)(millimetres * 10)


def test_float_millimetres_in_a_file_are_refused_naming_the_file(tmp_path):
    path = tmp_path / "depth_mm.npy"
    np.save(path, synthetic_scene() * 1000.0)
    with pytest.raises(ValueError, match=rf"`images\[0\] \({re.escape(str(path))}\)` is read as metres"):
        DeepSightImageProcessor(size=8)(str(path))


def test_far_metric_maps_and_relative_depth_keep_being_read():
    processor = DeepSightImageProcessor(size=8)
    far = synthetic_scene()
    far[:, : far.shape[1] // 3] = 500.0  # a third of the map beyond 100 m (a window onto the outside)
    assert torch.isfinite(processor(far)["pixel_values"]).all()
    assert torch.isfinite(DeepSightImageProcessor(size=8, max_depth=80.0)(synthetic_scene() * 70)["pixel_values"]).all()
    relative = DeepSightImageProcessor(size=8, depth_transform="relative")
    in_millimetres, in_metres = relative(synthetic_scene() * 1000.0), relative(synthetic_scene())
    assert torch.allclose(in_millimetres["pixel_values"], in_metres["pixel_values"], atol=1e-5)


def test_boxes_all_in_the_unit_square_are_refused_as_normalised_coordinates():
    with pytest.raises(ValueError, match=r"`boxes` for images\[0\] all lie in \[0, 1\] .* normalised coordinates"):
        DeepSightImageProcessor(size=8)(synthetic_scene(), boxes=[[0.1, 0.2, 0.5, 0.6], [0.0, 0.0, 1.0, 1.0]])
    processor = DeepSightImageProcessor(size=8)
    # one box beyond the unit square: pixels; a map under NORMALISED_BOX_MIN_SIDE a side: pixels too
    assert processor(synthetic_scene(), boxes=[[0, 0, 1, 1], [10, 10, 20, 20]])["bbox_mask"].sum() > 0
    assert processor(np.full((4, 4), 2.0, np.float32), boxes=[[0, 0, 1, 1]])["bbox_mask"].sum() > 0


def test_a_flat_box_list_for_a_batch_is_refused_with_the_one_list_per_image_rule():
    maps = [synthetic_scene(), synthetic_scene(seed=1)]
    with pytest.raises(ValueError, match=r"`boxes` is a flat list of 2 box\(es\) but `images` is a batch of 2"):
        DeepSightImageProcessor(size=8)(maps, boxes=[[1, 2, 30, 40], [5, 6, 20, 30]])
    with pytest.raises(ValueError, match=r"`boxes` for images\[1\] is a single box"):
        DeepSightImageProcessor(size=8)(maps, boxes=[[[1, 2, 30, 40]], [5, 6, 20, 30]])
    per_image = DeepSightImageProcessor(size=8)(maps, boxes=[[[1, 2, 30, 40]], [[5, 6, 20, 30]]])["bbox_mask"]
    alone = DeepSightImageProcessor(size=8)(maps[0], boxes=[[1, 2, 30, 40]])["bbox_mask"]  # a single image: flat
    assert torch.equal(per_image[:1], alone)
