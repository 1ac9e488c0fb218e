"""What the demo accepts from a user: one depth file (or an RGB photo), its encoding, boxes, and typed text (the
question, answer options and the chat history a client sends back, tags in them escaped: `typed_text`).

Everything here is plain Python (no gradio), so the checks are unit-testable and the error messages
are the ones a user sees in the app. Every rejection is a `ValueError` whose message names the input
and what was expected; the app shows it and keeps serving.
"""

from __future__ import annotations

import os
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image, UnidentifiedImageError

from deepsight.markup import escape_markup
from deepsight.prompts import OPTION_LETTERS, answer_text
from modeling_deepsight.depth_codec_deepsight import (
    DEPTH_ENCODINGS,
    check_pil_bit_depth,
    is_colour_photo,
    load_depth,
)
from spaces_demo.responder import message_text

# Limits that keep one upload from taking the (shared, CPU) Space down. A depth sensor frame is
# ~640x480; 4096 px a side leaves room for phone photos turned into depth.
MAX_UPLOAD_BYTES = 20 * 1024 * 1024
MAX_SIDE = 4096
MAX_PIXELS = 4096 * 4096
MAX_BOXES = 16
MAX_QUESTION_CHARS = 1000
# A turn of the chat history a client sends back: a question, or an answer of a few hundred tokens.
MAX_MESSAGE_CHARS = 8000
CHAT_ROLES = ("user", "assistant")
HISTORY_FORMAT = "a list of messages like {'role': 'user', 'content': 'How far is the chair?'}"

# "auto" detects the depth encoding; "rgb" runs a depth estimator on a colour photo.
ENCODING_CHOICES: list[tuple[str, str]] = [
    ("auto: detect from the file", "auto"),
    ("16-bit PNG in millimetres", "mm"),
    ("SUN RGB-D 16-bit PNG (bit-rotated mm)", "sun"),
    ("8-bit grayscale, brighter = closer (relative)", "gray8"),
    ("float metres (.npy)", "metres"),
    ("RGB photo: estimate depth with a model", "rgb"),
]
ENCODING_DESCRIPTIONS = {
    "mm": "16-bit millimetres",
    "sun": "SUN RGB-D bit-rotated 16-bit millimetres",
    "gray8": "8-bit relative grayscale (brighter = closer; the metres are a relative scale, not metric)",
    "metres": "float metres",
    "rgb": "RGB photo, depth estimated",
}


@dataclass
class LoadedDepth:
    """A decoded upload: metres (float32 H x W, 0 = invalid) and how it was read."""

    metres: np.ndarray
    encoding: str  # one of DEPTH_ENCODINGS, or "rgb" for an estimated map
    description: str  # what the user is told was assumed
    notes: list[str] = field(default_factory=list)

    @property
    def height(self) -> int:
        return int(self.metres.shape[0])

    @property
    def width(self) -> int:
        return int(self.metres.shape[1])


DepthEstimator = Callable[[Image.Image], np.ndarray]  # RGB photo -> metres of the same size


def check_upload_file(path: str | os.PathLike | None) -> Path:
    """The uploaded file exists, is not empty and is within `MAX_UPLOAD_BYTES`."""
    if path is None or str(path) == "":
        raise ValueError(
            "No depth file: upload a depth map (16-bit PNG, SUN RGB-D PNG, 8-bit grayscale or .npy)."
        )
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"Depth file {path.name!r} was not received; upload it again.")
    size = path.stat().st_size
    if size == 0:
        raise ValueError(
            f"Depth file {path.name!r} is empty (0 bytes); expected a depth image or .npy array."
        )
    if size > MAX_UPLOAD_BYTES:
        raise ValueError(
            f"Depth file {path.name!r} is {size / 2**20:.1f} MiB; this demo accepts files up to "
            f"{MAX_UPLOAD_BYTES / 2**20:.0f} MiB."
        )
    return path


