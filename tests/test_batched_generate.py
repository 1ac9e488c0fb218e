"""Batched `generate` answers like one row at a time, with the processor as saved (left padding, as LLaVA-hf)."""

import copy

import pytest
import torch

from deepsight import model_cli
from deepsight.conversion import deepsight_from_llava, deepsight_processor_from_llava
from deepsight.tiny import build_tiny_deepsight, build_tiny_llava, synthetic_depth_map
from modeling_deepsight import DeepSightForConditionalGeneration, DeepSightProcessor

pytestmark = pytest.mark.usefixtures("one_torch_thread")

PROMPTS = [
    "<|user|>\n<image>\nHow far is the chair?<|assistant|>\n",
    "<|user|>\n<image>\nWhich is closer to the camera, the bed or the lamp next to the window?<|assistant|>\n",
]


@torch.no_grad()
def test_batched_greedy_generate_equals_each_row_alone_with_the_processor_as_saved(tiny_deepsight_dir):
    processor = DeepSightProcessor.from_pretrained(tiny_deepsight_dir)
    model = DeepSightForConditionalGeneration.from_pretrained(tiny_deepsight_dir).eval()
    # Two maps of different sizes, prompts of different lengths: the first row is padded.
    depths = [synthetic_depth_map(48, 64, seed=1), synthetic_depth_map(30, 40, seed=2)]
    boxes = [[[4, 6, 30, 40]], [[2, 2, 20, 25]]]
    settings = dict(max_new_tokens=8, do_sample=False, pad_token_id=processor.tokenizer.pad_token_id)

    batch = processor(images=depths, text=PROMPTS, boxes=boxes, padding=True, return_tensors="pt")
    assert (batch["attention_mask"][0] == 0).any()  # the test needs a padded row
    batched = model.generate(**batch, **settings)[:, batch["input_ids"].shape[1]:]

    for row, (depth, prompt, box) in enumerate(zip(depths, PROMPTS, boxes)):
        single = processor(images=[depth], text=[prompt], boxes=[box], return_tensors="pt")
        alone = model.generate(**single, **settings)[0, single["input_ids"].shape[1]:]
        assert batched[row, : alone.shape[0]].tolist() == alone.tolist(), f"row {row}"


def test_the_deepsight_and_llava_builders_save_left_padding_and_leave_the_given_tokenizer_alone(
    tiny_tokenizer, tmp_path
):
    tokenizer = copy.deepcopy(tiny_tokenizer)  # the session's tokenizer stays untouched whatever happens
    for name, (_, processor) in {
        "deepsight": build_tiny_deepsight(tokenizer=tokenizer),
        "llava": build_tiny_llava(tokenizer=tokenizer),
    }.items():
        processor.save_pretrained(tmp_path / name)
        assert type(processor).from_pretrained(tmp_path / name).tokenizer.padding_side == "left", name
    # A text encoder built on the same tokenizer (the quickstart's stage-0 start) pools right-padded captions.
    assert tokenizer.padding_side == "right"


def test_llava_conversion_saves_left_padding_whatever_the_llava_tokenizer_pads(tiny_tokenizer, tmp_path):
    llava, llava_processor = build_tiny_llava(tokenizer=tiny_tokenizer)
    llava_processor.tokenizer.padding_side = "right"
    llava.save_pretrained(tmp_path / "llava")
    llava_processor.save_pretrained(tmp_path / "llava")

    processor = deepsight_processor_from_llava(tmp_path / "llava", deepsight_from_llava(llava).config)
    processor.save_pretrained(tmp_path / "deepsight")
    assert DeepSightProcessor.from_pretrained(tmp_path / "deepsight").tokenizer.padding_side == "left"


def test_model_build_saves_a_left_padding_processor(tiny_clip_dir, tiny_llama_dir, tmp_path):
    argv = ["build", "--vision", str(tiny_clip_dir), "--text", str(tiny_llama_dir), "--output", str(tmp_path / "out")]
    assert model_cli.main(argv) == 0
    assert DeepSightProcessor.from_pretrained(tmp_path / "out").tokenizer.padding_side == "left"
