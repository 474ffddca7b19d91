"""Transfer strategies: layer-wise LR decay / head LR, and the L2-SP penalty against hand computation."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForSequenceClassification

from nlp_transfer.transfer.freeze import freeze_encoder_layers
from nlp_transfer.transfer.l2sp import L2SPRegularizer
from nlp_transfer.transfer.lr import describe_lrs, layerwise_lr_param_groups

from conftest import tiny_config


def _model(family="bert"):
    torch.manual_seed(0)
    return AutoModelForSequenceClassification.from_config(tiny_config(family))


def _lr_of(groups):
    return {id(p): g["lr"] for g in groups for p in g["params"]}


def test_layerwise_decay_gives_each_block_xi_times_the_one_above():
    model = _model()
    groups = layerwise_lr_param_groups(
        model, 1e-3, layer_lr_decay=0.5, head_learning_rate=1e-2, weight_decay=0.01
    )
    lr = _lr_of(groups)
    expected = {
        "classifier": 1e-2,
        "bert.pooler": 1e-2,  # head at head_learning_rate
        "bert.encoder.layer.1": 1e-3 * 0.5,
        "bert.encoder.layer.0": 1e-3 * 0.25,
        "bert.embeddings": 1e-3 * 0.125,
    }
    for name, p in model.named_parameters():
        prefix = next(k for k in expected if name.startswith(k))
        assert lr[id(p)] == pytest.approx(expected[prefix]), name
    assert len(lr) == sum(1 for _ in model.parameters())
    assert (
        describe_lrs(groups)
        == "head 1.00e-02, layer_1 5.00e-04, layer_0 2.50e-04, embeddings 1.25e-04"
    )
    assert all(g["weight_decay"] == 0 for g in groups if g["name"].endswith("/no_decay"))


def test_decay_one_and_no_head_lr_is_a_single_learning_rate_and_frozen_params_are_left_out():
    model = _model("distilbert")
    report = freeze_encoder_layers(model, 1)
    groups = layerwise_lr_param_groups(model, 2e-5)
    assert {g["lr"] for g in groups} == {2e-5}
    assert sum(p.numel() for g in groups for p in g["params"]) == report.trainable_params


def test_bad_decay_names_the_flag():
    with pytest.raises(ValueError, match="--layer_lr_decay"):
        layerwise_lr_param_groups(_model(), 1e-3, layer_lr_decay=1.5)


def test_l2sp_is_zero_at_start_and_matches_hand_computation():
    model = _model()
    reg = L2SPRegularizer(model, alpha=0.1, beta=0.0)
    assert reg().item() == 0.0
    head = L2SPRegularizer(model, alpha=0.1, beta=0.2)
    w = model.classifier.weight.detach()
    b = model.classifier.bias.detach()
    assert head().item() == pytest.approx(
        0.5 * 0.2 * (w.pow(2).sum() + b.pow(2).sum()).item(), rel=1e-5
    )
    # Move one pretrained weight: penalty alpha/2 * delta^2 * numel, gradient alpha * delta.
    dense = model.bert.encoder.layer[0].attention.output.dense.weight
    with torch.no_grad():
        dense.add_(0.3)
    penalty = reg()
    assert penalty.item() == pytest.approx(0.5 * 0.1 * 0.09 * dense.numel(), rel=1e-5)
    penalty.backward()
    assert torch.allclose(dense.grad, torch.full_like(dense, 0.1 * 0.3))
    assert model.bert.embeddings.word_embeddings.weight.grad.abs().max() == 0


def test_l2sp_keeps_anchors_only_for_trainable_pretrained_weights():
    model = _model()
    freeze_encoder_layers(model, 2)  # only pooler (pretrained) and classifier (new) train
    reg = L2SPRegularizer(model, alpha=1.0, beta=1.0)
    pooler = {id(p) for p in model.bert.pooler.parameters()}
    assert {id(p) for p in reg.pretrained} == pooler
    assert {id(p) for p in reg.new_params} == {id(p) for p in model.classifier.parameters()}
    assert len(reg.anchors) == 2  # pooler weight and bias


def test_l2sp_parameters_get_no_weight_decay():
    model = _model()
    reg = L2SPRegularizer(model, alpha=0.01)
    groups = layerwise_lr_param_groups(
        model, 1e-3, weight_decay=0.1, no_decay_for=reg.parameter_ids
    )
    assert all(g["weight_decay"] == 0.0 for g in groups)


def test_recipe_logs_learning_rate_per_block(tiny_bert_dir, toy_csv, tmp_path, capsys):
    import sentiment

    metrics = sentiment.main(
        [
            "--model_name_or_path",
            str(tiny_bert_dir),
            "--train_file",
            str(toy_csv),
            "--text_column",
            "sentence",
            "--label_column",
            "sentiment",
            "--output_dir",
            str(tmp_path / "o"),
            "--num_train_epochs",
            "1",
            "--layer_lr_decay",
            "0.9",
            "--head_learning_rate",
            "1e-2",
            "--l2sp_alpha",
            "0.01",
            "--l2sp_beta",
            "0.001",
            "--run_baseline",
            "false",
        ]
    )
    assert metrics["test"]["num_examples"] == 20
    err = capsys.readouterr().err
    assert (
        "Learning rate per block: head 1.00e-02, layer_1 4.50e-05, layer_0 4.05e-05, embeddings 3.65e-05"
        in err
    )
    assert "L2-SP: alpha 0.01" in err
