"""RGB photos where depth maps go: estimated to metres by the depth-estimation checkpoint the image processor names.

Tiny randomly initialised estimators of three architectures (GLPN, DPT, Depth Anything) saved locally, offline.
"""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from transformers import AutoImageProcessor, AutoModelForDepthEstimation, pipeline

from dataset_scripts.sources.depth_estimation import (
    TINY_ESTIMATOR_ARCHITECTURES,
    DepthEstimator,
    save_tiny_random_depth_estimator,
)
from deepsight.tiny import build_processor
from modeling_deepsight import DeepSightImageProcessor, depth_estimation_deepsight
from modeling_deepsight.depth_codec_deepsight import is_colour_photo
from modeling_deepsight.depth_estimation_deepsight import (
    DEFAULT_DEPTH_ESTIMATOR,
    KNOWN_DEPTH_ESTIMATORS,
    MetricDepthEstimator,
)


@pytest.fixture(scope="module")
def estimator_dirs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("estimators")
    return {name: str(save_tiny_random_depth_estimator(folder / name, name)) for name in TINY_ESTIMATOR_ARCHITECTURES}


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return (np.random.default_rng(0).random((40, 52, 3)) * 255).astype(np.uint8)


def _estimate_by_hand(path: str, photo: np.ndarray) -> np.ndarray:
    """The transformers recipe: image processor, model, post-processing to the photo's size."""
    image_processor = AutoImageProcessor.from_pretrained(path)
    model = AutoModelForDepthEstimation.from_pretrained(path).eval()
    with torch.no_grad():
        outputs = model(**image_processor(images=Image.fromarray(photo), return_tensors="pt"))
    processed = image_processor.post_process_depth_estimation(outputs, target_sizes=[photo.shape[:2]])
    return processed[0]["predicted_depth"].clamp(min=0).numpy().astype(np.float32)


@pytest.mark.parametrize("architecture", TINY_ESTIMATOR_ARCHITECTURES)
def test_a_photo_gives_the_pixel_values_of_the_metres_its_estimator_predicts(estimator_dirs, photo, architecture):
    path = estimator_dirs[architecture]
    out = DeepSightImageProcessor(size=32, depth_estimator=path)(photo, boxes=[[4, 4, 30, 20]])
    metres = _estimate_by_hand(path, photo)
    expected = DeepSightImageProcessor(size=32)(metres, boxes=[[4, 4, 30, 20]], depth_encoding="metres")
    torch.testing.assert_close(out["pixel_values"], expected["pixel_values"])
    torch.testing.assert_close(out["bbox_mask"], expected["bbox_mask"])
    np.testing.assert_allclose(out["estimated_depth"][0], metres, rtol=1e-5, atol=1e-6)
    assert out["depth_source"] == [f"estimated:{path}"] and out["depth_encoding"] == ["metres"]


def test_the_estimator_is_loaded_once_lazily_from_safetensors_without_remote_code(
    estimator_dirs, photo, depth_map, monkeypatch
):
    loads = []
    original = AutoModelForDepthEstimation.from_pretrained

    def counting_from_pretrained(*args, **kwargs):
        loads.append(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(depth_estimation_deepsight.AutoModelForDepthEstimation, "from_pretrained",
                        counting_from_pretrained)
    processor = DeepSightImageProcessor(size=32, depth_estimator=estimator_dirs["glpn"])
    processor(depth_map)
    assert loads == []  # no photo yet: nothing loaded
    for _ in range(3):
        processor([photo, photo])
    processor(Image.fromarray(photo))
    assert len(loads) == 1
    assert loads[0]["use_safetensors"] is True and loads[0]["trust_remote_code"] is False


def test_a_mixed_batch_reports_each_maps_source(estimator_dirs, photo, depth_map, tmp_path):
    path = estimator_dirs["dpt"]
    photo_file = tmp_path / "photo.png"
    Image.fromarray(photo).save(photo_file)
    millimetres = (depth_map * 1000).astype(np.uint16)
    out = DeepSightImageProcessor(size=32, depth_estimator=path)([photo, millimetres, depth_map, str(photo_file)])
    assert out["depth_source"] == [f"estimated:{path}", "mm", "metres", f"estimated:{path}"]
    assert out["depth_encoding"] == ["metres", "mm", "metres", "metres"]
    assert out["estimated_depth"][1] is None and out["estimated_depth"][2] is None
    np.testing.assert_array_equal(out["estimated_depth"][0], out["estimated_depth"][3])  # PNG is lossless
    assert out["pixel_values"].shape == (4, 1, 32, 32)


def test_a_photo_without_an_estimator_is_a_value_error_saying_how_to_set_one(photo, tmp_path):
    photo_file = tmp_path / "photo.jpg"
    Image.fromarray(photo).save(photo_file)
    for image in (photo, Image.fromarray(photo), str(photo_file)):
        with pytest.raises(ValueError, match=r"colour channels.*depth_estimator="):
            DeepSightImageProcessor(size=32)(image)


def test_gray_depth_maps_are_never_sent_to_the_estimator(estimator_dirs, photo, depth_map, monkeypatch):
    def no_estimation(self, images):
        raise AssertionError("a depth map was sent to the depth estimator")

    monkeypatch.setattr(MetricDepthEstimator, "__call__", no_estimation)
    gray = (np.random.default_rng(1).random((40, 52)) * 254 + 1).astype(np.uint8)
    gray_as_rgb = np.repeat(gray[..., None], 3, axis=-1)
    jpeg_noise = gray_as_rgb.copy()
    jpeg_noise[::7, ::5, 2] = np.clip(jpeg_noise[::7, ::5, 2].astype(int) + 1, 1, 255)  # chroma noise, < 1 level
    images = [gray, Image.fromarray(gray), Image.fromarray(gray_as_rgb), jpeg_noise,
              (depth_map * 1000).astype(np.uint16), depth_map]
    out = DeepSightImageProcessor(size=32, depth_estimator=estimator_dirs["glpn"])(images)
    assert out["depth_source"] == ["gray8", "gray8", "gray8", "gray8", "mm", "metres"]
    # a photo whose encoding is declared is read as declared (its luma), not estimated
    declared = DeepSightImageProcessor(size=32, depth_estimator=estimator_dirs["glpn"])(photo, depth_encoding="gray8")
    assert declared["depth_source"] == ["gray8"]


def test_saved_and_reloaded_processor_keeps_its_estimator_and_not_the_loaded_model(estimator_dirs, photo, tmp_path):
    processor = DeepSightImageProcessor(size=32, depth_estimator=estimator_dirs["depth-anything"])
    first = processor(photo)  # the estimator is loaded now; saving must not try to write it
    processor.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "preprocessor_config.json").read_text())
    assert saved["depth_estimator"] == estimator_dirs["depth-anything"]
    assert not [key for key in saved if key.startswith("_")]
    reloaded = AutoImageProcessor.from_pretrained(tmp_path)
    assert type(reloaded) is DeepSightImageProcessor
    assert reloaded.depth_estimator == estimator_dirs["depth-anything"]
    torch.testing.assert_close(reloaded(photo)["pixel_values"], first["pixel_values"])
    assert copy.deepcopy(processor)._depth_estimators == {}  # a copy loads its own


