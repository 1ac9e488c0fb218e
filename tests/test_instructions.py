"""The Depth Instruction Dataset: ground-truth answers, determinism, the OpenAI path, resume, round trip."""

from __future__ import annotations

import argparse
import json
import re
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

import datasets
from dataset_scripts.export import export_dataset, image_value_to_depth
from dataset_scripts.builders.instructions.builder import (
    build_instruction_rows,
    instruction_card,
    instruction_statistics,
    mc_per_scene_setting,
    parse_mc_per_scene,
    parse_mix,
    plan_types,
    rows_to_dataset,
)
from dataset_scripts.builders.instructions.offline import OfflineInstructionGenerator, scene_facts
from dataset_scripts.builders.instructions.openai_endpoint import OpenAIChatClient, OpenAIInstructionGenerator
from dataset_scripts.scene import Scene, SceneObject
from deepsight.box_tags import split_box_tags, strip_box_tags
from deepsight.prompts import parse_option

SCENE_TYPES = ("bedroom", "kitchen", "office", "living room")
NAMES = ("bed", "chair", "lamp", "television", "table", "sofa", "sink", "plant", "chair")


def make_scene(seed: int) -> Scene:
    """A room with non-overlapping boxy objects at known depths on a sloping background."""
    rng = np.random.default_rng(seed)
    height, width = 96, 128
    depth = np.tile(np.linspace(6.0, 2.5, height, dtype=np.float32)[:, None], (1, width))
    objects = []
    names = [NAMES[i] for i in rng.permutation(len(NAMES))[: int(rng.integers(4, 8))]]
    for i, name in enumerate(names):
        column, row = i % 4, i // 4
        x0, y0 = 4 + column * 31, 8 + row * 44
        box = (x0, y0, x0 + int(rng.integers(14, 26)), y0 + int(rng.integers(14, 30)))
        mask = np.zeros((height, width), dtype=bool)
        mask[box[1] : box[3], box[0] : box[2]] = True
        depth[mask] = rng.uniform(0.8, 5.0)
        objects.append(SceneObject(name, box, mask, i))
    intrinsics = np.array([[110.0, 0, width / 2], [0, 110.0, height / 2], [0, 0, 1]])
    return Scene(
        id=f"room-{seed:04d}",
        source="synthetic",
        depth=depth,
        objects=objects,
        scene_type=SCENE_TYPES[seed % len(SCENE_TYPES)],
        captions=[f"a {names[0]} in a room"],
        intrinsics=intrinsics,
    )


def texts(row, role):
    """The turn's words: text blocks without the regions' <box> tags (a block of tags alone is left out)."""
    words = [
        strip_box_tags(b["text"]) for m in row["messages"] if m["role"] == role for b in m["content"]
        if b["type"] == "text"
    ]
    return [text for text in words if text]


def mc_parts(row):
    question = texts(row, "user")[0]
    options = re.findall(r"^[A-H]\. (.+)$", question, flags=re.M)
    return question, options, parse_option(texts(row, "assistant")[0], options)


# ------------------------------------------------------------------------------------ offline generator


def test_multiple_choice_answers_agree_with_ground_truth_depth_and_labels():
    generator = OfflineInstructionGenerator(seed=3)
    checked = Counter()
    for seed in range(25):
        scene = make_scene(seed)
        present = {obj.name for obj in scene.objects}
        depth_of = {obj.name: obj.mean_depth(scene.depth) for obj in scene.objects}
        for row in generator.multiple_choice(scene):
            skill = row["id"].rsplit("-mc-", 1)[1]
            question, options, answer = mc_parts(row)
            assert answer is not None, row
            if skill == "distance_judgment":
                other = options[1 - answer]
                assert depth_of[options[answer]] > depth_of[other] + 0.29
                assert len(row["boxes"][0]) == 2
            elif skill == "recognition":
                (box,) = row["boxes"][0]
                named = [obj.name for obj in scene.objects if list(map(float, obj.box)) == box]
                assert named == [options[answer]]
                assert not present & (set(options) - {options[answer]})
            elif skill == "security":
                assert options[answer] not in present
                assert set(options) - {options[answer]} <= present
            else:
                assert options[answer] == scene.scene_type and len(options) == 3
            checked[skill] += 1
    assert set(checked) == {"scene_classification", "recognition", "distance_judgment", "security"}


