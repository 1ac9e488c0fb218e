"""Property-based tests (Hypothesis) of what reaches the model: the image processor, the box parser and the parsers
of regions (``<box>`` tags in prompts, the region layout's boxes).

The property, for every generated input: either a ValueError that names the input, or finite tensors of the
documented shapes (``pixel_values`` (N, C, H, W) finite, ``bbox_mask`` (N, 1, H, W) in {0, 1}). Anything else (another
exception, NaN in the output, a mask with other values) fails. Bounded and derandomised so CI is deterministic.
"""

from __future__ import annotations

import io
import os
import tempfile
import warnings

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from deepsight.regions import region_boxes
from modeling_deepsight.image_processing_deepsight import DeepSightImageProcessor
from modeling_deepsight.processing_deepsight import extract_box_tags, format_box_tag


SIZE = 8
PROPERTY_SETTINGS = settings(
    max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
PROCESSOR = DeepSightImageProcessor(size=SIZE)


def process_or_refuse(images, name: str, **kwargs):
    """The processor's output, or None when it refused `images` with a ValueError naming `name`."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "grayscale stored as RGB" and numpy's cast warnings are not the point
            return PROCESSOR(images, **kwargs)
    except ValueError as error:
        assert name in str(error), f"the refusal does not name {name}: {error}"
        return None


def assert_documented_outputs(out, num_images: int) -> None:
    assert out["pixel_values"].shape == (num_images, 1, SIZE, SIZE)
    assert out["pixel_values"].dtype == torch.float32 and torch.isfinite(out["pixel_values"]).all()
    assert out["bbox_mask"].shape == (num_images, 1, SIZE, SIZE)
    assert set(out["bbox_mask"].unique().tolist()) <= {0.0, 1.0}
    assert len(out["depth_encoding"]) == num_images


# --------------------------------------------------------------------------------------------------
# the image processor
# --------------------------------------------------------------------------------------------------

DTYPES = [np.bool_, np.uint8, np.int8, np.uint16, np.int16, np.int32, np.uint32, np.int64, np.float16, np.float32,
          np.float64, np.complex64]


@st.composite
def random_arrays(draw):
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=6))
    if dtype.kind == "f":
        elements = st.floats(width=8 * dtype.itemsize, allow_nan=True, allow_infinity=True)
        # depth-like values most of the time, any float sometimes
        elements = st.one_of(st.floats(0.0, 12.0, width=8 * dtype.itemsize), elements)
    else:
        elements = None
    return draw(hnp.arrays(dtype, shape, elements=elements))


@PROPERTY_SETTINGS
@given(array=random_arrays(), as_tensor=st.booleans())
def test_any_array_is_refused_naming_it_or_processed_into_finite_documented_tensors(array, as_tensor):
    images = torch.from_numpy(array.copy()) if as_tensor and array.dtype != np.uint32 else array
    out = process_or_refuse(images, "`images")
    if out is not None:
        assert_documented_outputs(out, len(out["pixel_values"]))


def test_object_arrays_are_refused_naming_them():
    assert process_or_refuse(np.full((4, 5), 2.0, dtype=object), "`images[0]`") is None


PIL_MODES = ["1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBX", "RGBa", "CMYK", "YCbCr", "LAB", "HSV", "I",
             "I;16", "I;16B", "I;16L", "F"]


@st.composite
def random_pil_images(draw):
    mode = draw(st.sampled_from(PIL_MODES))
    size = (draw(st.integers(1, 12)), draw(st.integers(1, 12)))
    num_bytes = len(Image.new(mode, size).tobytes())
    return Image.frombytes(mode, size, draw(st.binary(min_size=num_bytes, max_size=num_bytes)))


@PROPERTY_SETTINGS
@given(image=random_pil_images())
def test_any_pil_image_is_refused_naming_it_or_processed_into_finite_documented_tensors(image):
    out = process_or_refuse([image], "`images[0]`")
    if out is not None:
        assert_documented_outputs(out, 1)


def draw_damage(draw, data: bytes) -> bytes:
    """`data` intact, cut short at a drawn position, or with one drawn byte changed."""
    data = bytearray(data)
    damage = draw(st.sampled_from(["intact", "truncate", "flip"]))
    position = draw(st.integers(0, len(data) - 1))
    if damage == "truncate":
        data = data[:position]
    elif damage == "flip":
        data[position] ^= draw(st.integers(1, 255))
    return bytes(data)


@st.composite
def damaged_png_bytes(draw):
    """A PNG of a random depth map (16-bit, 8-bit gray or RGB), then cut short or with a byte changed, or intact."""
    mode = draw(st.sampled_from(["I;16", "L", "RGB"]))
    height, width = draw(st.integers(1, 16)), draw(st.integers(1, 16))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    if mode == "I;16":
        image = Image.fromarray(rng.integers(0, 9000, (height, width)).astype(np.uint16))
    elif mode == "L":
        image = Image.fromarray(rng.integers(0, 256, (height, width)).astype(np.uint8))
    else:
        image = Image.fromarray(rng.integers(0, 256, (height, width, 3)).astype(np.uint8))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return draw_damage(draw, buffer.getvalue())


@st.composite
def damaged_npy_bytes(draw):
    """A .npy of a random depth map (float metres, uint16 mm), then cut short or with a byte changed, or intact."""
    dtype = draw(st.sampled_from([np.float32, np.uint16, np.float64]))
    height, width = draw(st.integers(1, 16)), draw(st.integers(1, 16))
    values = np.random.default_rng(draw(st.integers(0, 2**16))).uniform(0.3, 9.0, (height, width))
    buffer = io.BytesIO()
    np.save(buffer, (values * 1000 if dtype == np.uint16 else values).astype(dtype))
    return draw_damage(draw, buffer.getvalue())


@PROPERTY_SETTINGS
@given(file=st.one_of(damaged_png_bytes().map(lambda data: ("png", data)),
                      damaged_npy_bytes().map(lambda data: ("npy", data))))
def test_any_depth_file_intact_or_damaged_is_refused_naming_the_file_or_processed(file):
    suffix, data = file
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, f"depth.{suffix}")
        with open(path, "wb") as handle:
            handle.write(data)
        out = process_or_refuse(path, f"`images[0] ({path})`")
    if out is not None:
        assert_documented_outputs(out, 1)


@PROPERTY_SETTINGS
@given(data=damaged_png_bytes())
def test_any_png_opened_by_the_caller_is_refused_naming_it_or_processed(data):
    try:
        image = Image.open(io.BytesIO(data))  # the caller's own open: only what comes after is ours
    except Exception:  # noqa: BLE001 - any failure of PIL's open happens before the processor is called
        assume(False)
    out = process_or_refuse([image], "`images[0]`")
    if out is not None:
        assert_documented_outputs(out, 1)


# --------------------------------------------------------------------------------------------------
# the box parser (`boxes=`)
# --------------------------------------------------------------------------------------------------

coordinates = st.one_of(
    st.integers(-40, 120), st.floats(-40, 120), st.floats(0, 1), st.sampled_from([float("nan"), float("inf")])
)
boxes_of_one_image = st.one_of(
    st.none(), st.lists(st.lists(coordinates, min_size=3, max_size=5), max_size=3)
)


@PROPERTY_SETTINGS
@given(
    num_images=st.integers(1, 3),
    sides=st.lists(st.tuples(st.integers(1, 40), st.integers(1, 40)), min_size=3, max_size=3),
    per_image=st.lists(boxes_of_one_image, min_size=1, max_size=4),
    flat=st.booleans(),
    single=st.booleans(),
)
def test_any_box_list_is_refused_naming_boxes_or_drawn_as_a_binary_mask(num_images, sides, per_image, flat, single):
    maps = [np.full(side, 2.0, np.float32) for side in sides[:num_images]]
    images = maps[0] if single else maps
    boxes = [box for image_boxes in per_image for box in (image_boxes or [])] if flat else per_image
    out = process_or_refuse(images, "`boxes`", boxes=boxes)
    if out is not None:
        assert_documented_outputs(out, 1 if single else num_images)
        assert (out["bbox_mask"].flatten(1).sum(1) > 0).all()  # every image keeps at least one pixel


# --------------------------------------------------------------------------------------------------
# the region parsers: `<box>` tags in prompts, the region layout's boxes
# --------------------------------------------------------------------------------------------------

well_formed_numbers = st.one_of(st.integers(-50, 500), st.floats(-50, 500, allow_nan=False, allow_infinity=False))
text_pieces = st.one_of(
    st.just("<image>"),
    st.lists(well_formed_numbers, min_size=4, max_size=4).map(format_box_tag),
    st.sampled_from(["<box>[1, 2, 3]</box>", "<box>[1, 2, 3, 4]", "[1, 2, 3, 4]</box>", "<box></box>", "</box>",
                     "<box>", "<box>[1, 2, 3, 4, 5]</box>", "<box>( 1, 2, 3, 4 )</box>"]),
    st.text(alphabet="abc xyz,.[]0123456789\n", max_size=12),
)


@PROPERTY_SETTINGS
@given(pieces=st.lists(text_pieces, max_size=8))
def test_any_prompt_is_refused_naming_it_or_split_into_clean_text_and_boxes_per_image(pieces):
    text = "".join(pieces)
    try:
        clean, boxes = extract_box_tags(text, "<image>", sample_index=3)
    except ValueError as error:
        assert "`text[3]`" in str(error)
        return
    assert "<box>" not in clean and "</box>" not in clean
    assert clean.count("<image>") == text.count("<image>") == len(boxes)
    assert all(len(box) == 4 and all(isinstance(v, float) for v in box) for image in boxes for box in image)


@pytest.mark.parametrize("number", ["e", "+", "1.2.3", "--1"])
def test_a_box_tag_with_a_malformed_number_is_refused_naming_the_prompt(number):
    with pytest.raises(ValueError) as error:
        extract_box_tags(f"<image><box>[{number}, 1, 2, 3]</box> How far?", "<image>")
    assert "`text[0]`" in str(error.value)


@PROPERTY_SETTINGS
@given(
    boxes=st.lists(
        st.lists(st.one_of(coordinates, st.text(max_size=3), st.none()), min_size=3, max_size=5), max_size=4
    ),
    extra=st.integers(0, 1),
)
def test_any_region_box_list_is_refused_naming_it_or_read_as_four_finite_floats(boxes, extra):
    try:
        per_copy = region_boxes(boxes, len(boxes) + extra)
    except ValueError as error:
        assert str(error).startswith("regions:")
        return
    assert len(per_copy) == len(boxes) + extra
    for copy in per_copy:
        assert all(len(box) == 4 and all(np.isfinite(box)) for box in copy)


@pytest.mark.parametrize("box", [[1, 2, 3], [1, 2, 3, 4, 5], [1, 2, float("nan"), 4], ["a", 2, 3, 4], None])
def test_region_boxes_refuse_a_box_that_is_not_four_finite_numbers_naming_it(box):
    with pytest.raises(ValueError, match=r"regions: `boxes\[1\]`"):
        region_boxes([[0, 0, 5, 5], box], 2)