def test_short_names_resolve_and_a_bad_estimator_name_is_a_value_error():
    assert DeepSightImageProcessor(depth_estimator="glpn").depth_estimator == "vinvino02/glpn-nyu"
    assert KNOWN_DEPTH_ESTIMATORS["depth-anything"] == DEFAULT_DEPTH_ESTIMATOR
    assert {"glpn", "dpt", "zoedepth", "depth-pro", "depth-anything"} <= KNOWN_DEPTH_ESTIMATORS.keys()
    assert DeepSightImageProcessor().depth_estimator is None
    with pytest.raises(ValueError, match="depth_estimator"):
        DeepSightImageProcessor(depth_estimator=3)
    with pytest.raises(ValueError, match="no `depth_estimator`"):
        DeepSightImageProcessor().get_depth_estimator()


def test_the_dataset_builders_estimator_predicts_what_the_processors_does(estimator_dirs, photo):
    image = Image.fromarray(photo)
    processor = DeepSightImageProcessor(size=32, depth_estimator=estimator_dirs["glpn"])
    builder = DepthEstimator(estimator_dirs["glpn"], device="cpu", batch_size=2)
    np.testing.assert_array_equal(builder.predict([image])[0], processor(photo)["estimated_depth"][0])


def test_the_processor_hands_model_ready_inputs_for_a_photo(estimator_dirs, photo, tiny_deepsight):
    model, tiny_processor = tiny_deepsight
    processor = build_processor(tiny_processor.tokenizer, model.config, depth_estimator=estimator_dirs["glpn"])
    text = "<|user|>\n<image>\nHow far is the chair?"
    inputs = processor(images=photo, text=text, return_tensors="pt")
    assert not inputs.keys() & {"depth_source", "estimated_depth", "depth_encoding"}
    metres = processor.image_processor(photo)["estimated_depth"][0]
    by_metres = processor(images=metres, text=text, return_tensors="pt")
    torch.testing.assert_close(inputs["pixel_values"], by_metres["pixel_values"])
    with torch.no_grad():
        assert model(**inputs).logits.shape[0] == 1


def test_the_pipeline_hands_a_photo_to_the_processor_untouched(estimator_dirs, photo, tiny_deepsight, tmp_path):
    model, tiny_processor = tiny_deepsight
    processor = build_processor(tiny_processor.tokenizer, model.config, depth_estimator=estimator_dirs["glpn"])
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    assert (tmp_path / "depth_estimation_deepsight.py").is_file()  # travels with trust_remote_code
    pipe = pipeline(model=str(tmp_path), trust_remote_code=True)
    text = "<|user|>\n<image>\nHow far is the chair?"
    metres = processor.image_processor(photo)["estimated_depth"][0]
    from_photo = pipe(images=photo, text=text, max_new_tokens=3, do_sample=False)
    from_metres = pipe(images=metres, text=text, max_new_tokens=3, do_sample=False)
    assert from_photo == from_metres


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    gray=st.integers(0, 255), height=st.integers(1, 6), width=st.integers(1, 6),
    channel=st.integers(0, 2), shift=st.integers(40, 200),
)
def test_gray_stored_as_rgb_is_no_photo_and_distinct_channels_are(gray, height, width, channel, shift):
    rgb = np.full((height, width, 3), gray, dtype=np.uint8)
    assert not is_colour_photo(rgb) and not is_colour_photo(Image.fromarray(rgb))
    rgb[..., channel] = (gray + shift) % 256
    assert is_colour_photo(rgb) and is_colour_photo(Image.fromarray(rgb))
    assert not is_colour_photo(rgb[..., 0]) and not is_colour_photo(rgb.astype(np.float32))
