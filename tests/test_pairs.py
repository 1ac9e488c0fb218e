"""Depth-text-bbox pairs: COCO reader, depth estimation cache, caption scoring, sharding, round trip."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import datasets
from dataset_scripts.builders import pairs
from dataset_scripts.sources.coco import decode_rle, decode_segmentation, read_coco
from dataset_scripts.sources.depth_estimation import (
    DepthCache,
    DepthEstimator,
    estimate_depths,
    save_tiny_random_glpn,
)
from dataset_scripts.export import image_value_to_depth
from dataset_scripts.scene import Scene, SceneObject
from deepsight.depth_rendering import metres_to_rgb

REALDATA = Path(__file__).resolve().parents[1].parent / "shared" / "realdata"


def encode_rle_string(mask: np.ndarray) -> str:
    """COCO's compressed RLE, written independently of the decoder under test."""
    flat = mask.T.reshape(-1)
    runs, value, run = [], False, 0
    for pixel in flat:
        if bool(pixel) == value:
            run += 1
        else:
            runs.append(run)
            value, run = not value, 1
    runs.append(run)
    out = []
    for i, x in enumerate(runs):
        if i > 2:
            x -= runs[i - 2]
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = x != -1 if c & 0x10 else x != 0
            out.append(chr((c | (0x20 if more else 0)) + 48))
    return "".join(out)


def test_compressed_rle_decodes_to_the_encoded_mask():
    rng = np.random.default_rng(0)
    for _ in range(5):
        mask = rng.random((37, 53)) < rng.uniform(0.05, 0.9)
        mask[5:20, 10:40] = True
        decoded = decode_rle({"size": [37, 53], "counts": encode_rle_string(mask)})
        assert np.array_equal(decoded, mask)


def fixture_coco(root: Path, sizes=((64, 48), (48, 64), (64, 64), (40, 40))) -> Path:
    """A COCO-layout folder: real JPEGs, polygons, RLE (string and list), and records lacking fields."""
    rng = np.random.default_rng(1)
    (root / "annotations").mkdir(parents=True)
    (root / "val2017").mkdir()
    images, annotations, captions = [], [], []
    for i, (w, h) in enumerate(sizes, start=1):
        Image.fromarray((rng.random((h, w, 3)) * 255).astype("uint8")).save(
            root / "val2017" / f"{i:012d}.jpg"
        )
        images.append({"id": i, "file_name": f"{i:012d}.jpg", "width": w, "height": h})
        captions += [
            {"id": 10 * i + k, "image_id": i, "caption": f"a  chair and a table, view {k}"} for k in range(3)
        ]
        annotations.append(
            {
                "id": 100 * i,
                "image_id": i,
                "category_id": 62,
                "iscrowd": 0,
                "bbox": [2, 3, 20, 10],
                "segmentation": [[2, 3, 22, 3, 22, 13, 2, 13]],
            }
        )
        mask = np.zeros((h, w), dtype=bool)
        mask[20:30, 5:25] = True
        annotations.append(
            {
                "id": 100 * i + 1,
                "image_id": i,
                "category_id": 67,
                "iscrowd": 0,
                "bbox": [5, 20, 20, 10],
                "segmentation": {"size": [h, w], "counts": encode_rle_string(mask)},
            }
        )
    images.append({"id": 99, "file_name": "000000000099.jpg"})  # no width/height
    images.append(
        {"id": 98, "file_name": "000000000098.jpg", "width": 10, "height": 10}
    )  # file missing on disk
    annotations += [
        {"id": 1, "image_id": 1, "category_id": 62},  # no bbox
        {"id": 2, "image_id": 77, "category_id": 62, "bbox": [0, 0, 1, 1]},  # unknown image
        {
            "id": 3,
            "image_id": 1,
            "category_id": 1,
            "iscrowd": 1,
            "bbox": [0, 0, 5, 5],
            "segmentation": {"size": [48, 64], "counts": [10, 5, 3057]},
        },
    ]
    captions.append({"id": 5, "image_id": 1})  # no caption text
    categories = [
        {"id": 1, "name": "person", "supercategory": "person"},
        {"id": 62, "name": "chair", "supercategory": "furniture"},
        {"id": 67, "name": "dining table", "supercategory": "furniture"},
        {"id": 70},
    ]
    (root / "annotations" / "instances_val2017.json").write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": categories})
    )
    (root / "annotations" / "captions_val2017.json").write_text(
        json.dumps({"images": images, "annotations": captions})
    )
    return root


