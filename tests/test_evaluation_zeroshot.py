"""Tests of zero-shot scene classification (Table 3) and of benchmark loading from local folders."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from dataset_scripts.export import png_bytes_from_mm
from evaluation.runner import load_benchmark
from tests.fixtures.evaluation import fixture_tokenizer, make_benchmark_rows, write_benchmark_folder
from evaluation.zeroshot import class_lists, label_of, run_zeroshot

pytestmark = pytest.mark.usefixtures("one_torch_thread")

NYU = class_lists()["nyu"]


def _constant_depth(metres: float) -> dict:
    return {"bytes": png_bytes_from_mm(np.full((16, 16), int(metres * 1000), dtype=np.uint16)), "path": None}


def _scene_rows(scenes: list[str]) -> list[dict]:
    """Benchmark rows whose scene_classification rows have the given scenes and depth = class index + 1 m."""
    rows = make_benchmark_rows(4 * len(scenes), seed=3)
    for row, scene in zip(rows[::4], scenes):
        row["scene"] = scene
        label = label_of(scene, NYU, "nyu")
        row["depth"] = _constant_depth(NYU.index(label) + 1.0)
    return rows


class OracleEncoder:
    """Image embedding = one-hot of the class the depth encodes; text embedding = one-hot of the class named."""

    name = "oracle-encoder"

    def __init__(self):
        self.texts: list[str] = []

    def encode_depths(self, depths):
        indices = [int(round(float(np.median(d)))) - 1 for d in depths]
        return torch.nn.functional.one_hot(torch.tensor(indices), len(NYU)).float()

    def encode_texts(self, texts):
        self.texts += texts
        rows = []
        for text in texts:
            named = max((c for c in NYU if c in text), key=len)
            rows.append(torch.nn.functional.one_hot(torch.tensor(NYU.index(named)), len(NYU)).float())
        return torch.stack(rows)


def test_zero_shot_top1_is_exact_for_an_encoder_that_knows_the_scene(tmp_path):
    scenes = ["kitchen", "home_office", "living room", "basement", "office", "Bedroom"]
    folder = write_benchmark_folder(tmp_path / "scenes", _scene_rows(scenes))
    encoder = OracleEncoder()
    results = run_zeroshot(encoder, str(folder), dataset="nyu", output_dir=tmp_path / "out", progress=False)
    assert results["n"] == len(scenes)  # only the scene_classification rows, one per image
    assert results["top1"] == 1.0
    assert results["per_class"]["others"]["n"] == 1  # 'basement' folds into NYU's 'others'
    assert results["per_class"]["home office"]["n"] == 1
    # prompt ensembling: every class was embedded with every template
    assert len(encoder.texts) == len(NYU) * len(results["templates"])
    assert "a bad depth photo of the kitchen." in encoder.texts
    assert json.loads((tmp_path / "out" / "zeroshot.json").read_text())["top1"] == 1.0
    assert "Top-1 accuracy: 100.0%" in (tmp_path / "out" / "zeroshot.md").read_text()


def test_zero_shot_sun_leaves_out_scenes_outside_its_19_classes_and_limit_samples(tmp_path):
    scenes = ["kitchen", "basement", "office", "bedroom", "bathroom"]
    folder = write_benchmark_folder(tmp_path / "scenes", _scene_rows(scenes))

    class RandomEncoder(OracleEncoder):
        def encode_texts(self, texts):
            return torch.randn(len(texts), 4, generator=torch.Generator().manual_seed(len(self.texts)))

        def encode_depths(self, depths):
            return torch.ones(len(depths), 4)

    results = run_zeroshot(RandomEncoder(), str(folder), dataset="sun", progress=False)
    assert results["n"] == 4 and results["left_out"] == 1 and len(results["classes"]) == 19
    limited = run_zeroshot(RandomEncoder(), str(folder), dataset="sun", limit=2, progress=False)
    assert limited["n"] == 2
    with pytest.raises(ValueError, match="dataset"):
        run_zeroshot(RandomEncoder(), str(folder), dataset="imagenet", progress=False)


def test_cli_zeroshot_runs_on_a_tiny_deepsight_dual_encoder_folder(tmp_path):
    tiny = pytest.importorskip("deepsight.tiny")
    from evaluation.cli import main

    model, processor = tiny.build_tiny_dual_encoder(seed=0)
    model.save_pretrained(tmp_path / "encoder")
    processor.save_pretrained(tmp_path / "encoder")
    folder = write_benchmark_folder(tmp_path / "scenes", _scene_rows(["kitchen", "office", "bedroom"]))
    assert main(["zeroshot", "--model", str(tmp_path / "encoder"), "--benchmark", str(folder), "--output", str(tmp_path / "out")]) == 0
    results = json.loads((tmp_path / "out" / "zeroshot.json").read_text())
    assert results["n"] == 3 and 0.0 <= results["top1"] <= 1.0 and len(results["classes"]) == 10


def test_zero_shot_runs_on_a_tiny_clip_baseline_with_depth_as_colormap(tmp_path):
    from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel, CLIPProcessor

    tokenizer = fixture_tokenizer()
    config = CLIPConfig(
        text_config=dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=64, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                           image_size=28, patch_size=14),
        projection_dim=16,
    )
    torch.manual_seed(0)
    CLIPModel(config).save_pretrained(tmp_path / "clip")
    image_processor = CLIPImageProcessorPil(size={"shortest_edge": 28}, crop_size={"height": 28, "width": 28})
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(tmp_path / "clip")
    folder = write_benchmark_folder(tmp_path / "scenes", _scene_rows(["kitchen", "office", "bedroom", "bathroom"]))
    results = run_zeroshot(str(tmp_path / "clip"), str(folder), dataset="nyu", depth_as="colormap", batch_size=3, progress=False)
    assert results["n"] == 4 and sum(results["predicted_counts"].values()) == 4


def test_two_benchmark_folders_with_the_same_name_load_their_own_rows(tmp_path):
    first = write_benchmark_folder(tmp_path / "a" / "benchmark", make_benchmark_rows(8, seed=0))
    second = write_benchmark_folder(tmp_path / "b" / "benchmark", make_benchmark_rows(12, seed=1))
    assert load_benchmark(str(first)).num_rows == 8
    assert load_benchmark(str(second)).num_rows == 12
    rebuilt = write_benchmark_folder(first, make_benchmark_rows(4, seed=2))  # rebuilt in place
    assert load_benchmark(str(rebuilt)).num_rows == 4


def test_compare_shows_zeroshot_runs_table3_style_beside_the_paper(tmp_path, capsys):
    from evaluation.cli import main

    folder = write_benchmark_folder(tmp_path / "scenes", _scene_rows(["kitchen", "office", "bedroom"]))
    run_zeroshot(OracleEncoder(), str(folder), dataset="nyu", output_dir=tmp_path / "zs", progress=False)
    assert main(["compare", str(tmp_path / "zs"), "--paper"]) == 0
    table = capsys.readouterr().out
    assert "| LanguageBind | paper, Table 3 | 65.1 | 36.7 |" in table
    assert "| oracle-encoder | this run | 100.0 [43.9, 100.0] (n=3) | - |" in table
