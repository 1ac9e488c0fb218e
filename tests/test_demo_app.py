"""The demo served for real (one app per module, a tiny DeepSight loaded from a saved folder), called
through `gradio_client` exactly as an API user would."""

from __future__ import annotations

import os
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("gradio_client")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from gradio_client import Client, handle_file  # noqa: E402

from deepsight.prompts import format_multiple_choice  # noqa: E402
from modeling_deepsight.depth_codec_deepsight import encode_depth, load_depth  # noqa: E402
from spaces_demo.app import build_demo  # noqa: E402
from spaces_demo.inputs import format_boxes  # noqa: E402
from spaces_demo.responder import DeepSightResponder, load_responder  # noqa: E402
from tests.fixtures.demo import serve, write_huge_png, write_synthetic_depth_png  # noqa: E402

MAX_NEW_TOKENS = 12


@pytest.fixture(scope="module")
def app(tmp_path_factory, tiny_deepsight_dir):
    """The app serving the tiny DeepSight saved by conftest's `tiny_deepsight_dir` (loaded by path)."""
    root = tmp_path_factory.mktemp("demo_app")
    model_dir = str(tiny_deepsight_dir)
    demo = build_demo(
        model_path=model_dir,
        depth_model="none",
        examples_dir=root / "examples",
        max_new_tokens=MAX_NEW_TOKENS,
    )
    url = serve(demo)
    depth_png, scene = write_synthetic_depth_png(root / "scene.png", seed=3)
    try:
        yield SimpleNamespace(
            url=url,
            demo=demo,
            client=Client(url, verbose=False, download_files=str(root / "downloads")),
            depth_png=depth_png,
            scene=scene,
            # The same checkpoint loaded on its own: the reference for what the app must answer.
            reference=load_responder(model_dir, max_new_tokens=MAX_NEW_TOKENS),
            model_dir=model_dir,
            root=root,
        )
    finally:
        demo.close()


def last_answer(history: list[dict]) -> str:
    assert history and history[-1]["role"] == "assistant"
    return "".join(part["text"] for part in history[-1]["content"] if part.get("type") == "text")


def test_ask_api_answers_with_the_checkpoint_greedy_answer(app):
    obj = app.scene.objects[0]
    boxes = format_boxes([list(obj.box)])
    question = f"How far from the camera is the {obj.name}?"
    history, status = app.client.predict(
        handle_file(str(app.depth_png)), "auto", boxes, question, "", [], api_name="/ask"
    )
    assert [message["role"] for message in history] == ["user", "assistant"]
    assert history[0]["content"][0]["text"] == question
    metres, _ = load_depth(app.depth_png)
    expected = app.reference.answer(metres, [list(obj.box)], question)
    assert expected.strip(), "the tiny model should produce some text for this prompt"
    assert last_answer(history).strip() == expected.strip()
    assert "Assumed encoding" in status and "`mm`" in status and "1 box" in status


def test_answer_options_make_a_benchmark_style_multiple_choice_question(app):
    question, options = "Which room is this?", ["bedroom", "kitchen", "office"]
    history, _ = app.client.predict(
        handle_file(str(app.depth_png)), "auto", "", question, "; ".join(options), [], api_name="/ask"
    )
    prompt = format_multiple_choice(question, options)
    assert history[0]["content"][0]["text"] == prompt, "the chat shows the lettered options that were asked"
    metres, _ = load_depth(app.depth_png)
    assert last_answer(history).strip() == app.reference.answer(metres, [], prompt).strip()
    history, status = app.client.predict(
        handle_file(str(app.depth_png)), "auto", "", question, "only one", [], api_name="/ask"
    )
    assert history == [] and "two or more" in status


def test_ask_api_streams_growing_prefixes_of_the_answer(app):
    depth = handle_file(str(app.depth_png))
    job = app.client.submit(depth, "auto", "", "What kind of room is this?", "", [], api_name="/ask")
    final_history, _ = job.result(timeout=120)
    final = last_answer(final_history)
    partials = [last_answer(history) for history, _ in job.outputs() if len(history) == 2]
    assert len(partials) >= 2, "the answer should arrive in several updates, not one"
    assert all(final.startswith(partial) for partial in partials)
    assert partials[0] != final