def check_dimensions(height: int, width: int, name: str) -> None:
    """Reject maps too large (or degenerate) to process on a CPU Space, before decoding their pixels."""
    if height <= 0 or width <= 0:
        raise ValueError(f"{name} has no pixels ({width}x{height}); expected a non-empty depth map.")
    if max(height, width) > MAX_SIDE or height * width > MAX_PIXELS:
        raise ValueError(
            f"{name} is {width}x{height} pixels; this demo accepts images up to {MAX_SIDE}x{MAX_SIDE} "
            f"({MAX_PIXELS / 1e6:.1f} megapixels). Downscale it first."
        )


def _read_npy(path: Path) -> np.ndarray:
    """Read a .npy after checking its header (shape, dtype) so a huge array is never loaded."""
    try:
        with open(path, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            if version == (1, 0):
                read_header = np.lib.format.read_array_header_1_0
            else:
                read_header = np.lib.format.read_array_header_2_0
            shape, _, dtype = read_header(handle)
    except Exception as error:  # numpy raises ValueError / EOFError / others on garbage
        raise ValueError(f"{path.name!r} is not a valid .npy array ({error}).") from None
    if dtype.hasobject:
        raise ValueError(f"{path.name!r} holds Python objects; expected a numeric depth array.")
    squeezed = [dim for dim in shape if dim != 1] or [1]
    if len(squeezed) != 2:
        raise ValueError(f"{path.name!r} has shape {shape}; expected a depth map of shape (H, W).")
    check_dimensions(squeezed[0], squeezed[1], repr(path.name))
    return np.load(path, allow_pickle=False)


def _open_image(path: Path) -> tuple[Image.Image, str | None]:
    """Open an image lazily, check its size from the header, then decode it.

    Also returns why it cannot be depth when PIL narrows it (a 16-bit colour file decodes to 8 bits per channel):
    only the undecoded file tells, and a photo is still fine as a photo.
    """
    try:
        image = Image.open(path)
    except Image.DecompressionBombError as error:  # PIL refuses before decoding; its message has the size
        claimed = re.search(r"\((\d+) pixels\)", str(error))
        size = f"{int(claimed.group(1)) / 1e6:.0f} megapixels" if claimed else "beyond PIL's safety limit"
        raise ValueError(
            f"{path.name!r} is too large ({size}); this demo accepts images up to {MAX_SIDE}x{MAX_SIDE} "
            f"pixels ({MAX_PIXELS / 1e6:.1f} megapixels). Downscale it first."
        ) from None
    except (UnidentifiedImageError, OSError, SyntaxError):
        raise ValueError(
            f"{path.name!r} is not an image or .npy array this demo can read; expected a depth map as "
            "a 16-bit PNG (mm), a SUN RGB-D PNG, an 8-bit grayscale image or a .npy array."
        ) from None
    width, height = image.size
    check_dimensions(height, width, repr(path.name))
    try:
        check_pil_bit_depth(image, path.name)
        narrowed = None
    except ValueError as error:
        narrowed = str(error)
    try:
        image.load()
    except Exception as error:  # truncated or corrupt data after a valid header
        raise ValueError(f"{path.name!r} is a damaged image: {error}.") from None
    return image, narrowed


def read_depth_upload(
    path: str | os.PathLike | None,
    encoding: str = "auto",
    estimator: DepthEstimator | None = None,
    estimator_name: str | None = None,
) -> LoadedDepth:
    """Decode an uploaded file to metres, checking the size limits first.

    `encoding` is "auto" (detect; a colour photo goes to `estimator`), "rgb" (always estimate) or one of
    `DEPTH_ENCODINGS`.
    """
    valid = ("auto", "rgb", *DEPTH_ENCODINGS)
    if encoding not in valid:
        raise ValueError(f"Encoding must be one of {valid}; got {encoding!r}.")
    path = check_upload_file(path)
    name = repr(path.name)
    if path.suffix.lower() == ".npy":
        if encoding == "rgb":
            raise ValueError(f"{name} is a .npy array; the RGB option expects a photo (PNG/JPEG).")
        raw: Any = _read_npy(path)
    else:
        raw, narrowed = _open_image(path)
        if encoding == "rgb" or (encoding == "auto" and is_colour_photo(raw)):
            return _estimate_from_photo(raw, name, estimator, estimator_name, chosen=encoding == "rgb")
        if narrowed:
            raise ValueError(f"Could not read {name} as depth: {narrowed}")
    try:
        metres, used = load_depth(raw, encoding=None if encoding == "auto" else encoding, name=path.name)
    except ValueError as error:
        raise ValueError(f"Could not read {name} as depth: {error}") from None
    notes = []
    if used == "gray8":
        notes.append("8-bit depth carries no metric scale: distances are relative.")
    return LoadedDepth(metres, used, ENCODING_DESCRIPTIONS[used], notes)


def _estimate_from_photo(
    image: Image.Image, name: str, estimator: DepthEstimator | None, estimator_name: str | None, chosen: bool
) -> LoadedDepth:
    if estimator is None:
        reason = "you chose the RGB photo option" if chosen else f"{name} is a colour photo, not a depth map"
        raise ValueError(
            f"{reason[0].upper()}{reason[1:]}, but no depth-estimation model is available offline on this "
            "server. Start the demo with --depth-model PATH (or set DEEPSIGHT_DEPTH_MODEL) to a local "
            "transformers depth-estimation model, or upload a depth map instead."
        )
    metres = np.asarray(estimator(image.convert("RGB")), dtype=np.float32)
    metres = np.where(np.isfinite(metres) & (metres > 0), metres, 0).astype(np.float32)
    if not np.any(metres > 0):
        raise ValueError(f"The depth estimator returned no valid depth for {name}.")
    description = f"RGB photo, depth estimated by {estimator_name or 'a depth-estimation model'}"
    notes = ["Estimated depth: its scale is only as good as the estimator."]
    return LoadedDepth(metres, "rgb", description, notes)


_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)"
_BOX_SPLIT = re.compile(r"[;\n]+")


