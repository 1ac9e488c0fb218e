"""Models the benchmark runner can score, behind one small interface.

`BenchmarkModel` is what the runner talks to: `generate` (free answers, the paper's protocol) and
`score_options` (log-probability of each option's answer text). `VisionLanguageModel` implements it
for DeepSight checkpoints and for any `AutoModelForImageTextToText` model with its processor (LLaVA,
Qwen2.5-VL, ...): DeepSight receives the metric depth and the question's boxes (its Bbox Conv input);
other models receive the depth rendered as a 3-channel image, as the paper did for its baselines.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
from PIL import Image

DEPTH_AS_CHOICES = ("gray", "colormap")


@dataclass
class Question:
    """One benchmark question, decoded: the runner builds these from dataset rows."""

    id: str
    task: str
    prompt: str  # the user turn: question, lettered options, answer instruction
    options: list[str]
    answer_index: int
    depth: np.ndarray  # float32 metres, 0 = invalid
    boxes: list[list[float]] = field(default_factory=list)


@dataclass
class OptionScores:
    """Summed log-probability of each option's answer text, and how many tokens each text has."""

    logprobs: list[float]
    num_tokens: list[int]


class BenchmarkModel(Protocol):
    """The interface the runner needs; stubs in the tests implement the same two methods."""

    name: str

    def generate(self, questions: list[Question], max_new_tokens: int) -> list[str]:
        """Free-form answer per question (greedy)."""

    def score_options(self, questions: list[Question], continuations: list[list[str]]) -> list[OptionScores]:
        """Log-probability of each continuation (the assistant turn naming an option) per question."""


def depth_to_rgb(depth: np.ndarray, mode: str = "gray") -> Image.Image:
    """Render metric depth as an 8-bit RGB image for models that only read photos.

    Brighter (or, for the colormap, warmer) = closer, normalised per image over the valid pixels; the
    invalid pixels are black. `gray` repeats one channel three times; `colormap` uses matplotlib's
    `turbo`, which keeps more depth levels distinguishable than 256 gray values.
    """
    if mode not in DEPTH_AS_CHOICES:
        raise ValueError(f"depth_as: expected one of {DEPTH_AS_CHOICES}, got {mode!r}")
    depth = np.asarray(depth, dtype=np.float32)
    if depth.ndim != 2:
        raise ValueError(f"depth: expected an HxW array of metres, got shape {depth.shape}")
    valid = depth > 0
    closeness = np.zeros_like(depth)
    if valid.any():
        near, far = float(depth[valid].min()), float(depth[valid].max())
        span = max(far - near, 1e-6)
        closeness[valid] = 1.0 - (depth[valid] - near) / span
    if mode == "gray":
        # valid pixels map to 1..255 so that the farthest point stays distinguishable from invalid (0).
        levels = np.where(valid, 1 + np.round(closeness * 254), 0).astype(np.uint8)
        return Image.fromarray(np.repeat(levels[..., None], 3, axis=-1), mode="RGB")
    from matplotlib import colormaps

    rgb = (colormaps["turbo"](closeness)[..., :3] * 255).round().astype(np.uint8)
    rgb[~valid] = 0
    return Image.fromarray(rgb, mode="RGB")


def _accepts(function: Any, argument: str) -> bool:
    parameters = inspect.signature(function).parameters
    return argument in parameters or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())


