"""Region protocols: how a model without a mask channel is shown a question's boxes (docs/CONTRACTS.md, "Region
protocols"), rendered by `deepsight.depth_rendering` for training and evaluation alike."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deepsight import cli
from deepsight.depth_rendering import (
    CROP_MARGIN,
    REGION_PROTOCOLS,
    boxes_in_text,
    crop_to_boxes,
    crop_window,
    format_box_text,
    metres_to_rgb,
    region_prompt,
    rgb_model_image,
)
from deepsight.prompts import format_multiple_choice
from deepsight.tiny import build_tiny_llava
from evaluation.adapters import VisionLanguageModel
from evaluation.runner import load_benchmark, question_from_row
from modeling_deepsight import load_depth
from tests.fixtures.evaluation import (
    ImageRecordingProcessor,
    box_border,
    make_benchmark_rows,
    outlined_pixels,
    save_tiny_llava,
    write_benchmark_folder,
)
from tests.fixtures.smoke_data import make_instruction_rows, save_smoke_dataset
from train.rows import ConversationRows
from train.sft import main as sft_main

pytestmark = pytest.mark.usefixtures("one_torch_thread")

REPO = Path(__file__).resolve().parents[1]
HEIGHT, WIDTH = 48, 64
BOX = [10.0, 12.0, 30.0, 36.0]


def depth_map() -> np.ndarray:
    """Metres rising left to right and top to bottom, so every pixel's level differs from its neighbours'."""
    rows, columns = np.mgrid[0:HEIGHT, 0:WIDTH]
    return (1.0 + 0.05 * columns + 0.01 * rows).astype(np.float32)


def plain() -> np.ndarray:
    return np.asarray(metres_to_rgb(depth_map()))


def numbers(text: str) -> list[int]:
    return [int(value) for value in re.findall(r"-?\d+", text)]


boxes_strategy = st.tuples(
    st.floats(0, WIDTH - 2), st.floats(0, HEIGHT - 2), st.floats(1, WIDTH), st.floats(1, HEIGHT)
).filter(lambda b: b[2] > b[0] + 1 and b[3] > b[1] + 1).map(list)


# -- images --------------------------------------------------------------------------------------------

def test_outline_draws_the_box_border_and_leaves_every_other_pixel_as_rendered():
    image, text = region_prompt(depth_map(), [BOX], "Q?", "outline")
    shown = np.asarray(image)
    border = box_border((HEIGHT, WIDTH), BOX, width=max(1, round(0.02 * WIDTH)))
    np.testing.assert_array_equal(outlined_pixels(shown), border)
    np.testing.assert_array_equal(shown[~border], plain()[~border])
    assert text == "Q?"


@settings(max_examples=40, deadline=None, derandomize=True)
@given(box=boxes_strategy)
def test_masked_blackens_everything_outside_the_box_and_keeps_every_pixel_it_touches(box):
    shown = np.asarray(region_prompt(depth_map(), [box], "Q?", "masked")[0])
    touched = np.zeros((HEIGHT, WIDTH), dtype=bool)
    touched[int(np.floor(box[1])):int(np.ceil(box[3])), int(np.floor(box[0])):int(np.ceil(box[2]))] = True
    assert (shown[~touched] == 0).all()
    np.testing.assert_array_equal(shown[touched], plain()[touched])


def test_masked_keeps_the_union_of_several_boxes():
    other = [40.0, 2.0, 60.0, 10.0]
    shown = np.asarray(rgb_model_image(depth_map(), "gray", [BOX, other], "masked"))
    assert (shown[12:36, 10:30] == plain()[12:36, 10:30]).all() and (shown[2:10, 40:60] == plain()[2:10, 40:60]).all()
    assert (shown[40:, :] == 0).all() and (shown[:, :10] == 0).all()


def test_crop_keeps_the_box_and_a_quarter_of_its_size_on_each_side():
    image, text = region_prompt(depth_map(), [BOX], "Q?", "crop")
    # box 20 x 24 px: 5 px of context left and right, 6 px above and below
    assert crop_window([BOX], WIDTH, HEIGHT) == (5, 6, 35, 42)
    np.testing.assert_array_equal(np.asarray(image), plain()[6:42, 5:35])
    assert text == "Q?" and CROP_MARGIN == 0.25


def test_crop_clips_its_margin_at_the_image_border():
    corner = [0.0, 0.0, 8.0, 8.0]
    assert crop_window([corner], WIDTH, HEIGHT) == (0, 0, 10, 10)
    assert crop_window([[56.0, 40.0, 64.0, 48.0]], WIDTH, HEIGHT) == (54, 38, 64, 48)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(box=boxes_strategy, scale=st.sampled_from([1, 2, 3]))
def test_crop_contains_the_box_and_scales_its_coordinates_with_the_resize(box, scale):
    image = metres_to_rgb(depth_map())
    x0, y0, x1, y1 = crop_window([box], WIDTH, HEIGHT)
    cropped, (inside,) = crop_to_boxes(image, [box])
    assert x0 <= box[0] and y0 <= box[1] and x1 >= min(box[2], WIDTH) and y1 >= min(box[3], HEIGHT)
    assert inside == pytest.approx([box[0] - x0, box[1] - y0, box[2] - x0, box[3] - y0])
    # a box pixel in the crop is the same pixel of the full image
    column, row = int(box[0]), int(box[1])
    assert (np.asarray(cropped)[row - y0, column - x0] == np.asarray(image)[row, column]).all()
    size = (cropped.width * scale, cropped.height * scale)
    resized, (scaled,) = crop_to_boxes(image, [box], size=size)
    assert resized.size == size
    assert scaled == pytest.approx([value * scale for value in inside])


@pytest.mark.parametrize("protocol", ["none", "text-pixels", "text-1000"])
def test_text_protocols_and_none_leave_the_image_as_rendered(protocol):
    np.testing.assert_array_equal(np.asarray(region_prompt(depth_map(), [BOX], "Q?", protocol)[0]), plain())


def test_no_boxes_leave_image_and_text_unchanged_under_every_protocol():
    for protocol in REGION_PROTOCOLS:
        image, text = region_prompt(depth_map(), [], "Q?\nA. x\nB. y", protocol)
        np.testing.assert_array_equal(np.asarray(image), plain())
        assert text == "Q?\nA. x\nB. y"


# -- text -----------------------------------------------------------------------------------------------

def test_text_pixels_rounds_halves_up_and_clips_to_the_image():
    assert format_box_text([10.5, 11.49, 70.2, 47.5], "text-pixels", WIDTH, HEIGHT) == "[11, 11, 64, 48]"
    assert format_box_text([-3.0, 2.5, 20.0, 30.0], "text-pixels", WIDTH, HEIGHT) == "[0, 3, 20, 30]"


def test_text_1000_normalises_each_axis_by_its_own_size_qwen_style():
    # 10/64*1000 = 156.25, 12/48*1000 = 250, 30/64*1000 = 468.75, 36/48*1000 = 750
    assert format_box_text(BOX, "text-1000", WIDTH, HEIGHT) == "(156,250),(469,750)"
    assert format_box_text([-5.0, 0.0, 80.0, 48.0], "text-1000", WIDTH, HEIGHT) == "(0,0),(1000,1000)"


@settings(max_examples=60, deadline=None, derandomize=True)
@given(box=boxes_strategy)
def test_the_numbers_in_the_text_are_the_box_under_each_convention(box):
    pixels = numbers(format_box_text(box, "text-pixels", WIDTH, HEIGHT))
    assert all(abs(p - min(max(v, 0), limit)) <= 0.5 for p, v, limit in zip(pixels, box, (WIDTH, HEIGHT) * 2))
    thousandths = numbers(format_box_text(box, "text-1000", WIDTH, HEIGHT))
    exact = [min(max(1000 * v / limit, 0), 1000) for v, limit in zip(box, (WIDTH, HEIGHT) * 2)]
    assert all(abs(t - e) <= 0.5 for t, e in zip(thousandths, exact))


def test_one_box_per_option_is_written_after_its_option():
    other = [40.0, 2.0, 60.0, 10.0]
    prompt = format_multiple_choice("Which is farther, the bed or the lamp?", ["bed", "lamp"])
    image, text = region_prompt(depth_map(), [BOX, other], prompt, "text-pixels")
    lines = text.split("\n")
    assert lines[0] == "Which is farther, the bed or the lamp?"
    assert lines[1] == "A. bed [10, 12, 30, 36]" and lines[2] == "B. lamp [40, 2, 60, 10]"
    assert lines[3:] == prompt.split("\n")[3:]


def test_a_box_that_is_not_an_options_is_written_after_the_question():
    prompt = format_multiple_choice("What is the object in the marked region?", ["bed", "lamp", "sofa", "desk"])
    text = boxes_in_text(prompt, [BOX], "text-1000", WIDTH, HEIGHT)
    assert text.split("\n")[:2] == ["What is the object in the marked region?", "Region: (156,250),(469,750)"]
    assert text.split("\n")[2:] == prompt.split("\n")[1:]


# -- invalid names ---------------------------------------------------------------------------------------

def test_an_unknown_protocol_name_is_a_value_error_naming_it(tmp_path):
    with pytest.raises(ValueError, match="'outlined'"):
        region_prompt(depth_map(), [BOX], "Q?", "outlined")
    with pytest.raises(ValueError, match="'text-100'"):
        rgb_model_image(depth_map(), "gray", [BOX], "text-100")
    with pytest.raises(ValueError, match="'outline'"):
        format_box_text(BOX, "outline", WIDTH, HEIGHT)
    save_tiny_llava(tmp_path / "llava")
    with pytest.raises(ValueError, match="region protocol.*'blur'"):
        VisionLanguageModel.from_pretrained(str(tmp_path / "llava"), box_prompt="blur")


# -- the harness ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def benchmark_and_llava(tmp_path_factory):
    folder = tmp_path_factory.mktemp("protocols")
    rows = make_benchmark_rows(8, seed=0, size=(24, 32))
    return write_benchmark_folder(folder / "bench", rows), save_tiny_llava(folder / "llava")


@pytest.mark.parametrize("flag", ["--region-protocol", "--box-prompt"])
def test_the_eval_flag_reaches_the_adapter_and_the_run_config(benchmark_and_llava, tmp_path, monkeypatch, flag):
    benchmark, llava = benchmark_and_llava
    prompts = []
    original = VisionLanguageModel.prompt_text

    def recording_prompt_text(self, question):
        prompts.append((self.box_prompt, question, original(self, question)))
        return prompts[-1][2]

    monkeypatch.setattr(VisionLanguageModel, "prompt_text", recording_prompt_text)
    output = tmp_path / "out"
    argv = ["eval", "benchmark", "--model", str(llava), "--benchmark", str(benchmark), "--output", str(output),
            "--protocol", "likelihood", "--limit", "4", flag, "text-1000"]
    assert cli.main(argv) == 0
    assert json.loads((output / "run_config.json").read_text())["box_prompt"] == "text-1000"
    boxed = [(protocol, q, text) for protocol, q, text in prompts if q.boxes]
    assert boxed and all(protocol == "text-1000" for protocol, _, _ in prompts)
    for _, question, text in boxed:
        height, width = question.depth.shape
        assert all(format_box_text(box, "text-1000", width, height) in text for box in question.boxes)


@pytest.mark.parametrize("protocol", ["masked", "crop"])
def test_the_adapter_shows_a_baseline_the_protocols_image(benchmark_and_llava, protocol):
    benchmark, llava = benchmark_and_llava
    question = next(q for q in map(question_from_row, load_benchmark(str(benchmark))) if q.boxes)
    model = VisionLanguageModel.from_pretrained(str(llava), box_prompt=protocol)
    model.processor = recorder = ImageRecordingProcessor(model.processor)
    model._encode([question])
    ((shown,),) = recorder.calls
    np.testing.assert_array_equal(shown, np.asarray(rgb_model_image(question.depth, "gray", question.boxes, protocol)))
    assert model.prompt_text(question).count("<image>") == 1


# -- training --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def llava_processor():
    return build_tiny_llava(seed=0)[1]


def test_training_writes_a_rows_boxes_into_its_question_under_a_text_protocol(llava_processor):
    row, _ = make_instruction_rows(2, seed=4)  # boxes on the first row
    converted = ConversationRows(llava_processor, box_prompt="text-pixels").convert(row)
    (image,) = converted["images"]
    question = next(
        block["text"] for turn in converted["messages"] if turn["role"] == "user"
        for block in turn["content"] if block["type"] == "text"
    )
    assert "<box>" not in question
    assert all(format_box_text(box, "text-pixels", *image.size) in question for box in row["boxes"][0])
    assert not outlined_pixels(np.asarray(image)).any()


def test_training_shows_the_same_masked_image_as_the_evaluation(llava_processor):
    row, _ = make_instruction_rows(2, seed=4)
    (image,) = ConversationRows(llava_processor, box_prompt="masked").convert(row)["images"]
    metres, _ = load_depth(row["images"][0])
    expected = rgb_model_image(metres, "gray", row["boxes"][0], "masked")
    np.testing.assert_array_equal(np.asarray(image), np.asarray(expected))


@pytest.mark.parametrize("protocol", ["text-1000", "crop"])
def test_a_baseline_trains_and_is_scored_under_a_protocol_as_the_ablation_does(tmp_path, protocol):
    """The quickstart ablation's path for one protocol: `train.sft --box_prompt P`, then `--region-protocol P`."""
    instructions = save_smoke_dataset(tmp_path / "instructions", "instructions", n_train=8, n_test=4)
    output = tmp_path / "llava"
    argv = ["--config", str(REPO / "train" / "recipes" / "baselines" / "cpu-tiny-llava.yaml"),
            "--dataset_name", str(instructions), "--output_dir", str(output), "--box_prompt", protocol,
            "--max_steps", "2", "--per_device_train_batch_size", "4", "--save_strategy", "no", "--report_to", "none",
            "--dataloader_num_workers", "0", "--dataloader_pin_memory", "false"]
    assert sft_main(argv) == 0
    benchmark = write_benchmark_folder(tmp_path / "bench", make_benchmark_rows(4, seed=0, size=(24, 32)))
    results = tmp_path / "eval"
    assert cli.main(["eval", "benchmark", "--model", str(output), "--benchmark", str(benchmark), "--output",
                     str(results), "--protocol", "likelihood", "--region-protocol", protocol]) == 0
    assert json.loads((results / "run_config.json").read_text())["box_prompt"] == protocol
    assert len((results / "predictions.jsonl").read_text().splitlines()) == 4