def test_more_multiple_choice_rows_per_scene_draw_other_questions_and_count_under_their_skill():
    generator = OfflineInstructionGenerator(seed=3)
    scenes = [make_scene(seed) for seed in range(6)]
    single = [row for scene in scenes for row in generator.multiple_choice(scene)]
    triple = [row for scene in scenes for row in generator.multiple_choice(scene, per_skill=3)]
    # the first row of each skill is the one a single-row build writes; the repeats come on top
    assert [row for row in triple if row["id"] in {r["id"] for r in single}] == single
    assert len(triple) > len(single)
    questions = Counter((row["id"].split("-mc-")[0], texts(row, "user")[0], str(row["boxes"])) for row in triple)
    assert len(questions) > len(single)  # repeats ask about other objects / pairs / options
    stats = instruction_statistics(triple)
    assert sum(stats["skills"].values()) == len(triple)
    assert set(stats["skills"]) <= {"scene_classification", "recognition", "distance_judgment", "security"}
    with pytest.raises(ValueError, match="per_skill"):
        generator.multiple_choice(scenes[0], per_skill=-1)


def test_per_skill_counts_give_one_skill_more_rows_and_leave_the_others_as_a_uniform_count_does():
    generator = OfflineInstructionGenerator(seed=3)
    scenes = [make_scene(seed) for seed in range(6)]

    def rows_by_skill(per_skill) -> Counter:
        rows = [row for scene in scenes for row in generator.multiple_choice(scene, per_skill=per_skill)]
        return Counter(row["id"].split("-mc-")[1].split("-")[0] for row in rows), rows

    uniform, uniform_rows = rows_by_skill(2)
    skewed, skewed_rows = rows_by_skill(parse_mc_per_scene("2,distance_judgment=5"))
    assert skewed["distance_judgment"] > uniform["distance_judgment"]
    others = [row for row in skewed_rows if "-mc-distance_judgment" not in row["id"]]
    assert others == [row for row in uniform_rows if "-mc-distance_judgment" not in row["id"]]
    # a skill a mapping leaves out gets no rows
    assert rows_by_skill({"recognition": 1})[0].keys() == {"recognition"}


@pytest.mark.parametrize("text", ["x", "2,distance=3", "2,security", "-1", "2,security=-2"])
def test_bad_mc_per_scene_is_refused_with_the_expected_form(text):
    with pytest.raises(argparse.ArgumentTypeError, match="--mc-per-scene"):
        parse_mc_per_scene(text)


def test_uniform_mc_per_scene_keys_the_row_cache_as_a_plain_count_so_earlier_caches_stay_valid():
    skills = ("recognition", "security")
    assert mc_per_scene_setting(parse_mc_per_scene("3,distance_judgment=6"), skills) == 3
    assert mc_per_scene_setting({"recognition": 3, "security": 1}, skills) == {"recognition": 3, "security": 1}