def parse_boxes(text: str | None, width: int, height: int) -> list[list[float]]:
    """Parse "x0,y0,x1,y1; x0,y0,x1,y1" (pixels of the depth map) into clipped boxes.

    Brackets and extra spaces are tolerated; corners may be given in either order. A box must have
    four numbers and a non-empty area inside the map.
    """
    if text is not None and not isinstance(text, str):
        raise ValueError(f"Regions must be text like 'x0,y0,x1,y1; x0,y0,x1,y1'; got {type(text).__name__}.")
    if not text or not text.strip():
        return []
    boxes: list[list[float]] = []
    for index, chunk in enumerate(part for part in _BOX_SPLIT.split(text) if part.strip()):
        numbers = [float(value) for value in re.findall(_NUMBER, chunk)]
        leftover = re.sub(_NUMBER, "", chunk)
        if len(numbers) != 4 or re.search(r"[^\s,\[\]\(\)]", leftover):
            raise ValueError(
                f"Box {index + 1} ({chunk.strip()!r}) must be four numbers x0,y0,x1,y1 in pixels; "
                "separate boxes with ';'."
            )
        x0, x1 = sorted((numbers[0], numbers[2]))
        y0, y1 = sorted((numbers[1], numbers[3]))
        x0, x1 = min(max(x0, 0.0), width), min(max(x1, 0.0), width)
        y0, y1 = min(max(y0, 0.0), height), min(max(y1, 0.0), height)
        if x1 - x0 < 1 or y1 - y0 < 1:
            raise ValueError(
                f"Box {index + 1} ({chunk.strip()!r}) has no area inside the {width}x{height} depth map."
            )
        boxes.append([x0, y0, x1, y1])
    if len(boxes) > MAX_BOXES:
        raise ValueError(f"{len(boxes)} boxes given; at most {MAX_BOXES} are supported.")
    return boxes


def typed_text(text: Any, what: str) -> str:
    """What the user typed, stripped, as text for the model: a tag in it (``<box>``, ``<image>``, ``<|user|>``...)
    is escaped to look-alike brackets, not stripped, so the words reach the model and the chat as typed but act
    as nothing (a typed box cannot add a region past `MAX_BOXES`, a typed ``<|assistant|>`` cannot forge a turn)."""
    if text is None:
        return ""
    if not isinstance(text, str):
        raise ValueError(f"The {what} must be text; got {type(text).__name__}.")
    return escape_markup(text.strip())


