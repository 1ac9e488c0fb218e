"""Stage 1 -- align the depth features with the LLM: only the projector trains (paper §6.2).

The vision tower (optionally the stage-0 one, `--vision_tower OUTPUT_DIR/vision_tower`) and the LLM
are frozen. Rows are depth-text pairs (docs/CONTRACTS.md "Pairs row"); each becomes a one-turn
conversation "<image> + a request to describe the depth image -> the caption", the request drawn from
`ALIGN_PROMPTS` deterministically from the row id. The depth goes in with an all-ones box mask, as at
inference. The loss is on the caption only. With `--region_ratio` a share of the rows instead asks about one
labelled object's box (the box as the mask; answer "A chair, about 2.3 metres away.").

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
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from trl import ModelConfig, ScriptArguments, SFTConfig, TrlParser

from deepsight.box_tags import tag_boxes
from modeling_deepsight import load_depth
from train.arguments import DeepSightTrainingArguments, with_cpu_ddp_flag
from train.stage import run_sft_stage

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


# The requests about one object's box (`--region_ratio`).
REGION_PROMPTS = (
    "What is in the marked region, and how far away is it?",
    "Describe the marked region of the depth image.",
    "Name the object in the marked box and its distance.",
    "What object does the box mark, and how far is it from the camera?",
)


def region_distance(depth: Any, box: list[float], name: str = "depth") -> float:
    """Metres to the near quartile of the valid depths inside `box` ([x0, y0, x1, y1] pixels): an object's
    surface rather than the background its box also covers (0.0 when the box holds no valid depth)."""
    metres, _ = load_depth(depth, encoding="mm", name=name)  # the pairs contract: a 16-bit PNG in millimetres
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    inside = metres[max(y0, 0) : max(y1, y0 + 1), max(x0, 0) : max(x1, x0 + 1)]
    valid = inside[inside > 0]
    return float(np.quantile(valid, 0.25)) if valid.size else 0.0


class PairsToConversation:
    """A pairs row -> a one-turn conversation row (its region as a `<box>` tag) for TRL's vision collator.

    By default the caption of the whole depth map (all-ones box mask). A `region_ratio` share of the rows
    (chosen by a stable hash of the id) instead asks about one labelled object's box -- the box as the Bbox-Conv
    mask, the answer its label and distance ("A chair, about 2.3 metres away."; the label alone when the depth is
    an estimate, not metric) -- so the projector and the LLM learn to read what is in a box and how far it is.
    """

    def __init__(self, prompts: tuple[str, ...] = ALIGN_PROMPTS, seed: int = 0, region_ratio: float = 0.0) -> None:
        if not prompts:
            raise ValueError("prompts: expected at least one alignment prompt")
        if not 0.0 <= region_ratio <= 1.0:
            raise ValueError(f"region_ratio: expected a fraction in [0, 1], got {region_ratio}")
        self.prompts = prompts
        self.seed = seed
        self.region_ratio = region_ratio

    def _hash(self, *parts: Any) -> int:
        # crc32 rather than hash(): stable across processes and runs (PYTHONHASHSEED).
        return zlib.crc32(":".join(map(str, (self.seed, *parts))).encode())

    def prompt_for(self, row_id: Any) -> str:
        return self.prompts[self._hash(row_id) % len(self.prompts)]

    def region_for(self, row: dict[str, Any]) -> int | None:
        """Index of the labelled box this row asks about, or None for the caption of the whole map."""
        labelled = [i for i, label in enumerate((row.get("labels") or [])[: len(row.get("boxes") or [])]) if label]
        if not labelled or self._hash("region", row.get("id")) / 2**32 >= self.region_ratio:
            return None
        return labelled[self._hash("object", row.get("id")) % len(labelled)]

    def region_answer(self, row: dict[str, Any], index: int) -> str:
        label = row["labels"][index]
        if row.get("depth_is_predicted"):
            return f"A {label}."
        distance = region_distance(row["depth"], row["boxes"][index], name=f"depth of pairs row {row.get('id')!r}")
        return f"A {label}, about {distance:.1f} metres away."

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        for key in ("depth", "caption"):
            if row.get(key) is None:
                raise ValueError(
                    f"pairs row {row.get('id')!r}: missing {key!r} (expected the pairs dataset schema)"
                )
        region = self.region_for(row)
        if region is None:
            prompt, answer, boxes = self.prompt_for(row.get("id")), row["caption"], []
        else:
            prompt = REGION_PROMPTS[self._hash("prompt", row.get("id")) % len(REGION_PROMPTS)]
            answer, boxes = self.region_answer(row, region), [list(row["boxes"][region])]
        messages = [
            {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]},
            {"role": "assistant", "content": [{"type": "text", "text": answer}]},
        ]
        return {"id": row.get("id"), "messages": tag_boxes(messages, [boxes]), "images": [row["depth"]]}


@dataclass
class AlignArguments:
    """Stage 1's own arguments."""

    region_ratio: float = field(
        default=0.0,
        metadata={
            "help": "Share of the pairs asked about one labelled object's box instead of captioned whole: the "
            "box as the mask, the answer its label and distance ('A chair, about 2.3 metres away.')."
        },
    )


def make_parser(prog: str | None = "deepsight train align"):
    return TrlParser((ScriptArguments, SFTConfig, ModelConfig, DeepSightTrainingArguments, AlignArguments), prog=prog)


def main(argv: list[str] | None = None, callbacks: list[Any] | None = None) -> int:
    """`deepsight train align ...`; `callbacks` lets Python callers add TrainerCallbacks."""
    parser = make_parser()
    # Stage 1 trains the projector only, unless the command line or the recipe says otherwise.
    parser.set_defaults(train_parts="projector")
    script_args, training_args, model_args, args, align_args = parser.parse_args_and_config(
        with_cpu_ddp_flag(list(sys.argv[1:] if argv is None else argv))
    )
    trainer = run_sft_stage(
        script_args,
        training_args,
        model_args,
        args,
        row_to_conversation=PairsToConversation(seed=training_args.seed, region_ratio=align_args.region_ratio),
        callbacks=callbacks,
    )
    trainer.end()
    return 0


if __name__ == "__main__":
    sys.exit(main())