def test_name_weights_offer_frequent_answers_as_distractors_too_so_names_alone_stop_telling_the_answer():
    scenes = [make_scene(seed) for seed in range(40)]
    answered = Counter()
    for scene in scenes:
        answered.update(obj.name for obj in scene.objects)

    def offered_wrongly(generator) -> Counter:
        counts = Counter()
        for scene in scenes:
            for row in generator.multiple_choice(scene, ["recognition"], per_skill=2):
                _, options, answer = mc_parts(row)
                counts.update(option for i, option in enumerate(options) if i != answer)
        return counts

    uniform = offered_wrongly(OfflineInstructionGenerator(seed=3))
    weighted = offered_wrongly(OfflineInstructionGenerator(seed=3, name_weights=dict(answered)))
    frequent = [name for name, _ in answered.most_common(3)]
    assert sum(weighted[n] for n in frequent) > 2 * sum(uniform[n] for n in frequent)  # 9 vs 2 here
    # every generated row stays valid: the right option is present in the box, the others absent from the scene
    for scene in scenes[:10]:
        present = {obj.name for obj in scene.objects}
        for row in OfflineInstructionGenerator(seed=3, name_weights=dict(answered)).multiple_choice(scene):
            _, options, answer = mc_parts(row)
            if row["id"].endswith("mc-recognition"):
                assert options[answer] in present and not present & (set(options) - {options[answer]})
            if row["id"].endswith("mc-security"):
                assert options[answer] not in present


def test_free_form_distances_are_the_mask_mean_depths():
    generator = OfflineInstructionGenerator(seed=0)
    stated = 0
    for seed in range(10):
        scene = make_scene(seed)
        depth_of = {obj.name: obj.mean_depth(scene.depth) for obj in scene.objects}
        rows, failed = generator.generate(
            scene, ["conversation", "complex_reasoning", "detailed_description"] * 2
        )
        assert failed == 0
        for row in rows:
            for answer in texts(row, "assistant"):
                for name, value in re.findall(
                    r"\b(?:[Tt]he|[Aa]) ([a-z ]+?) is (?:about|[a-z ,]+ about) ([\d.]+) m", answer
                ):
                    name = name.split()[-1] if name not in depth_of else name
                    if name in depth_of and Counter(o.name for o in scene.objects)[name] == 1:
                        assert abs(float(value) - depth_of[name]) <= 0.051, (answer, name)
                        stated += 1
    assert stated > 10


def test_closer_and_farther_statements_follow_the_depths():
    generator = OfflineInstructionGenerator(seed=5)
    checked = 0
    for seed in range(20):
        scene = make_scene(seed)
        depth_of = {obj.name: obj.mean_depth(scene.depth) for obj in scene.objects}
        rows, _ = generator.generate(scene, ["conversation"] * 3 + ["complex_reasoning"] * 3)
        for row in rows:
            for answer in texts(row, "assistant"):
                match = re.match(r"The (\w[\w ]*?) is closer: .* while the (\w[\w ]*?) is about", answer)
                if match:
                    assert depth_of[match.group(1)] < depth_of[match.group(2)]
                    checked += 1
                match = re.match(r"From nearest to farthest: (.*)\.$", answer)
                if match:
                    order = re.findall(r"the ([a-z ]+) \(", match.group(1))
                    assert [depth_of[n] for n in order] == sorted(depth_of[n] for n in order)
                    checked += 1
    assert checked > 3


def test_objects_at_the_same_distance_are_never_ranked():
    generator = OfflineInstructionGenerator(seed=0)
    for seed in range(8):
        scene = make_scene(seed)
        for obj in scene.objects:
            scene.depth[obj.mask] = 3.0 + 0.01 * obj.instance_id  # all within the ambiguity margin
        rows, _ = generator.generate(scene, ["conversation", "complex_reasoning", "detailed_description"] * 3)
        rows += generator.multiple_choice(scene)
        claims = " ".join(" ".join(texts(row, "assistant")) for row in rows)
        for phrase in (
            "nearest to farthest",
            "is closer",
            "nearest object",
            "farthest object",
            "first obstacle",
        ):
            assert phrase not in claims
        assert not any(row["id"].endswith("distance_judgment") for row in rows)


def test_generation_is_deterministic_from_the_seed():
    scenes = [make_scene(s) for s in range(4)]
    types = ["conversation", "complex_reasoning", "detailed_description"]

    def run(seed):
        generator = OfflineInstructionGenerator(seed=seed)
        return [generator.generate(s, types)[0] + generator.multiple_choice(s) for s in scenes]

    assert run(1) == run(1)
    assert run(1) != run(2)


