"""Instruction generation with any OpenAI-compatible chat endpoint (OpenAI, vLLM, TGI, llama.cpp server).

As in the paper (and LLaVA), the model never sees the depth map: it gets the scene's captions and the
annotated objects with their boxes, plus what the depth map says about them (mean depth under each
object, left/middle/right), and is asked for depth-aware content in JSON. Every answer is checked:

- the reply parses as the JSON object requested (a ```json fence around it is tolerated);
- every object it lists, and every known object name its text mentions, is among the annotations;
- every box it cites lies inside the image;
- its text is data, never markup: a reply carrying the processor's image placeholder, a `<box>` tag, a chat-control
  string (`<|im_end|>`, `</s>`, `[INST]`...) or a role header (`User:`, `### Instruction`) is rejected
  (`deepsight.markup`), since stage 2 would act on it (an extra image, a changed mask, a forged turn).

A transport failure (connection refused, timeout, HTTP 429/5xx, a body that is not a chat completion)
is retried with exponential backoff by `OpenAIChatClient`; a reply that fails validation, or a body over the
client's size cap (read no further than the cap), is re-asked. Every rejected reply is counted by reason
(`OpenAIInstructionGenerator.rejection_table`); when the attempts are exhausted the item is counted as skipped.
Validated replies are cached on disk per request, so a rerun only pays for what is still missing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import socket
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from dataset_scripts import vocab
from dataset_scripts.builders.instructions.offline import (
    DESCRIPTION_REQUESTS,
    assistant,
    make_row,
    scene_facts,
    scene_rng,
    user,
)
from dataset_scripts.export import markdown_table
from dataset_scripts.scene import Scene
from dataset_scripts.sources.coco import COCO_CATEGORY_NAMES
from deepsight.markup import find_markup

logger = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.openai.com/v1"
RETRYABLE_STATUS = {408, 409, 429, 500, 502, 503, 504}
# A chat completion of a few rounds is a few kB; anything near this is a broken or hostile server.
DEFAULT_MAX_BODY_BYTES = 1 << 20


class EndpointError(RuntimeError):
    """The endpoint did not produce a usable chat completion after all retries."""


class EndpointConfigError(RuntimeError):
    """The endpoint refuses every request (bad key, wrong URL or model): stop instead of skipping every item."""


FATAL_STATUS = {401, 403, 404}


class InvalidReply(ValueError):
    """A chat completion whose content does not satisfy the request (unparseable, unknown object, ...).

    `reason` is its kind, the row it is counted in (`OpenAIInstructionGenerator.rejection_table`).
    """

    def __init__(self, message: str, reason: str = "malformed fields"):
        super().__init__(message)
        self.reason = reason


class OpenAIChatClient:
    """Minimal `/v1/chat/completions` client on urllib with retries and exponential backoff.

    The key is `api_key`, else $OPENAI_API_KEY. A response body over `max_body_bytes` is not read past the cap
    (nor parsed): it raises `InvalidReply` with reason "body over size cap".
    """

    def __init__(
        self,
        base_url: str | None = None,
        model: str = "gpt-4o-mini",
        api_key: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 4,
        backoff: float = 1.0,
        max_backoff: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    ):
        self.base_url = (base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must be an http(s) URL, got {self.base_url!r}")
        self.model = model
        self.api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        self.timeout = timeout
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.sleep = sleep
        if max_body_bytes < 1:
            raise ValueError(f"max_body_bytes must be >= 1, got {max_body_bytes}")
        self.max_body_bytes = max_body_bytes
        self.requests_sent = 0

    def _post(self, payload: dict) -> dict:
        request = urllib.request.Request(
            f"{self.base_url}/chat/completions",
            data=json.dumps(payload).encode(),
            headers={
                "Content-Type": "application/json",
                **({"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}),
            },
            method="POST",
        )
        self.requests_sent += 1
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            body = self._read_capped(response)
        return json.loads(body.decode("utf-8"))

    def _read_capped(self, response) -> bytes:
        """The body, read no further than one byte past the cap (a huge reply never reaches memory)."""
        declared = response.headers.get("Content-Length", "")
        declared_too_long = declared.isdigit() and int(declared) > self.max_body_bytes
        body = b"" if declared_too_long else response.read(self.max_body_bytes + 1)
        if declared_too_long or len(body) > self.max_body_bytes:
            raise InvalidReply(
                f"{self.base_url}/chat/completions sent a body over {self.max_body_bytes} bytes "
                f"(Content-Length: {declared or 'not given'}); cut off unread",
                reason="body over size cap",
            )
        return body

    def complete(self, messages: list[dict], temperature: float = 0.7, seed: int | None = None) -> str:
        """The assistant message content of one chat completion.

        A body over the size cap raises `InvalidReply` at once (the caller re-asks and counts it, as for any bad
        reply); transport failures are retried here.
        """
        payload = {"model": self.model, "messages": messages, "temperature": temperature}
        if seed is not None:
            payload["seed"] = seed
        last_error: Exception | None = None
        for attempt in range(self.max_retries + 1):
            if attempt:
                self.sleep(min(self.max_backoff, self.backoff * 2 ** (attempt - 1)))
            try:
                body = self._post(payload)
                content = body["choices"][0]["message"]["content"]
                if not isinstance(content, str):
                    raise TypeError(f"message content is {type(content).__name__}, not text")
                return content
            except urllib.error.HTTPError as error:
                last_error = error
                if error.code in FATAL_STATUS:
                    raise EndpointConfigError(
                        f"{self.base_url}/chat/completions answered HTTP {error.code} {error.reason}: check "
                        f"--base-url, --model ({self.model!r}) and the API key (--api-key / OPENAI_API_KEY)"
                    ) from error
                if error.code not in RETRYABLE_STATUS:
                    raise EndpointError(
                        f"{self.base_url}: HTTP {error.code} {error.reason} (not retried)"
                    ) from error
            except (urllib.error.URLError, socket.timeout, TimeoutError, ConnectionError) as error:
                last_error = error
            except (json.JSONDecodeError, UnicodeDecodeError, KeyError, IndexError, TypeError) as error:
                last_error = error  # a 200 whose body is not a chat completion: a proxy or a crashed server
            logger.info("chat completion attempt %d failed: %s", attempt + 1, last_error)
        raise EndpointError(
            f"{self.base_url}: no chat completion after {self.max_retries + 1} attempts ({last_error})"
        )


SYSTEM_PROMPT = (
    "You are an AI assistant that writes training data about depth maps. You cannot see the depth map; "
    "instead you get captions of the scene, the annotated objects with their bounding boxes [x0, y0, x1, y1] "
    "in pixels, where each object is in the view and its mean distance from the camera in metres, measured on "
    "the depth map. Write as if you were looking at the depth map. Focus on depth: distances, which objects "
    "are nearer or farther, free space, how the room is laid out in 3D. Mention only the listed objects, never "
    "invent others, and use only the distances given. Reply with one JSON object and nothing else."
)

TYPE_PROMPTS = {
    "conversation": (
        "Write a conversation of {rounds} rounds between a person asking about this depth map and an assistant "
        "answering. Ask about distances, relative depth, positions and counts. Reply as JSON: "
        '{{"conversation": [{{"question": "...", "answer": "..."}}, ...], "objects": [names you mention], '
        '"boxes": [boxes of the objects the conversation is about]}}'
    ),
    "complex_reasoning": (
        "Write one question that needs reasoning over several depth facts (e.g. what to reach first, whether "
        "something fits between objects, how to walk through the room) and a detailed, correct answer. Reply as "
        'JSON: {{"question": "...", "answer": "...", "objects": [names you mention], "boxes": [boxes the '
        "question is about]}}"
    ),
    "detailed_description": (
        "Describe the scene in detail as seen in the depth map: the room, each object's position and distance, "
        'what is near and far. Reply as JSON: {{"description": "...", "objects": [names you mention], '
        '"boxes": []}}'
    ),
}


def scene_prompt(scene: Scene) -> str:
    facts = scene_facts(scene)
    lines = [f"Image size: {scene.width} x {scene.height} pixels."]
    if facts.scene_type:
        lines.append(f"Scene type: {facts.scene_type}.")
    if scene.captions:
        lines.append("Captions:")
        lines += [f"- {caption}" for caption in scene.captions]
    lines.append("Objects (name: box [x0, y0, x1, y1], position, mean distance):")
    for fact in facts.objects:
        box = ", ".join(f"{v:.0f}" for v in fact.box)
        lines.append(f"- {fact.name}: [{box}], {fact.side}, {fact.depth:.1f} m")
    if scene.depth_is_predicted:
        lines.append("The depth map was predicted from an RGB photo, so distances are estimates.")
    return "\n".join(lines)


_FENCE_RE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.S)


def parse_reply(content: str) -> dict:
    text = content.strip()
    fenced = _FENCE_RE.match(text)
    if fenced:
        text = fenced.group(1)
    try:
        reply = json.loads(text)
    except json.JSONDecodeError as error:
        raise InvalidReply(f"reply is not JSON ({error.msg}): {content[:80]!r}", reason="not JSON") from None
    if not isinstance(reply, dict):
        raise InvalidReply(f"reply must be a JSON object, got {type(reply).__name__}", reason="not JSON")
    return reply


def _nonempty_text(value, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidReply(f"{what} must be a non-empty string, got {value!r:.80}")
    return value.strip()


def check_plain_text(turns: list[tuple[str, str]]) -> None:
    """InvalidReply, counted under the markup's kind, when a question or answer holds markup (`deepsight.markup`)."""
    for question, answer in turns:
        for what, text in (("a question", question), ("an answer", answer)):
            found = find_markup(text)
            if found:
                kind, match = found
                raise InvalidReply(f"{what} holds {kind} {match!r}: replies are data, never markup", reason=kind)


