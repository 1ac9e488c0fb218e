"""The demo in a real browser: Debian's Chromium driven by Playwright (never a downloaded browser).

One app per module, started without any checkpoint so the tiny-random fallback (and its notice) is what a
first-time user sees. Skips with the reason when /usr/bin/chromium or playwright is missing
(`make test` installs chromium with .ci/install_browser.sh when it can).
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
TIMEOUT_MS = 60_000

pytestmark = pytest.mark.browser

if not CHROMIUM.exists():
    pytest.skip(
        f"{CHROMIUM} not found: install Debian's chromium (`apt-get install chromium`, or `make browser` "
        "as root)",
        allow_module_level=True,
    )
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed (pip install -r requirements-dev.txt)"
)
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from modeling_deepsight.depth_codec_deepsight import load_depth  # noqa: E402
from spaces_demo.app import build_demo  # noqa: E402
from spaces_demo.examples import write_examples  # noqa: E402
from spaces_demo.inputs import parse_boxes  # noqa: E402
from spaces_demo.rendering import summarize_depth  # noqa: E402
from spaces_demo.responder import DeepSightResponder, build_tiny_model_and_processor  # noqa: E402
from tests.fixtures.demo import serve, write_huge_png, write_synthetic_depth_png  # noqa: E402

MAX_NEW_TOKENS = 12


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo_browser")
    with pytest.MonkeyPatch.context() as patch:
        # No checkpoint anywhere: the app must fall back to the tiny random model and say so.
        patch.delenv("DEEPSIGHT_MODEL", raising=False)
        patch.chdir(root)
        patch.setattr("spaces_demo.responder.REPO_ROOT", root)
        demo = build_demo(depth_model="none", examples_dir=root / "examples", max_new_tokens=MAX_NEW_TOKENS)
    url = serve(demo)
    depth_png, _ = write_synthetic_depth_png(root / "room.png", seed=5)
    (root / "notes.txt").write_text("not a depth map\n")
    (root / "empty.png").write_bytes(b"")
    write_huge_png(root / "huge.png", 20000, 20000)
    try:
        yield SimpleNamespace(url=url, depth_png=depth_png, root=root)
    finally:
        demo.close()


@pytest.fixture(scope="module")
def page(app, tmp_path_factory):
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch_persistent_context(
            str(profile), executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 1100},
        )
        try:
            page = browser.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(app.url)
            yield page
        finally:
            browser.close()


def upload(page, path: Path) -> None:
    """Put `path` in the depth-file component, removing the previous file first (gr.File holds one)."""
    clear = page.locator("#depth-file button[aria-label='Clear']")
    if clear.count():
        clear.first.click()
    page.set_input_files("#depth-file input[type=file]", str(path))


def test_page_says_no_checkpoint_was_found(page):
    notice = page.locator("#model-notice")
    notice.wait_for()
    assert "No trained checkpoint found" in notice.inner_text()


@pytest.mark.parametrize(
    "name, message",
    [("notes.txt", "is not an image"), ("huge.png", "is too large"), ("empty.png", "is empty")],
)
def test_bad_upload_shows_a_visible_error(page, app, name, message):
    upload(page, app.root / name)
    status = page.locator("#status", has_text=f"'{name}' {message}")
    status.wait_for()
    assert status.is_visible() and "Error" in status.inner_text()
    assert page.locator(".toast-body", has_text=f"'{name}' {message}").first.is_visible()  # the warning toast


def test_upload_draw_a_box_ask_and_see_the_streamed_answer(page, app, tmp_path):
    upload(page, app.depth_png)
    page.locator("#status", has_text="Assumed encoding").wait_for()
    view = page.locator("#depth-view img")
    view.wait_for()
    assert view.get_attribute("src"), "the depth view image has a source"
    page.wait_for_function("() => document.querySelector('#depth-view img').naturalWidth > 0")
    natural_width = page.evaluate("() => document.querySelector('#depth-view img').naturalWidth")
    metres, _ = load_depth(app.depth_png)
    assert natural_width > metres.shape[1], "the view is the map plus its legend"

    # Draw a region: two clicks on opposite corners of the depth view.
    box = view.bounding_box()
    view.click(position={"x": box["width"] * 0.15, "y": box["height"] * 0.25})
    page.locator("#status", has_text="opposite corner").wait_for()
    view.click(position={"x": box["width"] * 0.45, "y": box["height"] * 0.7})
    page.locator("#status", has_text="1 box").wait_for()
    boxes_text = page.locator("#boxes textarea").input_value()
    boxes = parse_boxes(boxes_text, metres.shape[1], metres.shape[0])
    assert len(boxes) == 1 and boxes[0][2] - boxes[0][0] > 10 and boxes[0][3] - boxes[0][1] > 10

    question = "How far from the camera is the object in the box?"
    page.fill("#question textarea", question)
    page.click("#ask")
    page.locator("#chat [data-testid='user']", has_text=question).wait_for()
    answer = page.locator("#chat [data-testid='bot']").last
    page.wait_for_function(
        "() => { const bots = document.querySelectorAll(\"#chat [data-testid='bot']\");"
        " return bots.length && bots[bots.length - 1].innerText.trim().length > 0; }"
    )
    # The question box is cleared by the step chained after the answer, so an empty box = streaming done.
    page.wait_for_function("() => document.querySelector('#question textarea').value === ''")

    model, processor = build_tiny_model_and_processor()
    reference = DeepSightResponder(model, processor, "reference", MAX_NEW_TOKENS)
    expected = reference.answer(metres, boxes, question)
    shown = answer.inner_text().strip()
    assert shown, "an answer appeared in the chat"
    # The chat renders Markdown, which may eat punctuation of the random model's output: compare the
    # word characters.
    assert re.sub(r"\W", "", shown) == re.sub(r"\W", "", expected)

    screenshot = tmp_path / "demo.png"
    page.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.stat().st_size > 10_000
    if os.environ.get("DEEPSIGHT_SCREENSHOT_DIR"):  # keep a copy to look at
        shutil.copy(screenshot, Path(os.environ["DEEPSIGHT_SCREENSHOT_DIR"]) / "demo.png")


def test_one_click_on_a_synthetic_example_loads_its_depth_regions_and_question(page, tmp_path):
    example = write_examples(tmp_path)[0]  # rendered deterministically: the same rows the app shows
    assert example.options, "the room-type example is a multiple-choice question"
    page.get_by_text(Path(example.path).name).first.click()
    # The status describes the example's own depth map (not the one uploaded before).
    page.locator("#status", has_text=summarize_depth(load_depth(example.path)[0])).wait_for()
    page.wait_for_function(
        "(question) => document.querySelector('#question textarea').value === question", arg=example.question
    )
    assert page.locator("#boxes textarea").input_value() == example.boxes
    assert page.locator("#options textarea").input_value() == example.options
    # The view and status were redrawn with the example's regions (none), not the box drawn before.
    assert ("no boxes" in page.locator("#status").inner_text()) == (example.boxes == "")
