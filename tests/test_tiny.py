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
        embeddings = model.get_text_features(batch["input_ids"], batch["attention_mask"])
    distances = torch.cdist(embeddings, embeddings)
    off_diagonal = distances[~torch.eye(3, dtype=torch.bool)]
    assert off_diagonal.min() > 1e-3

