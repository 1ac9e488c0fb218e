"""GPU readiness check: DeepSight at the paper's size, a few stage-2 steps, generation speed against LLaVA, memory.

The model is the paper's DeepSight-7B shape with random weights: a CLIP ViT-L/14-336 depth tower (built from the
CLIP config as `deepsight.conversion` builds it from a CLIP checkpoint), LLaVA-1.5's 2-layer GELU projector and a
Vicuna-7B-v1.5-shaped Llama (4096 wide, 32 layers, 32 heads, 11008 MLP, 32000 tokens), bf16, SDPA attention.
It runs, on one batch of synthetic depth maps (our image processor, one box each) and random text:

1. greedy generation: DeepSight vs `LlavaForConditionalGeneration` of the same size (same ViT, projector, Llama,
   prompt and exactly ``--new-tokens`` new tokens; LLaVA reads the depth map repeated to three channels), in
   alternating rounds after a warm-up; ratio = DeepSight tokens/s / LLaVA tokens/s (goal >= 0.95);
2. stage-2 LoRA steps (train/recipes/paper/sft_lora.yaml: r 128, alpha 256, LoRA on `LLM_LORA_TARGETS`, the
   projector fully trained, activation checkpointing), driven by a plain torch loop over the model's own loss
   (the loss DepthSFTTrainer trains with, ``loss_implementation="model"``), AdamW at the recipe's rate;
3. stage-2 full fine-tuning (projector + LLM, vision frozen, as train/recipes/paper/sft.yaml) under
   train/accelerate_configs/zero3.yaml on every visible GPU, in a child process started with
   ``accelerate launch``; skipped, with the reason, without DeepSpeed, without CUDA, or when the GPUs cannot hold
   the weights, gradients and Adam states (about 16 bytes per trained parameter).

Peak memory is ``torch.cuda.max_memory_allocated`` per phase on a GPU, ``getrusage`` max RSS (the process peak so
far) on a CPU. The figures go out as ONE JSON line on stdout (and to ``--output``). With ``--tiny``, and whenever
no CUDA device is present, the same code runs at the tiny size of `deepsight.tiny` in fp32 (the tests run it so).

    python bench/gpu_check.py                        # on a GPU: paper size, bf16, 5 steps, 32 new tokens
    python bench/gpu_check.py --tiny --steps 2 --output outputs/bench/gpu_check.json
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from peft import get_peft_model  # noqa: E402
from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration  # noqa: E402

from deepsight.tiny import TINY_LLAVA_TEXT, TINY_LLAVA_VISION, synthetic_depth_map, synthetic_object_box  # noqa: E402
from modeling_deepsight import (  # noqa: E402
    DeepSightConfig,
    DeepSightForConditionalGeneration,
    DeepSightImageProcessor,
    DeepSightVisionConfig,
)
from train.parameters import apply_train_parts, build_lora_config, part_of  # noqa: E402

ZERO3_CONFIG = REPO / "train" / "accelerate_configs" / "zero3.yaml"

# CLIP ViT-L/14-336 (LLaVA-1.5's tower) and Vicuna-7B-v1.5; CLIPVisionConfig's defaults give quick_gelu, eps 1e-5.
PAPER_VISION = dict(
    hidden_size=1024, intermediate_size=4096, projection_dim=768, num_hidden_layers=24, num_attention_heads=16,
    image_size=336, patch_size=14,
)
PAPER_TEXT = dict(
    vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
    num_key_value_heads=32, max_position_embeddings=4096, rms_norm_eps=1e-5, tie_word_embeddings=False,
)
TINY_TEXT = dict(TINY_LLAVA_TEXT, vocab_size=512)
# Llama's unk / bos / eos ids; with random weights the last id stands in for <image>.
SPECIAL_IDS = dict(pad_token_id=0, bos_token_id=1, eos_token_id=2)
# train/recipes/paper/sft_lora.yaml and sft.yaml; the tiny model (64 wide) gets rank 8 at the same alpha / r.
LORA_RECIPE = dict(lora_r=128, lora_alpha=256, lora_dropout=0.05, learning_rate=2e-4)
TINY_LORA_RANK = dict(lora_r=8, lora_alpha=16)
FULL_FT_LEARNING_RATE = 2e-5
GENERATION_ROUNDS = 3
# bf16 weights and gradients, fp32 master weights and two Adam moments
ZERO3_BYTES_PER_TRAINED_PARAMETER = 16
ZERO3_TIMEOUT_S = 300


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="tiny model in fp32 (the default without CUDA)")
    parser.add_argument("--steps", type=int, default=5, help="timed training steps (after one warm-up step)")
    parser.add_argument("--new-tokens", type=int, default=32, help="greedy tokens generated per row")
    parser.add_argument("--batch-size", type=int, default=16, help="rows per step (the paper recipes' per-GPU 16)")
    parser.add_argument("--prompt-tokens", type=int, default=64,
                        help="random text tokens per row after <image> (the training row is the generation prompt)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", help="also write the JSON figures to this file")
    parser.add_argument("--zero3-worker", metavar="RESULT_JSON", help=argparse.SUPPRESS)  # the ZeRO-3 child
    args = parser.parse_args(argv)
    args.tiny = args.tiny or not torch.cuda.is_available()
    return args


# --------------------------------------------------------------------------------------------------
# Models and inputs
# --------------------------------------------------------------------------------------------------


def model_sizes(tiny: bool) -> tuple[dict, dict]:
    """CLIPVisionConfig and LlamaConfig keyword arguments: the paper's sizes or deepsight.tiny's."""
    vision, text = (TINY_LLAVA_VISION, TINY_TEXT) if tiny else (PAPER_VISION, PAPER_TEXT)
    return dict(vision), dict(text, **SPECIAL_IDS)


def deepsight_config(tiny: bool) -> DeepSightConfig:
    """DeepSight around the CLIP tower's config (converted as deepsight.conversion does) and the Llama config."""
    vision, text = model_sizes(tiny)
    return DeepSightConfig(
        vision_config=DeepSightVisionConfig.from_clip_vision_config(CLIPVisionConfig(**vision)),
        text_config=LlamaConfig(**text),
        image_token_id=text["vocab_size"] - 1,
    )


