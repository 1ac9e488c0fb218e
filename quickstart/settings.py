"""What one quickstart run builds: data sizes, model sizes and budgets (`Setting`), and the named settings.

The training hyper-parameters live in the stage recipes `train/recipes/quickstart/{encoder,align,sft}.yaml`;
a setting only shrinks their budgets (the `smoke` setting). Why each value was chosen, with the measurements,
is in docs/experiments.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from deepsight.tasks import TASKS

RECIPES = Path(__file__).resolve().parents[1] / "train" / "recipes" / "quickstart"
# Seeds: training scenes use `seed`, the test benchmark `seed + 1`, the held-out stage-0 pairs `seed + 2`.
HELDOUT_SEED_OFFSET = 2
SUN_LAYOUT_SEED_OFFSET = 3


@dataclass(frozen=True)
class Setting:
    """Sizes and budgets of one quickstart run (one draw per seed: a point or two between runs is noise)."""

    # -- data --
    train_scenes: int = 3000  # instruction scenes (stage 2): one multiple-choice row per benchmark skill each
    pairs_scenes: int = 1500  # depth-text-bbox pair scenes (stages 0 and 1)
    test_scenes: int = 300
    heldout_scenes: int = 200  # scenes of their own seed, for stage 0's zero-shot scene accuracy while it trains
    sun_layout_scenes: int = 100  # unseen scenes in the SUN RGB-D original layout, evaluated too (0: skip)
    # `deepsight data instructions` knobs (None: the builder's defaults)
    rows_per_scene: int = 1  # free-form rows per scene: the steps go to the multiple-choice skills
    mc_skills: tuple[str, ...] = TASKS
    mc_per_scene: int | str = 3  # multiple-choice rows per skill and scene, at most (`--mc-per-scene`)
    # Wrong options drawn as often as names are answers (`--balance-names`): the names alone stop telling the answer.
    balance_names: tuple[str, ...] = ("recognition",)
    # Distance Judgment with one depth copy per option, masked to that option's box (`--distance-regions`).
    distance_regions: bool = True
    # Distance rows naming no object (`--unnamed-distance`): True = "twin" (its named row's pair), or "own".
    unnamed_distance: bool | str = True
    mix: str | None = "conversation=0.6,complex_reasoning=0.2,detailed_description=0.2"
    # -- initial models --
    image_size: int = 64
    patch_size: int = 8
    # The image processor's depth transform(s), one tower input channel each: metric and per-map relative depth.
    depth_transform: str | tuple[str, ...] = ("inverse", "relative")
    vision_hidden: int = 128
    vision_layers: int = 4
    # The LLM is built from scratch: a pretrained one trains ~120x slower per sample here.
    text_hidden: int = 128
    text_layers: int = 4
    heads: int = 4
    vision_features: str = "default"  # LLaVA's image tokens: the patches, CLIP's class token dropped
    vision_feature_layer: int | tuple[int, ...] = -2  # several: concatenated per patch
    spatial_pool_stride: int = 2  # 2x2-pooled patch features: 16 image tokens, more steps in the same time
    region_token: bool = True  # one more image token: the unpooled features' mean over the Bbox-Conv box
    vocab_size: int = 1024
    # Stage-0 text encoder (frozen): "tiny" (random, mean-pooled), "minilm" (needs its package), "auto".
    text_encoder: str = "tiny"
    minilm_layers: int | None = None  # keep only MiniLM's first N layers (None: all 6)
    # -- training budgets: None keeps the stage recipe's value --
    encoder_steps: int | None = None
    align_steps: int | None = None
    sft_steps: int | None = None
    encoder_batch_size: int | None = None
    batch_size: int | None = None  # stages 1 and 2
    encoder_eval_steps: int | None = None
    # -- ablations: shorter budgets than the main run, equal across the variants of one ablation --
    ablation_sft_steps: int = 1500  # enough for Distance Judgment to leave chance
    ablation_encoder_steps: int = 150
    ablation_questions_per_task: int = 150
    # -- evaluation and processes --
    eval_limit: int | None = None
    num_processes: int = 1
    data_workers: int = 2  # data steps, and then the evaluations, run this many at a time
    threads_per_process: int = 1  # torch threads of each training process


SETTINGS = {
    "default": Setting(),
    "smoke": Setting(train_scenes=12, pairs_scenes=12, test_scenes=8, image_size=32, vision_hidden=32, vision_layers=1,
                     text_hidden=32, text_layers=1, vocab_size=400, encoder_steps=2, align_steps=2, sft_steps=2,
                     batch_size=4, encoder_batch_size=8, text_encoder="tiny", heldout_scenes=6,
                     encoder_eval_steps=2, sun_layout_scenes=4, ablation_sft_steps=2, ablation_encoder_steps=2,
                     ablation_questions_per_task=3,
                     eval_limit=12),
}