def test_answer_letters_are_balanced_across_positions():
    generator = OfflineInstructionGenerator(seed=0)
    letters = Counter()
    for seed in range(80):
        for row in generator.multiple_choice(make_scene(seed), ["recognition", "security"]):
            letters[texts(row, "assistant")[0][0]] += 1
    total = sum(letters.values())
    assert set(letters) == set("ABCD")
    assert min(letters.values()) > total / 4 * 0.5


def test_mix_controls_the_types_and_rejects_bad_specs():
    only = parse_mix("conversation=1")
    assert set(plan_types("x", only, 10, 0)) == {"conversation"}
    mix = parse_mix("complex_reasoning=2,conversation=1,detailed_description=1")
    assert mix["complex_reasoning"] == pytest.approx(0.5)
    for bad in ("chat=1", "conversation=-1", "conversation", "conversation=abc", "conversation=0"):
        with pytest.raises(ValueError, match="--mix"):
            parse_mix(bad)


# ------------------------------------------------------------------------------------ fake endpoint


class FakeChatServer:
    """/v1/chat/completions on 127.0.0.1 writing replies from the objects listed in the prompt.

    mode: "ok", "unauthorized" (HTTP 401), "fail_first" (HTTP 500 for the first `failures` requests),
    "garbage" (a 200 that is not JSON, then content that is not JSON), "hallucinate" (mentions a giraffe),
    "slow" (sleeps `delay`).
    """

    def __init__(self, mode="ok", failures=2, delay=1.0):
        self.mode, self.failures, self.delay = mode, failures, delay
        self.requests = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                server.requests += 1
                server.authorization = self.headers.get("Authorization")
                payload = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if self.path != "/v1/chat/completions" or "model" not in payload:
                    return self._send(404, b'{"error": "not found"}')
                if server.mode == "unauthorized":
                    return self._send(401, b'{"error": {"message": "Incorrect API key provided"}}')
                if server.mode == "fail_first" and server.requests <= server.failures:
                    return self._send(500, b'{"error": {"message": "overloaded"}}')
                if server.mode == "slow":
                    time.sleep(server.delay)
                if server.mode == "garbage" and server.requests % 2:
                    return self._send(200, b"<html>bad gateway</html>")
                content = server.reply(payload["messages"][-1]["content"])
                body = {
                    "id": "chatcmpl-1",
                    "object": "chat.completion",
                    "created": 0,
                    "model": payload["model"],
                    "choices": [
                        {
                            "index": 0,
                            "finish_reason": "stop",
                            "message": {"role": "assistant", "content": content},
                        }
                    ],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                }
                self._send(200, json.dumps(body).encode())

            def _send(self, status, data):
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def reply(self, prompt):
        if self.mode == "garbage":
            return "Sure! Here are some questions about the room."
        objects = re.findall(r"^- ([a-z ]+): \[([\d, ]+)\], (\w+), ([\d.]+) m$", prompt, flags=re.M)
        name, box, side, dist = objects[0]
        box = [int(v) for v in box.split(", ")]
        extra = " A giraffe stands behind it." if self.mode == "hallucinate" else ""
        answer = f"The {name} is about {dist} m away on the {side}.{extra}"
        if "conversation of" in prompt:
            reply = {
                "conversation": [
                    {"question": f"How far is the {n}?", "answer": f"About {d} m.{extra}"}
                    for n, _, _, d in objects[:3]
                ],
                "objects": [n for n, _, _, _ in objects[:3]],
                "boxes": [box],
            }
        elif "Describe the scene" in prompt:
            reply = {"description": answer, "objects": [name], "boxes": []}
        else:
            reply = {
                "question": f"What would I reach first walking towards the {name}?",
                "answer": answer,
                "objects": [name],
                "boxes": [box],
            }
        return "```json\n" + json.dumps(reply) + "\n```"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def fake_server(request):
    server = FakeChatServer(**getattr(request, "param", {}))
    yield server
    server.close()


