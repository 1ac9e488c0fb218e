"""Stage 1 -- align the depth features with the LLM: only the projector trains (paper §6.2).

The vision tower (optionally the stage-0 one, `--vision_tower OUTPUT_DIR/vision_tower`) and the LLM
are frozen. Rows are depth-text pairs (docs/CONTRACTS.md "Pairs row"); each becomes a one-turn
conversation "<image> + a request to describe the depth image -> the caption", the request drawn from
`ALIGN_PROMPTS` deterministically from the row id. The depth goes in with an all-ones box mask, as at
inference. The loss is on the caption only.

# One process (CPU or one GPU)
```bash
python -m train.align --config train/recipes/cpu-tiny/align.yaml
deepsight train align --config train/recipes/cpu-tiny/align.yaml --max_steps 20
```

# The paper's recipe on 8 GPUs (LLaVA-1.5 stage-1 hyper-parameters: lr 1e-3, batch 256, 1 epoch)
```bash
accelerate launch --config_file train/accelerate_configs/zero2.yaml -m train.align \
    --config train/recipes/paper/align.yaml \
    --vision_tower outputs/paper/encoder/vision_tower --dataset_name path/to/depth-text-pairs
```

# Multi-node (run on every node with its --machine_rank)
```bash
accelerate launch --config_file train/accelerate_configs/multi_node.yaml --machine_rank 0 \
    --main_process_ip 10.0.0.1 -m train.align --config train/recipes/paper/align.yaml
```

Resume with `--resume_from_checkpoint true`. Every recipe field can be overridden on the command line.
"""

from __future__ import annotations

import sys
import zlib
from typing import Any

from train.utils import DeepSightTrainingArguments, run_sft_stage, with_cpu_ddp_flag

# The requests to describe a depth image (LLaVA's brief-description prompts, phrased for depth).
ALIGN_PROMPTS = (
    "Describe the depth image briefly.",
    "Give a short description of this depth map.",
    "What does this depth image show?",
    "Summarize the scene in the depth image.",
    "Write a brief caption for the depth image.",
    "Describe the scene captured in this depth map concisely.",
    "Provide a one-sentence description of the depth image.",
    "What scene is shown in this depth image? Answer briefly.",
)


class PairsToConversation:
    """A pairs row -> a one-turn conversation row the conversation collator takes."""

    def __init__(self, prompts: tuple[str, ...] = ALIGN_PROMPTS, seed: int = 0) -> None:
        if not prompts:
            raise ValueError("prompts: expected at least one alignment prompt")
        self.prompts = prompts
        self.seed = seed

    def prompt_for(self, row_id: Any) -> str:
        # crc32 rather than hash(): stable across processes and runs (PYTHONHASHSEED).
        return self.prompts[zlib.crc32(f"{self.seed}:{row_id}".encode()) % len(self.prompts)]

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        for key in ("depth", "caption"):
            if row.get(key) is None:
                raise ValueError(
                    f"pairs row {row.get('id')!r}: missing {key!r} (expected the pairs dataset schema)"
                )
        return {
            "id": row.get("id"),
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "image"}, {"type": "text", "text": self.prompt_for(row.get("id"))}],
                },
                {"role": "assistant", "content": [{"type": "text", "text": row["caption"]}]},
            ],
            "images": [row["depth"]],
            "boxes": [[]],
        }


def make_parser(prog: str | None = "deepsight train align"):
    from trl import ModelConfig, ScriptArguments, SFTConfig, TrlParser

    return TrlParser((ScriptArguments, SFTConfig, ModelConfig, DeepSightTrainingArguments), prog=prog)


def main(argv: list[str] | None = None, callbacks: list[Any] | None = None) -> int:
    """`deepsight train align ...`; `callbacks` lets Python callers add TrainerCallbacks."""
    parser = make_parser()
    # Stage 1 trains the projector only, unless the command line or the recipe says otherwise.
    parser.set_defaults(train_parts="projector")
    script_args, training_args, model_args, args = parser.parse_args_and_config(
        with_cpu_ddp_flag(list(sys.argv[1:] if argv is None else argv))
    )
    trainer = run_sft_stage(
        script_args,
        training_args,
        model_args,
        args,
        row_to_conversation=PairsToConversation(seed=training_args.seed),
        callbacks=callbacks,
    )
    trainer.end()
    return 0


if __name__ == "__main__":
    sys.exit(main())