def parse_question(text: Any) -> str:
    """The question as the model gets it (`typed_text`): not empty and within `MAX_QUESTION_CHARS`."""
    question = typed_text(text, "question")
    if not question:
        raise ValueError("Type a question about the depth map first.")
    if len(question) > MAX_QUESTION_CHARS:
        raise ValueError(f"The question is {len(question)} characters; keep it under {MAX_QUESTION_CHARS}.")
    return question


def parse_history(history: Any) -> list[dict[str, str]]:
    """The chat so far as the model may read it: one ``{"role", "content": text}`` per turn, tags escaped as in
    `typed_text` (a client sends the history back, so it is typed text too).

    A malformed history (not a list, a message that is not a dict, a role other than user/assistant, content
    that is not text or text parts, an over-long message) is a ValueError naming the message and what was wrong.
    """
    if history is None:
        return []
    if not isinstance(history, (list, tuple)):
        raise ValueError(f"The chat history must be {HISTORY_FORMAT}; got {type(history).__name__}.")
    turns = []
    for number, message in enumerate(history, start=1):
        if not isinstance(message, dict):
            raise ValueError(f"Chat history message {number} is a {type(message).__name__}; expected {HISTORY_FORMAT}.")
        if message.get("role") not in CHAT_ROLES:
            raise ValueError(
                f"Chat history message {number} has role {message.get('role')!r}; expected 'user' or 'assistant'."
            )
        if not _is_text_content(message.get("content")):
            raise ValueError(
                f"Chat history message {number} has content {message.get('content')!r:.60}; expected text or a "
                "list of {'type': 'text', 'text': ...} parts."
            )
        text = message_text(message)
        if len(text) > MAX_MESSAGE_CHARS:
            raise ValueError(
                f"Chat history message {number} is {len(text)} characters; at most {MAX_MESSAGE_CHARS} are accepted."
            )
        turns.append({"role": message["role"], "content": escape_markup(text)})
    return turns


def _is_text_content(content: Any) -> bool:
    """Text, or parts each text (a string or a dict whose "text" is a string) or a non-text part (a file)."""
    if isinstance(content, str):
        return True
    parts = [content] if isinstance(content, dict) else content
    if not isinstance(parts, (list, tuple)):
        return False
    return all(
        isinstance(part, str) or (isinstance(part, dict) and isinstance(part.get("text", ""), str)) for part in parts
    )


def parse_options(text: str | None) -> list[str]:
    """Answer options "chair; table" (or one per line) -> ["chair", "table"]; empty text = a free question."""
    options = [option.strip() for option in re.split(r"[;\n]+", typed_text(text, "answer options")) if option.strip()]
    if len(options) == 1:
        raise ValueError(f"One answer option ({options[0]!r}) is not a choice; give two or more, or none.")
    if len(options) > len(OPTION_LETTERS):
        raise ValueError(f"{len(options)} answer options given; at most {len(OPTION_LETTERS)} are supported.")
    return options


def spell_out_letter(answer: str, options: list[str]) -> str:
    """'B' -> 'B. lamp': in the region layout the model answers with the region's letter alone, the chat shows
    which option that is. Any other answer is kept as it is."""
    letter = answer.strip().rstrip(".")
    if len(letter) == 1 and letter in OPTION_LETTERS[: len(options)]:
        return answer_text(options, OPTION_LETTERS.index(letter))
    return answer


def format_boxes(boxes: list[list[float]]) -> str:
    """The text form `parse_boxes` reads back."""
    return "; ".join(",".join(f"{value:g}" for value in box) for box in boxes)


class DepthCache:
    """A small thread-safe LRU of decoded uploads: a chat turn does not re-decode or re-estimate the file."""

    def __init__(self, size: int = 8):
        self.size = size
        self._items: OrderedDict[tuple, LoadedDepth] = OrderedDict()
        self._lock = threading.Lock()

    def get(
        self, path: str | os.PathLike | None, encoding: str, loader: Callable[[], LoadedDepth]
    ) -> LoadedDepth:
        try:
            stat = os.stat(path) if path else None
        except OSError:
            stat = None
        key = (str(path), encoding, stat.st_mtime_ns if stat else None, stat.st_size if stat else None)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        loaded = loader()
        with self._lock:
            self._items[key] = loaded
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return loaded