def openai_generator(server, tmp_path, timeout=5.0, max_retries=2):
    client = OpenAIChatClient(
        base_url=server.url,
        model="fake-model",
        api_key="sk-test",
        timeout=timeout,
        max_retries=max_retries,
        backoff=0.01,
    )
    return OpenAIInstructionGenerator(client, cache_dir=tmp_path / "openai", max_invalid_replies=1)


TYPES = ["conversation", "complex_reasoning", "detailed_description"]


def test_openai_generator_writes_validated_rows_and_caches_them(fake_server, tmp_path):
    generator = openai_generator(fake_server, tmp_path)
    scene = make_scene(1)
    rows, failed = generator.generate(scene, TYPES)
    assert failed == 0 and [r["type"] for r in rows] == TYPES
    nearest = scene_facts(scene).objects[0]
    assert f"The {nearest.name} is about {nearest.depth:.1f} m" in texts(rows[1], "assistant")[0]
    assert rows[0]["messages"][0]["content"][0] == {"type": "image", "text": None}
    assert sum(m["role"] == "user" for m in rows[0]["messages"]) >= 2
    sent = fake_server.requests
    assert generator.generate(scene, TYPES)[0] == rows
    assert fake_server.requests == sent  # everything came from the cache


@pytest.mark.parametrize("fake_server", [{"mode": "fail_first", "failures": 2}], indirect=True)
def test_openai_client_retries_server_errors_with_backoff(fake_server, tmp_path):
    waits = []
    client = OpenAIChatClient(
        base_url=fake_server.url, model="m", api_key="k", max_retries=3, backoff=0.5, sleep=waits.append
    )
    generator = OpenAIInstructionGenerator(client, cache_dir=tmp_path)
    rows, failed = generator.generate(make_scene(2), ["complex_reasoning"])
    assert failed == 0 and len(rows) == 1
    assert waits == [0.5, 1.0]


@pytest.mark.parametrize("fake_server", [{"mode": "garbage"}, {"mode": "hallucinate"}], indirect=True)
def test_openai_garbage_or_invented_objects_are_retried_then_skipped(fake_server, tmp_path):
    generator = openai_generator(fake_server, tmp_path)
    rows, report = build_instruction_rows(
        [make_scene(3), make_scene(4)], generator, tmp_path / "rows", rows_per_scene=2, progress=False
    )
    assert report.failed_items == 4 and len(report.failed_scenes) == 2
    assert all("-mc-" in row["id"] for row in rows)  # the ground-truth items are kept
    assert fake_server.requests >= 4 * 2


@pytest.mark.parametrize("fake_server", [{"mode": "slow", "delay": 1.0}], indirect=True)
def test_openai_slow_endpoint_times_out_and_is_counted(fake_server, tmp_path):
    generator = openai_generator(fake_server, tmp_path, timeout=0.2, max_retries=1)
    rows, failed = generator.generate(make_scene(5), ["detailed_description"])
    assert rows == [] and failed == 1
    assert "attempts" in generator.failures[0][2]


def test_openai_endpoint_down_is_skipped_not_fatal(tmp_path):
    server = FakeChatServer()
    url = server.url
    server.close()
    client = OpenAIChatClient(base_url=url, model="m", timeout=1, max_retries=1, backoff=0.01)
    rows, failed = OpenAIInstructionGenerator(client, tmp_path).generate(make_scene(6), TYPES)
    assert rows == [] and failed == 3


# ------------------------------------------------------------------------------------ builder


class Interrupting:
    """Wraps a generator and raises KeyboardInterrupt when asked for scene number `after`."""

    def __init__(self, inner, after):
        self.inner, self.after, self.calls = inner, after, 0
        self.name = inner.name

    def fingerprint(self):
        return self.inner.fingerprint()

    def generate(self, scene, types):
        self.calls += 1
        if self.calls > self.after:
            raise KeyboardInterrupt
        return self.inner.generate(scene, types)


