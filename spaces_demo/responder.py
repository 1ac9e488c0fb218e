"""Who answers in the chat: a `Responder` streams an answer about one depth map.

The app only talks to the `Responder` protocol, so the UI does not care whether the answers come from a
trained checkpoint, the quickstart's model or a tiny random model. `load_responder` picks the model:
`--model` / `DEEPSIGHT_MODEL` first, then the quickstart checkpoint, then a tiny random model with a
notice saying its words are noise.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from deepsight.checkpoints import load_checkpoint
from deepsight.regions import layout_of_content

logger = logging.getLogger(__name__)

MODEL_ENV = "DEEPSIGHT_MODEL"
REPO_ROOT = Path(__file__).resolve().parents[1]
QUICKSTART_MODEL = Path("outputs") / "quickstart" / "model"
# Earlier turns kept in the prompt: enough for a follow-up question, short enough for a tiny context.
MAX_HISTORY_TURNS = 4


class Responder(Protocol):
    """Streams the answer to `question` about a depth map (metres) and its boxes, given the chat so far."""

    name: str

    def stream(
        self, depth: np.ndarray, boxes: list[list[float]], question: str, history: Sequence[dict[str, Any]],
        regions: list[dict[str, Any]] | None = None,
    ) -> Iterator[str]:
        """Yields the answer so far (each value extends the previous one). `regions`: the question as the
        per-option region layout's content blocks (`deepsight.prompts.region_choice_content`), one image per
        box; passed only for such questions."""
        ...


def message_text(message: dict[str, Any]) -> str:
    """The text of a chat message whose content is a string or a list of parts (gradio / TRL style)."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        content = [content]
    parts = []
    for part in content or []:
        if isinstance(part, str):
            parts.append(part)
        elif isinstance(part, dict) and part.get("type", "text") == "text" and "text" in part:
            parts.append(str(part["text"]))
    return "".join(parts)


