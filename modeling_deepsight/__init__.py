# Copyright 2026 The DeepSight authors. Licensed under the Apache License, Version 2.0.
"""DeepSight for transformers: configs, models, depth codec, image processor, processor and pipeline.

Importing this package registers the DeepSight model types with the Auto classes, so that inside this repository
``AutoConfig`` / ``AutoModel`` / ``AutoModelForImageTextToText`` / ``AutoImageProcessor`` / ``AutoProcessor`` load
DeepSight folders without ``trust_remote_code``. A saved folder carries these files (``auto_map``) and loads
anywhere with ``trust_remote_code=True`` (each module calls ``register_for_auto_class`` for that; the second
``auto_map`` entry of the model is written by `DeepSightPreTrainedModel.save_pretrained`).

It also registers `DeepSightPipeline` as the task ``"depth-text-to-text"``; a saved folder names it for
``"image-text-to-text"`` in its config's ``custom_pipelines`` (see ``pipeline_deepsight.py``).
"""

from transformers import AutoConfig, AutoImageProcessor, AutoModel, AutoModelForImageTextToText, AutoProcessor
from transformers.pipelines import PIPELINE_REGISTRY

from . import (
    configuration_deepsight,
    depth_codec_deepsight,
    image_processing_deepsight,
    modeling_deepsight,
    pipeline_deepsight,
    processing_deepsight,
)
from .configuration_deepsight import *  # noqa: F403 (each module's __all__ is the public surface)
from .configuration_deepsight import DeepSightConfig, DeepSightDualEncoderConfig, DeepSightVisionConfig
from .depth_codec_deepsight import *  # noqa: F403
from .image_processing_deepsight import *  # noqa: F403
from .image_processing_deepsight import DeepSightImageProcessor
from .modeling_deepsight import *  # noqa: F403
from .modeling_deepsight import (
    DeepSightDualEncoder,
    DeepSightForConditionalGeneration,
    DeepSightModel,
    DeepSightVisionModel,
)
from .pipeline_deepsight import *  # noqa: F403
from .pipeline_deepsight import PIPELINE_TASK, DeepSightPipeline
from .processing_deepsight import *  # noqa: F403
from .processing_deepsight import DeepSightProcessor


def _register_with_auto_classes() -> None:
    """In-repo registration (exist_ok: re-importing under another module name must not fail)."""
    for config_class in (DeepSightVisionConfig, DeepSightConfig, DeepSightDualEncoderConfig):
        AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
    AutoModel.register(DeepSightVisionConfig, DeepSightVisionModel, exist_ok=True)
    AutoModel.register(DeepSightConfig, DeepSightModel, exist_ok=True)
    AutoModel.register(DeepSightDualEncoderConfig, DeepSightDualEncoder, exist_ok=True)
    AutoModelForImageTextToText.register(DeepSightConfig, DeepSightForConditionalGeneration, exist_ok=True)
    AutoImageProcessor.register(DeepSightConfig, slow_image_processor_class=DeepSightImageProcessor, exist_ok=True)
    AutoProcessor.register(DeepSightConfig, DeepSightProcessor, exist_ok=True)
    # DeepSight's own task name: the registry is global per task, "image-text-to-text" would change every model's
    if PIPELINE_TASK not in PIPELINE_REGISTRY.get_supported_tasks():
        PIPELINE_REGISTRY.register_pipeline(
            PIPELINE_TASK, pipeline_class=DeepSightPipeline, pt_model=AutoModelForImageTextToText, type="multimodal"
        )


_register_with_auto_classes()

__all__ = [
    *configuration_deepsight.__all__,
    *modeling_deepsight.__all__,
    *depth_codec_deepsight.__all__,
    *image_processing_deepsight.__all__,
    *processing_deepsight.__all__,
    *pipeline_deepsight.__all__,
]
