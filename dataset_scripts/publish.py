"""`deepsight data publish`: push a dataset folder (parquet shards + README.md card) to the Hugging Face Hub.

The folder is what `export.export_dataset` writes (benchmark, pairs, instructions) and what
`datasets.load_dataset(<folder>)` reads; after the push `load_dataset("ORG/NAME")` reads the same data.
Local caches (`.cache/`, `parts/`, `.export_state.json`) are not uploaded.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

from deepsight.cli import HelpFormatter, existing_path

IGNORE_PATTERNS = [".cache/**", "parts/**", ".export_state.json", "**/.*.tmp", "**/*.partial"]
_REPO_ID_RE = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class PublishError(RuntimeError):
    """A publish that cannot happen, with a message meant for the user."""


def check_folder(folder: str | Path) -> Path:
    folder = Path(folder)
    if not folder.is_dir():
        raise PublishError(f"--folder {folder}: not a directory")
    if not (folder / "README.md").exists():
        raise PublishError(
            f"--folder {folder}: no README.md dataset card (write the folder with the dataset builders)"
        )
    if not any(
        path for path in folder.rglob("*.parquet") if "parts" not in path.parts and ".cache" not in path.parts
    ):
        raise PublishError(f"--folder {folder}: no parquet data files")
    return folder


def check_repo_id(repo_id: str) -> str:
    if not _REPO_ID_RE.match(repo_id):
        raise PublishError(f"--repo-id must look like ORG/NAME, got {repo_id!r}")
    return repo_id


def hub_offline() -> bool:
    from huggingface_hub import constants

    flag = os.environ.get("HF_HUB_OFFLINE", "")
    return bool(constants.HF_HUB_OFFLINE) or flag.strip().upper() in {"1", "ON", "YES", "TRUE"}


def publish(
    folder: str | Path,
    repo_id: str,
    private: bool = False,
    token: str | None = None,
    commit_message: str = "Upload dataset",
) -> str:
    """Create the dataset repo if needed and upload the folder; returns the commit URL."""
    folder = check_folder(folder)
    check_repo_id(repo_id)
    if hub_offline():
        raise PublishError(
            "the Hub is offline here (HF_HUB_OFFLINE=1): unset it on a machine with network "
            f"access and run `deepsight data publish --repo-id {repo_id} --folder {folder}` again"
        )
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        commit = api.upload_folder(
            folder_path=str(folder),
            repo_id=repo_id,
            repo_type="dataset",
            ignore_patterns=IGNORE_PATTERNS,
            commit_message=commit_message,
        )
    except OfflineModeIsEnabled as error:
        raise PublishError(f"the Hub is offline here ({error})") from error
    except HfHubHTTPError as error:
        raise PublishError(f"the Hub refused the upload to {repo_id}: {error}") from error
    except (OSError, ConnectionError) as error:
        raise PublishError(
            f"cannot reach the Hub ({type(error).__name__}: {error}); check the network and "
            "HF_ENDPOINT, and log in with `hf auth login` or HF_TOKEN"
        ) from error
    except Exception as error:  # httpx / requests transport errors do not share a base class with OSError
        if "connect" in type(error).__name__.lower() or "timeout" in type(error).__name__.lower():
            raise PublishError(f"cannot reach the Hub ({type(error).__name__}: {error})") from error
        raise
    return str(getattr(commit, "commit_url", commit))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="deepsight data publish", description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter
    )
    parser.add_argument("--repo-id", required=True, help="ORG/NAME of the dataset repo")
    parser.add_argument("--folder", required=True, type=existing_path, help="a folder written by a dataset builder")
    parser.add_argument("--private", action="store_true")
    parser.add_argument("--token", help="default: HF_TOKEN or the token saved by `hf auth login`")
    args = parser.parse_args(argv)
    try:
        url = publish(args.folder, args.repo_id, private=args.private, token=args.token)
    except PublishError as error:
        print(f"deepsight data publish: {error}", file=sys.stderr)
        return 2
    print(f"published {args.folder} to https://huggingface.co/datasets/{args.repo_id} ({url})")
    return 0
