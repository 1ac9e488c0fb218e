"""The one checkpoint loader: a folder or Hub id -> (model, processor), for training, evaluation and the demo.

A source is one of
- a full checkpoint (`config.json`, weights, processor files), which a merged LoRA run (`--save_merged`) is too;
- a LoRA adapter (`adapter_config.json` and adapter weights, no `config.json`): the base model its config names is
  loaded by the same rules, the adapter applied on it and, unless asked otherwise, merged into it, so generation
  runs at full speed. The adapter folder's own processor (its chat template) wins over the base's.

Callers choose `trust_remote_code` and the model's `dtype`; nothing here changes what they ask for. Without
`trust_remote_code` a DeepSight folder loads with this repository's classes (registered with the Auto classes);
with it, with the folder's own copy of the modeling files, unless the process registered DeepSight before.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from transformers import AutoModelForImageTextToText, AutoProcessor

from deepsight.paths import resolve_local_or_hub

ADAPTER_CONFIG_NAME = "adapter_config.json"


def is_adapter_folder(source: str | os.PathLike) -> bool:
    """A LoRA adapter saved alone (a merged run has a `config.json` and loads as a full checkpoint)."""
    folder = Path(source)
    return (folder / ADAPTER_CONFIG_NAME).is_file() and not (folder / "config.json").is_file()


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
        trust_remote_code: passed to both `from_pretrained` calls.
        revision: the Hub revision of `source` (not of an adapter's base).
        merge_adapter: an adapter folder: merge the adapter into the base (a plain model) or keep the `PeftModel`.
        model_kwargs: passed to the model's `from_pretrained` (`dtype`, `attn_implementation`, `device_map`, ...).
    """
    source = resolve_local_or_hub(source)
    if not trust_remote_code:
        # Registration only here: once registered, transformers prefers it to a folder's own code for the whole
        # process, even with trust_remote_code.
        import modeling_deepsight  # noqa: F401
    if is_adapter_folder(source):
        return _load_adapter(Path(source), model_class, trust_remote_code, merge_adapter, model_kwargs)
    hub_kwargs = {"trust_remote_code": trust_remote_code} | ({} if revision is None else {"revision": revision})
    processor = AutoProcessor.from_pretrained(source, **hub_kwargs)
    model = model_class.from_pretrained(source, **hub_kwargs, **model_kwargs)
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
