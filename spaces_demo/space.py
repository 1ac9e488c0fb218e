"""Assemble a folder that can be uploaded as the Hugging Face Space.

A Space runs `app.py` from its repository root and installs `requirements.txt`; the DeepSight code is not
a pip package there, so the packages `app.py` imports are copied next to it. The README's YAML header
gets the model and dataset ids of the release.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Sequence
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent
# Packages the app imports (model code, tiny fallback, synthetic examples + depth estimator, the app itself).
SPACE_PACKAGES = ("modeling_deepsight", "deepsight", "dataset_scripts", "spaces_demo")
SPACE_FILES = ("app.py", "requirements.txt")
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_HEADER = re.compile(r"\A---\n(.*?)\n---\n", re.DOTALL)


def read_space_header(readme: str | Path) -> dict:
    """The YAML header of a Space README as a dict."""
    match = _HEADER.match(Path(readme).read_text(encoding="utf-8"))
    if not match:
        raise ValueError(f"{readme} has no YAML header between '---' lines.")
    return yaml.safe_load(match.group(1)) or {}


def _with_ids(readme_text: str, model_ids: Sequence[str], dataset_ids: Sequence[str]) -> str:
    match = _HEADER.match(readme_text)
    header = yaml.safe_load(match.group(1)) or {}
    header["models"] = list(dict.fromkeys([*model_ids, *(header.get("models") or [])]))
    header["datasets"] = list(dict.fromkeys([*dataset_ids, *(header.get("datasets") or [])]))
    dumped = yaml.safe_dump(header, sort_keys=False, allow_unicode=True)
    return f"---\n{dumped}---\n" + readme_text[match.end() :]


def export_space(out_dir: str | Path, model_ids: Sequence[str] = (), dataset_ids: Sequence[str] = ()) -> Path:
    """Write the Space folder to `out_dir` (created; must be empty if it exists) and return it."""
    for repo_id in (*model_ids, *dataset_ids):
        if not _REPO_ID.match(repo_id):
            raise ValueError(f"Hub ids must look like ORG/NAME; got {repo_id!r}.")
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise ValueError(f"{out_dir} is not empty; export the Space into a new or empty folder.")
    out_dir.mkdir(parents=True, exist_ok=True)
    readme = (HERE / "README.md").read_text(encoding="utf-8")
    (out_dir / "README.md").write_text(_with_ids(readme, model_ids, dataset_ids), encoding="utf-8")
    for name in SPACE_FILES:
        shutil.copy2(HERE / name, out_dir / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "test_*", ".*")
    for package in SPACE_PACKAGES:
        shutil.copytree(REPO_ROOT / package, out_dir / package, ignore=ignore)
    return out_dir
