"""Prompt conventions shared by the benchmark, the instruction data and the evaluation harness.

Keeping them in one place means the model is trained on exactly the multiple-choice layout it is
evaluated with, and parsing an answer back to an option uses the same letters.
"""

from __future__ import annotations

import re

OPTION_LETTERS = "ABCDEFGH"
ANSWER_INSTRUCTION = "Answer with the option's letter from the given choices directly."


def format_options(options: list[str]) -> str:
    """'A. chair\\nB. table' for the options in order."""
    if len(options) > len(OPTION_LETTERS):
        raise ValueError(f"options: at most {len(OPTION_LETTERS)} supported, got {len(options)}")
    return "\n".join(f"{OPTION_LETTERS[i]}. {option}" for i, option in enumerate(options))


def format_multiple_choice(question: str, options: list[str], instruction: str = ANSWER_INSTRUCTION) -> str:
    """The user turn of a benchmark question: question, lettered options, answer instruction."""
    return f"{question.strip()}\n{format_options(options)}\n{instruction}"


# Distance Judgment without object names (training twins, `--unnamed-distance`, and the evaluation's depth-only
# probe): only the two regions' depths tell the answer.
UNNAMED_FARTHER_QUESTIONS = (
    "Which of the two marked regions is farther from the camera?",
    "Which marked region is at a greater distance from the viewpoint?",
    "Of the two outlined regions, which one is farther away?",
)
UNNAMED_REGIONS = ("the first region", "the second region")


def region_choice_content(question: str, options: list[str], instruction: str = ANSWER_INSTRUCTION) -> list[dict]:
    """The user turn of a multiple-choice question in the per-option region layout, as chat content blocks.

    Each option is followed by its own image block: the caller passes one copy of the depth map per option,
    whose Bbox-Conv mask is that option's box alone. With the paper's single image the mask is the union of
    both boxes of a Distance Judgment question, and which box is "the chair" is left to the model to work
    out; here each name stands next to its region. Rendered by the default template as
    'question\nA. chair <image>\nB. lamp <image>\ninstruction'.
    """
    if len(options) > len(OPTION_LETTERS):
        raise ValueError(f"options: at most {len(OPTION_LETTERS)} supported, got {len(options)}")
    blocks: list[dict] = []
    lead = f"{question.strip()}\n"
    for i, option in enumerate(options):
        blocks += [{"type": "text", "text": f"{lead}{OPTION_LETTERS[i]}. {option} "}, {"type": "image"}]
        lead = ""
    return blocks + [{"type": "text", "text": instruction}]


def answer_text(options: list[str], answer_index: int) -> str:
    """The assistant turn a correct model gives: 'B. table'.

    Letter and name together: with the name alone a small model answers names that are not among the options,
    and with the letter alone it does not learn to bind a letter to one of 3-4 options (docs/experiments.md).
    """
    return f"{_option_letter(options, answer_index)}. {options[answer_index]}"


def region_answer_text(options: list[str], answer_index: int) -> str:
    """The assistant turn in the per-option region layout: the region's letter alone, 'B'.

    There the options are regions, each told by its letter and its own image; a name after the letter is a
    second answer the model can draw from the names' statistics instead of the depths (docs/experiments.md).
    """
    return _option_letter(options, answer_index)


def _option_letter(options: list[str], answer_index: int) -> str:
    if not 0 <= answer_index < len(options):
        raise ValueError(f"answer_index: expected 0..{len(options) - 1} for {len(options)} options, got {answer_index}")
    return OPTION_LETTERS[answer_index]


_LETTER = f"([{OPTION_LETTERS}])"
_LETTER_RE = re.compile(rf"^\s*\(?{_LETTER}[\.\):\s]|^\s*\(?{_LETTER}\)?\s*$")


def _letter_named(text: str, options: list[str]) -> int | None:
    """The option a leading letter ('B', 'B.', '(B)', 'B) ...') points to, None without one."""
    match = _LETTER_RE.match(text)
    if not match:
        return None
    index = OPTION_LETTERS.index(match.group(1) or match.group(2))
    return index if index < len(options) else -1  # a letter past the options names nothing


def _text_named(text: str, options: list[str]) -> int | None:
    """The one option whose text the answer holds, None when it holds none or several."""
    lowered = text.lower().rstrip(".!")
    exact = [i for i, option in enumerate(options) if option.lower() == lowered]
    if len(exact) == 1:
        return exact[0]
    named = [i for i, option in enumerate(options) if re.search(rf"\b{re.escape(option.lower())}\b", lowered)]
    # "coffee table" also names "table": an option inside a longer named option is not named by itself.
    named = [i for i in named if not any(j != i and options[i].lower() in options[j].lower() for j in named)]
    return named[0] if len(named) == 1 else None


def letter_conflict(output: str, options: list[str]) -> bool:
    """True when the answer's leading letter and the option text it spells out name different options
    ('A. table' with table as option B)."""
    text = output.strip()
    letter = _letter_named(text, options)
    if letter is None:
        return False
    named = _text_named(_LETTER_RE.sub("", text, count=1), options)
    return named is not None and named != letter


def parse_option(output: str, options: list[str]) -> int | None:
    """Map a free-form answer to an option index: the option text, a leading letter, or its number.

    An answer that spells out one option's text is that option, even when its leading letter points to
    another ('A. table' with table as option B): the text says what the model chose, the letter is an index
    a small model often gets wrong (`letter_conflict` tells those answers apart; the harness counts them).
    Returns None when the answer names no option or names several (counted as wrong by the harness).
    """
    text = output.strip()
    letter = _letter_named(text, options)
    named = _text_named(_LETTER_RE.sub("", text, count=1) if letter is not None else text, options)
    if named is not None:
        return named
    if letter is not None:
        return letter if letter >= 0 else None
    number = re.match(r"^\s*(\d+)\b", text)
    if number and 1 <= int(number.group(1)) <= len(options):
        return int(number.group(1)) - 1
    return None
