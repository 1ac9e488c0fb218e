"""Stage 1/2 batches (TRL's vision collator on our rows): loss only on assistant tokens, box tags as the Bbox mask,
depth rendering for baselines; stage-0 sampling."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from deepsight.depth_rendering import metres_to_rgb
from train.align import REGION_PROMPTS, PairsToConversation
from deepsight.box_tags import split_box_tags, tag_boxes
from train.rows import (
    IGNORE_INDEX,
    ConversationRows,
    depth_to_rgb,
    estimated_lengths,
    image_token_id,
    label_statistics,
    vision_collator,
)
from tests.fixtures.smoke_data import make_instruction_rows, make_pairs_rows


@pytest.fixture(scope="module")
def tiny_deepsight():
    from deepsight.tiny import build_tiny_deepsight

    return build_tiny_deepsight(seed=0)


@pytest.fixture(scope="module")
def tiny_llava():
    from deepsight.tiny import build_tiny_llava

    return build_tiny_llava(seed=0)


def collate(processor, rows: list[dict], max_length: int | None = None, **conversion) -> dict[str, torch.Tensor]:
    """What a stage's DataLoader gives the model: the rows converted (`ConversationRows`), then TRL's collator."""
    converted = [ConversationRows(processor, **conversion).convert(row) for row in rows]
    return vision_collator(processor, max_length=max_length)(converted)


def todays_encoding(processor, row: dict, images: list, boxes: list) -> tuple[torch.Tensor, torch.Tensor]:
    """input_ids and labels as the hand-written collator made them before stage 2 went through TRL's collator: the
    conversation rendered with the processor's template and encoded by `processor(text=...)` (BOS added), each
    answer located by re-encoding the conversation prefixes, its end-of-turn token included, image tokens masked."""
    messages, _ = split_box_tags(row["messages"])

    def encode(turns: list[dict], generation_prompt: bool) -> torch.Tensor:
        text = processor.apply_chat_template(turns, tokenize=False, add_generation_prompt=generation_prompt)
        n = text.count(processor.image_token)
        kwargs = {"boxes": boxes[:n]} if type(processor).__name__.startswith("DeepSight") and n else {}
        return processor(text=[text], images=images[:n] or None, return_tensors="pt", **kwargs)["input_ids"][0]

    input_ids = encode(messages, False)
    labels = torch.full_like(input_ids, IGNORE_INDEX)
    for index, turn in enumerate(messages):
        if turn["role"] == "assistant":
            start, through = len(encode(messages[:index], True)), len(encode(messages[: index + 1], False))
            eos = (input_ids[start:through] == processor.tokenizer.eos_token_id).nonzero()
            end = start + int(eos[-1]) + 1 if eos.numel() else through
            labels[start:end] = input_ids[start:end]
    labels[input_ids == image_token_id(processor)] = IGNORE_INDEX
    return input_ids, labels


def assistant_texts(row: dict) -> list[str]:
    return [
        block["text"] for turn in row["messages"] if turn["role"] == "assistant" for block in turn["content"]
    ]


def test_only_assistant_tokens_carry_labels_and_prompt_image_pad_are_ignored(tiny_deepsight):
    _, processor = tiny_deepsight
    rows = make_instruction_rows(2, seed=3)  # row 0 has two assistant turns, row 1 one (so it is padded)
    batch = collate(processor, rows)
    tokenizer = processor.tokenizer
    labels, input_ids, attention = batch["labels"], batch["input_ids"], batch["attention_mask"]

    assert (labels[input_ids == image_token_id(processor)] == IGNORE_INDEX).all()
    assert (labels[attention == 0] == IGNORE_INDEX).all()
    assert (attention == 0).any(), "the shorter conversation should have been padded"
    assert (attention[:, 0] == 1).all(), "training batches pad on the right, whatever side the processor saved"
    for i, row in enumerate(rows):
        trained = input_ids[i][labels[i] != IGNORE_INDEX]
        trained_text = tokenizer.decode(trained)
        # Exactly the assistant answers (with their end-of-turn token), in order, and nothing of the prompt.
        expected = "".join(assistant_texts(row))
        assert trained_text.replace(tokenizer.eos_token, "").replace(" ", "").replace(
            "\n", ""
        ) == expected.replace(" ", "")
        assert trained_text.count(tokenizer.eos_token) == len(assistant_texts(row))
        assert "What room" not in trained_text
        # Labels equal the input ids where they are set (the model shifts them itself).
        kept = labels[i] != IGNORE_INDEX
        assert torch.equal(labels[i][kept], input_ids[i][kept])

    stats = label_statistics(batch, image_token_id(processor))
    n_real = int(attention.sum())
    assert stats["masked_fraction"] == pytest.approx(
        int(((labels == IGNORE_INDEX) & (attention == 1)).sum()) / n_real
    )
    assert 0.0 < stats["masked_fraction"] < 1.0
    assert stats["image_token_fraction"] == pytest.approx(
        int((input_ids == image_token_id(processor)).sum()) / n_real
    )


def _two_image_row(row: dict) -> dict:
    """A two-turn conversation whose first question shows the depth twice, each copy masked to one box (its tag)."""
    first, second = [[0.0, 0.0, 20.0, 16.0]], [[30.0, 20.0, 60.0, 44.0]]
    content = [{"type": "text", "text": "Which is farther?\nA. the first"}, {"type": "image"},
               {"type": "text", "text": "\nB. the second"}, {"type": "image"}]
    messages = [{"role": "user", "content": content}, {"role": "assistant", "content": [{"type": "text", "text": "B"}]},
                {"role": "user", "content": [{"type": "text", "text": "And the nearer?"}]},
                {"role": "assistant", "content": [{"type": "text", "text": "A"}]}]
    boxes = [first, second]
    return {**row, "id": "two-images", "messages": tag_boxes(messages, boxes), "images": row["images"] * 2,
            "boxes": boxes}


@pytest.mark.parametrize("model", ["deepsight", "deepsight-mm", "llava-outline", "llava-none"])
def test_trl_collator_gives_the_inputs_and_labels_of_the_hand_written_collator(tiny_deepsight, tiny_llava, model):
    """The same input_ids, labels and images as before stage 2 went through TRL's collator, on the collator tests'
    rows (two-turn, one-turn, one image per option): the quickstart trains on identical batches."""
    processor = (tiny_deepsight if model.startswith("deepsight") else tiny_llava)[1]
    conversion = {"depth_encoding": "mm"} if model == "deepsight-mm" else {}
    if model == "llava-none":
        conversion["box_prompt"] = "none"
    rows = make_instruction_rows(6, seed=4)
    rows.append(_two_image_row(rows[0]))
    batch = collate(processor, rows, **conversion)
    for i, row in enumerate(rows):
        images = ConversationRows(processor, **conversion).convert(row)["images"]
        input_ids, labels = todays_encoding(processor, row, images, row["boxes"])
        length = int(batch["attention_mask"][i].sum())
        assert torch.equal(batch["input_ids"][i][:length], input_ids), row["id"]
        assert torch.equal(batch["labels"][i][:length], labels), row["id"]
        assert (batch["labels"][i][length:] == IGNORE_INDEX).all()
    assert (batch["labels"][-1] != IGNORE_INDEX).sum() == 2 * 2  # "B" and "A", each with its end-of-turn token


def test_stage_two_rows_reach_the_model_with_the_processors_pixels_and_masks(tiny_deepsight):
    _, processor = tiny_deepsight
    rows = make_instruction_rows(4, seed=4)
    rows.append(_two_image_row(rows[0]))
    batch = collate(processor, rows, depth_encoding="mm")
    images = [image for row in rows for image in row["images"]]
    reference = processor(images=images, boxes=[boxes for row in rows for boxes in row["boxes"]],
                          depth_encoding="mm", return_tensors="pt")
    assert torch.equal(batch["pixel_values"], reference["pixel_values"])
    assert torch.equal(batch["bbox_mask"], reference["bbox_mask"])


def test_box_tags_in_the_messages_become_the_bbox_mask(tiny_deepsight):
    _, processor = tiny_deepsight
    rows = make_instruction_rows(2, seed=1)  # row 0 has boxes, row 1 has [] (all ones)
    batch = vision_collator(processor)([{"messages": row["messages"], "images": row["images"]} for row in rows])
    assert batch["pixel_values"].shape[:2] == (2, 1)
    mask = batch["bbox_mask"]
    assert mask.shape == batch["pixel_values"].shape
    assert 0 < float(mask[0].mean()) < 1
    assert float(mask[1].min()) == 1.0


def test_baseline_collator_feeds_depth_as_three_channel_image(tiny_llava):
    _, processor = tiny_llava
    rows = make_instruction_rows(2, seed=2)
    assert ConversationRows(processor).image_mode == "gray"
    batch = collate(processor, rows)
    assert batch["pixel_values"].shape[1] == 3
    assert "bbox_mask" not in batch
    assert (batch["labels"][batch["input_ids"] == image_token_id(processor)] == IGNORE_INDEX).all()
    text = processor.tokenizer.decode(batch["input_ids"][0])
    assert "<box>" not in text  # an RGB model reads the regions from the outlines, never as tags


@pytest.mark.parametrize("box_prompt", ["outline", "none"])
def test_baseline_collator_outlines_each_images_boxes_unless_told_not_to(tiny_llava, box_prompt):
    from tests.fixtures.evaluation import box_border, outlined_pixels

    _, processor = tiny_llava
    boxed, whole = make_instruction_rows(2, seed=4)  # the first row has boxes, the second none (whole image)
    assert boxed["boxes"][0] and not whole["boxes"][0]
    conversion = ConversationRows(processor, box_prompt=box_prompt)
    for row in (boxed, whole):
        image = np.asarray(conversion.convert(row)["images"][0])  # what TRL's collator hands the processor
        expected = np.zeros(image.shape[:2], dtype=bool)
        if box_prompt == "outline":
            width = max(1, round(0.02 * max(image.shape[:2])))
            for box in row["boxes"][0]:
                expected |= box_border(image.shape[:2], box, width)
        np.testing.assert_array_equal(outlined_pixels(image), expected)
    with pytest.raises(ValueError, match="box_prompt"):
        ConversationRows(processor, box_prompt="red")


def test_outline_boxes_draws_only_the_box_borders_and_leaves_an_image_without_boxes_alone():
    from deepsight.depth_rendering import outline_boxes
    from tests.fixtures.evaluation import box_border, outlined_pixels

    image = metres_to_rgb(np.linspace(1, 5, 40 * 60, dtype=np.float32).reshape(40, 60))
    boxes = [[2, 3, 20, 15], [30.4, 10, 59.6, 40]]
    drawn = np.asarray(outline_boxes(image, boxes, width=2))
    expected = box_border((40, 60), boxes[0], 2) | box_border((40, 60), boxes[1], 2)
    np.testing.assert_array_equal(outlined_pixels(drawn), expected)
    np.testing.assert_array_equal(drawn[~expected], np.asarray(image)[~expected])
    assert not outlined_pixels(np.asarray(image)).any()  # the input is not drawn on
    assert outline_boxes(image, []) is image and outline_boxes(image, None) is image
    with pytest.raises(ValueError, match="x0, y0, x1, y1"):
        outline_boxes(image, [[1, 2, 3]])


def test_depth_to_rgb_makes_near_bright_and_invalid_black():
    depth = np.array([[1000, 2000], [3000, 0]], dtype=np.uint16)  # millimetres; 0 = invalid
    gray = np.asarray(depth_to_rgb(depth, "gray", depth_encoding="mm"))
    assert gray.shape == (2, 2, 3)
    assert (gray[..., 0] == gray[..., 1]).all() and (gray[..., 1] == gray[..., 2]).all()
    assert gray[0, 0, 0] == 255 and gray[1, 0, 0] == 1 and gray[1, 1, 0] == 0
    assert gray[0, 0, 0] > gray[0, 1, 0] > gray[1, 0, 0]
    colour = np.asarray(depth_to_rgb(depth, "colormap", depth_encoding="mm"))
    assert not (colour[..., 0] == colour[..., 2]).all()
    assert (colour[1, 1] == 0).all()
    with pytest.raises(ValueError, match="mode"):
        depth_to_rgb(depth, "rgb")


@pytest.mark.parametrize("mode", ["gray", "colormap"])
def test_a_baseline_is_trained_on_the_images_the_evaluation_shows_it(mode):
    """Training decodes the datasets' 16-bit millimetre PNGs; the evaluation harness renders the benchmark's metres
    with `metres_to_rgb`: the same pixels either way."""
    rng = np.random.default_rng(0)
    millimetres = rng.integers(400, 9000, size=(24, 32)).astype(np.uint16)
    millimetres[:3, :5] = 0  # invalid
    trained_on = np.asarray(depth_to_rgb(Image.fromarray(millimetres), mode, depth_encoding="mm"))
    evaluated_on = np.asarray(metres_to_rgb(millimetres.astype(np.float32) / 1000.0, mode))
    np.testing.assert_array_equal(trained_on, evaluated_on)
    assert len(np.unique(trained_on.reshape(-1, 3), axis=0)) > 100  # a real image, not a constant


def test_collator_refuses_max_length_that_cuts_image_tokens(tiny_deepsight):
    _, processor = tiny_deepsight
    rows = make_instruction_rows(1)
    with pytest.raises(ValueError, match="max_length"):
        collate(processor, rows, max_length=8)
    long_enough = collate(processor, rows, max_length=40)
    assert long_enough["input_ids"].shape[1] == 40


def build_tiny_llava_processor():
    from deepsight.tiny import build_tiny_llava

    return build_tiny_llava(seed=0)[1]


def test_collator_rejects_rows_whose_images_do_not_match_the_messages(tiny_deepsight):
    _, processor = tiny_deepsight
    row = make_instruction_rows(1)[0]
    with pytest.raises(ValueError, match="image placeholders"):
        collate(processor, [{**row, "images": row["images"] * 2}])
    with pytest.raises(ValueError, match="image blocks"):
        collate(build_tiny_llava_processor(), [{**row, "images": row["images"] * 2}])
    no_answer = {**row, "messages": row["messages"][:1]}
    with pytest.raises(ValueError, match="no assistant turn"):
        collate(processor, [no_answer], depth_encoding="mm")


def test_alignment_rows_train_on_the_caption_only(tiny_deepsight):
    _, processor = tiny_deepsight
    pairs = make_pairs_rows(3, seed=5)
    converter = PairsToConversation(seed=0)
    assert converter.prompt_for("x") == PairsToConversation(seed=0).prompt_for("x")  # stable across instances
    batch = collate(processor, pairs, row_to_conversation=converter)
    for i, row in enumerate(pairs):
        trained = processor.tokenizer.decode(batch["input_ids"][i][batch["labels"][i] != IGNORE_INDEX])
        assert trained.replace(processor.tokenizer.eos_token, "").strip() == row["caption"]
    assert float(batch["bbox_mask"].min()) == 1.0  # stage 1: all-ones mask, as at inference


def _pairs_row_with_a_near_object(row_id: str, predicted: bool = False) -> dict:
    """A 4 m wall with a 1.5 m object filling the left 40% of its box [16, 8, 36, 28] (the rest is wall)."""
    from PIL import Image

    depth = np.full((32, 48), 4.0, dtype=np.float32)
    depth[8:28, 16:24] = 1.5
    png = Image.fromarray((depth * 1000).astype(np.uint16))
    return {"id": row_id, "depth": png, "caption": "a depth image of an office.", "boxes": [[16.0, 8.0, 36.0, 28.0]],
            "labels": ["chair"], "depth_is_predicted": predicted}


def test_alignment_region_rows_mask_one_box_and_answer_its_label_and_surface_distance(tiny_deepsight):
    _, processor = tiny_deepsight
    converter = PairsToConversation(seed=0, region_ratio=1.0)
    rows = [_pairs_row_with_a_near_object("metric"), _pairs_row_with_a_near_object("estimated", predicted=True)]
    batch = collate(processor, rows, row_to_conversation=converter)
    answers = [
        processor.tokenizer.decode(batch["input_ids"][i][batch["labels"][i] != IGNORE_INDEX])
        .replace(processor.tokenizer.eos_token, "").strip()
        for i in range(2)
    ]
    # the object's surface (1.5 m), not the box's median, which the 4 m wall behind it fills
    assert answers == ["A chair, about 1.5 metres away.", "A chair."]  # no metres from an estimated depth
    assert all(0.0 < float(mask.mean()) < 1.0 for mask in batch["bbox_mask"])  # the box, not the whole map
    content = converter(rows[0])["messages"][0]["content"]
    assert content[1]["text"] == "<box>[16, 8, 36, 28]</box>"  # the region right after its image block
    assert content[2]["text"] in REGION_PROMPTS


def test_alignment_region_ratio_picks_a_stable_share_of_rows():
    row = _pairs_row_with_a_near_object("x")
    half = PairsToConversation(seed=0, region_ratio=0.5)
    chosen = [half.region_for({**row, "id": f"row-{i}"}) is not None for i in range(400)]
    assert 0.4 < np.mean(chosen) < 0.6
    assert chosen == [PairsToConversation(seed=0, region_ratio=0.5).region_for({**row, "id": f"row-{i}"}) is not None
                      for i in range(400)]  # the same rows in every process and run
    assert PairsToConversation(seed=0, region_ratio=0.0).region_for(row) is None
    assert PairsToConversation(seed=0, region_ratio=1.0).region_for({**row, "labels": []}) is None  # nothing to ask
    with pytest.raises(ValueError, match="region_ratio"):
        PairsToConversation(region_ratio=1.5)


def test_encoder_collator_replaces_a_sample_ratio_share_of_box_masks_by_ones():
    from deepsight.tiny import build_tiny_dual_encoder
    from train.encoder import DepthTextCollator

    _, processor = build_tiny_dual_encoder(seed=0)
    rows = make_pairs_rows(4, seed=0)
    never = DepthTextCollator(processor.image_processor, processor.tokenizer, sample_ratio=0.0)(rows)
    always = DepthTextCollator(processor.image_processor, processor.tokenizer, sample_ratio=1.0)(rows)
    assert all(float(m.mean()) < 1.0 for m in never["bbox_mask"])
    assert float(always["bbox_mask"].min()) == 1.0
    torch.manual_seed(0)
    half = DepthTextCollator(processor.image_processor, processor.tokenizer, sample_ratio=0.5)
    replaced = [boxes == [] for _ in range(50) for boxes in half.choose_boxes(rows)]
    assert 0.35 < np.mean(replaced) < 0.65
    with pytest.raises(ValueError, match="sample_ratio"):
        DepthTextCollator(processor.image_processor, processor.tokenizer, sample_ratio=1.5)


def test_estimated_length_is_the_encoded_length_without_decoding_images(tiny_deepsight):
    _, processor = tiny_deepsight
    rows = make_instruction_rows(6, seed=3)
    text_only = [{key: value for key, value in row.items() if key != "images"} for row in rows]
    assert estimated_lengths(processor, text_only) == collate(processor, rows)["attention_mask"].sum(1).tolist()


def test_length_column_orders_rows_for_length_grouped_batches(tiny_deepsight):
    import datasets

    from train.stage import add_length_column

    _, processor = tiny_deepsight
    rows = make_instruction_rows(5, seed=1)
    dataset = datasets.Dataset.from_list([{k: v for k, v in row.items() if k != "images"} for row in rows])
    with_lengths = add_length_column(dataset, processor, "length", batch_size=2)  # batches of 2, 2 and 1 rows
    assert with_lengths["length"] == estimated_lengths(processor, rows)
    assert len(set(with_lengths["length"])) > 1  # the rows differ, so grouping has something to sort
    assert add_length_column(with_lengths, processor, "length") is with_lengths  # an existing column is kept


def test_encoder_collator_turns_an_object_ratio_share_into_single_object_pairs_with_unique_labels():
    from deepsight.tiny import build_tiny_dual_encoder
    from train.encoder import DepthTextCollator

    _, processor = build_tiny_dual_encoder(seed=0)
    rows = make_pairs_rows(6, seed=2)
    collator = DepthTextCollator(
        processor.image_processor, processor.tokenizer, sample_ratio=0.0, object_ratio=1.0,
        object_prompt="a depth image of a {label}.",
    )
    torch.manual_seed(0)
    choices = collator.choose_objects(rows)
    picked = [choice for choice in choices if choice is not None]
    assert picked, "rows with labelled boxes must be turned into object pairs"
    labels = [label for _, label in picked]
    assert len(labels) == len(set(labels))  # no two object pairs share a text
    for row, choice in zip(rows, choices):
        if choice is not None:  # the box is the one of that label in that row
            assert any(choice == (list(box), label) for box, label in zip(row["boxes"], row["labels"]))
    batch = collator(rows)
    texts_in_batch = []
    for i, row in enumerate(rows):
        ids = batch["input_ids"][i][batch["attention_mask"][i].bool()].tolist()
        object_texts = {processor.tokenizer(f"a depth image of a {label}.")["input_ids"] == ids: label
                        for label in row["labels"]}
        assert ids == processor.tokenizer(row["caption"])["input_ids"] or True in object_texts
        texts_in_batch.append(object_texts.get(True))
        assert float(batch["bbox_mask"][i].mean()) < 1.0  # a box mask, never the all-ones one (sample_ratio 0)
    object_labels = [label for label in texts_in_batch if label is not None]
    assert object_labels and len(object_labels) == len(set(object_labels))
    never = DepthTextCollator(processor.image_processor, processor.tokenizer, object_ratio=0.0)
    assert all(choice is None for choice in never.choose_objects(rows))
    with pytest.raises(ValueError, match="object_ratio"):
        DepthTextCollator(processor.image_processor, processor.tokenizer, object_ratio=-0.1)
