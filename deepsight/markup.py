"""Text that must reach a model as text, never as markup.

The processor acts on its image placeholder and on ``<box>[x0, y0, x1, y1]</box>`` tags wherever they appear in a
prompt, and a tokenizer turns chat-control strings (``<|im_end|>``, ``</s>``, ``[INST]``...) into control tokens.
Text from outside (an instruction endpoint's replies, what a demo user types) must therefore carry none of them:
`find_markup` names the first kind it holds (the endpoint rejects such replies), `escape_markup` defuses them while
keeping the words readable (the demo's questions).
"""

from __future__ import annotations

import re

from modeling_deepsight.processing_deepsight import BOX_CLOSE, BOX_OPEN, IMAGE_TOKEN

_CHAT_CONTROL = (
    r"<\|[^<>|\n]{0,64}\|>"  # ChatML / Llama 3 / our chat template: <|im_end|>, <|eot_id|>, <|assistant|>
    r"|<｜[^<>｜\n]{0,64}｜>"  # DeepSeek's full-width bars
    r"|</?s>|<unk>|<pad>|<bos>|<eos>|<(?:start|end)_of_turn>"  # sentencepiece and Gemma specials
    r"|\[/?INST\]|<</?SYS>>"  # Llama 2 / Mistral
)
_ROLES = r"(?:system|assistant|user|human|gpt|instruction|response|input)"

# Kind of markup -> what finds it; the kinds name the rejected replies in the endpoint's count table.
MARKUP_PATTERNS: dict[str, re.Pattern] = {
    "image token": re.compile(re.escape(IMAGE_TOKEN)),
    "box tag": re.compile(f"{re.escape(BOX_OPEN)}|{re.escape(BOX_CLOSE)}"),
    "chat control": re.compile(_CHAT_CONTROL, re.IGNORECASE),
    # "User: ...", "### Instruction", "**Assistant:**" at the start of a line: a turn the text writes for itself
    "role header": re.compile(
        rf"^[ \t>*_]*(?:#{{1,6}}[ \t]*)?{_ROLES}[ \t*_]*:|^[ \t]*#{{1,6}}[ \t]*{_ROLES}\b",
        re.IGNORECASE | re.MULTILINE,
    ),
}
# The kinds a prompt would act on as markup (a role header is plain text to our chat template).
_TAGS = re.compile("|".join(f"(?:{MARKUP_PATTERNS[kind].pattern})" for kind in ("image token", "box tag")) + "|"
                   + f"(?i:{_CHAT_CONTROL})")
# Look-alike brackets: the words stay readable, no tokenizer or tag parser matches them (and NFKC keeps them).
_DEFUSE = str.maketrans({"<": "‹", ">": "›", "[": "⟦", "]": "⟧", "|": "¦", "｜": "¦"})


def find_markup(text: str) -> tuple[str, str] | None:
    """(kind, the offending string) of the first kind of markup `text` holds, in `MARKUP_PATTERNS` order; None if
    it holds none."""
    for kind, pattern in MARKUP_PATTERNS.items():
        match = pattern.search(text)
        if match:
            return kind, match.group(0)
    return None


def escape_markup(text: str) -> str:
    """`text` with every image placeholder, box tag and chat-control string written with look-alike brackets
    (``<box>`` -> ``‹box›``): shown and read as typed, acted on by nothing."""
    return _TAGS.sub(lambda match: match.group(0).translate(_DEFUSE), text)
