"""`transformers.pipeline` on a saved DeepSight folder: the model receives what the processor gives, in every depth
encoding and every way of handing the depth over; the stock pipeline refuses a depth map it has squashed to 8 bits."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import ImageTextToTextPipeline, pipeline
from transformers.generation.streamers import BaseStreamer
from transformers.pipelines import PIPELINE_REGISTRY

from deepsight.tiny import build_tiny_llava, synthetic_depth_map
from modeling_deepsight import PIPELINE_TASK, DeepSightPipeline, encode_depth, is_squashed_depth_image
from tests.fixtures.fresh_process import run_without_repo
from train.model_card import deepsight_model_card

PROMPT = "<image>\nHow far is the chair?"
BOX = [4, 4, 40, 30]
ENCODINGS = ("mm", "sun", "gray8", "npy")
WAYS = ("path", "pathlike", "pil", "array", "tensor", "chat_url", "chat_image")


def write_depth_file(folder: Path, encoding: str, metres: np.ndarray) -> Path:
    """`metres` stored as the depth files users have: 16-bit mm / SUN PNG, 8-bit gray PNG, .npy in metres."""
    if encoding == "npy":
        np.save(folder / "depth.npy", metres)
        return folder / "depth.npy"
    path = folder / f"depth_{encoding}.png"
    Image.fromarray(encode_depth(metres, encoding)).save(path)
    return path


def opened(path: Path):
    """The file as a user opens it: PIL for PNGs (I;16 or L), the float array (PIL mode F) for .npy."""
    if path.suffix == ".npy":
        return Image.fromarray(np.load(path), mode="F")
    return Image.open(path)


def depth_input(way: str, path: Path):
    """(images, text) for the pipeline call that hands `path` over `way`."""
    question = {"type": "text", "text": "How far is the chair?"}
    if way == "chat_url":
        return None, [{"role": "user", "content": [{"type": "image", "url": str(path)}, question]}]
    if way == "chat_image":
        return None, [{"role": "user", "content": [{"type": "image", "image": opened(path)}, question]}]
    image = {"path": str(path), "pathlike": path, "pil": opened(path)}.get(way)
    if image is None:
        array = np.load(path) if path.suffix == ".npy" else np.array(Image.open(path))
        image = torch.from_numpy(array) if way == "tensor" else array
    return image, PROMPT


class ModelInputs:
    """Records the keyword arguments of the model's first forward call (the prefill that sees the depth map)."""

    def __init__(self, model):
        self.seen = []
        self.handle = model.register_forward_pre_hook(self.record, with_kwargs=True)

    def record(self, module, args, kwargs):
        self.seen.append({key: value.detach().clone() for key, value in kwargs.items()
                          if key in ("input_ids", "pixel_values", "bbox_mask") and value is not None})

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.handle.remove()


def assert_same_inputs(seen: dict, expected) -> None:
    assert set(seen) == {"input_ids", "pixel_values", "bbox_mask"}
    assert torch.equal(seen["input_ids"], expected["input_ids"])
    for key in ("pixel_values", "bbox_mask"):
        torch.testing.assert_close(seen[key], expected[key], atol=1e-6, rtol=0)


@pytest.fixture(scope="module")
def depth_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("depth_files")
    metres = synthetic_depth_map(48, 64, seed=3)
    return {encoding: write_depth_file(folder, encoding, metres) for encoding in ENCODINGS}


@pytest.fixture(scope="module")
def pipe(tiny_deepsight_dir):
    """The pipeline transformers builds for the folder, as a Hub user calls it."""
    return pipeline("image-text-to-text", model=str(tiny_deepsight_dir), trust_remote_code=True)


def test_saved_folder_names_deepsight_pipeline_for_image_text_to_text_and_carries_its_file(tiny_deepsight_dir, pipe):
    config = json.loads((tiny_deepsight_dir / "config.json").read_text())
    assert config["custom_pipelines"] == {"image-text-to-text": {
        "impl": "pipeline_deepsight.DeepSightPipeline", "pt": ["AutoModelForImageTextToText"], "type": "multimodal"}}
    assert (tiny_deepsight_dir / "pipeline_deepsight.py").is_file()
    assert type(pipe).__name__ == "DeepSightPipeline" and type(pipe).__module__.endswith("pipeline_deepsight")
    # without a task: the one task of `custom_pipelines`
    assert type(pipeline(model=str(tiny_deepsight_dir), trust_remote_code=True)).__name__ == "DeepSightPipeline"


@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize("encoding", ENCODINGS)
def test_pipeline_feeds_the_model_what_the_processor_gives_for_each_encoding_and_input_way(
    pipe, depth_files, encoding, way
):
    path = depth_files[encoding]
    images, text = depth_input(way, path)
    with ModelInputs(pipe.model) as recorded:
        pipe(images=images, text=text, boxes=[[BOX]], max_new_tokens=1)
    prompt = text if isinstance(text, str) else pipe.processor.apply_chat_template(text, add_generation_prompt=True)
    expected = pipe.processor(images=str(path), text=prompt, boxes=[[BOX]], return_tensors="pt")
    assert_same_inputs(recorded.seen[0], expected)
    assert 0 < recorded.seen[0]["bbox_mask"].mean() < 1  # the box reached the Bbox Conv mask


