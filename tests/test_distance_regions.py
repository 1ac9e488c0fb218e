"""The per-option region layout of Distance Judgment: one depth-map copy per option, masked to that option's
box, in the training rows (`deepsight data instructions --distance-regions`) and in the evaluation harness
(`deepsight eval benchmark --distance-regions`)."""

from __future__ import annotations

import json

import datasets
import numpy as np
import pytest

from deepsight.prompts import answer_text, region_answer_text, region_choice_content
from deepsight.regions import layout_of_content, region_layout
from evaluation.runner import load_benchmark, question_from_row
from tests.fixtures.evaluation import make_benchmark_rows, write_benchmark_folder

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FAR_BOX, NEAR_BOX = [0, 0, 10, 10], [16, 8, 30, 20]


@pytest.fixture(scope="module")
def two_box_benchmark(tmp_path_factory):
    """The harness's test rows with every Distance Judgment question naming two boxes, one per option."""
    rows = make_benchmark_rows(8, seed=0, size=(24, 32))
    for row in rows:
        if row["task"] == "distance_judgment":
            row["boxes"] = [FAR_BOX, NEAR_BOX]
    return load_benchmark(str(write_benchmark_folder(tmp_path_factory.mktemp("bench"), rows)))


@pytest.fixture(scope="module")
def deepsight_folder(tmp_path_factory):
    from deepsight.tiny import build_tiny_deepsight

    model, processor = build_tiny_deepsight(seed=0)
    folder = tmp_path_factory.mktemp("deepsight")
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def test_region_content_puts_an_image_after_each_option_in_the_rendered_prompt():
    from modeling_deepsight.processing_deepsight import DEFAULT_CHAT_TEMPLATE
    from transformers.utils.chat_template_utils import render_jinja_template

    content = region_choice_content("Which is farther, the bed or the lamp?", ["bed", "lamp"])
    (rendered,), _ = render_jinja_template(
        conversations=[[{"role": "user", "content": content}]], chat_template=DEFAULT_CHAT_TEMPLATE, eos_token="</s>"
    )
    assert "Which is farther, the bed or the lamp?\nA. bed <image>\nB. lamp <image>\nAnswer with" in rendered
    assert rendered.count("<image>") == 2


def test_region_layout_masks_each_options_depth_copy_to_that_options_box_alone():
    depth = np.ones((24, 32), dtype=np.float32)
    layout = region_layout("Which is farther?", ["bed", "lamp"], [FAR_BOX, NEAR_BOX])
    assert layout.content == region_choice_content("Which is farther?", ["bed", "lamp"])
    assert layout.boxes == [[[float(v) for v in FAR_BOX]], [[float(v) for v in NEAR_BOX]]]
    assert all(image is depth for image in layout.images(depth)) and len(layout.images(depth)) == 2
    # without boxes (the Bbox Conv ablation) the layout stays, every copy unmasked
    assert region_layout("Which is farther?", ["bed", "lamp"], []).boxes == [[], []]
    with pytest.raises(ValueError, match="one image per box"):
        region_layout("Which is farther?", ["bed", "lamp"], [FAR_BOX])
    # a user turn written elsewhere (the demo's) gets the same boxes per image block
    assert layout_of_content(layout.content, [FAR_BOX, NEAR_BOX]) == layout
    with pytest.raises(ValueError, match="one image per box"):
        layout_of_content(layout.content, [FAR_BOX])


def test_only_distance_questions_with_one_box_per_option_get_the_region_layout(two_box_benchmark):
    rows = list(two_box_benchmark)
    plain = [question_from_row(row) for row in rows]
    regions = [question_from_row(row, distance_regions=True) for row in rows]
    assert all(q.region_content is None for q in plain)
    assert [q.region_content is not None for q in regions] == [row["task"] == "distance_judgment" for row in rows]
    one_box = dict(rows[2], boxes=[FAR_BOX])  # a distance row naming a single region: no per-option layout
    assert question_from_row(one_box, distance_regions=True).region_content is None