def _padded_positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids of a left-padded batch, the way `generate` builds them (pads get 0)."""
    positions = attention_mask.long().cumsum(-1) - 1
    return positions.masked_fill(attention_mask == 0, 0)


class VisionLanguageModel:
    """`BenchmarkModel` for an image-text-to-text model and its processor (DeepSight or any HF VLM).

    Args:
        model: a causal vision-language model (`forward`/`generate` with the processor's outputs).
        processor: its processor, with a chat template.
        depth_as: how non-DeepSight models see depth: `gray` (one channel repeated) or `colormap`.
        name: how results name the model.
    """

    def __init__(self, model, processor, depth_as: str = "gray", name: str | None = None):
        if depth_as not in DEPTH_AS_CHOICES:
            raise ValueError(f"depth_as: expected one of {DEPTH_AS_CHOICES}, got {depth_as!r}")
        if getattr(processor, "chat_template", None) is None:
            raise ValueError(
                f"processor: {type(processor).__name__} has no chat template; the harness builds prompts with "
                "processor.apply_chat_template (save one with the checkpoint)"
            )
        self.model = model.eval()
        self.processor = processor
        self.tokenizer = processor.tokenizer
        # Prompts of different lengths end at the same column, so the next-token logits of every row
        # sit in the last position (generation and the shared-prefix cache both rely on this).
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.depth_as = depth_as
        self.name = name or getattr(model, "name_or_path", None) or type(model).__name__
        self.is_deepsight = getattr(model.config, "model_type", None) == "deepsight"
        # Multimodal-RoPE models (Qwen2-VL family) keep per-batch rope offsets between calls, which a
        # cache expanded to one row per option would not match: they score prefix + option in one pass.
        backbone = getattr(model, "model", model)
        self.shares_prefix_cache = not hasattr(backbone, "rope_deltas")
        self._passes_positions = self.shares_prefix_cache and _accepts(model.forward, "position_ids")
        self._keeps_last_logits = _accepts(model.forward, "logits_to_keep")

    @classmethod
    def from_pretrained(cls, path: str, depth_as: str = "gray", dtype: str | torch.dtype = "float32", **kwargs):
        """Load a checkpoint folder or Hub id with `AutoModelForImageTextToText` + `AutoProcessor`.

        `trust_remote_code=True` lets DeepSight checkpoints bring their own modeling code.
        """
        from transformers import AutoModelForImageTextToText, AutoProcessor

        processor = AutoProcessor.from_pretrained(path, trust_remote_code=True)
        model = AutoModelForImageTextToText.from_pretrained(path, trust_remote_code=True, dtype=dtype, **kwargs)
        return cls(model, processor, depth_as=depth_as, name=str(path))

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # ----------------------------------------------------------------------------------------------
    # Prompts and inputs
    # ----------------------------------------------------------------------------------------------

    @staticmethod
    def _messages(question: Question, answer: str | None = None) -> list[dict[str, Any]]:
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question.prompt}]}]
        if answer is not None:
            messages.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
        return messages

    def prompt_text(self, question: Question) -> str:
        """The chat-templated prompt, ending with the assistant's generation prompt."""
        return self.processor.apply_chat_template(self._messages(question), add_generation_prompt=True, tokenize=False)

    def continuation_text(self, question: Question, answer: str) -> str:
        """What the chat template appends after the generation prompt for `answer` (e.g. 'B. table</s>').

        Scoring the template's end-of-turn marker too means an option that is a prefix of another
        ("table" vs "table lamp") is not favoured for free.
        """
        prompt = self.prompt_text(question)
        full = self.processor.apply_chat_template(self._messages(question, answer), tokenize=False)
        if not full.startswith(prompt):
            return answer  # templates that rewrite earlier turns: score the bare answer
        return full[len(prompt):].rstrip()

    def _encode(self, questions: list[Question], repeats: int | list[int] = 1):
        """Processor inputs for the prompts (each question repeated `repeats` times), left-padded."""
        counts = [repeats] * len(questions) if isinstance(repeats, int) else repeats
        expanded = [q for q, count in zip(questions, counts) for _ in range(count)]
        texts = [self.prompt_text(q) for q in expanded]
        if self.is_deepsight:
            inputs = self.processor(
                images=[q.depth for q in expanded], text=texts, boxes=[q.boxes for q in expanded],
                depth_encoding="metres", padding=True, return_tensors="pt",
            )
        else:
            images = [depth_to_rgb(q.depth, self.depth_as) for q in expanded]
            inputs = self.processor(images=images, text=texts, padding=True, return_tensors="pt")
        dtype = next(self.model.parameters()).dtype
        return {
            key: value.to(self.device, dtype=dtype) if torch.is_floating_point(value) else value.to(self.device)
            for key, value in inputs.items()
            if isinstance(value, torch.Tensor)
        }

    # ----------------------------------------------------------------------------------------------
    # The two protocols
    # ----------------------------------------------------------------------------------------------

    @torch.inference_mode()
    def generate(self, questions: list[Question], max_new_tokens: int = 16) -> list[str]:
        inputs = self._encode(questions)
        output = self.model.generate(
            **inputs, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=self.tokenizer.pad_token_id
        )
        new_tokens = output[:, inputs["input_ids"].shape[1]:]
        return [text.strip() for text in self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]

    def _continuation_ids(self, questions: list[Question], continuations: list[list[str]]) -> list[list[int]]:
        rows = []
        for question, texts in zip(questions, continuations):
            for text in texts:
                ids = self.tokenizer(self.continuation_text(question, text), add_special_tokens=False)["input_ids"]
                if not ids:
                    raise ValueError(f"continuation {text!r} of question {question.id} tokenizes to nothing")
                rows.append(ids)
        return rows

    def _pad_right(self, rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(row) for row in rows)
        ids = torch.full((len(rows), width), self.tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for r, row in enumerate(rows):
            ids[r, : len(row)] = torch.tensor(row)
            mask[r, : len(row)] = 1
        return ids.to(self.device), mask.to(self.device)

    @torch.inference_mode()
    def score_options(self, questions: list[Question], continuations: list[list[str]]) -> list[OptionScores]:
        """Summed log-probability of each continuation given image + prompt.

        The prompt (image tokens included) is encoded once per question: its KV cache is then
        repeated to one row per option and every option is scored in a single batched pass.
        """
        if len(questions) != len(continuations):
            raise ValueError(f"continuations: expected one list per question ({len(questions)}), got {len(continuations)}")
        option_counts = [len(texts) for texts in continuations]
        row_question = torch.repeat_interleave(torch.arange(len(questions)), torch.tensor(option_counts)).to(self.device)
        option_ids, option_mask = self._pad_right(self._continuation_ids(questions, continuations))
        if self.shares_prefix_cache:
            token_logprobs = self._continuation_logprobs_cached(questions, row_question, option_ids, option_mask)
        else:
            token_logprobs = self._continuation_logprobs_full(questions, option_counts, option_ids, option_mask)
        sums = (token_logprobs * option_mask).sum(-1).tolist()
        lengths = option_mask.sum(-1).tolist()
        scores, start = [], 0
        for count in option_counts:
            scores.append(OptionScores(sums[start : start + count], lengths[start : start + count]))
            start += count
        return scores

    def _continuation_logprobs_cached(self, questions, row_question, option_ids, option_mask) -> torch.Tensor:
        prefix = self._encode(questions)
        prefix_mask = prefix["attention_mask"]
        extra = {"position_ids": _padded_positions(prefix_mask)} if self._passes_positions else {}
        if self._keeps_last_logits:
            extra["logits_to_keep"] = 1
        prefix_out = self.model(**prefix, use_cache=True, **extra)
        first_logprobs = prefix_out.logits[:, -1].float().log_softmax(-1)[row_question]  # [rows, V]
        cache = prefix_out.past_key_values
        cache.reorder_cache(row_question)  # one copy of each question's prefix per option
        attention_mask = torch.cat([prefix_mask[row_question], option_mask], dim=1)
        extra = {}
        if self._passes_positions:
            lengths = prefix_mask.sum(-1)[row_question]
            extra["position_ids"] = lengths[:, None] + torch.arange(option_ids.shape[1], device=self.device)[None]
        logits = self.model(
            input_ids=option_ids, attention_mask=attention_mask, past_key_values=cache, use_cache=True, **extra
        ).logits.float()
        # token t of an option is predicted at position t-1; token 0 by the prefix's last position.
        predicted = torch.cat([first_logprobs[:, None], logits[:, :-1].log_softmax(-1)], dim=1)
        return predicted.gather(-1, option_ids[..., None])[..., 0]

    def _continuation_logprobs_full(self, questions, option_counts, option_ids, option_mask) -> torch.Tensor:
        """Reference path without cache reuse: prompt + option per row, one forward pass."""
        prefix = self._encode(questions, repeats=option_counts)
        prefix_len = prefix["input_ids"].shape[1]
        inputs = dict(prefix)
        inputs["input_ids"] = torch.cat([prefix["input_ids"], option_ids], dim=1)
        inputs["attention_mask"] = torch.cat([prefix["attention_mask"], option_mask], dim=1)
        if self._passes_positions:
            inputs["position_ids"] = _padded_positions(inputs["attention_mask"])
        if "mm_token_type_ids" in inputs:
            inputs["mm_token_type_ids"] = torch.cat([inputs["mm_token_type_ids"], torch.zeros_like(option_ids)], dim=1)
        if "token_type_ids" in inputs:
            inputs["token_type_ids"] = torch.cat([inputs["token_type_ids"], torch.zeros_like(option_ids)], dim=1)
        logits = self.model(**inputs).logits.float()
        predicted = logits[:, prefix_len - 1 : -1].log_softmax(-1)
        return predicted.gather(-1, option_ids[..., None])[..., 0]
