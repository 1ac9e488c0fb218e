"""`deepsight demo`: start the Gradio demo locally (the same app the Space runs)."""

from __future__ import annotations

import argparse
import logging
import os

from deepsight.cli import HelpFormatter, existing_path_or_hub_id
from deepsight.paths import add_trust_remote_code_argument
from spaces_demo.space import export_space

DEFAULT_DEPTH_MODEL = "vinvino02/glpn-nyu"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deepsight demo", description=__doc__, formatter_class=HelpFormatter
    )
    parser.add_argument(
        "--model",
        default=None,
        type=existing_path_or_hub_id,
        help="DeepSight checkpoint folder or hub id (default: $DEEPSIGHT_MODEL, else "
        "outputs/quickstart/model, else a tiny random model with a notice)",
    )
    add_trust_remote_code_argument(parser)
    parser.add_argument(
        "--depth-model",
        default=os.environ.get("DEEPSIGHT_DEPTH_MODEL", DEFAULT_DEPTH_MODEL),
        help="transformers depth-estimation model for RGB photos; 'none' disables the RGB option "
        "(default: $DEEPSIGHT_DEPTH_MODEL or %(default)s; offline it must be a local folder)",
    )
    parser.add_argument("--port", type=int, default=None, help="port (default: 7860, or the next free one)")
    parser.add_argument(
        "--host", default=None, help="interface to listen on (default: $GRADIO_SERVER_NAME, else 127.0.0.1)"
    )
    parser.add_argument(
        "--share",
        choices=("on", "off"),
        default="off",
        help="create a public gradio.live link (needs the network)",
    )
    parser.add_argument(
        "--max-new-tokens", type=int, default=64, help="answer length limit"
    )
    space = parser.add_argument_group("publishing")
    space.add_argument(
        "--export-space",
        metavar="DIR",
        default=None,
        help="instead of serving, write an uploadable Space folder (README with YAML, app.py, "
        "requirements, code)",
    )
    space.add_argument(
        "--model-id", action="append", default=[], help="hub id listed under `models:` (repeatable)"
    )
    space.add_argument(
        "--dataset-id", action="append", default=[], help="hub id listed under `datasets:` (repeatable)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.max_new_tokens < 1:
        raise SystemExit(f"--max-new-tokens must be >= 1, got {args.max_new_tokens}")
    if args.export_space:
        try:
            out_dir = export_space(args.export_space, args.model_id, args.dataset_id)
        except ValueError as error:
            raise SystemExit(f"deepsight demo: {error}") from None
        print(f"Space written to {out_dir}; upload it with:")
        print(f"  huggingface-cli upload ORG/NAME {out_dir} . --repo-type space")
        return 0
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    from spaces_demo.app import build_demo, launch_kwargs  # gradio imports take seconds: only when launching
    from spaces_demo.responder import load_responder  # torch and transformers: only when launching

    responder = load_responder(args.model, max_new_tokens=args.max_new_tokens, trust_remote_code=args.trust_remote_code)
    demo = build_demo(depth_model=args.depth_model, responder=responder, max_new_tokens=args.max_new_tokens)
    demo.launch(**launch_kwargs(host=args.host, port=args.port, share=args.share == "on"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
