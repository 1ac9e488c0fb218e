"""Is a model argument a local folder or a Hub id? One rule for the CLI's argument checks and the checkpoint loader.

A Hub id is `owner/name` (or a bare canonical name such as `gpt2` while the Hub can be reached); `./x`, `/x`,
`~/x`, `a/b/c` and Windows paths are local. A local-looking value that does not exist is reported as
"not found: <path>" before anything asks the Hub about it. Every CLI that loads a model also takes the same
`--trust-remote-code` flag (`add_trust_remote_code_argument`), off by default.
"""

from __future__ import annotations

import argparse
import os

_TRUE = {"1", "ON", "YES", "TRUE"}  # huggingface_hub's reading of HF_HUB_OFFLINE


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").upper() in _TRUE


def looks_like_local_path(value: str) -> bool:
    """True unless `value` can name a Hub repo: `owner/name`, or a bare name while the Hub is reachable."""
    if value.startswith((".", "/", "~")) or (os.sep != "/" and os.sep in value):
        return True
    slashes = value.count("/")
    return slashes > 1 or (slashes == 0 and hub_offline())


def resolve_local_or_hub(value: str | os.PathLike) -> str:
    """`value` as the string to load from (`~` expanded when that finds it); a local-looking path that does not
    exist raises `FileNotFoundError("not found: <path>")`."""
    text = os.fspath(value)
    if os.path.exists(text):
        return text
    expanded = os.path.expanduser(text)
    if expanded != text and os.path.exists(expanded):
        return expanded
    if looks_like_local_path(text):
        raise FileNotFoundError(f"not found: {text}")
    return text


def add_trust_remote_code_argument(parser: argparse.ArgumentParser) -> None:
    """`--trust-remote-code`, off by default, for a CLI that loads a model (`deepsight.checkpoints.checked_source`)."""
    parser.add_argument(
        "--trust-remote-code", action="store_true",
        help="run the model folder's or Hub repo's own Python code (its auto_map); off: DeepSight checkpoints "
             "load with the installed classes and no code from the folder runs",
    )
