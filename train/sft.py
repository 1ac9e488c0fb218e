"""Stage 2 -- supervised fine-tuning of DeepSight (or an RGB baseline) on depth instructions.

Vision tower frozen; the projector and the LLM train (`--train_parts both`, the paper's §6.3), or only
one of them for the SFT ablation (`--train_parts projector` / `--train_parts llm`). Full fine-tune, or
LoRA / QLoRA on the LLM through PEFT (`--use_peft`, `--load_in_4bit`) with the projector fully trained
(`modules_to_save`). Batches come from TRL's own vision collator with `assistant_only_loss` (train/rows.py):
the loss is on assistant tokens only; the fraction of tokens left out of the loss is logged at start-up and
written to OUTPUT_DIR/label_masking.json.

Rows: the instruction dataset (docs/CONTRACTS.md "Instruction row": TRL conversational `messages` whose regions
are `<box>` tags after their image block, `images` = [depth]). The stock `trl sft --model_name_or_path <DeepSight
folder> --dataset_name <instruction folder> --trust_remote_code` trains on the same batches (the tower stays frozen:
the checkpoint declares it); this script adds the recipes, the part freezing, LoRA and the RGB baselines.

# One process (CPU or one GPU)
```bash
python -m train.sft --config train/recipes/cpu-tiny/sft.yaml
deepsight train sft --config train/recipes/cpu-tiny/sft.yaml --max_steps 20   # same thing
```

# The paper's recipe on 8 GPUs (DeepSpeed ZeRO-3; zero2.yaml and fsdp.yaml work the same way)
```bash
accelerate launch --config_file train/accelerate_configs/zero3.yaml -m train.sft \
    --config train/recipes/paper/sft.yaml \
    --model_name_or_path outputs/paper/align --dataset_name path/to/depth-instructions
```

# LoRA (adapters saved; add --save_merged true for merged weights) / QLoRA (needs bitsandbytes + CUDA)
```bash
accelerate launch --config_file train/accelerate_configs/zero2.yaml -m train.sft \
    --config train/recipes/paper/sft_lora.yaml [--load_in_4bit true]
```

# Multi-node (2 nodes x 8 GPUs; run on every node with its --machine_rank)
```bash
accelerate launch --config_file train/accelerate_configs/multi_node.yaml --machine_rank 0 \
    --main_process_ip 10.0.0.1 -m train.sft --config train/recipes/paper/sft.yaml
```

# A baseline (paper Table 6): any AutoModelForImageTextToText, depth as a 3-channel image
```bash
accelerate launch --config_file train/accelerate_configs/zero3.yaml -m train.sft \
    --config train/recipes/baselines/llava-1.5-7b.yaml
```

Resume an interrupted run with `--resume_from_checkpoint true` (the newest OUTPUT_DIR/checkpoint-*)
or a checkpoint folder. Every recipe field can be overridden on the command line.
"""

from __future__ import annotations

import sys
from typing import Any

from trl import ModelConfig, ScriptArguments, SFTConfig, TrlParser

from train.arguments import DeepSightTrainingArguments, with_cpu_ddp_flag
from train.stage import run_sft_stage


def make_parser(prog: str | None = "deepsight train sft"):
    return TrlParser((ScriptArguments, SFTConfig, ModelConfig, DeepSightTrainingArguments), prog=prog)


def main(argv: list[str] | None = None, callbacks: list[Any] | None = None) -> int:
    """`deepsight train sft ...`; `callbacks` lets Python callers add TrainerCallbacks."""
    parser = make_parser()
    script_args, training_args, model_args, args = parser.parse_args_and_config(
        with_cpu_ddp_flag(list(sys.argv[1:] if argv is None else argv))
    )
    trainer = run_sft_stage(script_args, training_args, model_args, args, callbacks=callbacks)
    trainer.end()
    return 0


if __name__ == "__main__":
    sys.exit(main())
