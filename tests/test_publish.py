"""`deepsight data publish`: a clear failure offline, the right Hub calls online (HfApi recorded)."""

from __future__ import annotations

import numpy as np
import pytest

import datasets
from dataset_scripts import publish
from dataset_scripts.export import CardInfo, export_dataset


@pytest.fixture
def dataset_folder(tmp_path):
    folder = tmp_path / "ds"
    export_dataset(
        datasets.Dataset.from_dict({"id": ["a", "b"], "value": [1, 2]}), folder, CardInfo(pretty_name="tiny")
    )
    (folder / ".cache").mkdir()
    (folder / ".cache" / "x.json").write_text("{}")
    return folder


def test_offline_publish_exits_nonzero_with_a_clear_message(dataset_folder, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert publish.main(["--repo-id", "org/name", "--folder", str(dataset_folder)]) == 2
    message = capsys.readouterr().err
    assert "offline" in message and "HF_HUB_OFFLINE" in message


def test_unreachable_hub_is_reported_not_raised(dataset_folder, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(publish, "hub_offline", lambda: False)

    class Unreachable:
        def __init__(self, token=None):
            pass

        def create_repo(self, *args, **kwargs):
            raise ConnectionError("Connection refused")

    monkeypatch.setattr("huggingface_hub.HfApi", Unreachable)
    assert publish.main(["--repo-id", "org/name", "--folder", str(dataset_folder)]) == 2
    assert "cannot reach the Hub" in capsys.readouterr().err


def test_publish_creates_a_dataset_repo_and_uploads_the_folder_without_caches(dataset_folder, monkeypatch):
    calls = []

    class Recorder:
        def __init__(self, token=None):
            calls.append(("init", token))

        def create_repo(self, repo_id, **kwargs):
            calls.append(("create_repo", repo_id, kwargs))

        def upload_folder(self, **kwargs):
            calls.append(("upload_folder", kwargs))
            return "https://huggingface.co/datasets/org/name/commit/1"

    monkeypatch.setattr(publish, "hub_offline", lambda: False)
    monkeypatch.setattr("huggingface_hub.HfApi", Recorder)
    assert publish.main(["--repo-id", "org/name", "--folder", str(dataset_folder), "--private"]) == 0
    create, upload = calls[1], calls[2]
    assert create[1] == "org/name" and create[2]["repo_type"] == "dataset" and create[2]["private"] is True
    assert upload[1]["repo_type"] == "dataset" and upload[1]["folder_path"] == str(dataset_folder)
    assert ".cache/**" in upload[1]["ignore_patterns"]


@pytest.mark.parametrize("repo_id", ["noslash", "a/b/c", "/name", ""])
def test_bad_repo_id_is_rejected(dataset_folder, repo_id, capsys):
    assert publish.main(["--repo-id", repo_id, "--folder", str(dataset_folder)]) == 2
    assert "ORG/NAME" in capsys.readouterr().err


def test_folder_without_card_or_data_is_rejected(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert publish.main(["--repo-id", "org/name", "--folder", str(tmp_path / "empty")]) == 2
    assert "README.md" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:  # a typo is refused while parsing, before any Hub call
        publish.main(["--repo-id", "org/name", "--folder", str(tmp_path / "missing")])
    assert exit_info.value.code == 2
    assert f"not found: {tmp_path / 'missing'}" in capsys.readouterr().err


def test_exported_folder_reads_back_with_load_dataset(dataset_folder):
    loaded = datasets.load_dataset(str(dataset_folder), split="train")
    assert loaded["id"] == ["a", "b"] and np.array_equal(loaded["value"], [1, 2])