def test_interrupted_build_resumes_to_the_same_rows(fake_server, tmp_path):
    scenes = [make_scene(s) for s in range(5)]
    reference, _ = build_instruction_rows(
        scenes,
        openai_generator(fake_server, tmp_path / "a"),
        tmp_path / "a" / "rows",
        rows_per_scene=2,
        progress=False,
    )
    interrupted = Interrupting(openai_generator(fake_server, tmp_path / "b"), after=2)
    with pytest.raises(KeyboardInterrupt):
        build_instruction_rows(scenes, interrupted, tmp_path / "b" / "rows", rows_per_scene=2, progress=False)
    before = fake_server.requests
    resumed, report = build_instruction_rows(
        scenes,
        openai_generator(fake_server, tmp_path / "b"),
        tmp_path / "b" / "rows",
        rows_per_scene=2,
        progress=False,
    )
    assert report.from_cache == 2
    assert fake_server.requests - before == 3 * 2  # only the three unfinished scenes asked the endpoint
    assert resumed == reference


def test_dataset_round_trips_through_parquet_and_load_dataset(tmp_path):
    scenes = [make_scene(s) for s in range(6)]
    rows, report = build_instruction_rows(
        scenes, OfflineInstructionGenerator(seed=0), tmp_path / "cache", rows_per_scene=3, progress=False
    )
    stats = instruction_statistics(rows)
    export_dataset(
        rows_to_dataset(rows),
        tmp_path / "out",
        instruction_card(stats, "offline", parse_mix(None), "synthetic"),
    )
    loaded = datasets.load_dataset(str(tmp_path / "out"), split="train")
    assert len(loaded) == len(rows) == sum(s["rows"] for s in stats["per_type"].values())
    first = loaded[0]
    assert first["messages"] == rows[0]["messages"]
    scene = next(s for s in scenes if rows[0]["id"].startswith(s.id))
    np.testing.assert_allclose(image_value_to_depth(first["images"][0]), scene.depth, atol=5e-4)
    card = (tmp_path / "out" / "README.md").read_text()
    assert "mean user turns" in card and "distance_judgment" in card
    assert set(stats["per_type"]) <= {"complex_reasoning", "conversation", "detailed_description"}
    assert report.duplicates >= 0 and len({r["id"] for r in rows}) == len(rows)


# ------------------------------------------------------------------------------------ command line


def test_cli_offline_synthetic_is_deterministic_and_loads_back(tmp_path):
    from dataset_scripts.builders.instructions.builder import main

    args = [
        "--source",
        "synthetic",
        "--num-scenes",
        "3",
        "--seed",
        "4",
        "--width",
        "96",
        "--height",
        "72",
        "--no-progress",
    ]
    assert main(args + ["--output", str(tmp_path / "a")]) == 0
    assert main(args + ["--output", str(tmp_path / "b"), "--mix", "detailed_description=1"]) == 0
    assert main(args + ["--output", str(tmp_path / "c")]) == 0
    a, b, c = (datasets.load_dataset(str(tmp_path / name), split="train") for name in "abc")
    assert a.to_list() == c.to_list()
    assert {t for t, i in zip(b["type"], b["id"]) if "-mc-" not in i} == {"detailed_description"}
    assert {r["id"].split("-mc-")[1] for r in a if "-mc-" in r["id"]} >= {
        "scene_classification",
        "recognition",
    }