def test_coco_reader_converts_boxes_decodes_masks_and_counts_missing_fields(tmp_path):
    coco = read_coco(fixture_coco(tmp_path / "coco"), "val2017")
    assert (
        coco.skipped
        == Counter(
            {
                "image without width": 2,
                "annotation without bbox": 1,
                "caption without caption": 1,
                "annotation of an unknown image": 1,
                "crowd annotation": 1,
                "category without id": 0,
                "category without name": 1,
            }
        )
        - Counter()
    )
    first = coco.images[1]
    assert first.captions[0] == "a chair and a table, view 0" and len(first.captions) == 3
    assert [o.box for o in first.objects] == [(2.0, 3.0, 22.0, 13.0), (5.0, 20.0, 25.0, 30.0)]
    assert first.indoor_outdoor == "indoor"
    scene = first.to_scene(np.full((48, 64), 2.0, dtype=np.float32))
    chair, table = scene.objects
    assert chair.mask[3:13, 2:22].all() and chair.mask.sum() <= 21 * 11
    assert table.mask.sum() == 200 and table.mask[20:30, 5:25].all()
    assert scene.depth_is_predicted and scene.source == "coco" and scene.id == "coco-000000000001"


def test_masks_follow_the_depth_resolution_when_it_differs(tmp_path):
    coco = read_coco(fixture_coco(tmp_path / "coco"), "val2017")
    scene = coco.images[1].to_scene(np.ones((24, 32), dtype=np.float32))
    assert scene.objects[1].mask.shape == (24, 32) and scene.objects[1].box == (2.5, 10.0, 12.5, 15.0)


def test_segmentation_of_an_unknown_kind_is_a_clear_error():
    with pytest.raises(ValueError, match="polygon list or an RLE dict"):
        decode_segmentation("oops", 4, 4)


@pytest.mark.skipif(not (REALDATA / "coco").exists(), reason="../shared/realdata/coco not present")
def test_real_coco_val_sample_reads_with_masks_matching_areas():
    coco = read_coco(REALDATA / "coco", "val2017")
    assert len(coco.images) == 16
    assert coco.images[397133].captions[0].startswith("A man is in a kitchen making pizzas.")
    raw = json.loads((REALDATA / "coco" / "annotations" / "instances_val2017.json").read_text())
    areas = {a["id"]: a["area"] for a in raw["annotations"]}
    for image in coco.images.values():
        for obj in image.objects:
            assert (
                0 <= obj.box[0] < obj.box[2] <= image.width + 1
                and 0 <= obj.box[1] < obj.box[3] <= image.height + 1
            )
            if areas[obj.annotation_id] > 500:
                area = decode_segmentation(obj.segmentation, image.height, image.width).sum()
                assert abs(area - areas[obj.annotation_id]) / areas[obj.annotation_id] < 0.1
    assert Counter(i.indoor_outdoor for i in coco.images.values())["indoor"] >= 10


@pytest.fixture(scope="module")
def tiny_glpn(tmp_path_factory):
    return str(save_tiny_random_glpn(tmp_path_factory.mktemp("glpn") / "tiny-glpn"))


def test_depth_estimation_is_metric_cached_resumable_and_skips_bad_images(tiny_glpn, tmp_path):
    estimator = DepthEstimator(tiny_glpn, device="cpu", batch_size=4)
    calls = []

    def predict(images):
        calls.append(len(images))
        return estimator.predict(images)

    rng = np.random.default_rng(0)
    good = {
        f"img{i}": (lambda i=i: Image.fromarray((rng.random((40 + 8 * i, 56, 3)) * 255).astype("uint8")))
        for i in range(3)
    }

    def broken():
        raise OSError("truncated jpeg")

    cache = DepthCache(tmp_path / "depth")
    report = estimate_depths(predict, {**good, "bad": broken}, cache, batch_size=4, progress=False)
    assert sorted(report.estimated) == ["img0", "img1", "img2"] and list(report.failed) == ["bad"]
    depth = cache.load("img1")
    assert depth.shape == (48, 56) and depth.dtype == np.float32 and 0 < depth.min() and depth.max() <= 10
    calls.clear()
    again = estimate_depths(predict, good, cache, batch_size=4, progress=False)
    assert calls == [] and sorted(again.cached) == ["img0", "img1", "img2"]


