"""The one checkpoint loader: a folder or Hub id -> (model, processor), for training, evaluation and the demo.

A source is one of
- a full checkpoint (`config.json`, weights, processor files), which a merged LoRA run (`--save_merged`) is too;
- a LoRA adapter (`adapter_config.json` and adapter weights, no `config.json`): the base model its config names is
  loaded by the same rules, the adapter applied on it and, unless asked otherwise, merged into it, so generation
  runs at full speed. The adapter folder's own processor (its chat template) wins over the base's.

What may run and what may be read is decided here, for every loader of ours (`checked_source`):
- code: without `trust_remote_code` (the default) a DeepSight folder loads with this repository's installed classes
  (registered with the Auto classes) and none of the folder's or Hub repo's own `.py` files runs; a folder of an
  unknown model type that needs its own code is refused by transformers. With `trust_remote_code=True` the
  folder's own code runs, unless the process registered the installed classes before (transformers then
  prefers them).
- weights: safetensors only (`use_safetensors=True`); a local folder whose weights are only pickles
  (`pytorch_model.bin`, `adapter_model.bin`) is refused with a ValueError saying how to convert it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from transformers import AutoModelForImageTextToText, AutoProcessor

from deepsight.paths import resolve_local_or_hub

ADAPTER_CONFIG_NAME = "adapter_config.json"
SAFETENSORS_PATTERN = "*.safetensors"
# transformers' and peft's pickle weight files (a Trainer's `training_args.bin` beside safetensors weights is not one)
PICKLE_WEIGHTS_PATTERNS = ("pytorch_model*.bin", "pytorch_model*.bin.index.json", "adapter_model.bin")


def is_adapter_folder(source: str | os.PathLike) -> bool:
    """A LoRA adapter saved alone (a merged run has a `config.json` and loads as a full checkpoint)."""
    folder = Path(source)
    return (folder / ADAPTER_CONFIG_NAME).is_file() and not (folder / "config.json").is_file()


def refuse_pickle_weights(source: str | os.PathLike) -> None:
    """A local folder whose weights are only pickle files: ValueError naming it and saying how to convert it."""
    folder = Path(source)
    if not folder.is_dir() or any(folder.glob(SAFETENSORS_PATTERN)):
        return
    pickles = sorted({path.name for pattern in PICKLE_WEIGHTS_PATTERNS for path in folder.glob(pattern)})
    if pickles:
        raise ValueError(
            f"{folder}: weights only as pickle files ({', '.join(pickles)}), and DeepSight reads safetensors only; "
            "convert them by loading the folder with transformers (or peft) in an environment you trust and saving "
            "it again with `save_pretrained`, which writes .safetensors."
        )


def checked_source(source: str | os.PathLike, *, trust_remote_code: bool = False) -> str:
    """`source` made ready for `from_pretrained`, the one place deciding what may run and be read (module docstring).

    A mistyped local path raises `FileNotFoundError("not found: <path>")`, a pickle-only folder a ValueError;
    without `trust_remote_code`, the installed DeepSight classes are registered with the Auto classes.
    """
    source = resolve_local_or_hub(source)
    refuse_pickle_weights(source)
    if not trust_remote_code:
        # Here, not at the top: once registered, transformers prefers the installed classes to a folder's own
        # code for the whole process, even with trust_remote_code.
        import modeling_deepsight  # noqa: F401
    return source


def load_pretrained(model_class: Any, source: str | os.PathLike, *, trust_remote_code: bool = False, **kwargs: Any):
    """`model_class.from_pretrained(source, ...)` through `checked_source`, reading safetensors weights only."""
    source = checked_source(source, trust_remote_code=trust_remote_code)
    return model_class.from_pretrained(source, trust_remote_code=trust_remote_code, use_safetensors=True, **kwargs)


def load_checkpoint(
    source: str | os.PathLike,
    *,
    model_class: Any = AutoModelForImageTextToText,
    trust_remote_code: bool = False,
    revision: str | None = None,
    merge_adapter: bool = True,
    **model_kwargs: Any,
) -> tuple[Any, Any]:
    """(model, processor) of a full checkpoint, a merged one or a LoRA adapter folder (see the module docstring).

    Args:
        source: a local folder or a Hub id.
        model_class: the Auto class of the model (`AutoModel` for a dual encoder).
        trust_remote_code: run the folder's or Hub repo's own code (see the module docstring); default: the
            installed classes only.
        revision: the Hub revision of `source` (not of an adapter's base).
        merge_adapter: an adapter folder: merge the adapter into the base (a plain model) or keep the `PeftModel`.
        model_kwargs: passed to the model's `from_pretrained` (`dtype`, `attn_implementation`, `device_map`, ...).
    """
    source = checked_source(source, trust_remote_code=trust_remote_code)
    if is_adapter_folder(source):
        return _load_adapter(Path(source), model_class, trust_remote_code, merge_adapter, model_kwargs)
    hub_kwargs = {"trust_remote_code": trust_remote_code} | ({} if revision is None else {"revision": revision})
    processor = AutoProcessor.from_pretrained(source, **hub_kwargs)
    model = load_pretrained(model_class, source, **hub_kwargs, **model_kwargs)
    return model, processor


def _load_adapter(
    folder: Path, model_class: Any, trust_remote_code: bool, merge_adapter: bool, model_kwargs: dict[str, Any]
) -> tuple[Any, Any]:
    from peft import PeftModel  # only adapter folders need peft

    adapter_config = folder / ADAPTER_CONFIG_NAME
    base = json.loads(adapter_config.read_text()).get("base_model_name_or_path")
    if not base:
        raise ValueError(f"{adapter_config} names no `base_model_name_or_path`; cannot load the adapter.")
    model, processor = load_checkpoint(base, model_class=model_class, trust_remote_code=trust_remote_code, **model_kwargs)
    model = PeftModel.from_pretrained(model, str(folder))
    if merge_adapter:
        model = model.merge_and_unload()
    if (folder / "processor_config.json").is_file():  # the run's own processor (its chat template)
        processor = AutoProcessor.from_pretrained(str(folder), trust_remote_code=trust_remote_code)
    return model, processor
