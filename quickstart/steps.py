"""The quickstart's unit of work: a `Step` (commands and/or an action writing one folder, then a `.done` marker).

Steps run the same entry points a user runs by hand (`deepsight ...`, `accelerate launch -m train.*`) in
subprocesses; a re-run skips every step whose marker exists.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Step:
    name: str
    folder: Path
    commands: list[list[str]] = field(default_factory=list)
    after: Callable[[], None] | None = None  # runs once the commands succeeded, before the marker

    @property
    def done_marker(self) -> Path:
        return self.folder / ".done"

    def is_done(self) -> bool:
        return self.done_marker.exists()


def log(message: str) -> None:
    print(f"[quickstart {time.strftime('%H:%M:%S')}] {message}", flush=True)


def run_command(command: list[str], log_file: Path) -> None:
    """Run one command, streaming its output to the console and to `log_file`."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1",
           # One torch thread per process (see accelerate_command); data steps run two at a time.
           "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    log("$ " + " ".join(command))
    with open(log_file, "a") as log_stream:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                   env=env, cwd=REPO, bufsize=1)
        assert process.stdout is not None
        for line in process.stdout:
            sys.stdout.write(line)
            log_stream.write(line)
        if process.wait() != 0:
            raise SystemExit(f"quickstart: step failed (exit {process.returncode}): {' '.join(command)}\n"
                             f"see {log_file}; re-run `deepsight quickstart` to resume from here")


def remove_checkpoints(folder: Path) -> None:
    """Drop a finished training step's `checkpoint-*` folders (optimizer states): only resuming needs them."""
    for checkpoint in folder.glob("checkpoint-*"):
        shutil.rmtree(checkpoint, ignore_errors=True)


def cpu_seconds() -> float:
    """User + system CPU time of this process and of its finished child processes."""
    return sum(usage.ru_utime + usage.ru_stime for usage in
               (resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)))


def run_step(step: Step, log_file: Path, action=None) -> None:
    """Run a step unless its `.done` marker exists; write the marker only after success."""
    if step.is_done():
        log(f"{step.name}: done already ({step.folder}), skipping")
        return
    started, cpu_started = time.time(), cpu_seconds()
    log(f"{step.name}: starting")
    step.folder.mkdir(parents=True, exist_ok=True)
    for command in step.commands:
        run_command(command, log_file)
    for finish in (step.after, action):
        if finish is not None:
            finish()
    # CPU seconds are what the step costs on an idle machine (wall time depends on the other users of the
    # cores); with concurrent steps they include whatever else finished meanwhile.
    cpu = cpu_seconds() - cpu_started
    step.done_marker.write_text(json.dumps({"seconds": round(time.time() - started, 1), "cpu_seconds": round(cpu, 1)}))
    log(f"{step.name}: finished in {time.time() - started:.0f}s ({cpu:.0f} CPU s)")


def run_steps_concurrently(steps: list[Step], log_file: Path, workers: int) -> None:
    """`run_step` for independent steps, `workers` at a time (data steps are single-process CPU work)."""
    if workers <= 1:
        for step in steps:
            run_step(step, log_file)
        return
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for future in [pool.submit(run_step, step, log_file) for step in steps]:
            future.result()


def deepsight_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "deepsight.cli", *args]


def accelerate_command(module: str, num_processes: int, *args: str, threads: int = 1) -> list[str]:
    """`accelerate launch -m MODULE` exactly as on a GPU box; on this CPU, gloo DDP when num_processes > 1.

    `threads` per process: 1 by default, with one dataloader worker preparing the next batch on the other core
    (the trainers' steps are many small ops, which extra OpenMP threads on a busy 2-core machine slow down).
    """
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(num_processes),
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
              "--num_cpu_threads_per_process", str(threads)]
    # accelerate rejects --cpu together with --multi_gpu, and `--cpu --num_processes 2` quietly runs one
    # process; with --multi_gpu and no CUDA the training scripts fall back to the CPU (gloo) themselves.
    launch.append("--multi_gpu" if num_processes > 1 else "--cpu")
    return [*launch, "-m", module, *args]
