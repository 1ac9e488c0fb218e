"""The tiny builders other tests, benches and the quickstart rely on."""

import torch

from deepsight.tiny import build_tiny_dual_encoder


def test_tiny_dual_encoder_embeds_different_captions_differently():
    # Regression: CLIP's pooler reads the end-of-text token, which the tiny BPE does not append, so every
    # caption pooled at position 0 and stage-0 training could not learn text at all.
    model, processor = build_tiny_dual_encoder()
    batch = processor.tokenizer(["a bed in a bedroom", "a toilet next to a sink", "chairs around a table"],
                                padding=True, return_tensors="pt")
    with torch.no_grad():
        embeddings = model.get_text_features(batch["input_ids"], batch["attention_mask"]).pooler_output
    distances = torch.cdist(embeddings, embeddings)
    off_diagonal = distances[~torch.eye(3, dtype=torch.bool)]
    assert off_diagonal.min() > 1e-3



def test_tiny_tokenizer_gives_each_special_token_its_role_and_prepends_bos_only_when_asked():
    from deepsight.tiny import IMAGE_TOKEN, LLAVA_CHAT_TEMPLATE, train_tiny_tokenizer

    deepsight = train_tiny_tokenizer()
    assert (deepsight.unk_token, deepsight.bos_token, deepsight.image_token) == ("<unk>", "<s>", IMAGE_TOKEN)
    assert deepsight("a chair").input_ids[0] == deepsight.bos_token_id
    llava = train_tiny_tokenizer(["a chair", "a table"], vocab_size=300, special_tokens=("<pad>", "<s>", "</s>", IMAGE_TOKEN),
                                 chat_template=LLAVA_CHAT_TEMPLATE, prepend_bos=False)
    assert llava.unk_token is None and llava.convert_tokens_to_ids(IMAGE_TOKEN) == 3
    assert llava("a chair").input_ids[0] != llava.bos_token_id
    prompt = llava.apply_chat_template([{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "hi"}]}],
                                       tokenize=False, add_generation_prompt=True)
    assert prompt == "USER: <image>\nhi\nASSISTANT: "


def test_tiny_llava_and_qwen2_vl_read_as_many_image_features_as_their_processors_give_image_tokens():
    import numpy as np
    from PIL import Image

    from deepsight.tiny import build_tiny_llava, build_tiny_qwen2_vl

    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 48, 3), dtype=np.uint8))
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "How far is the chair?"}]}]
    for model, processor in (build_tiny_llava(), build_tiny_qwen2_vl()):
        text = processor.apply_chat_template(messages, add_generation_prompt=True)
        inputs = processor(images=[image], text=[text], return_tensors="pt")
        with torch.no_grad():  # raises "Image features and image tokens do not match" otherwise
            logits = model(**inputs).logits
        assert logits.shape[:2] == inputs["input_ids"].shape