def llava_config(tiny: bool) -> LlavaConfig:
    """LLaVA with DeepSight's ViT, projector (2-layer GELU, CLS dropped, layer -2) and Llama."""
    vision, text = model_sizes(tiny)
    num_patches = (vision["image_size"] // vision["patch_size"]) ** 2
    return LlavaConfig(
        vision_config=CLIPVisionConfig(**vision),
        text_config=LlamaConfig(**text),
        image_token_id=text["vocab_size"] - 1,
        image_seq_length=num_patches,
    )


def build(model_class, config, dtype: torch.dtype, device: torch.device, seed: int):
    """Random weights created directly on `device` in `dtype` (a 7B model never materialises in fp32)."""
    torch.manual_seed(seed)
    with device:
        return model_class._from_config(config, dtype=dtype, attn_implementation="sdpa")


def make_batch(config: DeepSightConfig, batch_size: int, prompt_tokens: int, seed: int) -> dict[str, torch.Tensor]:
    """One synthetic depth map with its object box per row (our image processor) and random text around <image>.

    ``labels`` train the second half of the text (the answer); the prompt, image tokens and bos are ignored.
    """
    size = config.vision_config.image_size
    depth = synthetic_depth_map(size, size, seed)
    box = synthetic_object_box(size, size, seed)
    images = DeepSightImageProcessor(size=size)(
        images=[depth] * batch_size, boxes=[[box]] * batch_size, depth_encoding="metres", return_tensors="pt"
    )
    text_config = config.text_config
    generator = torch.Generator().manual_seed(seed)
    text = torch.randint(3, text_config.vocab_size - 1, (batch_size, prompt_tokens), generator=generator)
    bos = torch.full((batch_size, 1), text_config.bos_token_id)
    image = torch.full((batch_size, config.image_seq_length), config.image_token_id)
    input_ids = torch.cat([bos, image, text], dim=1)
    labels = input_ids.clone()
    labels[:, : 1 + config.image_seq_length + prompt_tokens // 2] = -100
    return dict(
        input_ids=input_ids,
        attention_mask=torch.ones_like(input_ids),
        pixel_values=images["pixel_values"],
        bbox_mask=images["bbox_mask"],
        labels=labels,
    )


def to_device(batch: dict[str, torch.Tensor], device: torch.device, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    return {key: value.to(device, dtype if value.is_floating_point() else value.dtype) for key, value in batch.items()}


# --------------------------------------------------------------------------------------------------
# Measurements
# --------------------------------------------------------------------------------------------------


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_gib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def timed(fn, device: torch.device) -> float:
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


@torch.inference_mode()
def compare_generation(deepsight, llava, batch: dict, new_tokens: int, device: torch.device) -> dict:
    """Greedy tokens/s of both models on the same prompt; rounds alternate which model runs first."""
    generation = dict(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
        max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, pad_token_id=0,
        # random weights may emit any id; the image-token id is a placeholder, not text
        suppress_tokens=[deepsight.config.image_token_id],
    )
    runs = {
        "deepsight": lambda: deepsight.generate(
            pixel_values=batch["pixel_values"], bbox_mask=batch["bbox_mask"], **generation
        ),
        "llava": lambda: llava.generate(pixel_values=batch["pixel_values"].repeat(1, 3, 1, 1), **generation),
    }
    seconds = {name: [] for name in runs}
    for fn in runs.values():
        fn()  # warm-up
    for round_index in range(GENERATION_ROUNDS):
        for name in runs if round_index % 2 == 0 else reversed(list(runs)):
            seconds[name].append(timed(runs[name], device))
    tokens = batch["input_ids"].shape[0] * new_tokens
    tokens_per_s = {name: tokens / statistics.median(values) for name, values in seconds.items()}
    return {
        "deepsight_tokens_per_s": tokens_per_s["deepsight"],
        "llava_tokens_per_s": tokens_per_s["llava"],
        "ratio": tokens_per_s["deepsight"] / tokens_per_s["llava"],
        "prompt_tokens": generation["input_ids"].shape[1],
        "new_tokens": new_tokens,
    }


def train_steps(model, optimizer, batch: dict, steps: int, device: torch.device, backward=None) -> dict:
    """One warm-up step then `steps` timed ones; ``backward`` is the accelerator's under DeepSpeed."""
    backward = backward or (lambda loss: loss.backward())
    losses = []

    def step():
        loss = model(**batch, use_cache=False).loss
        backward(loss)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))

    step()
    seconds = sum(timed(step, device) for _ in range(steps))
    return {
        "steps_per_s": steps / seconds,
        "samples_per_s": steps * batch["input_ids"].shape[0] / seconds,
        "loss_first": losses[0],
        "loss_last": losses[-1],
    }


def lora_steps(model, batch: dict, steps: int, device: torch.device, tiny: bool) -> dict:
    """The stage-2 LoRA recipe's adapters and trained parts, stepped by a plain loop over the model's own loss."""
    recipe = dict(LORA_RECIPE, **(TINY_LORA_RANK if tiny else {}))
    model_args = SimpleNamespace(
        use_peft=True, lora_modules_to_save=None, lora_target_modules=None, lora_task_type="CAUSAL_LM",
        use_rslora=False, use_dora=False, **recipe,
    )
    model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    model = get_peft_model(model, build_lora_config(model_args, "both")).train()
    trainable = [parameter for parameter in model.parameters() if parameter.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=recipe["learning_rate"])
    figures = train_steps(model, optimizer, batch, steps, device)
    return {
        "loop": "torch loop over the model's own loss (DepthSFTTrainer's loss_implementation='model'), AdamW",
        "lora_r": recipe["lora_r"],
        "trainable_parameters": sum(parameter.numel() for parameter in trainable),
        **figures,
    }


# --------------------------------------------------------------------------------------------------
# ZeRO-3 full fine-tuning (a child process under accelerate launch)
# --------------------------------------------------------------------------------------------------


def parameters_by_part(model) -> dict[str, int]:
    """Parameter counts of the vision tower, the projector and the LLM."""
    counts = {"vision": 0, "projector": 0, "llm": 0}
    for name, parameter in model.named_parameters():
        counts[part_of(name)] += parameter.numel()
    return counts


def zero3_skip_reason(device: torch.device, parts: dict[str, int]) -> str | None:
    if importlib.util.find_spec("deepspeed") is None:
        return "DeepSpeed is not installed"
    if device.type != "cuda":
        return "ZeRO-3 needs CUDA GPUs"
    trained, frozen = parts["projector"] + parts["llm"], parts["vision"]
    needed = ZERO3_BYTES_PER_TRAINED_PARAMETER * trained + 2 * frozen
    gpus = torch.cuda.device_count()
    available = sum(torch.cuda.get_device_properties(index).total_memory for index in range(gpus))
    if needed > 0.9 * available:
        return (
            f"full fine-tuning of {trained / 1e9:.2f}B parameters needs about {needed / 2**30:.0f} GiB of GPU memory "
            f"for weights, gradients and Adam states; {gpus} GPU(s) here have {available / 2**30:.0f} GiB "
            f"({ZERO3_CONFIG.name} is written for 8)"
        )
    return None


def full_ft_zero3(args, device: torch.device, parts: dict[str, int]) -> dict:
    """Launch this script's ZeRO-3 worker on every visible GPU; its figures, or why it was skipped or failed."""
    reason = zero3_skip_reason(device, parts)
    if reason:
        return {"skipped": reason}
    with tempfile.TemporaryDirectory() as folder:
        result = Path(folder) / "zero3.json"
        command = [
            sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(ZERO3_CONFIG),
            "--num_processes", str(torch.cuda.device_count()), __file__, "--zero3-worker", str(result),
            "--steps", str(args.steps), "--batch-size", str(args.batch_size),
            "--prompt-tokens", str(args.prompt_tokens), "--seed", str(args.seed), *(["--tiny"] if args.tiny else []),
        ]
        try:
            process = subprocess.run(command, capture_output=True, text=True, timeout=ZERO3_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            return {"error": f"did not finish in {ZERO3_TIMEOUT_S} s"}
        if process.returncode != 0 or not result.exists():
            return {"error": " | ".join(process.stderr.strip().splitlines()[-3:]) or f"exit {process.returncode}"}
        return json.loads(result.read_text())


def zero3_worker(args) -> None:
    """Stage-2 full fine-tuning steps on this rank under the launcher's DeepSpeed ZeRO-3 settings."""
    from accelerate import Accelerator  # the child runs under accelerate launch only

    accelerator = Accelerator()
    # No dataloader passes through prepare(): DeepSpeed takes the micro-batch size from its config.
    accelerator.state.deepspeed_plugin.deepspeed_config["train_micro_batch_size_per_gpu"] = args.batch_size
    config = deepsight_config(args.tiny)
    # created after the Accelerator, so transformers partitions the weights as they are made (zero3_init_flag)
    model = DeepSightForConditionalGeneration._from_config(config, dtype=torch.bfloat16, attn_implementation="sdpa")
    apply_train_parts(model, "both")
    model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    trainable = [parameter for parameter in model.parameters() if parameter.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=FULL_FT_LEARNING_RATE)
    model, optimizer = accelerator.prepare(model.train(), optimizer)
    batch = to_device(make_batch(config, args.batch_size, args.prompt_tokens, args.seed), accelerator.device,
                      torch.bfloat16)
    reset_peak_memory(accelerator.device)
    figures = train_steps(model, optimizer, batch, args.steps, accelerator.device, backward=accelerator.backward)
    figures.update(num_gpus=accelerator.num_processes, peak_memory_gib=peak_memory_gib(accelerator.device))
    if accelerator.is_main_process:
        Path(args.zero3_worker).write_text(json.dumps(figures))
    accelerator.wait_for_everyone()
    accelerator.end_training()


# --------------------------------------------------------------------------------------------------


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.zero3_worker:
        zero3_worker(args)
        return 0
    start = time.perf_counter()
    device = torch.device("cpu" if not torch.cuda.is_available() else "cuda")
    dtype = torch.float32 if args.tiny else torch.bfloat16
    config = deepsight_config(args.tiny)
    batch = to_device(make_batch(config, args.batch_size, args.prompt_tokens, args.seed), device, dtype)

    deepsight = build(DeepSightForConditionalGeneration, config, dtype, device, args.seed).eval()
    llava = build(LlavaForConditionalGeneration, llava_config(args.tiny), dtype, device, args.seed).eval()
    parts = parameters_by_part(deepsight)
    parameters = {"deepsight": sum(parts.values()), "llava": sum(p.numel() for p in llava.parameters())}
    reset_peak_memory(device)
    generation = compare_generation(deepsight, llava, batch, args.new_tokens, device)
    generation["peak_memory_gib"] = peak_memory_gib(device)  # both models resident
    del llava
    free(device)

    reset_peak_memory(device)
    lora = lora_steps(deepsight, batch, args.steps, device, args.tiny)
    lora["peak_memory_gib"] = peak_memory_gib(device)
    del deepsight
    free(device)

    vision, text = config.vision_config, config.text_config
    figures = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "size": "tiny" if args.tiny else "paper",
        "dtype": str(dtype).removeprefix("torch."),
        "attn_implementation": "sdpa",
        "vision": {"layers": vision.num_hidden_layers, "hidden": vision.hidden_size, "image_size": vision.image_size,
                   "patch_size": vision.patch_size, "image_tokens": config.image_seq_length},
        "text": {"layers": text.num_hidden_layers, "hidden": text.hidden_size, "heads": text.num_attention_heads,
                 "intermediate": text.intermediate_size, "vocab": text.vocab_size},
        "parameters": parameters,
        "batch_size": args.batch_size,
        "sequence_tokens": batch["input_ids"].shape[1],
        "steps": args.steps,
        "memory_measure": "torch.cuda.max_memory_allocated" if device.type == "cuda" else "ru_maxrss (peak so far)",
        "generation": generation,
        "lora": lora,
        "full_ft_zero3": full_ft_zero3(args, device, parts),
    }
    figures["seconds"] = time.perf_counter() - start
    line = json.dumps(figures)
    print(line)
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(line + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
