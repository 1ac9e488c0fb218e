"""transformers' own test mixins, for the installed transformers version, fetched from its sdist by pip.

The sdist of transformers on PyPI ships its ``tests/`` folder, whose common files hold the mixins every model of the
library is tested with (``ModelTesterMixin``, ``ConfigTester``, ``ImageProcessingTestMixin``,
``ProcessorTesterMixin``, ``TrainingTesterMixin``). They are never copied into this repository: the first run
downloads the sdist with pip into a cache outside the repository (``$DEEPSIGHT_TEST_CACHE``, by default
``~/.cache/deepsight``) and extracts the few files needed into a package named ``transformers_tests`` (our own
test package is ``tests``; theirs must not shadow it).

The sdist lacks a few modules that those files import; small stand-ins written here take their place:
``generation/test_utils.py`` (``GenerationTesterMixin``), ``exporters/test_export.py`` (``ExportTesterMixin``),
``utils/test_configuration_utils.py`` (the common config keywords) and ``utils/fetch_hub_objects_for_ci.py``.
When the sdist cannot be had (no network, no pip), `require` skips the calling test module with the reason.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import pytest
import transformers
from PIL import Image


PACKAGE = "transformers_tests"
# The common test files used here, relative to the sdist's tests/ folder.
COMMON_FILES = (
    "test_modeling_common.py",
    "test_configuration_common.py",
    "test_image_processing_common.py",
    "test_processing_common.py",
    "test_training_mixin.py",
)
PIP_TIMEOUT_S = 300
# The depth map that stands in for the Hub's fixture photos (see `STAND_INS`), next to the stand-in module.
DEPTH_PNG = "depth_fixture_mm.png"

# Stand-ins for the modules that the common files import but the sdist does not ship. Keys are paths relative to
# the folder that holds the `transformers_tests` package (its parent: the common files add `<parent>/utils` to
# sys.path themselves).
STAND_INS = {
    f"{PACKAGE}/__init__.py": '"""transformers\' common test files, extracted from its sdist (not our code)."""\n',
    f"{PACKAGE}/generation/__init__.py": "",
    f"{PACKAGE}/generation/test_utils.py": (
        '"""Stand-in written by DeepSight\'s tests: the sdist does not ship tests/generation/test_utils.py."""\n\n\n'
        "class GenerationTesterMixin:\n"
        '    """Empty: transformers\' generation tests are not available from the sdist."""\n'
    ),
    f"{PACKAGE}/exporters/__init__.py": "",
    f"{PACKAGE}/exporters/test_export.py": (
        '"""Stand-in written by DeepSight\'s tests: the sdist does not ship tests/exporters/test_export.py."""\n\n\n'
        "class ExportTesterMixin:\n"
        '    """Empty: transformers\' export tests are not available from the sdist."""\n'
    ),
    f"{PACKAGE}/utils/__init__.py": "",
    f"{PACKAGE}/utils/test_configuration_utils.py": (
        '"""Stand-in written by DeepSight\'s tests: the keywords every `PreTrainedConfig` accepts, each with a value\n'
        'other than its default (ConfigTester.check_config_arguments_init checks that they are kept)."""\n\n'
        "config_common_kwargs = {\n"
        '    "return_dict": False,\n'
        '    "output_hidden_states": True,\n'
        '    "output_attentions": True,\n'
        '    "dtype": "float16",\n'
        '    "chunk_size_feed_forward": 5,\n'
        '    "architectures": ["DeepSightVisionModel"],\n'
        '    "id2label": {0: "label"},\n'
        '    "label2id": {"label": "0"},\n'
        '    "problem_type": "regression",\n'
        "}\n"
    ),
    "utils/fetch_hub_objects_for_ci.py": (
        '"""Stand-in written by DeepSight\'s tests: the Hub fixtures the common tests name are out of reach offline,\n'
        'and their images are RGB photos. An image URL becomes a local 16-bit depth map (millimetres); any other URL\n'
        'stays as it is."""\n\n'
        "import os\n\n"
        f"DEPTH_PNG = os.path.join(os.path.dirname(__file__), {DEPTH_PNG!r})\n\n\n"
        "def url_to_local_path(url, *args, **kwargs):\n"
        '    return DEPTH_PNG if url.lower().endswith((".png", ".jpg", ".jpeg")) else url\n'
    ),
}


