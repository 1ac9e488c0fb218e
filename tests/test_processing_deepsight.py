"""DeepSightProcessor: image-token expansion, boxes (argument and in-prompt tags), chat template, TRL collator."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AutoProcessor, PreTrainedTokenizerFast

from deepsight.tiny import build_tiny_dual_encoder
from modeling_deepsight import DeepSightProcessor, extract_box_tags, format_box_tag


def test_each_image_placeholder_expands_to_image_seq_length_tokens(tiny_deepsight, depth_maps):
    model, processor = tiny_deepsight
    inputs = processor(
        images=depth_maps[:2], text=["<image>\nHow far?", "Compare <image>\nwith nothing."], padding=True,
        return_tensors="pt",
    )
    assert set(inputs) == {"input_ids", "attention_mask", "pixel_values", "bbox_mask"}
    image_token_id = model.config.image_token_id
    assert processor.image_token_id == image_token_id
    assert (inputs["input_ids"] == image_token_id).sum(dim=1).tolist() == [16, 16] == [processor.image_seq_length] * 2
    assert inputs["pixel_values"].shape == inputs["bbox_mask"].shape == (2, 1, 32, 32)


def test_box_tags_in_the_prompt_give_the_same_inputs_as_the_boxes_argument(tiny_deepsight, depth_maps):
    _, processor = tiny_deepsight
    box = [4, 6, 30, 40]
    tagged = processor(
        images=depth_maps[:2], text=[f"<image>{format_box_tag(box)}\nHow far is it?", "<image>\nRoom?"],
        padding=True, return_tensors="pt",
    )
    explicit = processor(
        images=depth_maps[:2], text=["<image>\nHow far is it?", "<image>\nRoom?"], boxes=[[box], []],
        padding=True, return_tensors="pt",
    )
    for key in explicit:
        assert torch.equal(tagged[key], explicit[key]), key
    assert 0 < tagged["bbox_mask"][0].mean() < 1 and tagged["bbox_mask"][1].min() == 1


def test_box_tags_combine_with_the_boxes_argument_per_image(tiny_deepsight, depth_maps):
    _, processor = tiny_deepsight
    both = processor(images=[depth_maps[0]], text=["<image><box>[0, 0, 10, 10]</box> Q"], boxes=[[[40, 30, 60, 45]]],
                     return_tensors="pt")
    union = processor(images=[depth_maps[0]], text=["<image> Q"], boxes=[[[0, 0, 10, 10], [40, 30, 60, 45]]],
                      return_tensors="pt")
    assert torch.equal(both["bbox_mask"], union["bbox_mask"])


def test_extract_box_tags_assigns_each_tag_to_the_preceding_image():
    text, boxes = extract_box_tags(
        "A <image><box>[1, 2, 3, 4]</box> and <image> then <box>[ 5,6 ,7.5, 8 ]</box><box>[0,0,1,1]</box>.", "<image>"
    )
    assert text == "A <image> and <image> then ."
    assert boxes == [[[1.0, 2.0, 3.0, 4.0]], [[5.0, 6.0, 7.5, 8.0], [0.0, 0.0, 1.0, 1.0]]]


@pytest.mark.parametrize(
    "text, message",
    [
        ("<box>[1, 2, 3, 4]</box> <image>", "before any <image>"),
        ("<image><box>[1, 2, 3]</box>", "malformed box tag"),
    ],
)
def test_misplaced_or_malformed_box_tags_raise(text, message):
    with pytest.raises(ValueError, match=message):
        extract_box_tags(text, "<image>")


@pytest.mark.parametrize(
    "images, text, boxes, message",
    [
        (1, ["<image> <image> two placeholders"], None, r"2 <image> placeholder\(s\) but 1 image"),
        (2, ["<image> one placeholder"], None, r"1 <image> placeholder\(s\) but 2 image"),
        (0, ["<image> no image"], None, "no `images` were given"),
        (2, ["<image> a", "<image> b"], [[[0, 0, 5, 5]]], "1 box lists but 2 images"),
        (1, ["<image> a"], [[[0, 0, 5]]], "boxes"),
        (1, ["<image> a"], [[[10, 10, 5, 5]]], "inverted or empty"),
        (0, ["no image"], [[[0, 0, 5, 5]]], "without `images`"),
    ],
)
def test_bad_inputs_raise_value_errors_naming_the_input(tiny_deepsight, depth_maps, images, text, boxes, message):
    _, processor = tiny_deepsight
    with pytest.raises(ValueError, match=message):
        processor(images=depth_maps[:images] if images else None, text=text, boxes=boxes, return_tensors="pt")


def test_depth_encoding_is_passed_to_the_image_processor(tiny_deepsight, depth_maps):
    _, processor = tiny_deepsight
    millimetres = np.round(depth_maps[0] * 1000).astype(np.uint16)
    from_mm = processor(images=[millimetres], text=["<image> Q"], depth_encoding="mm", return_tensors="pt")
    from_metres = processor(images=[millimetres.astype(np.float32) / 1000], text=["<image> Q"], return_tensors="pt")
    torch.testing.assert_close(from_mm["pixel_values"], from_metres["pixel_values"])
    assert "depth_encoding" not in from_mm  # reported by the image processor, not a model input
    with pytest.raises(ValueError, match="depth_encoding"):
        processor(images=[millimetres], text=["<image> Q"], depth_encoding="feet", return_tensors="pt")


def test_chat_template_renders_trl_messages_and_tokenizes_with_images(tiny_deepsight, depth_maps):
    _, processor = tiny_deepsight
    messages = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "How far is the chair?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "B. 2 metres"}]},
    ]
    prompt = processor.apply_chat_template(messages[:1], add_generation_prompt=True)
    assert prompt.count("<image>") == 1 and prompt.endswith("<|assistant|>\n")
    with_image = [
        {"role": "user", "content": [{"type": "image", "image": depth_maps[0]}, {"type": "text", "text": "Far?"}]}
    ]
    inputs = processor.apply_chat_template(with_image, tokenize=True, return_dict=True, return_tensors="pt",
                                           add_generation_prompt=True)
    assert (inputs["input_ids"] == processor.image_token_id).sum() == processor.image_seq_length
    assert inputs["pixel_values"].shape == (1, 1, 32, 32) and "bbox_mask" in inputs


def test_trl_vision_collator_works_unchanged_and_reads_box_tags(tiny_deepsight, depth_maps):
    from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

    model, processor = tiny_deepsight
    examples = [
        {
            "images": [depth_maps[0]],
            "messages": [
                {"role": "user", "content": [{"type": "image"},
                                             {"type": "text", "text": "<box>[0, 0, 20, 20]</box>How far is it?"}]},
                {"role": "assistant", "content": [{"type": "text", "text": "About 2 metres."}]},
            ],
        },
        {
            "images": [depth_maps[1]],
            "messages": [
                {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Which room?"}]},
                {"role": "assistant", "content": [{"type": "text", "text": "A kitchen."}]},
            ],
        },
    ]
    batch = DataCollatorForVisionLanguageModeling(processor)(examples)
    assert {"input_ids", "attention_mask", "pixel_values", "bbox_mask", "labels"} <= set(batch)
    assert 0 < batch["bbox_mask"][0].mean() < 1 and batch["bbox_mask"][1].min() == 1
    assert not any("<box>" in text for text in processor.batch_decode(batch["input_ids"]))
    with torch.no_grad():
        loss = model(**batch).loss
    assert torch.isfinite(loss)


def test_processor_save_and_load_round_trip(tiny_deepsight, tiny_deepsight_dir, depth_maps):
    _, processor = tiny_deepsight
    reloaded = AutoProcessor.from_pretrained(tiny_deepsight_dir)
    assert isinstance(reloaded, DeepSightProcessor)
    assert reloaded.image_seq_length == processor.image_seq_length and reloaded.chat_template == processor.chat_template
    kwargs = dict(images=[depth_maps[0]], text=["<image><box>[1, 1, 9, 9]</box> Q"], return_tensors="pt")
    original, loaded = processor(**kwargs), reloaded(**kwargs)
    for key in original:
        assert torch.equal(original[key], loaded[key]), key


def test_processor_requires_the_image_token_to_be_a_single_token(tiny_deepsight):
    _, processor = tiny_deepsight
    plain_tokenizer = PreTrainedTokenizerFast(tokenizer_object=processor.tokenizer.backend_tokenizer)
    with pytest.raises(ValueError, match="image token"):
        DeepSightProcessor(image_processor=processor.image_processor, tokenizer=plain_tokenizer,
                           image_token="<no-such-token>")
    # the same tokenizer works with a placeholder it holds as one token
    assert DeepSightProcessor(image_processor=processor.image_processor, tokenizer=plain_tokenizer).image_token_id == (
        processor.image_token_id
    )


def test_caption_mode_pairs_captions_with_images_for_the_dual_encoder(tiny_tokenizer, depth_maps):
    _, processor = build_tiny_dual_encoder(tokenizer=tiny_tokenizer)
    inputs = processor(images=depth_maps[:2], text=["a chair", "a table"], boxes=[[[0, 0, 9, 9]], []], padding=True,
                       return_tensors="pt")
    assert inputs["input_ids"].shape[0] == inputs["pixel_values"].shape[0] == 2
    assert (inputs["input_ids"] != processor.image_token_id).all()
    with pytest.raises(ValueError, match="2 texts and 1 images"):
        processor(images=depth_maps[:1], text=["a", "b"], return_tensors="pt")


def test_assistant_masks_stay_aligned_when_prompts_carry_box_tags(tiny_deepsight, depth_maps):
    _, processor = tiny_deepsight
    answer = "About 2 metres."

    def conversation(question):
        return [
            {"role": "user", "content": [{"type": "image", "image": depth_maps[0]}, {"type": "text", "text": question}]},
            {"role": "assistant", "content": [{"type": "text", "text": answer}]},
        ]

    for question in ("<box>[0, 0, 20, 20]</box>How far is it?", "How far is it?"):
        out = processor.apply_chat_template(conversation(question), tokenize=True, return_dict=True,
                                            return_assistant_tokens_mask=True, return_tensors="pt")
        masked = out["input_ids"][0][out["assistant_masks"][0].bool()]
        assert processor.decode(masked) == answer + processor.tokenizer.eos_token
        assert "<box>" not in processor.decode(out["input_ids"][0])


def test_a_channel_first_colour_array_with_one_placeholder_gets_the_colour_hint_not_a_count_mismatch(tiny_deepsight):
    _, processor = tiny_deepsight
    photo = np.random.default_rng(0).integers(0, 256, (3, 32, 40), dtype=np.uint8)
    with pytest.raises(ValueError, match="channel-first colour image"):
        processor(images=photo, text="<image>\nHow far is the chair?", return_tensors="pt")


def test_a_batch_array_of_depth_maps_counts_one_image_per_map(tiny_deepsight):
    _, processor = tiny_deepsight
    maps = np.random.default_rng(0).uniform(0.5, 8.0, (2, 32, 40)).astype(np.float32)
    inputs = processor(images=maps, text=["<image> a", "<image> b"], padding=True, return_tensors="pt")
    assert inputs["pixel_values"].shape[0] == 2
