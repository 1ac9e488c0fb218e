"""The helper that fetches transformers' common tests: cache layout, stand-ins, a skip (never a failure) offline."""

from __future__ import annotations

import io
import subprocess
import tarfile

import numpy as np
import pytest
from PIL import Image

from tests.conformance import transformers_tests
from tests.conformance.transformers_tests import (
    COMMON_FILES,
    PACKAGE,
    SdistUnavailable,
    download_sdist,
    ensure_transformers_tests,
    require,
)


def write_fake_sdist(folder, version):
    """A tarball laid out like the transformers sdist, holding only the common test files."""
    tarball = folder / f"transformers-{version}.tar.gz"
    with tarfile.open(tarball, "w:gz") as archive:
        for name in COMMON_FILES:
            data = f"SOURCE = {name!r}\n".encode()
            member = tarfile.TarInfo(f"transformers-{version}/tests/{name}")
            member.size = len(data)
            archive.addfile(member, io.BytesIO(data))
    return tarball


def test_an_unavailable_sdist_skips_the_test_module_with_the_reason(monkeypatch):
    monkeypatch.setattr(transformers_tests, "_root_or_reason", lambda: SdistUnavailable("pip has no network"))
    with pytest.raises(pytest.skip.Exception, match="pip has no network") as skipped:
        require("test_modeling_common")
    assert skipped.value.allow_module_level


def test_a_failing_pip_download_is_reported_with_its_last_line(monkeypatch, tmp_path):
    def pip_offline(command, **kwargs):
        return subprocess.CompletedProcess(command, 1, "", "Looking in indexes\nERROR: No matching distribution\n")

    monkeypatch.setattr(transformers_tests.subprocess, "run", pip_offline)
    with pytest.raises(SdistUnavailable, match="exit 1.*No matching distribution"):
        download_sdist("9.9.9", tmp_path)


def test_the_common_files_and_the_stand_ins_land_in_the_cache_without_pip_when_the_sdist_is_there(
    monkeypatch, tmp_path
):
    def no_pip(*args, **kwargs):
        raise AssertionError("pip must not run when the sdist is already in the cache")

    monkeypatch.setenv("DEEPSIGHT_TEST_CACHE", str(tmp_path))
    monkeypatch.setattr(transformers_tests.subprocess, "run", no_pip)
    cache = transformers_tests.cache_dir("9.9.9")
    cache.mkdir(parents=True)
    write_fake_sdist(cache, "9.9.9")

    root = ensure_transformers_tests("9.9.9")

    assert root.parent == cache
    for name in COMMON_FILES:
        assert (root / PACKAGE / name).read_text() == f"SOURCE = {name!r}\n"
    assert "class GenerationTesterMixin" in (root / PACKAGE / "generation" / "test_utils.py").read_text()
    assert "class ExportTesterMixin" in (root / PACKAGE / "exporters" / "test_export.py").read_text()
    assert "config_common_kwargs" in (root / PACKAGE / "utils" / "test_configuration_utils.py").read_text()
    depth = np.asarray(Image.open(root / "utils" / transformers_tests.DEPTH_PNG))
    assert depth.dtype == np.uint16 and 800 <= depth.min() < depth.max() <= 7500
    assert ensure_transformers_tests("9.9.9") == root  # the second call reuses the extraction
