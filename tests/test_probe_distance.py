"""bench/probe_distance.py: a linear read-out of the tower's box features for "which box is farther"."""

from __future__ import annotations

import numpy as np
import pytest

from tests.fixtures.evaluation import write_benchmark_folder

BACKGROUND_M = 4.0


def _two_box_rows(count: int, seed: int, shuffle_answers: bool = False) -> list[dict]:
    """Distance rows on a 4 m wall with two boxes at 1-3.5 m (left and right half); the answer is the farther
    box, or with `shuffle_answers` a coin flip unrelated to the depth."""
    from dataset_scripts.export import png_bytes_from_mm

    rng = np.random.default_rng(seed)
    rows = []
    for i in range(count):
        depth = np.full((32, 48), BACKGROUND_M, dtype=np.float32)
        near, far = sorted(rng.choice(np.arange(1.0, 3.6, 0.25), size=2, replace=False))
        first_is_far = bool(rng.integers(2))
        first, second = (far, near) if first_is_far else (near, far)
        boxes = [[2.0, 6.0, 20.0, 26.0], [28.0, 6.0, 46.0, 26.0]]
        depth[6:26, 2:20], depth[6:26, 28:46] = first, second
        answer = int(rng.integers(2)) if shuffle_answers else (0 if first_is_far else 1)
        rows.append({
            "id": f"d{seed}-{i:03d}", "task": "distance_judgment", "source": "synthetic",
            "depth": {"bytes": png_bytes_from_mm((depth * 1000).astype(np.uint16)), "path": None},
            "question": "Which object is farther from the camera?", "options": ["chair", "table"],
            "answer_index": answer, "answer": ["chair", "table"][answer], "boxes": boxes, "scene": "office",
        })
    return rows


@pytest.fixture(scope="module")
def encoder_folder(tmp_path_factory):
    from deepsight.tiny import build_tiny_dual_encoder

    model, processor = build_tiny_dual_encoder(seed=0)
    folder = tmp_path_factory.mktemp("dual_encoder")
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def test_layer_zero_features_tell_the_farther_box_and_shuffled_answers_stay_near_chance(encoder_folder, tmp_path):
    from bench.probe_distance import probe

    fit = write_benchmark_folder(tmp_path / "fit", _two_box_rows(80, seed=1))
    test = write_benchmark_folder(tmp_path / "test", _two_box_rows(60, seed=2))
    real = probe(str(encoder_folder), str(fit), str(test), layers=[0])
    # the embedding of a masked depth patch is linear in its depth, even with random weights
    assert real["test_questions"] == 60 and real["layers"]["0"]["test_accuracy"] >= 0.9

    noise_fit = write_benchmark_folder(tmp_path / "noise_fit", _two_box_rows(80, seed=1, shuffle_answers=True))
    noise_test = write_benchmark_folder(tmp_path / "noise_test", _two_box_rows(60, seed=2, shuffle_answers=True))
    shuffled = probe(str(encoder_folder), str(noise_fit), str(noise_test), layers=[0])
    assert shuffled["layers"]["0"]["test_accuracy"] < 0.75  # nothing to read when the answers ignore the depth


def test_probe_refuses_a_benchmark_without_two_box_distance_questions(encoder_folder, tmp_path):
    from bench.probe_distance import probe
    from tests.fixtures.evaluation import make_benchmark_rows

    one_box = write_benchmark_folder(tmp_path / "one_box", make_benchmark_rows(8, seed=0))
    with pytest.raises(ValueError, match="one box per option"):
        probe(str(encoder_folder), str(one_box), str(one_box), layers=[0])