def test_cli_balance_names_changes_only_the_balanced_skills_rows(tmp_path):
    from dataset_scripts.builders.instructions.builder import main

    args = ["--num-scenes", "12", "--seed", "4", "--width", "96", "--height", "72", "--mc-per-scene", "2",
            "--no-progress", "--rows-per-scene", "1"]
    assert main(args + ["--output", str(tmp_path / "uniform")]) == 0
    assert main(args + ["--output", str(tmp_path / "balanced"), "--balance-names", "recognition"]) == 0
    uniform, balanced = (
        {row["id"]: row["messages"] for row in datasets.load_dataset(str(tmp_path / name), split="train")}
        for name in ("uniform", "balanced")
    )
    assert uniform.keys() == balanced.keys()
    changed = {row_id for row_id in uniform if uniform[row_id] != balanced[row_id]}
    assert changed and all("-mc-recognition" in row_id for row_id in changed)
    # distance_judgment is balanced by leaving out named rows (the names point to the answer), never by rewriting
    assert main(args + ["--output", str(tmp_path / "distance"), "--balance-names", "distance_judgment"]) == 0
    thinned = {row["id"]: row["messages"] for row in datasets.load_dataset(str(tmp_path / "distance"), split="train")}
    dropped = uniform.keys() - thinned.keys()
    assert thinned.keys() <= uniform.keys() and dropped
    assert all("-mc-distance_judgment" in row_id for row_id in dropped)
    assert all(thinned[row_id] == uniform[row_id] for row_id in thinned)
    with pytest.raises(ValueError, match="balanced_skills"):
        main(args + ["--output", str(tmp_path / "bad"), "--balance-names", "scene_classification"])