def _mentions(text: str, name: str) -> bool:
    return re.search(rf"\b{re.escape(name)}s?\b", text, flags=re.I) is not None


class ReplyValidator:
    """Checks one parsed reply against the scene's annotations."""

    def __init__(self, scene: Scene, known_names=vocab.OBJECT_VOCABULARY):
        self.scene = scene
        self.annotated = {vocab.normalize_object_name(obj.name) for obj in scene.objects}
        self.raw_annotated = {obj.name.lower() for obj in scene.objects}
        self.known = (
            {vocab.normalize_object_name(n) for n in known_names} | _coco_names()
        ) - NOT_OBJECT_MENTIONS

    def turns(self, kind: str, reply: dict) -> list[tuple[str, str]]:
        if kind == "conversation":
            rounds = reply.get("conversation")
            if not isinstance(rounds, list) or len(rounds) < 2:
                raise InvalidReply(f"'conversation' must be a list of >= 2 rounds, got {rounds!r:.80}")
            turns = [
                (
                    _nonempty_text(r.get("question") if isinstance(r, dict) else None, "question"),
                    _nonempty_text(r.get("answer") if isinstance(r, dict) else None, "answer"),
                )
                for r in rounds
            ]
        elif kind == "complex_reasoning":
            turns = [
                (
                    _nonempty_text(reply.get("question"), "question"),
                    _nonempty_text(reply.get("answer"), "answer"),
                )
            ]
        else:
            turns = [("", _nonempty_text(reply.get("description"), "description"))]
        check_plain_text(turns)
        self.check_objects(reply.get("objects", []), " ".join(q + " " + a for q, a in turns))
        return turns

    def check_objects(self, listed, text: str) -> None:
        if not isinstance(listed, list):
            raise InvalidReply(f"'objects' must be a list of names, got {listed!r:.80}")
        for name in listed:
            if vocab.normalize_object_name(str(name)) not in self.annotated:
                raise InvalidReply(
                    f"object {name!r} is not among the annotations {sorted(self.annotated)}",
                    reason="object not in the scene",
                )
        # Names the annotations contain may contain known names ("dining table" / "table"): blank them out first.
        remaining = text
        for name in sorted(self.raw_annotated | self.annotated, key=len, reverse=True):
            remaining = re.sub(rf"\b{re.escape(name)}s?\b", " ", remaining, flags=re.I)
        for name in self.known - self.annotated:
            if _mentions(remaining, name):
                raise InvalidReply(
                    f"the text mentions {name!r}, which is not in the scene", reason="object not in the scene"
                )

    def boxes(self, value) -> list[list[float]]:
        if value is None:
            return []
        if not isinstance(value, list):
            raise InvalidReply(f"'boxes' must be a list of [x0, y0, x1, y1], got {value!r:.80}")
        boxes = []
        for box in value:
            if not (
                isinstance(box, list) and len(box) == 4 and all(isinstance(v, (int, float)) for v in box)
            ):
                raise InvalidReply(f"a box must be 4 numbers [x0, y0, x1, y1], got {box!r:.80}")
            x0, y0, x1, y1 = (float(v) for v in box)
            if not (0 <= x0 < x1 <= self.scene.width and 0 <= y0 < y1 <= self.scene.height):
                raise InvalidReply(
                    f"box {box} is not inside the {self.scene.width}x{self.scene.height} image",
                    reason="box outside the image",
                )
            boxes.append([x0, y0, x1, y1])
        return boxes


