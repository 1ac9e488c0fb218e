"""Models the benchmark runner can score, behind one small interface.

`BenchmarkModel` is what the runner talks to: `generate` (free answers, the paper's protocol) and
`score_options` (log-probability of each option's answer text). `VisionLanguageModel` implements it
for DeepSight checkpoints and for any `AutoModelForImageTextToText` model with its processor (LLaVA,
Qwen2.5-VL, ...): DeepSight receives the metric depth and the question's boxes (its Bbox Conv input);
other models receive the depth rendered as a 3-channel image, as the paper did for its baselines.
"""

from __future__ import annotations

import hashlib
import inspect
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch

from deepsight.checkpoints import load_checkpoint
from deepsight.depth_rendering import DEPTH_AS_CHOICES, REGION_PROTOCOLS, region_text, rgb_model_image
from deepsight.regions import RegionLayout


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
    # The question in the per-option region layout (`deepsight.regions`), when the run asks for it and the
    # question has one box per option: models that see boxes then get one copy of the depth per option, masked
    # to that option's box, instead of one image masked to all of `boxes`.
    regions: RegionLayout | None = None

    @property
    def region_content(self) -> list[dict[str, Any]] | None:
        """The user turn in the region layout, None for a question asked on one image."""
        return None if self.regions is None else self.regions.content


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

    def score_options(
        self, questions: list[Question], continuations: list[list[str]], end_turn: bool = True
    ) -> list[OptionScores]:
        """Log-probability of each continuation (the assistant turn naming an option) per question.

        `end_turn=False` scores the continuation's own tokens only, not the end-of-turn marker after it
        (a letter that begins the answer, not an answer that is only a letter).
        """


