"""Tiny DeepSight configs and inputs for transformers' `ModelTesterMixin`, built the way transformers' own testers are.

* `DeepSightVisionModelTester`: like CLIP's vision tester (``pixel_values`` plus our ``bbox_mask``).
* `DeepSightModelTester`: like LLaVA's tester (a Llama text config, ``input_ids`` that start with the image tokens).
* `DeepSightDualEncoderModelTester`: like CLIP's composite tester (a vision and a text tester side by side).

Every size is tiny (2 layers, hidden size 32) so that the whole conformance package runs in a few minutes on a CPU.
"""

from __future__ import annotations

import torch
from transformers import CLIPTextConfig

from modeling_deepsight import DeepSightConfig, DeepSightDualEncoderConfig, DeepSightVisionConfig
from tests.conformance.transformers_tests import require


common = require("test_modeling_common")
ids_tensor, floats_tensor, random_attention_mask = (
    common.ids_tensor, common.floats_tensor, common.random_attention_mask
)


def random_box_mask(batch_size: int, image_size: int) -> torch.Tensor:
    """[B, 1, H, W] binary masks, one random box each (the processor's ``bbox_mask``)."""
    mask = torch.zeros(batch_size, 1, image_size, image_size)
    corners = ids_tensor([batch_size, 2], image_size // 2).tolist()
    for row, (top, left) in enumerate(corners):
        mask[row, 0, top : top + image_size // 2, left : left + image_size // 2] = 1.0
    return mask


class DeepSightVisionModelTester:
    def __init__(
        self,
        parent,
        batch_size=5,
        image_size=16,
        patch_size=4,
        num_channels=1,
        is_training=True,
        hidden_size=32,
        projection_dim=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        attention_dropout=0.1,
        initializer_range=0.02,
    ):
        self.parent = parent
        self.batch_size = batch_size
        self.image_size = image_size
        self.patch_size = patch_size
        self.num_channels = num_channels
        self.is_training = is_training
        self.hidden_size = hidden_size
        self.projection_dim = projection_dim
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.intermediate_size = intermediate_size
        self.attention_dropout = attention_dropout
        self.initializer_range = initializer_range
        # the CLS token plus one token per patch
        self.seq_length = (image_size // patch_size) ** 2 + 1

    def get_config(self) -> DeepSightVisionConfig:
        return DeepSightVisionConfig(
            image_size=self.image_size,
            patch_size=self.patch_size,
            num_channels=self.num_channels,
            hidden_size=self.hidden_size,
            projection_dim=self.projection_dim,
            num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads,
            intermediate_size=self.intermediate_size,
            attention_dropout=self.attention_dropout,
            initializer_range=self.initializer_range,
        )

    def prepare_config_and_inputs(self):
        pixel_values = floats_tensor([self.batch_size, self.num_channels, self.image_size, self.image_size])
        return self.get_config(), pixel_values, random_box_mask(self.batch_size, self.image_size)

    def prepare_config_and_inputs_for_common(self):
        config, pixel_values, bbox_mask = self.prepare_config_and_inputs()
        return config, {"pixel_values": pixel_values, "bbox_mask": bbox_mask}


class DeepSightModelTester:
    def __init__(
        self,
        parent,
        batch_size=3,
        seq_length=7,
        image_token_id=0,
        pad_token_id=1,
        is_training=True,
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
        projector_hidden_act="gelu",
    ):
        self.parent = parent
        self.batch_size = batch_size
        self.image_token_id = image_token_id
        self.pad_token_id = pad_token_id
        self.is_training = is_training
        self.vision_feature_layer = vision_feature_layer
        self.vision_feature_select_strategy = vision_feature_select_strategy
        self.projector_hidden_act = projector_hidden_act
        self.text_config = {
            "model_type": "llama",
            "vocab_size": 99,
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "hidden_act": "gelu",
            "max_position_embeddings": 512,
            "initializer_range": 0.02,
            "pad_token_id": pad_token_id,
            "bos_token_id": 2,
            "eos_token_id": 3,
        }
        self.vision_config = {
            "image_size": 8,
            "patch_size": 2,
            "num_channels": 1,
            "hidden_size": 32,
            "projection_dim": 32,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "intermediate_size": 37,
            "attention_dropout": 0.1,
            "initializer_range": 0.02,
        }
        self.num_channels = self.vision_config["num_channels"]
        self.image_size = self.vision_config["image_size"]
        self.num_image_tokens = (self.image_size // self.vision_config["patch_size"]) ** 2
        self.seq_length = seq_length + self.num_image_tokens
        self.encoder_seq_length = self.seq_length
        self.vocab_size = self.text_config["vocab_size"]
        self.hidden_size = self.text_config["hidden_size"]
        self.num_hidden_layers = self.text_config["num_hidden_layers"]
        self.num_attention_heads = self.text_config["num_attention_heads"]

    def get_config(self) -> DeepSightConfig:
        return DeepSightConfig(
            text_config=self.text_config,
            vision_config=self.vision_config,
            image_token_id=self.image_token_id,
            vision_feature_layer=self.vision_feature_layer,
            vision_feature_select_strategy=self.vision_feature_select_strategy,
            projector_hidden_act=self.projector_hidden_act,
        )

    def prepare_config_and_inputs(self):
        pixel_values = floats_tensor([self.batch_size, self.num_channels, self.image_size, self.image_size])
        return self.get_config(), pixel_values, random_box_mask(self.batch_size, self.image_size)

    def prepare_config_and_inputs_for_common(self):
        config, pixel_values, bbox_mask = self.prepare_config_and_inputs()
        input_ids = ids_tensor([self.batch_size, self.seq_length], self.vocab_size - 1) + 1
        attention_mask = torch.ones_like(input_ids)
        # one image per sample: its tokens first, the text after (no stray image-token id in the text)
        input_ids[input_ids == self.image_token_id] = self.pad_token_id
        input_ids[:, : self.num_image_tokens] = self.image_token_id
        inputs_dict = {
            "pixel_values": pixel_values,
            "bbox_mask": bbox_mask,
            "input_ids": input_ids,
            "attention_mask": attention_mask,
        }
        return config, inputs_dict


class DeepSightDualEncoderTextModelTester:
    """A CLIP text encoder's config and captions (CLIP's text tester sizes)."""

    def __init__(self, parent, batch_size=5, seq_length=7, vocab_size=99, hidden_size=32, num_hidden_layers=2):
        self.parent = parent
        self.batch_size = batch_size
        self.seq_length = seq_length
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = 4

    def get_config(self) -> CLIPTextConfig:
        return CLIPTextConfig(
            vocab_size=self.vocab_size,
            hidden_size=self.hidden_size,
            projection_dim=32,
            num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads,
            intermediate_size=37,
            max_position_embeddings=512,
        )

    def prepare_config_and_inputs_for_common(self):
        input_ids = ids_tensor([self.batch_size, self.seq_length], self.vocab_size)
        attention_mask = random_attention_mask([self.batch_size, self.seq_length])
        return self.get_config(), {"input_ids": input_ids, "attention_mask": attention_mask}


class DeepSightDualEncoderModelTester:
    def __init__(self, parent, is_training=True):
        self.parent = parent
        self.vision_model_tester = DeepSightVisionModelTester(parent)
        self.text_model_tester = DeepSightDualEncoderTextModelTester(parent)
        self.batch_size = self.vision_model_tester.batch_size  # one caption per depth map
        self.is_training = is_training

    def get_config(self) -> DeepSightDualEncoderConfig:
        return DeepSightDualEncoderConfig(
            vision_config=self.vision_model_tester.get_config().to_dict(),
            text_config=self.text_model_tester.get_config().to_dict(),
            projection_dim=64,
        )

    def prepare_config_and_inputs_for_common(self):
        _, vision_inputs = self.vision_model_tester.prepare_config_and_inputs_for_common()
        _, text_inputs = self.text_model_tester.prepare_config_and_inputs_for_common()
        return self.get_config(), {**vision_inputs, **text_inputs, "return_loss": False}