def test_unnamed_distance_asks_the_same_regions_and_answer_without_the_object_names(two_box_benchmark):
    from deepsight.prompts import UNNAMED_FARTHER_QUESTIONS, UNNAMED_REGIONS
    from evaluation.runner import RunSettings

    for row in two_box_benchmark:
        named = question_from_row(row, distance_regions=True)
        unnamed = question_from_row(row, distance_regions=True, unnamed_distance=True)
        if row["task"] != "distance_judgment":
            fields = ("prompt", "options", "answer_index", "boxes", "region_content")
            assert [getattr(unnamed, f) for f in fields] == [getattr(named, f) for f in fields]  # untouched
            continue
        assert unnamed.options == list(UNNAMED_REGIONS)
        assert (unnamed.answer_index, unnamed.boxes) == (named.answer_index, named.boxes)
        assert unnamed.prompt.split("\n")[0] in UNNAMED_FARTHER_QUESTIONS
        text = "".join(block.get("text") or "" for block in unnamed.region_content)
        assert not any(name in text or name in unnamed.prompt for name in row["options"])
        assert [block["type"] for block in unnamed.region_content].count("image") == 2
        assert question_from_row(row, distance_regions=True, unnamed_distance=True).prompt == unnamed.prompt
    with pytest.raises(ValueError, match="unnamed_distance"):
        RunSettings(protocol="likelihood", unnamed_distance=True).validate()


def test_deepsight_gets_one_depth_copy_per_option_masked_to_that_options_box(deepsight_folder, two_box_benchmark):
    from evaluation.adapters import VisionLanguageModel

    model = VisionLanguageModel.from_pretrained(str(deepsight_folder))
    question = question_from_row(two_box_benchmark[2], distance_regions=True)
    union = question_from_row(two_box_benchmark[2])
    assert model.prompt_text(question).count("<image>") == 2
    masks = model._encode([question])["bbox_mask"]
    assert masks.shape[0] == 2
    expected = [
        model.processor(images=[question.depth], text=["<image>"], boxes=[[box]], depth_encoding="metres",
                        return_tensors="pt")["bbox_mask"][0]
        for box in question.boxes
    ]
    for mask, alone in zip(masks, expected):
        assert 0 < mask.mean() < 1
        assert (mask == alone).all()
    union_mask = model._encode([union])["bbox_mask"]
    assert union_mask.shape[0] == 1 and (union_mask[0] == (masks[0] + masks[1]).clamp(max=1)).all()


def test_a_baseline_sees_each_options_box_outlined_on_its_own_copy_or_one_plain_image_without_box_prompt(
    tmp_path, two_box_benchmark
):
    from deepsight.depth_rendering import metres_to_rgb
    from evaluation.adapters import VisionLanguageModel
    from tests.fixtures.evaluation import ImageRecordingProcessor, box_border, outlined_pixels, save_tiny_llava

    save_tiny_llava(tmp_path / "llava")
    question = question_from_row(two_box_benchmark[2], distance_regions=True)
    union = question_from_row(two_box_benchmark[2])

    outlined = VisionLanguageModel.from_pretrained(str(tmp_path / "llava"))  # box_prompt="outline"
    outlined.processor = recorder = ImageRecordingProcessor(outlined.processor)
    outlined._encode([question])
    assert outlined.prompt_text(question).count("<image>") == 2
    (shown,) = recorder.calls
    assert len(shown) == 2
    for image, box in zip(shown, question.boxes):
        np.testing.assert_array_equal(outlined_pixels(image), box_border(image.shape[:2], box))
        untouched = ~outlined_pixels(image)
        np.testing.assert_array_equal(image[untouched], np.asarray(metres_to_rgb(question.depth))[untouched])

    blind = VisionLanguageModel.from_pretrained(str(tmp_path / "llava"), box_prompt="none")
    assert blind.prompt_text(question) == blind.prompt_text(union)  # no boxes seen: the one-image prompt
    blind.processor = recorder = ImageRecordingProcessor(blind.processor)
    blind._encode([question])
    (shown,) = recorder.calls
    assert len(shown) == 1 and not outlined_pixels(shown[0]).any()
    with pytest.raises(ValueError, match="box_prompt"):
        VisionLanguageModel.from_pretrained(str(tmp_path / "llava"), box_prompt="red")