# The region protocols that show the boxes on the image, so each option's box can have its own copy of it.
IMAGE_REGION_PROTOCOLS = ("outline", "masked", "crop")


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
        box_prompt: the region protocol (`deepsight.depth_rendering.REGION_PROTOCOLS`, docs/CONTRACTS.md): how
            non-DeepSight models see a question's boxes. `outline` (drawn on the image), `masked` (everything
            outside them black) and `crop` (the image cropped to them with context) also ask Distance Judgment in
            the per-option region layout, one copy per option like DeepSight's masked copies; `text-pixels` and
            `text-1000` write them in the question's text; `none` gives no box information.
        name: how results name the model.
    """

    def __init__(
        self, model, processor, depth_as: str = "gray", name: str | None = None, box_prompt: str = "outline"
    ):
        if depth_as not in DEPTH_AS_CHOICES:
            raise ValueError(f"depth_as: expected one of {DEPTH_AS_CHOICES}, got {depth_as!r}")
        if box_prompt not in REGION_PROTOCOLS:
            raise ValueError(f"box_prompt (region protocol): expected one of {REGION_PROTOCOLS}, got {box_prompt!r}")
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
        # DeepSight reads boxes through its Bbox Conv mask: no box prompt (None, and none in the run's identity).
        self.box_prompt = None if self.is_deepsight else box_prompt
        # Extending a cache with padded segments needs explicit position ids. Multimodal-RoPE models
        # (Qwen2-VL family) keep per-batch rope offsets between calls that a re-indexed cache would not
        # match: they (and models without `position_ids`) score prompt + option in one pass instead.
        backbone = getattr(model, "model", model)
        self._passes_positions = not hasattr(backbone, "rope_deltas") and _accepts(model.forward, "position_ids")
        self.shares_prefix_cache = self._passes_positions
        # Stage 3 of the cached path: every option of a question side by side in the question's cache row,
        # kept apart by a custom 4D mask (cheaper than copying the cache to one row per option). Kernels that
        # take no arbitrary mask (flash attention, ...) get the row per option instead.
        self.packs_options = getattr(model.config, "_attn_implementation", None) in ("sdpa", "eager")
        self._keeps_last_logits = _accepts(model.forward, "logits_to_keep")

    @classmethod
    def from_pretrained(
        cls, path: str, depth_as: str = "gray", dtype: str | torch.dtype = "float32", box_prompt: str = "outline",
        trust_remote_code: bool = False, **kwargs,
    ):
        """Load a checkpoint folder, LoRA adapter folder or Hub id through `deepsight.checkpoints.load_checkpoint`.

        DeepSight checkpoints load with the installed classes; `trust_remote_code=True` runs the folder's or Hub
        repo's own modeling code (needed only by a model type that neither transformers nor DeepSight provides).
        """
        model, processor = load_checkpoint(path, trust_remote_code=trust_remote_code, dtype=dtype, **kwargs)
        return cls(model, processor, depth_as=depth_as, name=str(path), box_prompt=box_prompt)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # ----------------------------------------------------------------------------------------------
    # Prompts and inputs
    # ----------------------------------------------------------------------------------------------

    def _in_regions(self, question: Question) -> bool:
        """Whether `question` is asked in its per-option region layout: only models that see boxes get it."""
        sees_boxes = self.is_deepsight or self.box_prompt in IMAGE_REGION_PROTOCOLS
        return sees_boxes and question.regions is not None

    def _images_and_boxes(self, question: Question) -> tuple[list[np.ndarray], list[list[list[float]]]]:
        """The depth maps a question's prompt refers to, and per map its boxes."""
        if self._in_regions(question):
            return question.regions.images(question.depth), question.regions.boxes
        return [question.depth], [question.boxes]

    def _messages(self, question: Question, answer: str | None = None) -> list[dict[str, Any]]:
        content = (
            question.regions.content
            if self._in_regions(question)
            else [{"type": "image"}, {"type": "text", "text": self._prompt(question)}]
        )
        messages = [{"role": "user", "content": content}]
        if answer is not None:
            messages.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
        return messages

    def _prompt(self, question: Question) -> str:
        """The question's user text as this model reads it: with its boxes written in under a text protocol."""
        if self.box_prompt is None:
            return question.prompt
        height, width = question.depth.shape[:2]
        return region_text(question.prompt, question.boxes, self.box_prompt, width, height)

    def prompt_text(self, question: Question) -> str:
        """The chat-templated prompt, ending with the assistant's generation prompt."""
        return self.processor.apply_chat_template(self._messages(question), add_generation_prompt=True, tokenize=False)

    def continuation_text(self, question: Question, answer: str) -> str:
        """What the chat template appends after the generation prompt for `answer` (e.g. 'B. table</s>').

        Scoring the template's end-of-turn marker too means an option that is a prefix of another
        ("table" vs "table lamp") is not favoured for free.
        """
        return self._continuation_after(self.prompt_text(question), question, answer)

    def _continuation_after(self, prompt: str, question: Question, answer: str) -> str:
        """`continuation_text` given the question's already rendered prompt."""
        full = self.processor.apply_chat_template(self._messages(question, answer), tokenize=False)
        if not full.startswith(prompt):
            return answer  # templates that rewrite earlier turns: score the bare answer
        return full[len(prompt):].rstrip()

    _SLOT = "\ue000"  # a private-use character: no answer or template contains it

    def _continuations_after(
        self, prompt: str, question: Question, answers: list[str], end_turn: bool = True
    ) -> list[str]:
        """`_continuation_after` for every answer of a question, rendering the template once.

        The answer turn is rendered around a placeholder that each answer then replaces; a template that does
        anything else with the answer than copying it (the placeholder not found exactly once) is rendered
        per answer instead. `end_turn=False` stops right after the answer (the end-of-turn marker left out).
        """
        slotted = self._continuation_after(prompt, question, self._SLOT)
        if slotted.count(self._SLOT) != 1:
            if not end_turn:
                return answers
            return [self._continuation_after(prompt, question, answer) for answer in answers]
        if not end_turn:
            slotted = slotted[: slotted.index(self._SLOT) + len(self._SLOT)]
        return [slotted.replace(self._SLOT, answer).rstrip() for answer in answers]

    def _encode(self, questions: list[Question], repeats: int | list[int] = 1, prompts: list[str] | None = None):
        """Processor inputs for the prompts (each question repeated `repeats` times), left-padded.

        `prompts`: the questions' rendered prompts when the caller has them already.
        """
        counts = [repeats] * len(questions) if isinstance(repeats, int) else repeats
        prompts = prompts if prompts is not None else [self.prompt_text(q) for q in questions]
        expanded = [q for q, count in zip(questions, counts) for _ in range(count)]
        texts = [prompt for prompt, count in zip(prompts, counts) for _ in range(count)]
        if self.is_deepsight:
            images, boxes = [], []
            for question in expanded:
                maps, regions = self._images_and_boxes(question)
                images += maps
                boxes += regions
            inputs = self.processor(
                images=images, text=texts, boxes=boxes, depth_encoding="metres", padding=True, return_tensors="pt",
            )
        else:
            images = [
                rgb_model_image(depth, self.depth_as, depth_boxes, self.box_prompt)
                for question in expanded
                for depth, depth_boxes in zip(*self._images_and_boxes(question))
            ]
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

    def _continuation_ids(
        self, questions: list[Question], continuations: list[list[str]], prompts: list[str], end_turn: bool = True
    ) -> list[list[int]]:
        # one answer-turn rendering per question and one tokenizer call for the whole batch
        labelled, strings = [], []
        for question, texts, prompt in zip(questions, continuations, prompts):
            labelled += [(question, text) for text in texts]
            strings += self._continuations_after(prompt, question, texts, end_turn)
        rows = self.tokenizer(strings, add_special_tokens=False)["input_ids"] if strings else []
        for (question, text), ids in zip(labelled, rows):
            if not ids:
                raise ValueError(f"continuation {text!r} of question {question.id} tokenizes to nothing")
        return rows

    def _pad(self, rows: list[list[int]], left: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Token rows padded to one width (on the left or right) and their attention mask."""
        width = max(len(row) for row in rows)
        ids = torch.full((len(rows), width), self.tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for r, row in enumerate(rows):
            columns = slice(width - len(row), width) if left else slice(0, len(row))
            ids[r, columns] = torch.tensor(row, dtype=torch.long)
            mask[r, columns] = 1
        return ids.to(self.device), mask.to(self.device)

    @torch.inference_mode()
    def score_options(
        self, questions: list[Question], continuations: list[list[str]], end_turn: bool = True
    ) -> list[OptionScores]:
        """Summed log-probability of each continuation given image + prompt (and the end-of-turn marker
        after it unless `end_turn=False`).

        Nothing is encoded twice: the image part of the prompt once per distinct image (shared by the
        questions about it), the rest of the prompt once per question, then every option in one batched
        pass over that cache (see `_continuation_logprobs_cached`).
        """
        if len(questions) != len(continuations):
            raise ValueError(f"continuations: expected one list per question ({len(questions)}), got {len(continuations)}")
        option_counts = [len(texts) for texts in continuations]
        row_question = torch.repeat_interleave(torch.arange(len(questions)), torch.tensor(option_counts)).to(self.device)
        prompts = [self.prompt_text(q) for q in questions]
        option_ids, option_mask = self._pad(self._continuation_ids(questions, continuations, prompts, end_turn))
        # The cached path keeps one image input per question; prompts with several images take the one-pass path.
        if self.shares_prefix_cache and not any(self._in_regions(q) for q in questions):
            token_logprobs = self._continuation_logprobs_cached(questions, row_question, option_ids, option_mask, prompts)
        else:
            token_logprobs = self._continuation_logprobs_full(questions, option_counts, option_ids, option_mask, prompts)
        sums = (token_logprobs * option_mask).sum(-1).tolist()
        lengths = option_mask.sum(-1).tolist()
        scores, start = [], 0
        for count in option_counts:
            scores.append(OptionScores(sums[start : start + count], lengths[start : start + count]))
            start += count
        return scores

    def _continuation_logprobs_cached(self, questions, row_question, option_ids, option_mask, prompts=None) -> torch.Tensor:
        """Three cached stages, each row of a stage extending a row of the previous one:

        1. the image part of the prompt (up to its last image token), once per distinct image input
           (questions about the same depth map with the same boxes share it);
        2. the rest of each question's prompt (its text and the assistant's generation prompt);
        3. every option's answer text: side by side in its question's row (`_option_logprobs_packed`), or
           in a copy of that row per option. One-token options (`--score letter`) need no third pass: stage 2's
           last logits score them.

        Segments of different lengths are padded inside the sequence (masked out, with position ids
        counting only real tokens), so each row sees exactly its own unpadded sequence.
        """
        inputs = self._encode(questions, prompts=prompts)
        if any(
            key not in ("input_ids", "attention_mask") and value.shape[:2] == inputs["input_ids"].shape
            for key, value in inputs.items()
        ):
            # per-token inputs beside the ids (Gemma-3's token_type_ids...) would have to be split and
            # padded like the ids; those models take the one-pass path instead
            option_counts = torch.bincount(row_question, minlength=len(questions)).tolist()
            return self._continuation_logprobs_full(questions, option_counts, option_ids, option_mask, prompts)
        groups, image_part, text_part = self._split_at_images(inputs)
        representatives = [members[0] for members in groups]
        group_of_question = torch.empty(len(questions), dtype=torch.long)
        for group, members in enumerate(groups):
            group_of_question[members] = group
        group_of_question = group_of_question.to(self.device)

        # 1. image prefixes (left-padded; the model merges the image features into the image tokens)
        image_ids, image_mask = self._pad([image_part[i] for i in representatives], left=True)
        image_inputs = {
            key: value[representatives]
            for key, value in inputs.items()
            if key not in ("input_ids", "attention_mask") and value.shape[:1] == (len(questions),)
        }
        out = self.model(
            input_ids=image_ids, attention_mask=image_mask, position_ids=_padded_positions(image_mask),
            use_cache=True, **image_inputs, **self._last_logits_only(),
        )
        cache, mask = out.past_key_values, image_mask
        # 2. question text, left-padded so that every row's last real token is in the last column
        text_ids, text_mask = self._pad([text_part[i] for i in range(len(questions))], left=True)
        out, cache, mask = self._extend(cache, mask, group_of_question, text_ids, text_mask, last_only=True)
        first_logprobs = out.logits[:, -1].float().log_softmax(-1)  # [questions, V]
        if option_ids.shape[1] == 1:  # one-token options (letters): the prompt's next-token distribution is all
            return first_logprobs[row_question].gather(-1, option_ids)
        # 3. options; token t is predicted at position t-1, token 0 by the prompt's end
        if self.packs_options:
            return self._option_logprobs_packed(cache, mask, first_logprobs, row_question, option_ids, option_mask)
        out, _, _ = self._extend(cache, mask, row_question, option_ids, option_mask, last_only=False)
        predicted = torch.cat([first_logprobs[row_question][:, None], out.logits[:, :-1].float().log_softmax(-1)], dim=1)
        return predicted.gather(-1, option_ids[..., None])[..., 0]

    def _option_logprobs_packed(self, cache, mask, first_logprobs, row_question, option_ids, option_mask) -> torch.Tensor:
        """Stage 3 without copying the cache: each question's options side by side in its own cache row.

        Repeating the cache to one row per option copies every layer's keys and values (options x prompt
        length) for a handful of new tokens; here each option's tokens see the row's prompt and only the
        earlier tokens of their own option (a 4D additive mask), with positions restarting after the prompt,
        so each option is scored exactly as if it followed the prompt alone.
        """
        lengths = option_mask.sum(-1).tolist()
        questions = first_logprobs.shape[0]
        offsets, used = [], [0] * questions
        for row, question in enumerate(row_question.tolist()):
            offsets.append(used[question])
            used[question] += lengths[row]
        width = max(used)
        packed_ids = torch.full((questions, width), self.tokenizer.pad_token_id, dtype=torch.long, device=self.device)
        segment = torch.zeros((questions, width), dtype=torch.long, device=self.device)  # option number + 1, 0 = pad
        within = torch.zeros((questions, width), dtype=torch.long, device=self.device)  # token index inside its option
        for row, (question, offset, length) in enumerate(zip(row_question.tolist(), offsets, lengths)):
            packed_ids[question, offset : offset + length] = option_ids[row, :length]
            segment[question, offset : offset + length] = row + 1
            within[question, offset : offset + length] = torch.arange(length, device=self.device)
        positions = mask.sum(-1, keepdim=True) + within
        same_option = (segment[:, :, None] == segment[:, None, :]) & (segment[:, :, None] > 0)
        causal = torch.ones((width, width), dtype=torch.bool, device=self.device).tril()
        allowed = torch.cat([mask.bool()[:, None, :].expand(-1, width, -1), same_option & causal], dim=-1)
        dtype = next(self.model.parameters()).dtype
        additive = torch.zeros(allowed.shape, dtype=dtype, device=self.device).masked_fill(~allowed, torch.finfo(dtype).min)
        out = self.model(
            input_ids=packed_ids, attention_mask=additive[:, None], position_ids=positions, past_key_values=cache,
            use_cache=False,
        )
        # the token each packed position predicts: the next one of the same option (pads predict nothing)
        follows = torch.zeros_like(packed_ids)
        follows[:, :-1] = torch.where(segment[:, 1:] == segment[:, :-1], packed_ids[:, 1:], 0)
        packed_logprobs = out.logits.float().log_softmax(-1).gather(-1, follows[..., None])[..., 0]  # [questions, width]
        token_logprobs = torch.zeros(option_ids.shape, dtype=torch.float32, device=self.device)
        token_logprobs[:, 0] = first_logprobs[row_question].gather(-1, option_ids[:, :1])[:, 0]
        for row, (question, offset, length) in enumerate(zip(row_question.tolist(), offsets, lengths)):
            token_logprobs[row, 1:length] = packed_logprobs[question, offset : offset + length - 1]
        return token_logprobs

    def _last_logits_only(self) -> dict[str, int]:
        return {"logits_to_keep": 1} if self._keeps_last_logits else {}

    def _extend(self, cache, mask, rows, segment_ids, segment_mask, last_only: bool):
        """Run `segment_ids` after the cached rows `rows` (one cache row may feed several new rows)."""
        cache.reorder_cache(rows)
        mask = mask[rows]
        start = mask.sum(-1, keepdim=True)
        positions = start + (segment_mask.cumsum(-1) - 1).clamp(min=0)
        mask = torch.cat([mask, segment_mask], dim=1)
        out = self.model(
            input_ids=segment_ids, attention_mask=mask, position_ids=positions, past_key_values=cache,
            use_cache=True, **(self._last_logits_only() if last_only else {}),
        )
        return out, out.past_key_values, mask

    def _split_at_images(self, inputs) -> tuple[list[list[int]], list[list[int]], list[list[int]]]:
        """Per question: token ids up to its last image token, and after it; questions grouped by the former.

        Two questions share an image prefix when those ids and every per-question image input
        (pixel values, DeepSight's box mask, ...) are equal.
        """
        image_token_id = getattr(self.processor, "image_token_id", None)
        if image_token_id is None:
            image_token_id = getattr(self.model.config, "image_token_id", None)
        count = inputs["input_ids"].shape[0]
        image_tensors = [
            value for key, value in inputs.items()
            if key not in ("input_ids", "attention_mask") and value.shape[:1] == (count,)
        ]
        keys: dict[tuple, int] = {}
        groups: list[list[int]] = []
        image_part, text_part = [], []
        for i in range(count):
            ids = inputs["input_ids"][i][inputs["attention_mask"][i].bool()].tolist()
            positions = [p for p, token in enumerate(ids) if token == image_token_id]
            # keep at least one token on each side: the text part must end the prompt
            split = min(max(positions[-1] + 1 if positions else 1, 1), len(ids) - 1)
            image_part.append(ids[:split])
            text_part.append(ids[split:])
            digest = hashlib.sha1()
            for tensor in image_tensors:
                digest.update(tensor[i].detach().cpu().contiguous().numpy().tobytes())
            key = (tuple(ids[:split]), digest.hexdigest())
            if key not in keys:
                keys[key] = len(groups)
                groups.append([])
            groups[keys[key]].append(i)
        return groups, image_part, text_part

    def _continuation_logprobs_full(self, questions, option_counts, option_ids, option_mask, prompts=None) -> torch.Tensor:
        """Reference path without cache reuse: prompt + option per row, one forward pass."""
        prefix = self._encode(questions, repeats=option_counts, prompts=prompts)
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
