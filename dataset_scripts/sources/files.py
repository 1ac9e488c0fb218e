"""What the real-data readers share: a report of skipped frames / dropped annotations and safe file reads.

One bad frame must not stop a run over thousands: readers record it in a `ReadReport` (reason ->
count, plus the first few messages of each reason, naming the file and the frame or record) and go on;
any exception raised while reading one frame skips that frame (`as_frame_error`). What makes the whole
run impossible (a missing root folder, a file that is not the format at all) is a `ValueError` instead.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

MAX_MESSAGES_PER_REASON = 10
# A frame with fewer valid (> 0) depth pixels than this asks questions about nothing; real SUN RGB-D and NYU
# frames hold 62-93 % (../shared/realdata).
MIN_VALID_DEPTH_FRACTION = 0.1
IMAGE_DECODE_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError)


class FrameError(Exception):
    """One frame cannot be read; `reason` is the counter key it is reported under."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclass
class ReadReport:
    """Frames read / skipped and annotations dropped by a reader, per reason."""

    frames_read: int = 0
    skipped_frames: Counter = field(default_factory=Counter)
    dropped_annotations: Counter = field(default_factory=Counter)
    messages: list[str] = field(default_factory=list)
    _noted: Counter = field(default_factory=Counter, init=False, repr=False, compare=False)

    def skip(self, frame_id: str, error: FrameError) -> None:
        self.skipped_frames[error.reason] += 1
        self._note(error.reason, f"skipped {frame_id}: {error}")

    def drop(self, reason: str, detail: str = "", count: int = 1) -> None:
        self.dropped_annotations[reason] += count
        if detail:
            self._note(reason, f"dropped annotation ({reason}): {detail}")

    def _note(self, reason: str, message: str) -> None:
        # the first few of every reason, so a rare reason is not crowded out by a frequent one; once each, as
        # builders read the scenes twice into one report
        if self._noted[reason] < MAX_MESSAGES_PER_REASON and message not in self.messages:
            self._noted[reason] += 1
            self.messages.append(message)

    def as_dict(self) -> dict[str, Any]:
        return {
            "frames_read": self.frames_read,
            "skipped_frames": dict(sorted(self.skipped_frames.items())),
            "dropped_annotations": dict(sorted(self.dropped_annotations.items())),
        }


def as_frame_error(error: Exception, path: str | Path) -> FrameError:
    """`error` as the FrameError its frame is skipped for; an unforeseen exception counts under its type."""
    if isinstance(error, FrameError):
        return error
    return FrameError(f"unexpected_{type(error).__name__}", f"{path}: {type(error).__name__}: {error}"[:500])


def check_min_fraction(value: float, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name}: expected a fraction in [0, 1], got {value!r}")
    return float(value)


def check_valid_depth(depth: np.ndarray, path: str | Path, min_valid_fraction: float) -> None:
    """FrameError when fewer than `min_valid_fraction` of the depth pixels are valid (finite and > 0)."""
    fraction = float((np.isfinite(depth) & (depth > 0)).mean()) if depth.size else 0.0
    if fraction < min_valid_fraction:
        raise FrameError(
            "too_little_valid_depth",
            f"{path}: {fraction:.1%} of the depth pixels are valid, fewer than {min_valid_fraction:.0%}",
        )


def require_dir(path: str | Path, what: str) -> Path:
    path = Path(path)
    if not path.is_dir():
        raise ValueError(f"{what}: folder {str(path)!r} does not exist")
    return path


def read_image_array(path: Path, what: str) -> np.ndarray:
    """A PNG/JPEG as a numpy array (16-bit PNGs keep their uint16 values); FrameError when unreadable."""
    try:
        with Image.open(path) as image:
            image.load()
            return np.asarray(image)
    except FileNotFoundError as err:
        raise FrameError(f"missing_{what}", f"{what} file {path} not found") from err
    except IMAGE_DECODE_ERRORS as err:
        raise FrameError(f"corrupt_{what}", f"{what} file {path} cannot be decoded ({err})") from err


def read_image_shape(path: Path, what: str) -> tuple[int, int]:
    """(height, width) from the image header only, for size checks that need no pixels."""
    try:
        with Image.open(path) as image:
            image.verify()  # cheap integrity check of the header / chunks
            return image.size[1], image.size[0]
    except FileNotFoundError as err:
        raise FrameError(f"missing_{what}", f"{what} file {path} not found") from err
    except IMAGE_DECODE_ERRORS as err:
        raise FrameError(f"corrupt_{what}", f"{what} file {path} cannot be decoded ({err})") from err


def read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise FrameError(f"missing_{what}", f"{what} file {path} not found") from err
    except ValueError as err:  # JSONDecodeError, UnicodeDecodeError, an integer too long to convert
        raise FrameError(f"corrupt_{what}", f"{what} file {path} is not valid JSON ({err})") from err
    except RecursionError as err:
        raise FrameError(f"corrupt_{what}", f"{what} file {path} is nested too deeply to read") from err


def read_mat_variables(path: Path, names: tuple[str, ...], what: str) -> list[np.ndarray]:
    """The named variables of a MATLAB v5 file, in the order of `names`.

    A missing file raises `FileNotFoundError` (readers count it apart from a broken one); a file that is not
    MATLAB v5, or lacks one of the variables, raises a `ValueError` naming the file and `what` was expected.
    """
    import scipy.io  # slow to import, and only the .mat readers need it

    try:
        data = scipy.io.loadmat(str(path))
        return [data[name] for name in names]
    except FileNotFoundError:
        raise
    except (KeyError, ValueError, TypeError, OSError, NotImplementedError, scipy.io.matlab.MatReadError) as err:
        raise ValueError(f"{path}: not {what} ({err})") from err


def box_of_mask(mask: np.ndarray) -> tuple[float, float, float, float]:
    """[x0, y0, x1, y1] of a non-empty boolean mask, x1/y1 exclusive (pixel edges)."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return (float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1))


def check_same_size(depth: np.ndarray, other: np.ndarray | tuple[int, int], what: str) -> None:
    """FrameError unless `other` (an array, or a (height, width) pair) has the depth map's size."""
    shape = tuple(other[:2]) if isinstance(other, tuple) else other.shape[:2]
    if depth.shape[:2] != shape:
        raise FrameError(
            "size_mismatch", f"depth is {depth.shape[1]}x{depth.shape[0]} but {what} is {shape[1]}x{shape[0]}"
        )