class SdistUnavailable(RuntimeError):
    """The transformers sdist could not be downloaded or read."""


def cache_dir(version: str = transformers.__version__) -> Path:
    """Where the sdist and the extracted tests of `version` live (outside the repository)."""
    root = os.environ.get("DEEPSIGHT_TEST_CACHE") or Path.home() / ".cache" / "deepsight"
    return Path(root) / f"transformers-{version}-tests"


def download_sdist(version: str, destination: Path) -> Path:
    """The path of ``transformers-<version>.tar.gz``, downloaded with pip into `destination` unless already there."""
    tarball = destination / f"transformers-{version}.tar.gz"
    if tarball.is_file():
        return tarball
    destination.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--disable-pip-version-check",
        f"transformers=={version}", "-d", str(destination),
    ]
    if importlib.util.find_spec("setuptools") is not None:
        # pip reads the sdist's metadata with setup.py: our setuptools spares it building one from source
        command.append("--no-build-isolation")
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise SdistUnavailable(f"`pip download transformers=={version}` did not run: {error}") from error
    if result.returncode != 0 or not tarball.is_file():
        last_line = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise SdistUnavailable(
            f"`pip download transformers=={version}` failed (exit {result.returncode}): {last_line}"
        )
    return tarball


def extract_common_tests(tarball: Path, version: str, root: Path) -> None:
    """Extract the common test files into ``root/transformers_tests`` and write the stand-ins, atomically."""
    staging = Path(tempfile.mkdtemp(prefix="staging-", dir=root.parent))
    try:
        package = staging / PACKAGE
        package.mkdir()
        with tarfile.open(tarball) as archive:
            for name in COMMON_FILES:
                member = f"transformers-{version}/tests/{name}"
                try:
                    source = archive.extractfile(member)
                except KeyError as error:
                    raise SdistUnavailable(f"{tarball.name} has no {member}") from error
                (package / name).write_bytes(source.read())
        for relative, text in STAND_INS.items():
            path = staging / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        write_depth_fixture(staging / "utils" / DEPTH_PNG)
        try:
            staging.rename(root)
        except OSError:
            if not (root / PACKAGE).is_dir():  # another process extracted it first: keep theirs
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def write_depth_fixture(path: Path, height: int = 30, width: int = 40) -> None:
    """A 16-bit PNG of millimetres: a floor receding from 0.8 m to 6 m with a wall tilting across it."""
    rows = np.linspace(800, 6000, height)[:, None] + np.linspace(0, 1500, width)[None, :]
    Image.fromarray(rows.astype(np.uint16)).save(path)


def ensure_transformers_tests(version: str = transformers.__version__) -> Path:
    """The folder to put on sys.path for ``import transformers_tests`` (fetched and extracted on first use)."""
    cache = cache_dir(version)
    # A new set of files or stand-ins gets a folder of its own: a cache filled by an older checkout stays valid.
    digest = hashlib.sha256(repr((COMMON_FILES, sorted(STAND_INS.items()))).encode()).hexdigest()[:12]
    root = cache / f"root-{digest}"
    if not (root / PACKAGE / COMMON_FILES[-1]).is_file():
        cache.mkdir(parents=True, exist_ok=True)
        extract_common_tests(download_sdist(version, cache), version, root)
    return root


@functools.cache
def _root_or_reason() -> Path | SdistUnavailable:
    # Asked once per session: every test module needs it, and an offline pip should not be tried again for each.
    try:
        return ensure_transformers_tests()
    except SdistUnavailable as error:
        return error


def import_common(module: str):
    """``transformers_tests.<module>``, imported from the cache (raises `SdistUnavailable` when it cannot be had)."""
    root = _root_or_reason()
    if isinstance(root, SdistUnavailable):
        raise root
    root = str(root)
    if root not in sys.path:
        sys.path.append(root)
    return importlib.import_module(f"{PACKAGE}.{module}")


def require(module: str):
    """`import_common`, or skip the calling test module with the reason when the sdist cannot be had."""
    try:
        return import_common(module)
    except SdistUnavailable as error:
        pytest.skip(f"transformers' common tests are unavailable: {error}", allow_module_level=True)
    except ImportError as error:  # e.g. `parameterized` missing: requirements-dev.txt not installed
        pytest.skip(f"transformers' common tests cannot be imported: {error}", allow_module_level=True)
