"""The demo's input handling without a server: decoding uploads, limits, boxes, clicks, model choice."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from modeling_deepsight.depth_codec_deepsight import encode_depth
from spaces_demo import inputs
from spaces_demo.inputs import format_boxes, parse_boxes, parse_options, read_depth_upload, spell_out_letter
from spaces_demo.rendering import display_scale, render_depth_view, to_depth_pixels
from spaces_demo.responder import QUICKSTART_MODEL, build_messages, message_text, resolve_model_source
from tests.fixtures.png_files import write_png16
from tests.fixtures.demo import write_huge_png


def ramp_metres(height: int = 48, width: int = 64) -> np.ndarray:
    """A depth ramp 0.5..4.0 m (left to right) with an invalid corner."""
    metres = np.tile(np.linspace(0.5, 4.0, width, dtype=np.float32), (height, 1))
    metres[:4, :4] = 0.0
    return metres


def test_16bit_mm_png_decodes_to_metres_and_says_mm(tmp_path):
    metres = ramp_metres()
    path = tmp_path / "depth.png"
    Image.fromarray(encode_depth(metres, "mm")).save(path)
    loaded = read_depth_upload(path, "auto")
    assert loaded.encoding == "mm"
    assert "millimetres" in loaded.description
    np.testing.assert_allclose(loaded.metres, metres, atol=5e-4)


def test_sun_rgbd_png_is_detected_and_unrotated(tmp_path):
    metres = ramp_metres()
    path = tmp_path / "sun.png"
    Image.fromarray(encode_depth(metres, "sun")).save(path)
    loaded = read_depth_upload(path, "auto")
    assert loaded.encoding == "sun"
    np.testing.assert_allclose(loaded.metres, metres, atol=5e-4)


def test_explicit_encoding_overrides_detection(tmp_path):
    path = tmp_path / "depth.png"
    Image.fromarray(encode_depth(ramp_metres(), "mm")).save(path)
    as_sun = read_depth_upload(path, "sun")
    assert as_sun.encoding == "sun"
    assert not np.allclose(as_sun.metres, read_depth_upload(path, "mm").metres)


def test_8bit_grayscale_is_relative_and_says_so(tmp_path):
    path = tmp_path / "gray.png"
    Image.fromarray(encode_depth(ramp_metres(), "gray8")).save(path)
    loaded = read_depth_upload(path, "auto")
    assert loaded.encoding == "gray8"
    assert any("relative" in note for note in loaded.notes)
    row = loaded.metres[10]
    assert np.all(np.diff(row[row > 0]) >= 0), "farther pixels (darker) must decode to larger depth"


def test_npy_metres_roundtrip(tmp_path):
    metres = ramp_metres()
    path = tmp_path / "depth.npy"
    np.save(path, metres)
    loaded = read_depth_upload(path, "auto")
    assert loaded.encoding == "metres"
    np.testing.assert_array_equal(loaded.metres, metres)


def test_colour_photo_without_estimator_names_the_missing_depth_model(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 255, (32, 40, 3), dtype=np.uint8)
    path = tmp_path / "photo.png"
    Image.fromarray(rgb).save(path)
    with pytest.raises(ValueError, match="no depth-estimation model"):
        read_depth_upload(path, "auto")
    with pytest.raises(ValueError, match="RGB photo option"):
        read_depth_upload(path, "rgb")


def test_colour_photo_with_a_local_depth_model_gives_depth_of_the_photo_size(tmp_path):
    from dataset_scripts.sources.depth_estimation import save_tiny_random_glpn
    from spaces_demo.app import load_depth_estimator

    model_dir = save_tiny_random_glpn(tmp_path / "glpn")
    estimator, name, missing = load_depth_estimator(str(model_dir))
    assert estimator is not None and missing is None
    rgb = np.random.default_rng(0).integers(0, 255, (40, 56, 3), dtype=np.uint8)
    path = tmp_path / "photo.png"
    Image.fromarray(rgb).save(path)
    loaded = read_depth_upload(path, "auto", estimator, name)
    assert loaded.encoding == "rgb"
    assert str(model_dir) in loaded.description
    assert loaded.metres.shape == (40, 56) and np.all(loaded.metres > 0)


def test_unloadable_depth_model_is_reported_not_raised():
    from spaces_demo.app import load_depth_estimator

    estimator, _, missing = load_depth_estimator("/nonexistent/depth-model")
    assert estimator is None
    assert "/nonexistent/depth-model" in missing


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p.write_text("not a depth map"), "not an image"),
        (lambda p: p.write_bytes(b""), "empty"),
        (lambda p: write_huge_png(p), "too large"),
        (lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20), "not an image"),
        (lambda p: Image.fromarray(np.zeros((8, 8), np.uint16)).save(p, format="PNG"), "no valid pixel"),
    ],
    ids=["text", "empty", "huge", "truncated", "all-invalid"],
)
def test_bad_uploads_raise_a_message_naming_the_file(tmp_path, make, message):
    path = tmp_path / "upload.png"
    make(path)
    with pytest.raises(ValueError, match=message) as error:
        read_depth_upload(path, "auto")
    assert "upload.png" in str(error.value)


def test_limits_on_bytes_and_pixels_apply_before_decoding(tmp_path, monkeypatch):
    path = tmp_path / "depth.png"
    Image.fromarray(encode_depth(ramp_metres(), "mm")).save(path)
    monkeypatch.setattr(inputs, "MAX_UPLOAD_BYTES", 10)
    with pytest.raises(ValueError, match="MiB"):
        read_depth_upload(path, "auto")
    monkeypatch.undo()
    monkeypatch.setattr(inputs, "MAX_SIDE", 32)
    with pytest.raises(ValueError, match="64x48 pixels"):
        read_depth_upload(path, "auto")
    big = tmp_path / "big.npy"
    np.save(big, np.ones((40, 40), np.float32))
    with pytest.raises(ValueError, match="40x40 pixels"):
        read_depth_upload(big, "auto")


def test_parse_boxes_accepts_brackets_and_either_corner_order_and_clips():
    assert parse_boxes("[1, 2, 30, 40]; 50,60,10,10\n-5,-5,5,5", 64, 48) == [
        [1.0, 2.0, 30.0, 40.0],
        [10.0, 10.0, 50.0, 48.0],
        [0.0, 0.0, 5.0, 5.0],
    ]
    assert parse_boxes("  ", 64, 48) == []
    boxes = [[1.5, 2.0, 30.0, 40.0], [3.0, 4.0, 5.0, 6.0]]
    assert parse_boxes(format_boxes(boxes), 64, 48) == boxes


def test_parse_options_splits_on_semicolons_or_lines_and_needs_two_to_eight():
    assert parse_options(" chair ;table\n\nlamp ") == ["chair", "table", "lamp"]
    assert parse_options("") == [] and parse_options(None) == []
    with pytest.raises(ValueError, match="two or more"):
        parse_options("chair")
    with pytest.raises(ValueError, match="at most 8"):
        parse_options(";".join(f"option {i}" for i in range(9)))


def test_a_bare_letter_answer_is_shown_with_its_option_and_other_answers_are_kept():
    options = ["the chair", "the lamp"]
    assert spell_out_letter("B", options) == "B. the lamp"
    assert spell_out_letter(" A. ", options) == "A. the chair"
    assert spell_out_letter("C", options) == "C"  # no third option: nothing to spell out
    assert spell_out_letter("B. the lamp", options) == "B. the lamp"
    assert spell_out_letter("the lamp is farther", options) == "the lamp is farther"


@pytest.mark.parametrize(
    "text, message",
    [
        ("1,2,3", "four numbers"),
        ("a,b,c,d", "four numbers"),
        ("100,100,120,120", "no area"),
        ("1,1,1,9", "no area"),
    ],
)
def test_parse_boxes_rejects_malformed_boxes(text, message):
    with pytest.raises(ValueError, match=message):
        parse_boxes(text, 64, 48)


def test_view_clicks_map_back_to_depth_pixels_and_legend_clicks_are_ignored():
    height, width = 48, 64  # small maps are enlarged in the view
    scale = display_scale(height, width)
    assert scale > 1
    assert to_depth_pixels(10 * scale, 20 * scale, height, width) == (10.0, 20.0)
    assert to_depth_pixels((width + 5) * scale, 5, height, width) is None


def test_depth_view_has_a_legend_and_draws_boxes():
    metres = ramp_metres()
    plain = np.asarray(render_depth_view(metres))
    boxed = np.asarray(render_depth_view(metres, [[8, 8, 40, 30]]))
    scale = display_scale(*metres.shape)
    assert plain.shape[1] > metres.shape[1] * scale, "the colorbar legend sits right of the map"
    assert plain.shape == boxed.shape
    changed = np.argwhere(np.any(plain != boxed, axis=-1))
    assert changed.size, "the box is drawn"
    assert changed[:, 1].max() < metres.shape[1] * scale, "only the map (not the legend) changes"


def test_two_clicks_on_the_view_add_a_box(tmp_path):
    from spaces_demo.app import DemoBackend

    path = tmp_path / "depth.png"
    Image.fromarray(encode_depth(ramp_metres(), "mm")).save(path)
    backend = DemoBackend(responder=None)
    scale = display_scale(48, 64)
    boxes, pending, view, status = backend.add_corner(str(path), "auto", "", None, 30 * scale, 20 * scale)
    assert boxes == "" and pending == [30.0, 20.0] and view is not None and "opposite corner" in status
    boxes, pending, view, status = backend.add_corner(
        str(path), "auto", boxes, pending, 10 * scale, 5 * scale
    )
    assert parse_boxes(boxes, 64, 48) == [[10.0, 5.0, 30.0, 20.0]] and pending is None
    assert "1 box" in status


def test_build_messages_puts_the_depth_image_in_the_first_user_turn():
    history = [
        {"role": "user", "content": [{"type": "text", "text": "What room is this?"}]},
        {"role": "assistant", "content": "A bedroom."},
    ]
    messages = build_messages(history, "How far is the bed?")
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert messages[0]["content"][0] == {"type": "image"}
    assert sum(part["type"] == "image" for m in messages for part in m["content"]) == 1
    assert message_text(messages[-1]) == "How far is the bed?"
    long_history = [{"role": r, "content": f"turn {i}"} for i in range(40) for r in ("user", "assistant")]
    cut = build_messages(long_history, "last?")
    assert cut[0]["role"] == "user" and len(cut) < 20


def test_model_source_order_is_argument_env_quickstart_then_tiny(tmp_path, monkeypatch):
    monkeypatch.delenv("DEEPSIGHT_MODEL", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("spaces_demo.responder.REPO_ROOT", tmp_path / "no-repo")
    assert resolve_model_source().source is None
    assert "tiny" in resolve_model_source().notice
    quickstart = tmp_path / QUICKSTART_MODEL
    quickstart.mkdir(parents=True)
    (quickstart / "config.json").write_text("{}")
    assert Path(resolve_model_source().source).resolve() == quickstart.resolve()
    monkeypatch.setenv("DEEPSIGHT_MODEL", "env/model")
    assert resolve_model_source().source == "env/model"
    assert resolve_model_source("arg/model").source == "arg/model"


def test_cli_parses_model_port_host_and_share(monkeypatch):
    from spaces_demo.app import launch_kwargs
    from spaces_demo.cli import build_parser

    for variable in ("GRADIO_SERVER_NAME", "SYSTEM", "SPACE_ID"):
        monkeypatch.delenv(variable, raising=False)
    argv = ["--model", "org/m", "--port", "7999", "--share", "off", "--depth-model", "none"]
    args = build_parser().parse_args(argv)
    assert (args.model, args.port) == ("org/m", 7999)
    assert launch_kwargs(host=args.host)["server_name"] == "127.0.0.1"  # loopback unless told otherwise
    monkeypatch.setenv("GRADIO_SERVER_NAME", "0.0.0.0")  # as gradio itself reads it
    assert launch_kwargs(host=build_parser().parse_args(argv).host)["server_name"] == "0.0.0.0"
    assert (args.share, args.depth_model) == ("off", "none")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--share", "maybe"])


def test_exported_space_has_the_yaml_header_and_runs_its_own_copy_of_the_code(tmp_path):
    import subprocess
    import sys

    from spaces_demo.space import export_space, read_space_header

    out = export_space(
        tmp_path / "space", model_ids=["org/deepsight"], dataset_ids=["org/depth-instructions"]
    )
    header = read_space_header(out / "README.md")
    assert header["sdk"] == "gradio" and header["app_file"] == "app.py"
    assert (out / header["app_file"]).is_file()
    assert header["suggested_hardware"] == "cpu-basic"
    assert header["models"][0] == "org/deepsight" and "org/depth-instructions" in header["datasets"]
    import gradio

    assert header["sdk_version"] == gradio.__version__
    requirements = (out / "requirements.txt").read_text()
    assert "torch==" in requirements and "transformers==" in requirements
    # Run from the Space root, app.py's imports resolve to the exported copies, not this checkout.
    probe = (
        "import importlib.util as u, sys; sys.path.insert(0, '.');"
        "print(*[u.find_spec(m).origin for m in ('spaces_demo.app', 'modeling_deepsight', 'deepsight.tiny',"
        " 'dataset_scripts.synthetic.world')], sep='\\n')"
    )
    origins = subprocess.run(
        [sys.executable, "-c", probe], cwd=out, capture_output=True, text=True, check=True
    )
    assert all(Path(line).resolve().is_relative_to(out.resolve()) for line in origins.stdout.split())
    with pytest.raises(ValueError, match="not empty"):
        export_space(out)
    with pytest.raises(ValueError, match="ORG/NAME"):
        export_space(tmp_path / "other", model_ids=["no-slash"])


def test_generation_is_wrapped_with_spaces_gpu_only_when_spaces_is_importable(monkeypatch):
    import sys
    import types

    from spaces_demo.app import zero_gpu

    def handler():
        return "answer"

    monkeypatch.setitem(sys.modules, "spaces", None)  # not installed: the handler is unchanged
    assert zero_gpu(handler) is handler
    wrapped = []
    fake_spaces = types.SimpleNamespace(GPU=lambda function: wrapped.append(function) or (lambda: "on gpu"))
    monkeypatch.setitem(sys.modules, "spaces", fake_spaces)
    assert zero_gpu(handler)() == "on gpu" and wrapped == [handler]


# gr.Warning outside a request is a Python warning; the messages are what the toasts would show.
@pytest.mark.filterwarnings("ignore:.*(estimator exploded|out of memory):UserWarning")
def test_a_crashing_estimator_or_model_is_reported_and_the_next_request_works(tmp_path):
    from spaces_demo.app import DemoBackend

    class FailingOnce:
        """A responder whose first generation crashes (as an out-of-memory would), then answers."""

        name = "failing once"
        calls = 0

        def stream(self, depth, boxes, question, history):
            self.calls += 1
            if self.calls == 1:
                raise RuntimeError("out of memory")
            yield f"{depth.shape[1]}x{depth.shape[0]}"

    def broken_estimator(image):
        raise RuntimeError("estimator exploded")

    photo = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (16, 24, 3), dtype=np.uint8)).save(photo)
    depth = tmp_path / "depth.png"
    Image.fromarray(encode_depth(ramp_metres(), "mm")).save(depth)
    backend = DemoBackend(FailingOnce(), estimator=broken_estimator, estimator_name="broken")

    view, status = backend.show_depth(str(photo), "rgb", "")
    assert view is None and "photo.png" in status and "estimator exploded" in status

    *_, (history, status) = backend.ask(str(depth), "auto", "", "How far?", "", [])
    assert "generation failed" in history[-1]["content"] and "out of memory" in status
    *_, (history, status) = backend.ask(str(depth), "auto", "", "How far?", "", [])
    assert history[-1] == {"role": "assistant", "content": "64x48"} and "Assumed encoding" in status


def test_a_16_bit_gray_rgb_upload_is_refused_not_read_as_8_bit_depth(tmp_path):
    millimetres = np.full((16, 16), 1230, dtype=np.uint16)
    path = write_png16(tmp_path / "depth_rgb16.png", np.stack([millimetres] * 3, axis=-1), "rgb")
    with pytest.raises(ValueError, match=r"depth_rgb16\.png.*16-bit"):
        read_depth_upload(path, "auto")