def build_messages(
    history: Sequence[dict[str, Any]], question: str, regions: list[dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """TRL-style messages for the model: the depth image in the first user turn, then text turns.

    With `regions` (content blocks holding their own images) the last user turn is those blocks and the earlier
    turns stay text only, so the images are exactly the regions'.
    """
    turns = [
        {"role": message["role"], "text": message_text(message)}
        for message in history
        if message.get("role") in ("user", "assistant") and message_text(message).strip()
    ]
    turns = turns[-2 * MAX_HISTORY_TURNS :]
    while turns and turns[0]["role"] != "user":  # a cut history must still start with the user
        turns.pop(0)
    turns.append({"role": "user", "text": question})
    messages = []
    for index, turn in enumerate(turns):
        content: list[dict[str, Any]] = [{"type": "text", "text": turn["text"]}]
        if regions is not None and index == len(turns) - 1:
            content = list(regions)
        elif index == 0 and regions is None:
            content.insert(0, {"type": "image"})
        messages.append({"role": turn["role"], "content": content})
    return messages


class DeepSightResponder:
    """Greedy answers from a DeepSight model, streamed (`TextIteratorStreamer`, `generate` in a thread)."""

    def __init__(
        self, model: Any, processor: Any, name: str, max_new_tokens: int = 64, notice: str | None = None
    ):
        self.model = model.eval()
        self.processor = processor
        self.name = name
        self.notice = notice
        self.max_new_tokens = max_new_tokens

    def prepare_inputs(
        self, depth: np.ndarray, boxes: list[list[float]], question: str, history=(), regions=None
    ) -> Any:
        """Model inputs: one depth image masked to all `boxes`, or with `regions` one copy per box, each masked
        to its own box (the layout the quickstart model learned Distance Judgment in)."""
        messages = build_messages(history, question, regions)
        prompt = self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        if regions is not None:
            layout = layout_of_content(regions, boxes)
            images, boxes_per_image = layout.images(depth), layout.boxes
        else:
            images, boxes_per_image = [depth], [boxes]
        inputs = self.processor(
            images=images, text=[prompt], boxes=boxes_per_image, depth_encoding="metres", return_tensors="pt"
        )
        return inputs.to(self.model.device)

    def generation_kwargs(self) -> dict[str, Any]:
        tokenizer = self.processor.tokenizer
        pad_token_id = tokenizer.eos_token_id if tokenizer.pad_token_id is None else tokenizer.pad_token_id
        return {
            "max_new_tokens": self.max_new_tokens,
            "do_sample": False,
            "pad_token_id": pad_token_id,
        }

    def answer(self, depth: np.ndarray, boxes: list[list[float]], question: str, history=(), regions=None) -> str:
        """The full answer without streaming (same greedy decoding as `stream`)."""
        import torch

        inputs = self.prepare_inputs(depth, boxes, question, history, regions)
        with torch.inference_mode():
            output = self.model.generate(**inputs, **self.generation_kwargs())
        new_tokens = output[0, inputs["input_ids"].shape[1] :]
        return self.processor.tokenizer.decode(new_tokens, skip_special_tokens=True)

    def stream(self, depth, boxes, question, history=(), regions=None) -> Iterator[str]:
        import torch
        from transformers import TextIteratorStreamer

        inputs = self.prepare_inputs(depth, boxes, question, history, regions)
        streamer = TextIteratorStreamer(
            self.processor.tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=300.0
        )
        failure: list[BaseException] = []

        def generate() -> None:
            try:
                with torch.inference_mode():
                    self.model.generate(**inputs, **self.generation_kwargs(), streamer=streamer)
            except BaseException as error:  # surfaced to the caller below, never lost in the thread
                failure.append(error)
                streamer.end()

        thread = threading.Thread(target=generate, name="deepsight-generate", daemon=True)
        thread.start()
        text = ""
        for piece in streamer:
            if piece:
                text += piece
                yield text
        thread.join()
        if failure:
            raise RuntimeError(f"generation failed: {failure[0]}") from failure[0]


@dataclass
class ModelChoice:
    """Where the model comes from and what the user is told about it."""

    source: str | None  # a local folder or hub id; None = the tiny random model
    notice: str


def resolve_model_source(
    model: str | os.PathLike | None = None, search_dirs: Sequence[Path] = ()
) -> ModelChoice:
    """`model`, then $DEEPSIGHT_MODEL, then outputs/quickstart/model (cwd, then repo), else None (tiny)."""
    if model:
        return ModelChoice(str(model), f"Model: `{model}`.")
    if os.environ.get(MODEL_ENV):
        return ModelChoice(os.environ[MODEL_ENV], f"Model: `{os.environ[MODEL_ENV]}` (from ${MODEL_ENV}).")
    for base in (*search_dirs, Path.cwd(), REPO_ROOT):
        candidate = Path(base) / QUICKSTART_MODEL
        if (candidate / "config.json").is_file() or (candidate / "adapter_config.json").is_file():
            return ModelChoice(str(candidate), f"Model: the quickstart checkpoint `{candidate}`.")
    return ModelChoice(
        None,
        "**No trained checkpoint found**: a tiny *random* DeepSight model answers, so the UI works but its "
        "answers are noise. Run `make quickstart`, or start with `deepsight demo --model PATH` "
        f"(or set ${MODEL_ENV}) to use a trained model.",
    )


def build_tiny_model_and_processor(seed: int = 0) -> tuple[Any, Any]:
    """The fallback when no checkpoint exists: a tiny random DeepSight, deterministic from `seed`."""
    from deepsight.tiny import build_tiny_deepsight

    return build_tiny_deepsight(seed=seed)


def pick_device() -> str:
    """ "cuda" on a GPU or a ZeroGPU Space (`spaces` makes `.to("cuda")` work at start-up), else "cpu"."""
    import torch

    zero_gpu = os.environ.get("SPACES_ZERO_GPU") == "true"
    return "cuda" if zero_gpu or torch.cuda.is_available() else "cpu"


def load_responder(
    model: str | os.PathLike | None = None, max_new_tokens: int = 64, device: str | None = None,
    trust_remote_code: bool = False,
) -> DeepSightResponder:
    """The responder the app uses; see `resolve_model_source` for the order models are looked for.

    The checkpoint loads with the installed DeepSight classes; `trust_remote_code=True` runs its own code instead.
    """
    choice = resolve_model_source(model)
    if choice.source is None:
        logger.warning("no DeepSight checkpoint found; using a tiny random model")
        model_obj, processor = build_tiny_model_and_processor()
        name = "tiny random DeepSight (untrained)"
    else:
        logger.info("loading DeepSight from %s", choice.source)
        model_obj, processor = load_checkpoint(choice.source, trust_remote_code=trust_remote_code)
        name = choice.source
    model_obj = model_obj.to(device or pick_device())
    return DeepSightResponder(
        model_obj, processor, name=name, max_new_tokens=max_new_tokens, notice=choice.notice
    )
