"""Models: the block view, freezing with exact parameter counts per family, loading errors."""

from __future__ import annotations

import time

import pytest
import torch
from transformers import AutoModelForSequenceClassification

from nlp_transfer.models.blocks import get_block_view
from nlp_transfer.text.model import build_text_classifier
from nlp_transfer.transfer.freeze import count_parameters, freeze_encoder_layers, set_train_mode

from conftest import tiny_config

H, FF, V, P, C = 32, 37, 100, 64, 2  # hidden, intermediate, vocab, positions, labels


def linear(n_in: int, n_out: int) -> int:
    return n_in * n_out + n_out


LN = 2 * H
# One transformer layer: Q, K, V and output projections, 2 LayerNorms, the 2-layer MLP.
LAYER = 4 * linear(H, H) + 2 * LN + linear(H, FF) + linear(FF, H)
# Embedding blocks and heads, by hand, per family.
EMBEDDINGS = {
    "bert": V * H + P * H + 2 * H + LN,
    "roberta": V * H + P * H + 1 * H + LN,
    "distilbert": V * H + P * H + LN,
    "electra": V * 16 + P * 16 + 2 * 16 + 2 * 16 + linear(16, H),  # 16-dim embeddings + projection
}
HEAD = {
    "bert": linear(H, H) + linear(H, C),  # pooler + classifier
    "roberta": linear(H, H) + linear(H, C),  # dense + out_proj
    "distilbert": linear(H, H) + linear(H, C),  # pre_classifier + classifier
    "electra": linear(H, H) + linear(H, C),
}


@pytest.mark.parametrize("family", ["bert", "roberta", "distilbert", "electra"])
@pytest.mark.parametrize("k", [0, 1, 2])
def test_freeze_layers_gives_exact_trainable_counts(family, k):
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_config(tiny_config(family))
    report = freeze_encoder_layers(model, k)
    total = EMBEDDINGS[family] + 2 * LAYER + HEAD[family]
    expected = total if k == 0 else (2 - k) * LAYER + HEAD[family]
    assert report.total_params == total
    assert report.trainable_params == expected
    assert count_parameters(model) == (expected, total)
    assert report.frozen_blocks == (
        [] if k == 0 else ["embeddings"] + [f"layer_{i}" for i in range(k)]
    )
    assert f"trainable params: {expected:,} / {total:,}" in str(report)


def test_block_view_order_and_head():
    model = AutoModelForSequenceClassification.from_config(tiny_config("bert"))
    view = get_block_view(model)
    assert [b.name for b in view.blocks] == ["embeddings", "layer_0", "layer_1"]
    assert view.head.modules == [model.bert.pooler, model.classifier]


def test_frozen_blocks_get_no_gradient_and_stay_in_eval_mode():
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_config(tiny_config("bert"))
    freeze_encoder_layers(model, 1)
    set_train_mode(model)
    assert not model.bert.embeddings.training and not model.bert.encoder.layer[0].training
    assert model.bert.encoder.layer[1].training and model.classifier.training
    inputs = {
        "input_ids": torch.randint(5, 100, (4, 10)),
        "attention_mask": torch.ones(4, 10, dtype=torch.long),
    }
    # Dropout is off in the frozen prefix: its output is deterministic in train mode.
    hidden = [
        model.bert.encoder.layer[0](model.bert.embeddings(inputs["input_ids"]))[0] for _ in range(2)
    ]
    assert torch.equal(hidden[0], hidden[1])
    model(**inputs).logits.sum().backward()
    frozen = list(model.bert.embeddings.parameters()) + list(
        model.bert.encoder.layer[0].parameters()
    )
    assert all(p.grad is None for p in frozen)
    assert all(p.grad is not None for p in model.bert.encoder.layer[1].parameters())


def test_freeze_layers_out_of_range_names_the_flag():
    model = AutoModelForSequenceClassification.from_config(tiny_config("bert"))
    with pytest.raises(ValueError, match=r"--freeze_layers must be between 0 .* and 2"):
        freeze_encoder_layers(model, 3)


def test_family_without_a_view_is_a_clear_error_naming_type_and_flags():
    from types import SimpleNamespace

    class Toy(torch.nn.Module):  # no layer list, no input embeddings: nothing to discover
        def __init__(self):
            super().__init__()
            self.config = SimpleNamespace(model_type="toy")
            self.proj = torch.nn.Linear(4, 2)

    with pytest.raises(ValueError, match=r"model type 'toy'.*--freeze_layers > 0"):
        get_block_view(Toy())


def test_build_from_local_dir_sets_label_names(tiny_bert_dir):
    model, tokenizer = build_text_classifier(str(tiny_bert_dir), label_names=["neg", "pos"])
    assert model.config.id2label == {0: "neg", 1: "pos"}
    assert model.config.label2id == {"neg": 0, "pos": 1}
    assert tokenizer("good movie")["input_ids"][0] == tokenizer.cls_token_id


def test_default_model_is_the_packaged_minilm():
    model, _ = build_text_classifier(label_names=["a", "b", "c"])
    assert model.config.model_type == "bert"
    assert model.config.num_hidden_layers == 6 and model.config.hidden_size == 384
    assert model.classifier.out_features == 3


def test_missing_local_model_path_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"--model_name_or_path .*no such directory"):
        build_text_classifier(str(tmp_path / "no_model"), label_names=["a", "b"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"without config\.json"):
        build_text_classifier(str(tmp_path / "empty"), label_names=["a", "b"])


def test_hub_id_offline_fails_within_seconds():
    start = time.perf_counter()
    with pytest.raises(OSError, match="not in the local Hugging Face cache"):
        build_text_classifier("some-org/some-bert-model", label_names=["a", "b"])
    assert time.perf_counter() - start < 15


def test_hub_id_with_unreachable_hub_fails_without_retrying(monkeypatch):
    import nlp_transfer.text.model as text

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(text, "hub_reachable", lambda: False)
    start = time.perf_counter()
    with pytest.raises(OSError, match="Hub is unreachable"):
        build_text_classifier("some-org/some-bert-model", label_names=["a", "b"])
    assert time.perf_counter() - start < 15