def test_pipeline_greedy_text_equals_generate_on_the_processor_inputs(pipe, depth_files):
    inputs = pipe.processor(images=str(depth_files["mm"]), text=PROMPT, boxes=[[BOX]], return_tensors="pt")
    with torch.no_grad():
        generated = pipe.model.generate(**inputs, max_new_tokens=6, do_sample=False)
    new_tokens = generated[0, inputs["input_ids"].shape[1]:]

    tensors = pipe(images=str(depth_files["mm"]), text=PROMPT, boxes=[[BOX]], max_new_tokens=6, return_tensors=True)
    assert torch.equal(tensors[0]["generated_token_ids"], generated[0])
    texts = pipe(images=str(depth_files["mm"]), text=PROMPT, boxes=[[BOX]], max_new_tokens=6, return_full_text=False)
    new_text = pipe.processor.decode(new_tokens, skip_special_tokens=True)
    assert texts == [{"input_text": PROMPT, "generated_text": new_text}]
    full = pipe(images=str(depth_files["mm"]), text=PROMPT, boxes=[[BOX]], max_new_tokens=6)
    assert full[0]["generated_text"] == PROMPT + texts[0]["generated_text"]


def test_pipeline_boxes_of_a_batch_of_chats_go_to_each_chats_own_images(pipe, depth_files):
    chats = [depth_input("chat_url", depth_files["mm"])[1], depth_input("chat_url", depth_files["sun"])[1]]
    with ModelInputs(pipe.model) as recorded:
        outputs = pipe(text=chats, boxes=[[BOX], []], max_new_tokens=1)
    assert len(outputs) == 2 and all(output[0]["generated_text"][-1]["role"] == "assistant" for output in outputs)
    prompt = pipe.processor.apply_chat_template(chats[0], add_generation_prompt=True)
    for seen, path, boxes in zip(recorded.seen, (depth_files["mm"], depth_files["sun"]), ([BOX], [])):
        assert_same_inputs(seen, pipe.processor(images=str(path), text=prompt, boxes=[boxes], return_tensors="pt"))
    with pytest.raises(ValueError, match=r"`boxes` has 1 box lists but the 2 chats hold 2 images"):
        pipe(text=chats, boxes=[[BOX]], max_new_tokens=1)


def test_pipeline_reads_generators_lazily_with_per_input_boxes_like_the_stock_pipeline(pipe, depth_files):
    requests = ({"images": str(depth_files[encoding]), "text": PROMPT, "boxes": [[BOX]]} for encoding in ("mm", "npy"))
    with ModelInputs(pipe.model) as recorded:
        results = pipe(requests, max_new_tokens=1)
        assert not isinstance(results, list) and recorded.seen == []  # nothing ran before iterating
        results = list(results)
    assert len(results) == 2 and results[0][0]["input_text"] == PROMPT
    for seen, encoding in zip(recorded.seen, ("mm", "npy")):
        expected = pipe.processor(images=str(depth_files[encoding]), text=PROMPT, boxes=[[BOX]], return_tensors="pt")
        assert_same_inputs(seen, expected)


def test_pipeline_streams_tokens_through_generate_kwargs_like_the_stock_pipeline(pipe, depth_files):
    class Collect(BaseStreamer):
        def __init__(self):
            self.chunks = []

        def put(self, value):
            self.chunks.append(value.reshape(-1).tolist())

        def end(self):
            self.chunks.append("end")

    streamer = Collect()
    output = pipe(images=str(depth_files["mm"]), text=PROMPT, max_new_tokens=4, return_tensors=True,
                  generate_kwargs={"streamer": streamer})
    assert streamer.chunks[-1] == "end"
    streamed = [token for chunk in streamer.chunks[1:-1] for token in chunk]  # the first put is the prompt
    assert streamed == output[0]["generated_token_ids"][-len(streamed):].tolist() and len(streamed) == 4


@pytest.mark.parametrize("encoding", ["mm", "sun"])
def test_stock_pipeline_refuses_a_16_bit_depth_png_it_squashed_to_8_bits(tiny_deepsight_dir, depth_files, encoding):
    stock = pipeline("image-text-to-text", model=str(tiny_deepsight_dir), trust_remote_code=True,
                     pipeline_class=ImageTextToTextPipeline)
    assert type(stock) is ImageTextToTextPipeline
    with pytest.raises(ValueError, match=r"`images\[0\]` is an 8-bit RGB image .* DeepSight's pipeline") as error:
        stock(images=str(depth_files[encoding]), text=PROMPT, max_new_tokens=1)
    assert "trust_remote_code=True" in str(error.value) and "'url'" in str(error.value)


def test_stock_pipeline_still_reads_an_8_bit_gray_depth_image_saved_as_rgb(tiny_deepsight, depth_files, tmp_path):
    model, processor = tiny_deepsight
    Image.open(depth_files["gray8"]).convert("RGB").save(tmp_path / "gray_rgb.png")
    stock = ImageTextToTextPipeline(model=model, processor=processor)
    with ModelInputs(model) as recorded:
        stock(images=str(tmp_path / "gray_rgb.png"), text=PROMPT, max_new_tokens=1)
    expected = processor(images=str(depth_files["gray8"]), text=PROMPT, return_tensors="pt")
    assert_same_inputs(recorded.seen[0], expected)