def test_cli_openai_generator_reads_endpoint_and_key_from_the_environment(fake_server, tmp_path, monkeypatch):
    from dataset_scripts.builders.instructions.builder import main

    seen = []
    original = fake_server.reply
    fake_server.reply = lambda prompt: (seen.append(prompt), original(prompt))[1]
    monkeypatch.setenv("OPENAI_BASE_URL", fake_server.url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    args = [
        "--source",
        "synthetic",
        "--num-scenes",
        "2",
        "--seed",
        "1",
        "--width",
        "96",
        "--height",
        "72",
        "--generator",
        "openai",
        "--model",
        "fake-model",
        "--mc-skills",
        "",
        "--no-progress",
        "--output",
        str(tmp_path / "out"),
    ]
    assert main(args) == 0
    loaded = datasets.load_dataset(str(tmp_path / "out"), split="train")
    assert fake_server.requests == 2 * 3  # the fake answers alike for one type: duplicates are dropped
    texts_per_row = ["\n".join(b["text"] or "" for m in r["messages"] for b in m["content"]) for r in loaded]
    assert len(set(texts_per_row)) == len(loaded) >= 2 and {i.rsplit("-", 2)[0] for i in loaded["id"]} == {
        "synthetic-train-1-000000",
        "synthetic-train-1-000001",
    }
    assert all("Captions:" in prompt and "mean distance" in prompt for prompt in seen)
    assert fake_server.authorization == "Bearer sk-env"


def test_instructions_from_a_pairs_folder_use_box_mean_depths(tmp_path):
    from dataset_scripts.builders import pairs
    from dataset_scripts.builders.instructions.builder import main, scenes_from_pairs

    common = ["--num-scenes", "2", "--seed", "2", "--width", "96", "--height", "72", "--no-progress"]
    assert pairs.main(["--source", "synthetic", "--output", str(tmp_path / "pairs")] + common) == 0
    assert (
        main(
            ["--source", "pairs", "--pairs-dir", str(tmp_path / "pairs"), "--output", str(tmp_path / "out")]
            + common
        )
        == 0
    )
    scenes = {s.id: s for s in scenes_from_pairs(tmp_path / "pairs")}
    loaded = datasets.load_dataset(str(tmp_path / "out"), split="train")
    distance_rows = [r for r in loaded if r["id"].endswith("-mc-distance_judgment")]
    assert distance_rows
    for row in distance_rows:
        scene = scenes[row["id"].rsplit("-mc-", 1)[0]]
        _, options, answer = mc_parts(row)
        depth_of = {o.name: o.mean_depth(scene.depth) for o in scene.objects}
        assert depth_of[options[answer]] > depth_of[options[1 - answer]]
    assert set(loaded["source"]) == {"synthetic"} and len(loaded) > 2


def test_reply_validator_rejects_invented_objects_and_boxes_outside_the_image():
    from dataset_scripts.builders.instructions.openai_endpoint import InvalidReply, ReplyValidator, parse_reply

    scene = make_scene(0)
    name = scene.objects[0].name
    validator = ReplyValidator(scene)
    ok = validator.turns(
        "complex_reasoning",
        {
            "question": f"Where is the {name}?",
            "answer": f"The {name} is inside its bounding box.",
            "objects": [name],
        },
    )
    assert ok[0][0] == f"Where is the {name}?"
    with pytest.raises(InvalidReply, match="giraffe"):
        validator.turns("complex_reasoning", {"question": "Q?", "answer": "A giraffe.", "objects": []})
    with pytest.raises(InvalidReply, match="not among the annotations"):
        validator.turns("detailed_description", {"description": "x", "objects": ["unicorn"]})
    with pytest.raises(InvalidReply, match="not inside"):
        validator.boxes([[0, 0, scene.width + 5, 10]])
    with pytest.raises(InvalidReply, match="not JSON"):
        parse_reply("Sure, here you go")
    assert parse_reply('```json\n{"a": 1}\n```') == {"a": 1}


@pytest.mark.parametrize("fake_server", [{"mode": "unauthorized"}], indirect=True)
def test_cli_stops_with_a_clear_message_when_the_endpoint_rejects_the_key(fake_server, tmp_path, capsys):
    from dataset_scripts.builders.instructions.builder import main

    args = [
        "--source",
        "synthetic",
        "--num-scenes",
        "3",
        "--seed",
        "1",
        "--width",
        "96",
        "--height",
        "72",
        "--generator",
        "openai",
        "--base-url",
        fake_server.url,
        "--api-key",
        "wrong",
        "--no-progress",
        "--output",
        str(tmp_path / "out"),
    ]
    assert main(args) == 2
    assert "HTTP 401" in capsys.readouterr().err and fake_server.requests == 1


def test_built_rows_carry_each_images_boxes_as_tags_right_after_its_image_block(tmp_path):
    """What TRL's collator keeps (`messages`, `images`) holds the regions: the tags give each image the boxes of
    the `boxes` column, so the processor's mask is the one the boxes give, with one image per option too."""
    from dataset_scripts.builders.instructions.builder import main
    from deepsight.tiny import build_tiny_deepsight

    args = ["--num-scenes", "3", "--seed", "4", "--width", "64", "--height", "48", "--no-progress",
            "--rows-per-scene", "1", "--distance-regions", "--output", str(tmp_path / "out")]
    assert main(args) == 0
    rows = list(datasets.load_dataset(str(tmp_path / "out"), split="train"))
    assert any(len(row["images"]) == 2 for row in rows) and any(not any(row["boxes"]) for row in rows)
    _, processor = build_tiny_deepsight(seed=0)
    for row in rows:
        _, tagged = split_box_tags(row["messages"])
        assert tagged == row["boxes"], row["id"]
        for turn in row["messages"]:
            for before, block in zip(turn["content"], turn["content"][1:]):
                if "<box>" in (block.get("text") or ""):
                    assert before["type"] == "image" and strip_box_tags(block["text"]) == ""
        text = processor.apply_chat_template(row["messages"], tokenize=False)
        from_tags = processor(text=[text], images=row["images"], return_tensors="pt")
        untagged, _ = split_box_tags(row["messages"])
        plain = processor.apply_chat_template(untagged, tokenize=False)
        from_boxes = processor(text=[plain], images=row["images"], boxes=row["boxes"], return_tensors="pt")
        assert (from_tags["bbox_mask"] == from_boxes["bbox_mask"]).all()
        assert (from_tags["input_ids"] == from_boxes["input_ids"]).all()
