"""A saved DeepSight folder, copied anywhere, loads with trust_remote_code in a fresh offline process that cannot
import anything from this repository."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
import torch
from transformers import AutoModelForImageTextToText, AutoProcessor

from deepsight.model_cli import main
from deepsight.tiny import build_tiny_dual_encoder
from tests.fixtures.fresh_process import run_without_repo

# Runs in the subprocess (after `HIDE_REPO`): load everything through the Auto classes from the copied folders.
RUNNER = """
    import json

    import numpy as np, torch
    from transformers import (AutoConfig, AutoImageProcessor, AutoModel, AutoModelForImageTextToText,
                              AutoProcessor)

    folder, dual_folder, depth_path = sys.argv[2], sys.argv[3], sys.argv[4]
    model = AutoModelForImageTextToText.from_pretrained(folder, trust_remote_code=True).eval()
    processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
    backbone = AutoModel.from_pretrained(folder, trust_remote_code=True)
    config = AutoConfig.from_pretrained(folder, trust_remote_code=True)
    image_processor = AutoImageProcessor.from_pretrained(folder, trust_remote_code=True)
    dual = AutoModel.from_pretrained(dual_folder, trust_remote_code=True).eval()

    depth = np.load(depth_path)
    inputs = processor(images=[depth], text=["<image><box>[4, 4, 40, 30]</box>\\nHow far is the chair?"],
                       return_tensors="pt")
    with torch.no_grad():
        logits = model(**inputs).logits[0, -1]
        generated = model.generate(**inputs, max_new_tokens=5, do_sample=False)[0, inputs["input_ids"].shape[1]:]
        image_embeds = dual.get_image_features(torch.from_numpy(np.zeros((1, 1, 32, 32), np.float32)) + 1.0)
    print(json.dumps({
        "hidden": REPO_HIDDEN,
        "classes": {name: type(obj).__module__ + "." + type(obj).__name__ for name, obj in
                    [("model", model), ("processor", processor), ("backbone", backbone), ("config", config),
                     ("image_processor", image_processor), ("dual", dual)]},
        "logits": logits.tolist(),
        "generated": generated.tolist(),
        "image_embeds": image_embeds.pooler_output[0].tolist(),
    }))
    """


@pytest.mark.slow
def test_saved_folder_loads_with_trust_remote_code_in_a_fresh_process_without_the_repo(
    tiny_deepsight, tiny_deepsight_dir, tiny_tokenizer, depth_map, tmp_path
):
    model, processor = tiny_deepsight
    dual, dual_processor = build_tiny_dual_encoder(tokenizer=tiny_tokenizer)
    elsewhere = tmp_path / "anywhere"
    shutil.copytree(tiny_deepsight_dir, elsewhere / "deepsight")
    dual.save_pretrained(elsewhere / "dual")
    dual_processor.save_pretrained(elsewhere / "dual")
    np.save(tmp_path / "depth.npy", depth_map)
    report = run_without_repo(
        RUNNER, [str(elsewhere / "deepsight"), str(elsewhere / "dual"), str(tmp_path / "depth.npy")], tmp_path
    )

    assert report["hidden"] == {"modeling_deepsight": True, "deepsight": True}
    for name, qualified in report["classes"].items():
        assert qualified.startswith("transformers_modules."), (name, qualified)
    assert report["classes"]["model"].endswith("modeling_deepsight.DeepSightForConditionalGeneration")
    assert report["classes"]["backbone"].endswith("modeling_deepsight.DeepSightModel")
    assert report["classes"]["processor"].endswith("processing_deepsight.DeepSightProcessor")
    assert report["classes"]["image_processor"].endswith("image_processing_deepsight.DeepSightImageProcessor")
    assert report["classes"]["dual"].endswith("modeling_deepsight.DeepSightDualEncoder")

    inputs = processor(images=[depth_map], text=["<image><box>[4, 4, 40, 30]</box>\nHow far is the chair?"],
                       return_tensors="pt")
    with torch.no_grad():
        expected_logits = model(**inputs).logits[0, -1]
        expected_generated = model.generate(**inputs, max_new_tokens=5, do_sample=False)[0, inputs["input_ids"].shape[1]:]
        expected_embeds = dual.get_image_features(torch.ones(1, 1, 32, 32)).pooler_output[0]
    torch.testing.assert_close(torch.tensor(report["logits"]), expected_logits, atol=1e-5, rtol=1e-5)
    assert report["generated"] == expected_generated.tolist()
    torch.testing.assert_close(torch.tensor(report["image_embeds"]), expected_embeds, atol=1e-5, rtol=1e-5)


def test_saved_folder_holds_safetensors_auto_map_module_files_and_processor_files(tiny_deepsight_dir):
    files = {path.name for path in tiny_deepsight_dir.iterdir()}
    assert {"model.safetensors", "config.json", "generation_config.json", "processor_config.json",
            "tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "configuration_deepsight.py",
            "modeling_deepsight.py", "processing_deepsight.py", "image_processing_deepsight.py",
            "depth_codec_deepsight.py", "bbox_mask_deepsight.py", "pipeline_deepsight.py",
            "depth_estimation_deepsight.py"} <= files
    assert not [name for name in files if name.endswith((".bin", ".pt", ".pth"))]
    auto_map = json.loads((tiny_deepsight_dir / "config.json").read_text())["auto_map"]
    assert auto_map == {
        "AutoConfig": "configuration_deepsight.DeepSightConfig",
        "AutoModel": "modeling_deepsight.DeepSightModel",
        "AutoModelForImageTextToText": "modeling_deepsight.DeepSightForConditionalGeneration",
    }
    processor_config = json.loads((tiny_deepsight_dir / "processor_config.json").read_text())
    assert processor_config["auto_map"]["AutoProcessor"] == "processing_deepsight.DeepSightProcessor"
    assert processor_config["image_processor"]["auto_map"]["AutoImageProcessor"] == (
        "image_processing_deepsight.DeepSightImageProcessor"
    )
    # the copied modules import only torch / transformers / each other
    modules = ("configuration_deepsight.py", "modeling_deepsight.py", "processing_deepsight.py",
               "image_processing_deepsight.py", "depth_codec_deepsight.py", "bbox_mask_deepsight.py",
               "pipeline_deepsight.py", "depth_estimation_deepsight.py")
    for module in modules:
        source = (tiny_deepsight_dir / module).read_text()
        imports = re.findall(r"^\s*(?:from|import)\s+([\w.]+)", source, flags=re.MULTILINE)
        assert {name.split(".")[0] for name in imports} <= {"__future__", "torch", "transformers", "huggingface_hub",
                                                            "typing", "dataclasses", "os", "re", "collections",
                                                            "numpy", "PIL", ""}, (module, imports)


@pytest.mark.slow
def test_model_cli_demo_saves_reloads_in_a_fresh_process_and_answers(tmp_path, capsys):
    assert main(["demo", "--output", str(tmp_path / "demo")]) == 0
    printed = capsys.readouterr().out
    assert "repo importable there  False" in printed
    assert "modeling_deepsight.DeepSightForConditionalGeneration" in printed
    assert (tmp_path / "demo" / "model.safetensors").exists() and (tmp_path / "demo" / "modeling_deepsight.py").exists()


def test_model_cli_build_makes_a_checkpoint_from_clip_and_a_causal_lm(tiny_clip_dir, tiny_llama_dir, tmp_path,
                                                                      depth_map, capsys):
    assert main(["build", "--vision", str(tiny_clip_dir), "--text", str(tiny_llama_dir), "--output",
                 str(tmp_path / "built"), "--projector-depth", "3"]) == 0
    assert "image tokens    16 per image" in capsys.readouterr().out
    model = AutoModelForImageTextToText.from_pretrained(tmp_path / "built").eval()
    processor = AutoProcessor.from_pretrained(tmp_path / "built")
    assert model.config.projector_depth == 3
    inputs = processor(images=[depth_map], text=["<image>\nHow far?"], return_tensors="pt")
    with torch.no_grad():
        assert model.generate(**inputs, max_new_tokens=2, do_sample=False).shape[1] == inputs["input_ids"].shape[1] + 2


def test_model_cli_build_with_two_depth_transforms_gives_a_two_channel_tower_and_processor(
    tiny_clip_dir, tiny_llama_dir, tmp_path, depth_map
):
    assert main(["build", "--vision", str(tiny_clip_dir), "--text", str(tiny_llama_dir), "--output",
                 str(tmp_path / "built"), "--depth-transform", "inverse", "relative"]) == 0
    model = AutoModelForImageTextToText.from_pretrained(tmp_path / "built").eval()
    processor = AutoProcessor.from_pretrained(tmp_path / "built")
    assert model.config.vision_config.num_channels == 2
    assert processor.image_processor.depth_transform == ["inverse", "relative"]
    inputs = processor(images=[depth_map], text=["<image>\nHow far?"], return_tensors="pt")
    assert inputs["pixel_values"].shape[1] == 2
    with torch.no_grad():
        assert model.generate(**inputs, max_new_tokens=2, do_sample=False).shape[1] == inputs["input_ids"].shape[1] + 2
