"""DeepSight Space: talk to a depth-aware multimodal LLM about a depth map.

Run locally with `deepsight demo [--model PATH]`, or `python app.py` on a Space. Both listen on 127.0.0.1 with
gradio's analytics off unless told otherwise (`deepsight demo --host`, $GRADIO_SERVER_NAME for `python app.py`,
$GRADIO_ANALYTICS_ENABLED=True); a Space sets $GRADIO_SERVER_NAME itself. The depth upload is a
`gr.File`, not a `gr.Image`: gradio re-encodes image uploads to 8-bit RGB, which would destroy a 16-bit
millimetre depth map. The depth is shown in a separate image: the colormapped map with the boxes and a
legend in metres. Clicking two corners on that view adds a box; typed boxes work too.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

if __package__ in (None, "") and not (Path(__file__).resolve().parent / "spaces_demo").is_dir():
    # `python spaces_demo/app.py` from a checkout: the project root holds the packages. (In an exported
    # Space they sit next to app.py, which Python already puts on sys.path.)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import gradio as gr  # noqa: E402
from gradio.components.chatbot import ChatbotDataMessages  # noqa: E402

from deepsight.prompts import format_multiple_choice, region_choice_content  # noqa: E402
from spaces_demo.examples import write_examples  # noqa: E402
from spaces_demo.inputs import (  # noqa: E402
    ENCODING_CHOICES,
    HISTORY_FORMAT,
    MAX_PIXELS,
    MAX_QUESTION_CHARS,
    MAX_SIDE,
    MAX_UPLOAD_BYTES,
    DepthCache,
    LoadedDepth,
    format_boxes,
    parse_boxes,
    parse_history,
    parse_options,
    parse_question,
    read_depth_upload,
    spell_out_letter,
)
from spaces_demo.rendering import (  # noqa: E402
    describe_region_points,
    render_depth_view,
    summarize_depth,
    to_depth_pixels,
)
from spaces_demo.responder import Responder, load_responder  # noqa: E402

logger = logging.getLogger(__name__)

DEPTH_MODEL_ENV = "DEEPSIGHT_DEPTH_MODEL"
# One generate at a time per replica: on a CPU Space two would only halve each other's speed.
GENERATE_CONCURRENCY = 1
QUEUE_MAX_SIZE = 32

TITLE = "DeepSight: ask questions about a depth map"
INTRO = (
    "Upload a depth map (16-bit PNG in millimetres, SUN RGB-D PNG, 8-bit grayscale or `.npy` in metres) "
    "or pick a synthetic room below, optionally mark regions, and ask about the scene. "
    "Regions feed DeepSight's Bbox Conv mask: type `x0,y0,x1,y1; ...` in depth-map pixels, or click two "
    "opposite corners on the depth view."
)


class CheckedChatMessages(ChatbotDataMessages):
    """The chatbot's data model, refusing a malformed history from an API client with a message saying what is
    wrong (gradio's own check fails with an opaque "the upstream app raised an exception"). A message whose content
    is a plain string, as OpenAI-style clients send it, is read as one text part."""

    @classmethod
    def model_validate(cls, obj: Any, *args: Any, **kwargs: Any) -> ChatbotDataMessages:
        if isinstance(obj, list):
            obj = [_with_text_parts(message) for message in obj]
        try:
            return super().model_validate(obj, *args, **kwargs)
        except ValueError as error:  # pydantic's ValidationError
            raise gr.Error(history_error(error)) from None


def _with_text_parts(message: Any) -> Any:
    if isinstance(message, dict) and isinstance(message.get("content"), str):
        return {**message, "content": [{"type": "text", "text": message["content"]}]}
    return message


def history_error(error: ValueError) -> str:
    """A readable message for the first problem pydantic found in a chat history."""
    problems = error.errors() if hasattr(error, "errors") else []
    if not problems:
        return f"The chat history is malformed ({error}); expected {HISTORY_FORMAT}."
    location, problem = problems[0]["loc"], problems[0]["msg"]
    where = f"message {location[0] + 1}" if location and isinstance(location[0], int) else "the history"
    field = ".".join(str(part) for part in location[1:])
    return (
        f"The chat history is malformed: {where}{f', {field}' if field else ''}: {problem}. Expected {HISTORY_FORMAT}."
    )


def checked_chatbot(**kwargs: Any) -> gr.Chatbot:
    """`gr.Chatbot(**kwargs)` whose value from a client is checked by `CheckedChatMessages`. Set on the instance:
    gradio writes a `.pyi` stub next to the module of any `gr.Chatbot` subclass."""
    chatbot = gr.Chatbot(**kwargs)
    chatbot.data_model = CheckedChatMessages
    return chatbot


def analytics_enabled() -> bool:
    """Gradio's analytics only when $GRADIO_ANALYTICS_ENABLED says True (gradio's own default is on)."""
    return os.environ.get("GRADIO_ANALYTICS_ENABLED", "False") == "True"


def default_host() -> str:
    """$GRADIO_SERVER_NAME as gradio reads it; else all interfaces on a Space (which sets it itself, so only as a
    fallback), else 127.0.0.1."""
    if os.environ.get("GRADIO_SERVER_NAME"):
        return os.environ["GRADIO_SERVER_NAME"]
    on_space = os.environ.get("SYSTEM") == "spaces" and bool(os.environ.get("SPACE_ID"))
    return "0.0.0.0" if on_space else "127.0.0.1"


def zero_gpu(function):
    """`spaces.GPU` on ZeroGPU Spaces (the `spaces` package is importable there); unchanged elsewhere."""
    try:
        import spaces
    except ImportError:
        return function
    return spaces.GPU(function)


def load_depth_estimator(depth_model: str | None) -> tuple[Any, str | None, str | None]:
    """(estimate function or None, its name, why it is unavailable)."""
    if not depth_model or depth_model.lower() == "none":
        return None, None, f"no depth-estimation model configured (--depth-model PATH or ${DEPTH_MODEL_ENV})"
    try:
        from dataset_scripts.sources.depth_estimation import DepthEstimator

        estimator = DepthEstimator(depth_model, device="cpu", batch_size=1)
    except Exception as error:  # offline without the weights, a wrong path...: the RGB option says so
        logger.warning("depth-estimation model %r unavailable: %s", depth_model, error)
        reason = f"depth-estimation model `{depth_model}` could not be loaded ({type(error).__name__})"
        return None, None, reason
    return (lambda image: estimator.predict([image])[0]), depth_model, None


class DemoBackend:
    """The event handlers, free of layout code: each takes plain values and returns plain values."""

    def __init__(self, responder: Responder, estimator=None, estimator_name: str | None = None):
        self.responder = responder
        self.estimator = estimator
        self.estimator_name = estimator_name
        self.cache = DepthCache()

    def load(self, path: str | None, encoding: str) -> LoadedDepth:
        """The decoded upload; every failure becomes a ValueError the user sees (the app keeps serving)."""

        def read() -> LoadedDepth:
            try:
                return read_depth_upload(path, encoding, self.estimator, self.estimator_name)
            except ValueError:
                raise
            except Exception as error:  # a decoder or estimator bug must not look like a server crash
                logger.exception("reading %s failed", path)
                name = Path(path).name if path else "the upload"
                raise ValueError(f"Could not read {name!r}: {type(error).__name__}: {error}") from error

        return self.cache.get(path, encoding, read)

    @staticmethod
    def report_error(error: Exception) -> str:
        """Shows `error` as a warning toast and returns it for the status line."""
        message = str(error)
        gr.Warning(message)
        return f"**Error:** {message}"

    @staticmethod
    def ok_status(loaded: LoadedDepth, boxes: list[list[float]]) -> str:
        parts = [
            f"**Assumed encoding:** {loaded.description} (`{loaded.encoding}`)",
            summarize_depth(loaded.metres),
        ]
        parts.append(f"{len(boxes)} box{'es' if len(boxes) != 1 else ''}" if boxes else "no boxes: whole map")
        if boxes:
            parts.append(describe_region_points(loaded.metres, boxes))
        return " · ".join(parts) + "".join(f"  \n_{note}_" for note in loaded.notes)

    def show_depth(self, path: str | None, encoding: str, boxes_text: str) -> tuple[Any, str]:
        """(depth view image, status line) for the current upload and boxes."""
        if not path:
            return None, "Upload a depth map or pick an example."
        try:
            loaded = self.load(path, encoding)
            boxes = parse_boxes(boxes_text, loaded.width, loaded.height)
        except ValueError as error:
            return None, self.report_error(error)
        return render_depth_view(loaded.metres, boxes), self.ok_status(loaded, boxes)

    def add_corner(
        self,
        path: str | None,
        encoding: str,
        boxes_text: str,
        pending: list[float] | None,
        x: float,
        y: float,
    ) -> tuple[str, list[float] | None, Any, str]:
        """A click on the depth view: the first click marks a corner, the second closes the box."""
        try:
            loaded = self.load(path, encoding)
            boxes = parse_boxes(boxes_text, loaded.width, loaded.height)
        except ValueError as error:
            return boxes_text, None, None, self.report_error(error)
        point = to_depth_pixels(x, y, loaded.height, loaded.width)
        if point is None:  # a click on the legend
            view = render_depth_view(loaded.metres, boxes, pending)
            return boxes_text, pending, view, self.ok_status(loaded, boxes)
        if pending is None:
            status = f"Corner at ({point[0]:g}, {point[1]:g}): click the opposite corner to finish the box."
            return boxes_text, list(point), render_depth_view(loaded.metres, boxes, point), status
        try:  # parsing the text form orders the corners and enforces the area and count limits
            boxes = parse_boxes(format_boxes([*boxes, [*pending, *point]]), loaded.width, loaded.height)
        except ValueError as error:
            return boxes_text, None, render_depth_view(loaded.metres, boxes), self.report_error(error)
        view = render_depth_view(loaded.metres, boxes)
        return format_boxes(boxes), None, view, self.ok_status(loaded, boxes)

    def ask(
        self,
        path: str | None,
        encoding: str,
        boxes_text: str,
        question: str,
        options_text: str,
        history: list[dict] | None,
    ) -> Iterator[tuple[list[dict], str]]:
        """Streams (chat history, status) while the model answers `question` about the uploaded depth map.

        With answer options the question is laid out exactly like the benchmark's multiple-choice
        questions (`deepsight.prompts.format_multiple_choice`), the format the model is evaluated on; with one
        box per option the model gets one depth copy per option, masked to that option's box (the region
        layout of `deepsight eval benchmark --distance-regions`). Typed tags are escaped (`inputs.typed_text`): the
        chat shows the question as the model got it.
        """
        try:
            previous = parse_history(history)
        except ValueError as error:  # nothing of a malformed history can be shown again
            yield [], self.report_error(error)
            return
        history = list(history or [])
        try:
            question = parse_question(question)
            options = parse_options(options_text)
            loaded = self.load(path, encoding)
            boxes = parse_boxes(boxes_text, loaded.width, loaded.height)
        except ValueError as error:
            yield history, self.report_error(error)
            return
        # One box per option: each option gets its own copy of the depth masked to its box (the region layout
        # Distance Judgment is trained and evaluated in); the chat shows the usual lettered question.
        extra = {"regions": region_choice_content(question, options)} if options and len(boxes) == len(options) else {}
        if options:
            question = format_multiple_choice(question, options)
        status = self.ok_status(loaded, boxes) + ("; one masked copy per option" if extra else "")
        history = [*history, {"role": "user", "content": question}, {"role": "assistant", "content": ""}]
        yield history, status
        try:
            for text in self.responder.stream(loaded.metres, boxes, question, previous, **extra):
                history[-1] = {"role": "assistant", "content": text}
                yield history, status
        except Exception as error:  # keep serving: the failure is shown, the next question works
            logger.exception("generation failed")
            history[-1] = {"role": "assistant", "content": "_(no answer: generation failed)_"}
            yield history, self.report_error(error)
            return
        if extra:  # the region layout's answer is a bare letter: show it with its option
            spelled = spell_out_letter(str(history[-1]["content"]), options)
            if spelled != history[-1]["content"]:
                history[-1] = {"role": "assistant", "content": spelled}
                yield history, status
        if not str(history[-1]["content"]).strip():
            history[-1] = {"role": "assistant", "content": "_(the model returned an empty answer)_"}
            yield history, status


def model_notice(responder: Responder) -> str:
    return getattr(responder, "notice", None) or f"Model: `{responder.name}`."


def build_demo(
    model_path: str | None = None,
    depth_model: str | None = None,
    responder: Responder | None = None,
    examples_dir: str | Path | None = None,
    max_new_tokens: int = 64,
) -> gr.Blocks:
    """The DeepSight demo as a queued `gr.Blocks`; a given `responder` replaces loading `model_path`."""
    if responder is None:
        responder = load_responder(model_path, max_new_tokens=max_new_tokens)
    estimator, estimator_name, estimator_missing = load_depth_estimator(depth_model)
    backend = DemoBackend(responder, estimator, estimator_name)
    examples = write_examples(examples_dir or tempfile.mkdtemp(prefix="deepsight-examples-"))

    encoding_choices = list(ENCODING_CHOICES)
    if estimator is None:
        encoding_choices[-1] = (f"{encoding_choices[-1][0]} (unavailable: {estimator_missing})", "rgb")

    def on_depth_change(path, encoding_value, boxes_text):
        """New depth, encoding or example: redraw, drop a half-drawn box, start a new conversation."""
        view, text = backend.show_depth(path, encoding_value, boxes_text)
        return view, text, None, []

    def on_example(path, encoding_value, boxes_text, question_text, options_text):
        return on_depth_change(path, encoding_value, boxes_text)

    with gr.Blocks(title="DeepSight", analytics_enabled=analytics_enabled()) as demo:
        gr.Markdown(f"# {TITLE}\n{INTRO}")
        gr.Markdown(model_notice(responder), elem_id="model-notice")
        pending_corner = gr.State(None)
        with gr.Row():
            with gr.Column(scale=1):
                depth_file = gr.File(
                    label=f"Depth map or photo (max {MAX_UPLOAD_BYTES // 2**20} MiB, "
                    f"{MAX_SIDE}x{MAX_SIDE} px)",
                    file_count="single",
                    type="filepath",
                    elem_id="depth-file",
                )
                encoding = gr.Dropdown(
                    encoding_choices, value="auto", label="Depth encoding", elem_id="encoding"
                )
                if estimator is None:
                    gr.Markdown(
                        f"_RGB photos: unavailable here ({estimator_missing})._", elem_id="rgb-notice"
                    )
                else:
                    gr.Markdown(f"_RGB photos: depth estimated by `{estimator_name}`._", elem_id="rgb-notice")
                boxes = gr.Textbox(
                    label="Regions (optional)",
                    placeholder="x0,y0,x1,y1; x0,y0,x1,y1  (pixels of the depth map)",
                    elem_id="boxes",
                )
                status = gr.Markdown("Upload a depth map or pick an example.", elem_id="status")
            with gr.Column(scale=1):
                depth_view = gr.Image(
                    label="Depth (colour legend in metres); click two corners to add a region",
                    type="pil",
                    format="png",
                    interactive=False,
                    elem_id="depth-view",
                )
        chatbot = checked_chatbot(label="DeepSight", height=320, elem_id="chat")
        with gr.Row():
            question = gr.Textbox(
                label="Question",
                placeholder="Ask about the scene, e.g. How far away is the table?",
                show_label=False,
                scale=5,
                elem_id="question",
            )
            options = gr.Textbox(
                label="Answer options",
                placeholder="optional choices: chair; table",
                show_label=False,
                scale=2,
                elem_id="options",
            )
            send = gr.Button("Ask", variant="primary", scale=1, elem_id="ask")
            clear = gr.Button("Clear chat", scale=1)
        if examples:
            # An example sets the file, regions and question at once; redrawing on click (not only on
            # `depth_file.change`) shows its regions even when its file is the one already loaded.
            gr.Examples(
                [example.as_row() for example in examples],
                inputs=[depth_file, encoding, boxes, question, options],
                outputs=[depth_view, status, pending_corner, chatbot],
                fn=on_example,
                run_on_click=True,
                cache_examples=False,
                label="Synthetic rooms (one click loads the depth map, regions and a question)",
            )
        gr.Markdown(
            f"Limits: files up to {MAX_UPLOAD_BYTES // 2**20} MiB, images up to {MAX_PIXELS / 1e6:.1f} "
            f"megapixels, questions up to {MAX_QUESTION_CHARS} characters. Answers stream as the model generates "
            "them."
        )

        depth_inputs = [depth_file, encoding, boxes]
        for trigger in (depth_file.change, encoding.change):
            trigger(
                on_depth_change,
                depth_inputs,
                [depth_view, status, pending_corner, chatbot],
                api_visibility="private",
            )
        gr.on(
            [boxes.submit, boxes.blur],
            backend.show_depth,
            depth_inputs,
            [depth_view, status],
            api_name="show_depth",
        )

        def on_view_click(path, encoding_value, boxes_text, pending, event: gr.SelectData):
            x, y = event.index
            return backend.add_corner(path, encoding_value, boxes_text, pending, float(x), float(y))

        depth_view.select(
            on_view_click,
            [depth_file, encoding, boxes, pending_corner],
            [boxes, pending_corner, depth_view, status],
            api_visibility="private",
        )

        ask = zero_gpu(backend.ask)
        ask_event = gr.on(
            [send.click, question.submit],
            ask,
            [depth_file, encoding, boxes, question, options, chatbot],
            [chatbot, status],
            api_name="ask",
            concurrency_limit=GENERATE_CONCURRENCY,
            concurrency_id="generate",
        )
        ask_event.then(lambda: "", None, question, api_visibility="private")
        clear.click(lambda: [], None, chatbot, api_visibility="private")

    demo.queue(max_size=QUEUE_MAX_SIZE, default_concurrency_limit=4)
    return demo


def launch_kwargs(host: str | None = None, port: int | None = None, share: bool = False) -> dict[str, Any]:
    """Arguments for `demo.launch` shared by the CLI and `python app.py`; `host` None: `default_host()`."""
    return {
        "server_name": host or default_host(),
        "server_port": port,
        "share": share,
        "max_file_size": MAX_UPLOAD_BYTES,
    }


def main() -> None:
    """`python app.py`, the Space entry point (app_file: app.py): the model and host come from the environment."""
    logging.basicConfig(level=logging.INFO)
    demo = build_demo(
        model_path=os.environ.get("DEEPSIGHT_MODEL"),
        depth_model=os.environ.get(DEPTH_MODEL_ENV, "vinvino02/glpn-nyu"),
    )
    demo.launch(**launch_kwargs())


if __name__ == "__main__":
    main()