def test_processor_refuses_squashed_depth_unless_its_encoding_is_declared(tiny_deepsight, depth_files):
    _, processor = tiny_deepsight
    squashed_l = Image.open(depth_files["mm"]).convert("L")
    squashed_rgb = Image.open(depth_files["sun"]).convert("RGB")
    assert is_squashed_depth_image(squashed_l) and is_squashed_depth_image(squashed_rgb)
    assert not is_squashed_depth_image(Image.open(depth_files["gray8"]).convert("RGB"))
    assert not is_squashed_depth_image(Image.open(depth_files["mm"]))  # I;16 as opened
    assert not is_squashed_depth_image(np.asarray(squashed_rgb))  # arrays are never matched
    with pytest.raises(ValueError, match=r"`images\[1\]` is an 8-bit L image"):
        processor(images=[[str(depth_files["mm"])], [squashed_l]], text=[PROMPT, PROMPT], padding=True)
    declared = processor(images=squashed_l, text=PROMPT, depth_encoding="gray8", return_tensors="pt")
    assert declared["pixel_values"].shape == (1, 1, 32, 32)


def test_in_repo_registry_adds_depth_text_to_text_and_leaves_image_text_to_text_stock(tiny_deepsight_dir, depth_files):
    assert PIPELINE_REGISTRY.check_task("image-text-to-text")[1]["impl"].endswith("ImageTextToTextPipeline")
    local = pipeline(PIPELINE_TASK, model=str(tiny_deepsight_dir))  # installed code, no trust needed
    assert type(local) is DeepSightPipeline
    with ModelInputs(local.model) as recorded:
        local(images=str(depth_files["sun"]), text=PROMPT, max_new_tokens=1)
    assert_same_inputs(recorded.seen[0], local.processor(images=str(depth_files["sun"]), text=PROMPT,
                                                         return_tensors="pt"))
    llava, llava_processor = build_tiny_llava()
    assert type(pipeline("image-text-to-text", model=llava, processor=llava_processor)) is ImageTextToTextPipeline


def test_model_card_pipeline_snippet_runs_on_the_saved_folder(tiny_deepsight, tiny_deepsight_dir, tmp_path,
                                                             monkeypatch):
    model, processor = tiny_deepsight
    card = str(deepsight_model_card(
        model=model, image_processor=processor.image_processor, model_id=str(tiny_deepsight_dir), base_model=None,
        dataset_name=None, tags=[], trainer_name="SFT", train_parts="projector and language model",
    ))
    assert "pipeline_tag: image-text-to-text" in card
    blocks = re.findall(r"```python\n(.*?)```", card, flags=re.DOTALL)
    snippet = next(block for block in blocks if "pipeline(" in block)
    Image.fromarray(encode_depth(synthetic_depth_map(240, 320), "mm")).save(tmp_path / "depth.png")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(snippet.replace("max_new_tokens=32", "max_new_tokens=2"), namespace)
    assert type(namespace["pipe"]).__name__ == "DeepSightPipeline"


FRESH_PROCESS = """
    import json
    import numpy as np
    from transformers import pipeline

    folder, depth_path = sys.argv[2], sys.argv[3]
    try:
        pipeline("image-text-to-text", model=folder, trust_remote_code=False)
        refused = ""
    except ValueError as error:
        refused = str(error)
    pipes = [pipeline(model=folder, trust_remote_code=True),
             pipeline("image-text-to-text", model=folder, trust_remote_code=True)]
    seen = []
    pipes[1].model.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(kwargs["pixel_values"].tolist()), with_kwargs=True)
    pipes[1](images=depth_path, text="<image>\\nHow far is the chair?", max_new_tokens=1)
    print(json.dumps({"hidden": REPO_HIDDEN, "refused": refused, "pixel_values": seen[0],
                      "classes": [type(p).__module__ + "." + type(p).__name__ for p in pipes]}))
"""


@pytest.mark.slow
def test_fresh_process_without_the_repo_picks_deepsight_pipeline_from_the_folder(
    tiny_deepsight, tiny_deepsight_dir, depth_files, tmp_path
):
    report = run_without_repo(FRESH_PROCESS, [str(tiny_deepsight_dir), str(depth_files["mm"])], tmp_path)
    assert report["hidden"] == {"modeling_deepsight": True, "deepsight": True}
    for qualified in report["classes"]:
        assert qualified.startswith("transformers_modules.")
        assert qualified.endswith("pipeline_deepsight.DeepSightPipeline")
    assert "trust_remote_code=True" in report["refused"]  # without trust, no folder code runs
    _, processor = tiny_deepsight
    expected = processor(images=str(depth_files["mm"]), text=PROMPT, return_tensors="pt")["pixel_values"]
    torch.testing.assert_close(torch.tensor(report["pixel_values"]), expected, atol=1e-6, rtol=0)