# Known names that are also everyday words ("a person asking", "orange light", "bounding box"): not taken as
# object mentions.
NOT_OBJECT_MENTIONS = frozenset({"person", "orange", "tie", "box"})


def _coco_names() -> set[str]:
    return {vocab.normalize_object_name(n) for n in COCO_CATEGORY_NAMES}


class OpenAIInstructionGenerator:
    """Free-form instruction rows from an OpenAI-compatible endpoint; same interface as the offline one."""

    name = "openai"

    def __init__(
        self,
        client: OpenAIChatClient,
        cache_dir: str | Path,
        seed: int = 0,
        max_invalid_replies: int = 2,
        temperature: float = 0.7,
    ):
        self.client = client
        self.cache_dir = Path(cache_dir)
        self.seed = seed
        self.max_invalid_replies = max_invalid_replies
        self.temperature = temperature
        self.failures: list[tuple[str, str, str]] = []  # (scene id, type, reason)
        self.rejected_replies: Counter[str] = Counter()  # reason kind -> replies rejected (each attempt counts)

    def fingerprint(self) -> dict:
        return {
            "name": self.name,
            "model": self.client.model,
            "base_url": self.client.base_url,
            "temperature": self.temperature,
            "seed": self.seed,
        }

    def describe(self) -> str:
        return (
            f"OpenAI-compatible chat endpoint, model `{self.client.model}`, fed captions and boxes "
            "(validated replies)"
        )

    def request_messages(self, scene: Scene, kind: str, slot: int) -> list[dict]:
        rounds = int(scene_rng(self.seed, scene.id, f"rounds-{slot}").integers(2, 5))
        return [
            {"role": "system", "content": SYSTEM_PROMPT},
            {
                "role": "user",
                "content": scene_prompt(scene) + "\n\n" + TYPE_PROMPTS[kind].format(rounds=rounds),
            },
        ]

    def _cache_path(self, scene: Scene, kind: str, slot: int, messages: list[dict]) -> Path:
        key = hashlib.sha256(
            json.dumps([self.client.model, self.temperature, messages]).encode()
        ).hexdigest()[:16]
        return self.cache_dir / scene.id / f"{kind}-{slot}-{key}.json"

    def ask(self, scene: Scene, kind: str, slot: int) -> dict:
        """A validated reply for one (scene, type, slot), from the cache or the endpoint."""
        messages = self.request_messages(scene, kind, slot)
        path = self._cache_path(scene, kind, slot, messages)
        cached = self._read_cache(path)
        if cached is not None:
            return cached
        validator = ReplyValidator(scene)
        last_problem: InvalidReply | None = None
        for _ in range(self.max_invalid_replies + 1):
            try:
                reply = parse_reply(self.client.complete(messages, temperature=self.temperature, seed=self.seed))
                validated = {
                    "turns": validator.turns(kind, reply),
                    "boxes": validator.boxes(reply.get("boxes")),
                }
            except InvalidReply as problem:
                last_problem = problem
                self.rejected_replies[problem.reason] += 1
                logger.info("invalid reply for %s/%s: %s", scene.id, kind, problem)
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
            partial.write_text(json.dumps(validated))
            partial.replace(path)
            return validated
        raise InvalidReply(
            f"{self.max_invalid_replies + 1} replies failed validation; last: {last_problem}",
            reason=last_problem.reason,
        )

    @staticmethod
    def _read_cache(path: Path) -> dict | None:
        """A cached validated reply; None when absent, unreadable, or holding markup (cached before replies were
        checked for it): such an entry is asked again."""
        if not path.exists():
            return None
        try:
            cached = json.loads(path.read_text())
            check_plain_text(cached["turns"])
            if not isinstance(cached["boxes"], list):
                raise TypeError(f"'boxes' is {type(cached['boxes']).__name__}, not a list")
        except (KeyError, TypeError, ValueError) as problem:  # ValueError: bad JSON or markup (InvalidReply)
            logger.warning("asking again for %s: its cached reply is unusable (%s)", path, problem)
            return None
        return cached

    def rejection_table(self) -> str:
        """Markdown table: replies rejected this run, per reason (markup kinds, size cap, schema...), and items
        skipped after every attempt failed."""
        rows = [[reason, count] for reason, count in self.rejected_replies.most_common()]
        rows.append(["(items skipped after every attempt)", len(self.failures)])
        return markdown_table(["endpoint replies rejected because", "count"], rows)

    def generate(self, scene: Scene, types: list[str]) -> tuple[list[dict], int]:
        rows, failed = [], 0
        for slot, kind in enumerate(types):
            try:
                reply = self.ask(scene, kind, slot)
            except (EndpointError, InvalidReply) as error:
                failed += 1
                self.failures.append((scene.id, kind, str(error)))
                logger.warning("skipped %s %s: %s", scene.id, kind, error)
                continue
            rows.append(
                make_row(
                    scene,
                    kind,
                    f"{kind}-{slot}",
                    self.to_messages(scene, kind, slot, reply["turns"]),
                    reply["boxes"],
                )
            )
        return rows, failed

    def to_messages(self, scene: Scene, kind: str, slot: int, turns: list) -> list[dict]:
        if kind == "detailed_description":
            request = str(scene_rng(self.seed, scene.id, f"describe-{slot}").choice(DESCRIPTION_REQUESTS))
            return [user(request, with_image=True), assistant(turns[0][1])]
        messages = []
        for question, answer in turns:
            messages += [user(question, with_image=not messages), assistant(answer)]
        return messages
