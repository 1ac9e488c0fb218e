"""Fixtures of the conformance package: transformers' auto tables told about the DeepSight model types.

The common tests pick their labels and checks by a model class's name in the ``*_MAPPING_NAMES`` tables of
`transformers.models.auto.modeling_auto` (e.g. labels for image-text-to-text heads). Models outside the library are
not in them; the entries are added for this package only and removed after it.
"""

from __future__ import annotations

import pytest
from transformers.models.auto import modeling_auto


DEEPSIGHT_MAPPING_NAMES = {
    "MODEL_MAPPING_NAMES": {
        "deepsight": "DeepSightModel",
        "deepsight_vision": "DeepSightVisionModel",
        "deepsight_dual_encoder": "DeepSightDualEncoder",
    },
    "MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES": {"deepsight": "DeepSightForConditionalGeneration"},
}


# Markers that transformers' common tests and testing_utils put on tests (its own conftest.py declares them).
TRANSFORMERS_MARKERS = (
    "accelerate_tests",
    "flash_attn_test",
    "flash_attn_3_test",
    "flash_attn_4_test",
    "torch_compile_test",
    "is_training_test",
    "is_pipeline_test",
    "is_staging_test",
    "is_agent_test",
    "is_tensor_parallel_test",
    "is_expert_parallel_test",
    "is_fsdp_test",
    "order",
)


def pytest_configure(config):
    for marker in TRANSFORMERS_MARKERS:
        config.addinivalue_line("markers", f"{marker}: set by transformers' common tests (tests/conformance)")


@pytest.fixture(scope="package", autouse=True)
def deepsight_in_auto_mapping_names():
    # Only the *_NAMES tables: the lazy Auto mappings ignore model types that CONFIG_MAPPING_NAMES lacks.
    with pytest.MonkeyPatch.context() as patch:
        for table, entries in DEEPSIGHT_MAPPING_NAMES.items():
            for model_type, class_name in entries.items():
                patch.setitem(getattr(modeling_auto, table), model_type, class_name)
        yield
