"""transformers' `ProcessorTesterMixin` run against `DeepSightProcessor` (the tiny tokenizer, depth maps as images)."""

from __future__ import annotations

import unittest
from unittest import mock

import numpy as np

from deepsight.tiny import train_tiny_tokenizer
from modeling_deepsight import DeepSightImageProcessor, DeepSightProcessor
from tests.conformance.transformers_tests import require


processing_common = require("test_processing_common")
ProcessorTesterMixin = processing_common.ProcessorTesterMixin

# The mixin checks that image keywords reach the image processor with `rescale_factor=-1` (every pixel value <= 0
# afterwards); a depth map has no rescale step, and `depth_mean=100` has the same effect on its normalised values.
DEPTH_IMAGE_KWARGS_PROBE = {"depth_mean": 100.0}
AUTO_MAP_ROUND_TRIP = (
    "A remote-code processor saves `auto_map` (register_for_auto_class) and loads it back: one attribute more"
)


def depth_map(seed: int = 0, side: int = 32) -> np.ndarray:
    """A square depth map of near objects (0.5 to 5 m): unprobed, its normalised values average well above 0 (no
    invalid padding, bright inverse depth), so the probe's effect is what the mixin's check sees."""
    return np.random.default_rng(seed).uniform(0.5, 5.0, size=(side, side)).astype(np.float32)


class DeepSightProcessorTest(ProcessorTesterMixin, unittest.TestCase):
    processor_class = DeepSightProcessor

    @classmethod
    def _setup_tokenizer(cls):
        return train_tiny_tokenizer()

    @classmethod
    def _setup_image_processor(cls):
        return DeepSightImageProcessor(size=16)

    @staticmethod
    def prepare_processor_dict():
        return {"image_seq_length": 4}

    def setUp(self):
        super().setUp()
        image_specs = processing_common.MODALITY_TEST_SPECS["images"]
        probe = mock.patch.dict(image_specs, init_time_kwargs=DEPTH_IMAGE_KWARGS_PROBE)
        probe.start()
        self.addCleanup(probe.stop)

    @unittest.skip(reason=AUTO_MAP_ROUND_TRIP)
    def test_processor_from_and_save_pretrained(self):
        pass

    @unittest.skip(reason=AUTO_MAP_ROUND_TRIP)
    def test_processor_from_and_save_pretrained_as_nested_dict(self):
        pass

    def prepare_images_inputs(self, batch_size: int | None = None, nested: bool = False):
        if batch_size is None:
            return depth_map()
        if nested:
            return [[depth_map(seed)] for seed in range(batch_size)]
        return [depth_map(seed) for seed in range(batch_size)]