def test_follow_up_question_keeps_the_conversation(app):
    depth = handle_file(str(app.depth_png))
    first, _ = app.client.predict(depth, "auto", "", "What kind of room is this?", "", [], api_name="/ask")
    second, _ = app.client.predict(depth, "auto", "", "Is it safe to walk ahead?", "", first, api_name="/ask")
    assert [message["role"] for message in second] == ["user", "assistant"] * 2
    assert second[:2] == first


def test_show_depth_api_returns_the_colormapped_view_and_the_assumed_encoding(app):
    depth = handle_file(str(app.depth_png))
    view, status = app.client.predict(depth, "auto", "10,10,60,50", api_name="/show_depth")
    image = Image.open(view)
    height, width = app.scene.depth.shape
    assert image.width > width and image.height >= height, "map plus a colorbar legend"
    assert "16-bit millimetres" in status and "1 box" in status
    colours = np.asarray(image.convert("RGB"))[:height, :width].reshape(-1, 3)
    assert len(np.unique(colours, axis=0)) > 50, "a colormap, not a flat image"


def test_sun_layout_is_detected_and_an_explicit_encoding_overrides_it(app, tmp_path):
    # Within a Kinect's range (< 8 m, as in SUN RGB-D): beyond 8.19 m the rotated layout sets low bits and
    # the detection (documented in detect_depth_encoding) rightly stops calling it SUN.
    metres = np.where(app.scene.depth < 8.0, app.scene.depth, 0.0)
    sun_png, mm_png = tmp_path / "sun.png", tmp_path / "mm.png"
    Image.fromarray(encode_depth(metres, "sun")).save(sun_png)
    Image.fromarray(encode_depth(metres, "mm")).save(mm_png)
    _, detected = app.client.predict(handle_file(str(sun_png)), "auto", "", api_name="/show_depth")
    _, forced = app.client.predict(handle_file(str(sun_png)), "mm", "", api_name="/show_depth")
    _, original = app.client.predict(handle_file(str(mm_png)), "auto", "", api_name="/show_depth")
    assert "SUN RGB-D" in detected and "`sun`" in detected
    assert "`mm`" in forced
    depth_range = lambda status: status.split("depth ")[1].split(" m")[0]  # noqa: E731
    assert depth_range(detected) == depth_range(original) != depth_range(forced)


@pytest.mark.parametrize("kind", ["text", "huge", "empty"])
def test_bad_upload_shows_an_error_and_the_app_keeps_serving(app, kind, tmp_path):
    if kind == "text":
        bad, message = tmp_path / "notes.txt", "not an image"
        bad.write_text("these are not depth values\n")
    elif kind == "huge":
        bad, message = write_huge_png(tmp_path / "huge.png", 20000, 20000), "too large"
    else:
        bad, message = tmp_path / "empty.png", "empty"
        bad.write_bytes(b"")
    history, status = app.client.predict(
        handle_file(str(bad)), "auto", "", "How far is the wall?", "", [], api_name="/ask"
    )
    assert history == []
    assert status.startswith("**Error:**") and message in status and bad.name in status
    view, status = app.client.predict(handle_file(str(bad)), "auto", "", api_name="/show_depth")
    assert view is None and message in status
    # The server is still up and answers the next good request.
    history, status = app.client.predict(
        handle_file(str(app.depth_png)), "auto", "", "What kind of room is this?", "", [], api_name="/ask"
    )
    assert len(history) == 2 and last_answer(history).strip() and "Assumed encoding" in status


def test_bad_boxes_and_empty_question_are_reported(app):
    depth = handle_file(str(app.depth_png))
    history, status = app.client.predict(depth, "auto", "1,2,3", "How far?", "", [], api_name="/ask")
    assert history == [] and "four numbers" in status
    history, status = app.client.predict(depth, "auto", "", "   ", "", [], api_name="/ask")
    assert history == [] and "Type a question" in status


def test_concurrent_users_are_queued_and_all_answered(app):
    depth = handle_file(str(app.depth_png))
    jobs = [
        app.client.submit(depth, "auto", "", f"Question {index}: what room is this?", "", [], api_name="/ask")
        for index in range(3)
    ]
    results = [job.result(timeout=180) for job in jobs]
    assert all(len(history) == 2 and last_answer(history).strip() for history, _ in results)
    ask = next(fn for fn in app.demo.fns.values() if fn.api_name == "ask")
    assert ask.concurrency_limit == 1 and ask.queue is not False