def test_region_questions_score_the_same_alone_as_in_a_mixed_batch_and_differ_from_the_union_layout(
    deepsight_folder, two_box_benchmark
):
    from evaluation.adapters import VisionLanguageModel

    model = VisionLanguageModel.from_pretrained(str(deepsight_folder))
    questions = [question_from_row(row, distance_regions=True) for row in two_box_benchmark]
    continuations = [[answer_text(q.options, i) for i in range(len(q.options))] for q in questions]
    batched = model.score_options(questions, continuations)
    for question, texts, scores in zip(questions, continuations, batched):
        alone = model.score_options([question], [texts])[0]
        np.testing.assert_allclose(scores.logprobs, alone.logprobs, atol=1e-4)
    union = question_from_row(two_box_benchmark[2])
    assert not np.allclose(model.score_options([union], [continuations[2]])[0].logprobs, batched[2].logprobs)
    assert len(model.generate(questions[:4], max_new_tokens=3)) == 4


def test_likelihood_scores_region_questions_by_the_regions_letter_as_the_rows_train_it(deepsight_folder, two_box_benchmark):
    from evaluation.adapters import VisionLanguageModel
    from evaluation.runner import answer_by_likelihood

    model = VisionLanguageModel.from_pretrained(str(deepsight_folder))
    questions = [question_from_row(row, distance_regions=True) for row in two_box_benchmark]
    records = answer_by_likelihood(model, questions, "sum")
    assert any(q.region_content is not None for q in questions)
    for question, record in zip(questions, records):
        answer = region_answer_text if question.region_content is not None else answer_text
        expected = [answer(question.options, i) for i in range(len(question.options))]
        np.testing.assert_allclose(record["option_logprobs"], model.score_options([question], [expected])[0].logprobs,
                                   atol=1e-4)
        assert record["output"] == expected[record["prediction"]]


def test_cli_runs_the_region_layout_and_refuses_to_resume_it_without_the_flag(tmp_path, deepsight_folder, two_box_benchmark):
    from evaluation.cli import main

    folder = write_benchmark_folder(tmp_path / "bench", list(two_box_benchmark))
    output = tmp_path / "out"
    argv = ["benchmark", "--model", str(deepsight_folder), "--benchmark", str(folder), "--output", str(output),
            "--protocol", "likelihood", "--batch-size", "3", "--distance-regions"]
    assert main(argv) == 0
    results = json.loads((output / "results.json").read_text())
    assert results["n"] == 8 and results["tasks"]["distance_judgment"]["n"] == 2
    with pytest.raises(ValueError):
        main(argv[:-1])  # the same folder without --distance-regions: another run's settings


