"""Multi-process and interrupted training: 2-process DDP on CPU (gloo), SIGKILL + --resume_from_checkpoint."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.fixtures.smoke_data import save_smoke_dataset

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
N_TRAIN = 12
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
TINY = [
    "--tiny",
    "deepsight",
    "--bf16",
    "false",
    "--activation_checkpointing",
    "false",
    "--report_to",
    "none",
    "--logging_steps",
    "1",
    "--dataloader_num_workers",
    "0",
    "--dataloader_pin_memory",
    "false",
    "--seed",
    "0",
]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("train-data")
    return {
        "instructions": str(save_smoke_dataset(root / "instructions", "instructions", n_train=N_TRAIN)),
        "pairs": str(save_smoke_dataset(root / "pairs", "pairs", n_train=N_TRAIN)),
    }


def log_history(output_dir: Path) -> list[dict]:
    return json.loads((Path(output_dir) / "log_history.json").read_text())


def train_losses(output_dir: Path) -> dict[int, float]:
    return {entry["step"]: entry["loss"] for entry in log_history(output_dir) if "loss" in entry}


@pytest.mark.parametrize("stage", ["align", "sft"])
def test_two_processes_on_cpu_train_each_stage_with_ddp(stage, data, tmp_path):
    output_dir = tmp_path / stage
    dataset = data["pairs"] if stage == "align" else data["instructions"]
    command = [
        str(Path(sys.executable).parent / "deepsight"),
        "train",
        stage,
        "--num_processes",
        "2",
        "--dataset_name",
        dataset,
        "--output_dir",
        str(output_dir),
        "--max_steps",
        "2",
        "--per_device_train_batch_size",
        "2",
        "--save_strategy",
        "no",
        *TINY,
    ]
    result = run_process_group(command, env=ENV, cwd=str(REPO))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    assert "unused parameters" not in result.stderr.lower()
    history = log_history(output_dir)
    first = next(entry for entry in history if "loss" in entry)
    # One step consumed 2 processes x 2 rows: a single process would be at 2 / N_TRAIN of the epoch.
    assert first["epoch"] == pytest.approx(4 / N_TRAIN, abs=1e-3)
    assert (output_dir / "model.safetensors").exists()


def run_process_group(command: list[str], timeout: float = 300, **kwargs) -> subprocess.CompletedProcess:
    """`subprocess.run` in a session of its own, whose timeout kills the whole process group: the DDP workers that
    `accelerate launch` forks must not outlive a hung test (subprocess.run's timeout kills the direct child only)."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True, **kwargs)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        pytest.fail(f"{' '.join(command[:3])} did not finish in {timeout} s (process group killed):\n{stderr[-3000:]}")
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


KILLED_RUN = textwrap.dedent(
    """
    import os, signal, sys
    from transformers import TrainerCallback
    from train.sft import main

    class KillAfterCheckpoint(TrainerCallback):
        # on_save runs after the checkpoint folder is complete: the hardest possible stop from there.
        def on_save(self, args, state, control, **kwargs):
            if state.global_step >= int(os.environ["KILL_AFTER_STEP"]):
                os.kill(os.getpid(), signal.SIGKILL)

    main(sys.argv[1:], callbacks=[KillAfterCheckpoint()])
    """
)


def test_killed_run_resumes_from_its_last_checkpoint_and_the_loss_curve_continues(data, tmp_path):
    from train.sft import main

    args = [
        "--dataset_name",
        data["instructions"],
        "--max_steps",
        "6",
        "--per_device_train_batch_size",
        "2",
        "--save_strategy",
        "steps",
        "--save_steps",
        "2",
        "--learning_rate",
        "1e-3",
        *TINY,
    ]
    reference = tmp_path / "uninterrupted"
    assert main([*args, "--output_dir", str(reference)]) == 0

    interrupted = tmp_path / "interrupted"
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_RUN, *args, "--output_dir", str(interrupted)],
        capture_output=True,
        text=True,
        env={**ENV, "KILL_AFTER_STEP": "4"},
        cwd=str(REPO),
        timeout=300,
    )
    assert killed.returncode == -9, killed.stderr[-3000:]
    assert (interrupted / "checkpoint-4" / "trainer_state.json").exists()
    assert not (interrupted / "model.safetensors").exists(), "the killed run should not have reached the end"

    assert main([*args, "--output_dir", str(interrupted), "--resume_from_checkpoint", "true"]) == 0
    resumed, expected = train_losses(interrupted), train_losses(reference)
    assert sorted(resumed) == [
        1,
        2,
        3,
        4,
        5,
        6,
    ], "steps 1-4 come from the checkpoint, 5-6 from the resumed run"
    assert [resumed[s] for s in sorted(resumed)] == pytest.approx(
        [expected[s] for s in sorted(expected)], rel=1e-5
    )
    state = json.loads((interrupted / "checkpoint-6" / "trainer_state.json").read_text())
    assert state["global_step"] == 6