@pytest.mark.slow
def test_deepsight_demo_command_serves_the_app(tmp_path, app):
    """`deepsight demo` (what `make demo` runs) starts a server that answers API calls."""
    import subprocess
    import sys
    import time

    from tests.fixtures.demo import free_port

    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    env.pop("DEEPSIGHT_MODEL", None)
    command = [sys.executable, "-m", "deepsight.cli", "demo", "--port", str(port), "--depth-model", "none",
               "--max-new-tokens", "4"]
    log = tmp_path / "demo.log"  # a file, not a pipe: a full pipe would block the server
    with log.open("w") as handle:
        process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=handle, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + 120
        client = None
        while client is None:
            if process.poll() is not None:
                pytest.fail(f"deepsight demo exited with {process.returncode}:\n{log.read_text()}")
            if time.monotonic() > deadline:
                pytest.fail("deepsight demo did not start serving within 120 s")
            try:
                client = Client(url, verbose=False, download_files=str(tmp_path / "downloads"))
            except Exception:  # not listening yet
                time.sleep(0.5)
        history, status = client.predict(
            handle_file(str(app.depth_png)), "auto", "", "What kind of room is this?", "", [], api_name="/ask"
        )
        assert len(history) == 2 and "Assumed encoding" in status
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing.*:FutureWarning")  # raised inside peft
def test_an_unmerged_lora_checkpoint_is_loaded_on_its_base_and_merged(app, tmp_path):
    """A stage-2 LoRA run saved as an adapter only still serves, with the adapter's weights applied."""
    import torch
    from peft import LoraConfig, get_peft_model

    from modeling_deepsight import DeepSightForConditionalGeneration

    base_dir = app.model_dir
    # init_lora_weights=False: random (non-zero) adapters, as after training, so merging changes answers.
    lora = LoraConfig(
        r=4, lora_alpha=8, target_modules=r".*language_model.*\.(q_proj|v_proj)", init_lora_weights=False
    )
    torch.manual_seed(0)
    peft_model = get_peft_model(DeepSightForConditionalGeneration.from_pretrained(base_dir), lora)
    peft_model.save_pretrained(tmp_path / "adapter")  # records base_model_name_or_path = base_dir
    merged_model = peft_model.merge_and_unload()
    merged = DeepSightResponder(merged_model, app.reference.processor, "merged", MAX_NEW_TOKENS)

    served = load_responder(str(tmp_path / "adapter"), max_new_tokens=MAX_NEW_TOKENS, device="cpu")
    metres, _ = load_depth(app.depth_png)
    question = "What kind of room is this?"
    assert served.answer(metres, [], question) == merged.answer(metres, [], question)
    assert served.answer(metres, [], question) != app.reference.answer(metres, [], question)


def test_one_box_per_option_is_asked_with_one_masked_depth_copy_per_option(app):
    from deepsight.prompts import region_choice_content

    a, b = app.scene.objects[:2]
    boxes = [list(a.box), list(b.box)]
    question, options = "Which is closer to the camera?", ["the first region", "the second region"]
    history, status = app.client.predict(
        handle_file(str(app.depth_png)), "auto", format_boxes(boxes), question, "; ".join(options), [],
        api_name="/ask",
    )
    prompt = format_multiple_choice(question, options)
    assert history[0]["content"][0]["text"] == prompt and "one masked copy per option" in status
    metres, _ = load_depth(app.depth_png)
    regions = region_choice_content(question, options)
    inputs = app.reference.prepare_inputs(metres, boxes, prompt, regions=regions)
    union = app.reference.prepare_inputs(metres, boxes, prompt)
    assert inputs["bbox_mask"].shape[0] == 2 and union["bbox_mask"].shape[0] == 1
    alone = [app.reference.prepare_inputs(metres, [box], prompt)["bbox_mask"][0] for box in boxes]
    assert all((mask == single).all() for mask, single in zip(inputs["bbox_mask"], alone))
    assert last_answer(history).strip() == app.reference.answer(metres, boxes, prompt, regions=regions).strip()