@pytest.mark.parametrize("kind", ["metric", "relative"])
def test_depth_anything_checkpoints_load_and_relative_ones_are_flagged(tmp_path, kind, caplog):
    from transformers import (
        DepthAnythingConfig,
        DepthAnythingForDepthEstimation,
        Dinov2Config,
        DPTImageProcessor,
    )

    backbone = Dinov2Config(
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        image_size=28,
        patch_size=14,
        out_features=["stage1", "stage2"],
        reshape_hidden_states=False,
    )
    config = DepthAnythingConfig(
        backbone_config=backbone,
        reassemble_hidden_size=16,
        neck_hidden_sizes=[8, 16],
        fusion_hidden_size=8,
        head_hidden_size=8,
        reassemble_factors=[2, 1],
        depth_estimation_type=kind,
        max_depth=10,
    )
    DepthAnythingForDepthEstimation(config).save_pretrained(tmp_path)
    DPTImageProcessor(
        size={"height": 28, "width": 28}, keep_aspect_ratio=True, ensure_multiple_of=14
    ).save_pretrained(tmp_path)
    depths = DepthEstimator(str(tmp_path), device="cpu").predict(
        [Image.new("RGB", (50, 40)), Image.new("RGB", (30, 44))]
    )
    assert [d.shape for d in depths] == [(40, 50), (44, 30)]
    assert ("relative depth" in caplog.text) == (kind == "relative")


def test_a_batch_that_fails_is_retried_image_by_image(tmp_path):
    def predict(images):
        if any(image.width == 13 for image in images):
            raise RuntimeError("this image breaks the model")
        return [np.full((image.height, image.width), 1.5, dtype=np.float32) for image in images]

    loaders = {name: (lambda w=w: Image.new("RGB", (w, 10))) for name, w in [("a", 10), ("b", 13), ("c", 12)]}
    report = estimate_depths(predict, loaders, DepthCache(tmp_path), batch_size=3, progress=False)
    assert sorted(report.estimated) == ["a", "c"] and list(report.failed) == ["b"]


def run_pairs(args):
    assert pairs.main(args + ["--no-progress"]) == 0


def test_coco_pairs_build_and_load_back_with_predicted_depth(tiny_glpn, tmp_path):
    coco_dir = fixture_coco(tmp_path / "coco")
    out = tmp_path / "pairs"
    run_pairs(
        ["--source", "coco", "--coco-dir", str(coco_dir), "--estimator", tiny_glpn, "--output", str(out)]
    )
    loaded = datasets.load_dataset(str(out), split="train")
    assert loaded["id"] == [
        f"coco-{i:012d}" for i in (1, 2, 3, 4)
    ]  # image 98 (no file) skipped, 99 (no size) too
    row = loaded[0]
    assert row["depth_is_predicted"] and row["labels"] == ["chair", "dining table"]
    assert row["boxes"] == [[2.0, 3.0, 22.0, 13.0], [5.0, 20.0, 25.0, 30.0]]
    assert row["depth"].mode == "I;16" and row["depth"].size == (64, 48)
    assert row["caption"] == row["captions"][int(np.argmax(row["caption_scores"]))]
    assert row["scene"] == "indoor"
    cached = DepthCache(pairs.depth_cache_dir(out, tiny_glpn)).load("coco-000000000001")
    np.testing.assert_allclose(image_value_to_depth(row["depth"]), cached)
    card = (out / "README.md").read_text()
    assert "predicted, not measured" in card and tiny_glpn in card and "image unreadable | 1" in card


def test_sharded_runs_merge_into_the_single_process_dataset(tiny_glpn, tmp_path, monkeypatch):
    coco_dir = fixture_coco(tmp_path / "coco")
    common = ["--source", "coco", "--coco-dir", str(coco_dir), "--estimator", tiny_glpn]
    run_pairs(common + ["--output", str(tmp_path / "single")])
    for rank in (1, 0):  # ranks finish in any order; the last one merges
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        run_pairs(common + ["--output", str(tmp_path / "sharded")])
        assert (tmp_path / "sharded" / "README.md").exists() == (rank == 0)
    single = datasets.load_dataset(str(tmp_path / "single"), split="train")
    sharded = datasets.load_dataset(str(tmp_path / "sharded"), split="train")
    assert sharded["id"] == single["id"] and sharded["captions"] == single["captions"]
    for a, b in zip(single["depth"], sharded["depth"]):
        assert np.array_equal(np.asarray(a), np.asarray(b))


def test_shard_arguments_are_validated():
    with pytest.raises(ValueError, match="shard-index"):
        pairs.shard_of([1, 2, 3], 2, 2)
    assert pairs.shard_of(list(range(7)), 1, 3) == [1, 4]


