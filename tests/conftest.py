"""Shared, session-scoped fixtures: tiny tokenizer, tiny DeepSight, tiny random CLIP / Llama checkpoints on disk.

Everything is built in-process from configs (no Hub) in well under a second each, deterministic from fixed seeds.
Fixtures hand out shared objects: a test that changes a model must work on a copy (``copy.deepcopy``).
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op torch thread for the modules that ask for it (``pytest.mark.usefixtures``): on a shared,
    loaded CPU, torch's default thread pool oversubscribes the cores and tiny-model steps get ~50x slower."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def make_depth_map(height: int = 48, width: int = 64, seed: int = 0) -> np.ndarray:
    """A synthetic indoor depth map in metres (see `deepsight.tiny.synthetic_depth_map`)."""
    from deepsight.tiny import synthetic_depth_map

    return synthetic_depth_map(height, width, seed)


@pytest.fixture(scope="session")
def depth_map() -> np.ndarray:
    """One synthetic depth map (48 x 64, float32 metres)."""
    return make_depth_map()


@pytest.fixture(scope="session")
def depth_maps() -> list[np.ndarray]:
    """Three synthetic depth maps of different sizes (float32 metres)."""
    return [make_depth_map(48, 64, seed=0), make_depth_map(40, 40, seed=1), make_depth_map(30, 50, seed=2)]


@pytest.fixture(scope="session")
def tiny_tokenizer():
    from deepsight.tiny import train_tiny_tokenizer

    return train_tiny_tokenizer()


@pytest.fixture(scope="session")
def tiny_deepsight(tiny_tokenizer):
    """(model, processor): a random tiny DeepSight (32x32 depth, 16 image tokens, Llama LM) in eval mode."""
    from deepsight.tiny import build_tiny_deepsight

    return build_tiny_deepsight(tokenizer=tiny_tokenizer, seed=0)


@pytest.fixture(scope="session")
def tiny_deepsight_dir(tiny_deepsight, tmp_path_factory):
    """A folder holding the tiny DeepSight saved with `save_pretrained` (model + processor)."""
    model, processor = tiny_deepsight
    folder = tmp_path_factory.mktemp("tiny_deepsight")
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory):
    """A tiny random `CLIPModel` (vision 32x32 / patch 8, text vocab 99) saved to a temp folder."""
    from transformers import CLIPConfig, CLIPModel, CLIPTextConfig, CLIPVisionConfig

    config = CLIPConfig(
        text_config=CLIPTextConfig(
            vocab_size=99, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
            projection_dim=16, max_position_embeddings=32, bos_token_id=0, eos_token_id=2, pad_token_id=1,
        ),
        vision_config=CLIPVisionConfig(
            hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, image_size=32,
            patch_size=8, projection_dim=16,
        ),
        projection_dim=16,
    )
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny_clip")
    CLIPModel(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_llama_dir(tiny_tokenizer, tmp_path_factory):
    """A tiny random `LlamaForCausalLM` (vocabulary of the tiny tokenizer) and that tokenizer, in a temp folder."""
    from transformers import LlamaForCausalLM

    from deepsight.tiny import tiny_text_config

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny_llama")
    LlamaForCausalLM(tiny_text_config(tiny_tokenizer, "llama", hidden_size=32)).save_pretrained(folder)
    tiny_tokenizer.save_pretrained(folder)
    return folder