def test_region_instruction_rows_have_one_image_and_one_box_per_option_and_train_on_the_answer_only(tmp_path):
    from dataset_scripts.builders.instructions.builder import main
    from deepsight.tiny import build_tiny_deepsight
    from evaluation.priors import option_statistics
    from train.rows import IGNORE_INDEX, estimated_lengths, vision_collator

    args = ["--num-scenes", "8", "--seed", "4", "--width", "96", "--height", "72", "--mc-per-scene", "2",
            "--no-progress", "--rows-per-scene", "1"]
    assert main(args + ["--output", str(tmp_path / "union")]) == 0
    assert main(args + ["--output", str(tmp_path / "regions"), "--distance-regions"]) == 0
    union, regions = (
        {row["id"]: row for row in datasets.load_dataset(str(tmp_path / name), split="train")}
        for name in ("union", "regions")
    )
    assert union.keys() == regions.keys()
    changed = {row_id for row_id in union if union[row_id]["messages"] != regions[row_id]["messages"]}
    assert changed == {row_id for row_id in union if "-mc-distance_judgment" in row_id} and changed
    # the blind option prior reads the options of either layout alike
    assert option_statistics(union.values()) == option_statistics(regions.values())

    _, processor = build_tiny_deepsight(seed=0)
    collator = vision_collator(processor)  # TRL's: the rows as stored, their regions read from the box tags
    for row_id in changed:
        row, before = regions[row_id], union[row_id]
        assert len(row["images"]) == 2 and [len(boxes) for boxes in row["boxes"]] == [1, 1]
        assert sorted(map(tuple, before["boxes"][0])) == sorted(tuple(boxes[0]) for boxes in row["boxes"])
        # the same answer, by the region's letter alone ('B' for 'B. lamp')
        answer = before["messages"][1]["content"][0]["text"]
        assert row["messages"][1]["content"][0]["text"] == answer.split(".")[0] and answer.startswith(
            row["messages"][1]["content"][0]["text"] + ". ")
        batch = collator([row])
        assert batch["bbox_mask"].shape[0] == 2
        labelled = batch["input_ids"][0][batch["labels"][0] != IGNORE_INDEX]
        assert processor.tokenizer.decode(labelled, skip_special_tokens=True).strip() == (
            row["messages"][1]["content"][0]["text"]
        )
        assert 0 < float(batch["bbox_mask"][0].mean()) < 1 and 0 < float(batch["bbox_mask"][1].mean()) < 1
        assert estimated_lengths(processor, [row]) == [batch["input_ids"].shape[1]]


def test_unnamed_distance_twins_name_no_object_and_keep_the_answer_and_boxes():
    from dataset_scripts.builders.instructions.offline import UNNAMED_REGIONS, OfflineInstructionGenerator
    from dataset_scripts.synthetic.world import generate_scenes

    with pytest.raises(ValueError, match="unnamed_distance"):
        OfflineInstructionGenerator(seed=1, unnamed_distance=True)
    generator = OfflineInstructionGenerator(seed=1, distance_regions=True, unnamed_distance=True)
    twins = 0
    for scene in generate_scenes(6, 2, split="train", width=96, height=72, noise=False):
        rows = {row["id"]: row for row in generator.multiple_choice(scene, per_skill=2)}
        for row_id, row in rows.items():
            if not row_id.endswith("-unnamed"):
                continue
            named = rows[row_id.removesuffix("-unnamed")]
            user_text = "".join(block.get("text", "") for block in row["messages"][0]["content"])
            named_options = [line.split(". ", 1)[1].strip() for line in
                             "".join(b.get("text", "") + "\n" for b in named["messages"][0]["content"]).splitlines()
                             if line[:2] in ("A.", "B.")]
            assert not any(name in user_text for name in named_options)
            assert all(region in user_text for region in UNNAMED_REGIONS)
            assert row["boxes"] == named["boxes"]
            assert row["messages"][1] == named["messages"][1]  # the same region's letter
            twins += 1
    assert twins > 0