def tiny_clip(path: Path) -> Path:
    """A random CLIP with a word-level tokenizer and an image processor, saved like a hub checkpoint."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, PreTrainedTokenizerFast

    words = ["[PAD]", "[UNK]", "[EOS]", "a", "chair", "table", "bed", "room", "with", "near", "far", "the"]
    tokenizer = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    torch.manual_seed(0)
    config = CLIPConfig(
        text_config={
            "vocab_size": len(words),
            "hidden_size": 16,
            "intermediate_size": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "max_position_embeddings": 16,
            "eos_token_id": 2,
            "pad_token_id": 0,
            "bos_token_id": 1,
        },
        vision_config={
            "hidden_size": 16,
            "intermediate_size": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "image_size": 32,
            "patch_size": 8,
        },
        projection_dim=8,
    )
    CLIPModel(config).eval().save_pretrained(path)
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="[PAD]", unk_token="[UNK]").save_pretrained(
        path
    )
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(
        path
    )
    return path


def test_rgb_scorers_see_depth_in_gray_with_0_m_brightest_and_the_farthest_pixel_darkest():
    depth = np.array([[0.0, 1.0], [2.0, 4.0]], dtype=np.float32)
    gray = np.asarray(metres_to_rgb(depth, scale="far"))
    assert (gray[..., 0] == gray[..., 1]).all() and (gray[..., 0] == gray[..., 2]).all()
    # level = 255 - 254 * depth / farthest depth; invalid pixels black
    assert gray[..., 0].tolist() == [[0, 192], [128, 1]]
    ranged = np.asarray(metres_to_rgb(depth))[..., 0]
    assert ranged.tolist() == [[0, 255], [170, 1]]  # the default scale spans nearest..farthest instead


def test_dual_encoder_scores_are_the_model_cosine_similarities_and_the_best_is_kept(tmp_path):
    import torch
    from transformers import CLIPModel

    path = tiny_clip(tmp_path / "clip")
    scorer = pairs.DualEncoderScorer(str(path), device="cpu")
    depth = np.tile(np.linspace(1, 4, 40, dtype=np.float32), (30, 1))
    scene = Scene(
        id="s",
        source="synthetic",
        depth=depth,
        objects=[SceneObject("chair", (1, 1, 10, 10))],
        captions=["a chair", "a room with a bed", "the table far near", "a chair near the table"],
    )
    row = pairs.pair_row(scene, scorer)
    assert (
        len(row["caption_scores"]) == 4
        and row["caption"] == scene.captions[int(np.argmax(row["caption_scores"]))]
    )
    # Independently: CLIP's own logits are logit_scale * cosine similarity.
    model = CLIPModel.from_pretrained(path).eval()
    inputs = scorer.tokenizer(scene.captions, padding=True, return_tensors="pt")
    pixels = scorer.image_processor(images=[metres_to_rgb(depth, scale="far")], return_tensors="pt")[
        "pixel_values"
    ]
    with torch.no_grad():
        logits = model(
            input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], pixel_values=pixels
        ).logits_per_text
    np.testing.assert_allclose(
        row["caption_scores"], (logits[:, 0] / model.logit_scale.exp()).detach().numpy(), atol=1e-5
    )


def test_deepsight_dual_encoder_scorer_matches_the_model_logits(tmp_path):
    import torch

    from deepsight.tiny import build_tiny_dual_encoder

    model, processor = build_tiny_dual_encoder(seed=0)
    model.save_pretrained(tmp_path / "dual")
    processor.save_pretrained(tmp_path / "dual")
    scorer = pairs.DualEncoderScorer(str(tmp_path / "dual"), device="cpu")
    assert scorer.is_depth_model
    depth = np.tile(np.linspace(1, 4, 40, dtype=np.float32), (30, 1))
    captions = ["a chair", "a bed in a bedroom", "a table near the wall"]
    scene = Scene(
        id="s",
        source="synthetic",
        depth=depth,
        objects=[SceneObject("chair", (1, 1, 10, 10))],
        captions=captions,
    )
    row = pairs.pair_row(scene, scorer)
    inputs = processor(
        images=[depth] * 3, text=captions, boxes=[[[1, 1, 10, 10]]] * 3, padding=True, return_tensors="pt"
    )
    with torch.no_grad():
        out = model(
            pixel_values=inputs["pixel_values"],
            bbox_mask=inputs["bbox_mask"],
            input_ids=inputs["input_ids"],
            attention_mask=inputs["attention_mask"],
            return_loss=False,
        )
    expected = (out.logits_per_text[:, 0] / model.logit_scale.exp()).detach().numpy()
    np.testing.assert_allclose(row["caption_scores"], expected, atol=1e-5)
    assert row["caption"] == captions[int(np.argmax(expected))]


def test_label_overlap_scorer_prefers_captions_naming_the_objects():
    scene = Scene(
        id="s",
        source="synthetic",
        depth=np.ones((4, 4), np.float32),
        objects=[SceneObject("chair", (0, 0, 1, 1)), SceneObject("bed", (1, 1, 2, 2))],
    )
    assert pairs.LabelOverlapScorer().score(scene, ["two chairs and a bed", "a bed", "a lamp"]) == [
        1.0,
        0.5,
        0.0,
    ]


def test_synthetic_pairs_carry_true_depth_boxes_and_captions_and_shard_alike(tmp_path, monkeypatch):
    from dataset_scripts.synthetic.world import generate_scenes

    common = ["--source", "synthetic", "--num-scenes", "3", "--seed", "7", "--width", "96", "--height", "72"]
    run_pairs(common + ["--output", str(tmp_path / "single")])
    for shard in ("0", "1"):
        run_pairs(
            common + ["--shard-index", shard, "--num-shards", "2", "--output", str(tmp_path / "sharded")]
        )
    single = datasets.load_dataset(str(tmp_path / "single"), split="train")
    sharded = datasets.load_dataset(str(tmp_path / "sharded"), split="train")
    scenes = list(generate_scenes(3, 7, width=96, height=72))
    assert single["id"] == sharded["id"] == [scene.id for scene in scenes]
    assert not any(single["depth_is_predicted"])
    for row, other, scene in zip(single, sharded, scenes):
        np.testing.assert_allclose(image_value_to_depth(row["depth"]), scene.depth, atol=5e-4)
        assert np.array_equal(np.asarray(row["depth"]), np.asarray(other["depth"]))
        assert row["labels"] == scene.object_names and len(row["boxes"]) == len(scene.objects)
        assert row["captions"] == scene.captions and row["caption"] in row["captions"]
        assert row["scene"] == scene.scene_type


def test_parts_are_written_in_chunks_and_merged_in_id_order(tmp_path):
    scenes = [
        Scene(
            id=f"s{i}",
            source="synthetic",
            depth=np.full((6, 8), 1.0 + i, np.float32),
            objects=[SceneObject("chair", (0, 0, 4, 4))],
            scene_type="office",
            captions=[f"a chair {i}"],
        )
        for i in (4, 1, 3, 0, 2)
    ]
    rows = pairs.iter_pair_rows(scenes, pairs.LabelOverlapScorer(), progress=False)
    assert pairs.write_part(rows, Counter({"seen": 5}), tmp_path, 0, 1, chunk_rows=2) == 5
    assert len(list((tmp_path / "parts" / "part-00000-of-00001").glob("chunk-*.parquet"))) == 3
    assert pairs.try_merge(tmp_path, 1, {"source": "synthetic", "estimator": None, "scorer": "label-overlap"})
    loaded = datasets.load_dataset(str(tmp_path), split="train")
    assert loaded["id"] == ["s0", "s1", "s2", "s3", "s4"]
    assert [float(image_value_to_depth(d)[0, 0]) for d in loaded["depth"]] == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert "| seen | 5 |" in (tmp_path / "README.md").read_text()


def test_rerun_reads_cached_depth_without_loading_the_estimator(tiny_glpn, tmp_path, monkeypatch):
    coco_dir = fixture_coco(tmp_path / "coco")
    args = [
        "--source",
        "coco",
        "--coco-dir",
        str(coco_dir),
        "--estimator",
        tiny_glpn,
        "--output",
        str(tmp_path / "out"),
    ]
    run_pairs(args)
    first = datasets.load_dataset(str(tmp_path / "out"), split="train").to_list()

    def no_model(*args, **kwargs):
        raise AssertionError("the estimator was loaded although every depth map is cached")

    monkeypatch.setattr(pairs, "DepthEstimator", no_model)
    run_pairs(args)
    again = datasets.load_dataset(str(tmp_path / "out"), split="train").to_list()
    assert [r["id"] for r in again] == [r["id"] for r in first]
    assert all(np.array_equal(np.asarray(a["depth"]), np.asarray(b["depth"])) for a, b in zip(first, again))


def test_an_estimator_that_cannot_load_stops_the_run_with_a_clear_message(tmp_path, capsys):
    coco_dir = fixture_coco(tmp_path / "coco")
    (tmp_path / "no-such-model").mkdir()  # a folder without a model (a mistyped path is refused as "not found")
    args = [
        "--source",
        "coco",
        "--coco-dir",
        str(coco_dir),
        "--estimator",
        str(tmp_path / "no-such-model"),
        "--output",
        str(tmp_path / "out"),
        "--no-progress",
    ]
    assert pairs.main(args) == 2
    assert "cannot load it" in capsys.readouterr().err