def test_unnamed_distance_rows_of_their_own_compare_other_pairs_and_answer_with_the_farther_region():
    from dataset_scripts.builders.instructions.offline import UNNAMED_REGIONS, OfflineInstructionGenerator, scene_facts
    from dataset_scripts.synthetic.world import generate_scenes

    with pytest.raises(ValueError, match="unnamed_distance"):
        OfflineInstructionGenerator(seed=1, distance_regions=True, unnamed_distance="both")
    twin = OfflineInstructionGenerator(seed=1, distance_regions=True, unnamed_distance=True)
    own = OfflineInstructionGenerator(seed=1, distance_regions=True, unnamed_distance="own")
    assert own.fingerprint()["unnamed_distance"] == "own" and twin.fingerprint()["unnamed_distance"] is True
    other_pairs = checked = 0
    for scene in generate_scenes(8, 2, split="train", width=96, height=72, noise=False):
        depth_of_box = {tuple(o.box): o.depth for o in scene_facts(scene).unique}
        rows = {row["id"]: row for row in own.multiple_choice(scene, skills=("distance_judgment",), per_skill=3)}
        twin_rows = {row["id"]: row for row in twin.multiple_choice(scene, skills=("distance_judgment",), per_skill=3)}
        assert sorted(rows) == sorted(twin_rows)  # as many rows, the same ids
        for row_id, row in rows.items():
            assert row_id.endswith("-unnamed") or row == twin_rows[row_id]  # the named rows are untouched
            if not row_id.endswith("-unnamed"):
                continue
            user_text = "".join(block.get("text") or "" for block in row["messages"][0]["content"])
            assert all(region in user_text for region in UNNAMED_REGIONS)
            boxes = [tuple(box[0]) for box in row["boxes"]]
            answer = "AB".index(row["messages"][1]["content"][0]["text"])
            assert depth_of_box[boxes[answer]] > depth_of_box[boxes[1 - answer]]  # the farther region's letter
            checked += 1
            other_pairs += sorted(boxes) != sorted(tuple(b[0]) for b in rows[row_id.removesuffix("-unnamed")]["boxes"])
    assert checked > 0 and other_pairs > 0

def _named_distance_rows(generator, scenes):
    rows = [row for scene in scenes for row in generator.multiple_choice(scene, skills=("distance_judgment",), per_skill=3)]
    named = [row for row in rows if not row["id"].endswith("-unnamed")]
    return named, len(rows) - len(named)


def _far_and_near(row):
    text = "".join((block.get("text") or "") + "\n" for block in row["messages"][0]["content"])
    options = [line.split(". ", 1)[1].strip() for line in text.splitlines() if line[:2] in ("A.", "B.")]
    letter = row["messages"][1]["content"][0]["text"][0]
    index = "AB".index(letter)
    return options[index], options[1 - index]


def test_balanced_distance_names_point_to_the_answer_half_the_time_and_every_unnamed_twin_stays():
    from dataset_scripts.builders.instructions.offline import OfflineInstructionGenerator, farther_name_prior
    from dataset_scripts.synthetic.world import generate_scenes

    scenes = list(generate_scenes(80, 5, split="train", width=96, height=72, noise=False))
    prior = farther_name_prior(scenes)
    assert prior.right_share > 0.6  # the renderer's rooms do give names a prior (windows stand at the walls)
    with pytest.raises(ValueError, match="farther_prior"):
        OfflineInstructionGenerator(seed=1, balanced_skills=("distance_judgment",))

    def share_pointing_right(named):
        told = [prior.points_to(*_far_and_near(row)) for row in named]
        told = [t for t in told if t is not None]
        return sum(told) / len(told)

    uniform = OfflineInstructionGenerator(seed=1, distance_regions=True, unnamed_distance=True)
    balanced = OfflineInstructionGenerator(seed=1, distance_regions=True, unnamed_distance=True,
                                           balanced_skills=("distance_judgment",), farther_prior=prior)
    uniform_named, uniform_twins = _named_distance_rows(uniform, scenes)
    balanced_named, balanced_twins = _named_distance_rows(balanced, scenes)
    assert share_pointing_right(uniform_named) > 0.6
    assert abs(share_pointing_right(balanced_named) - 0.5) < 0.1
    assert len(balanced_named) < len(uniform_named)
    assert balanced_twins == uniform_twins  # only named rows are thinned: the depth-only rows all stay
    assert {row["id"] for row in balanced_named} <= {row["id"] for row in uniform_named}
