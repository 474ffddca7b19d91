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


def _recipe_args(tiny_bert_dir, toy_csv, output_dir, *extra):
    return [
        "--model_name_or_path",
        str(tiny_bert_dir),
        "--train_file",
        str(toy_csv),
        "--text_column",
        "sentence",
        "--label_column",
        "sentiment",
        "--output_dir",
        str(output_dir),
        "--run_baseline",
        "false",
        *extra,
    ]


# Gradual unfreezing


def test_gradual_unfreezing_trainable_set_per_stage():
    from nlp_transfer.transfer.gradual import GradualUnfreezer

    model = _model()
    unfreezer = GradualUnfreezer(model)
    unfreezer.start()

    def trainable():
        return {
            n.split(".")[0] + "." + n.split(".")[1]
            for n, p in model.named_parameters()
            if p.requires_grad
        }

    head = {"bert.pooler", "classifier.weight", "classifier.bias"}
    assert trainable() == head
    assert unfreezer.update(epoch=2, global_step=10)
    assert unfreezer.trainable_blocks() == ["layer_1"]
    assert trainable() == head | {"bert.encoder"}
    assert not model.bert.encoder.layer[0].attention.self.query.weight.requires_grad
    assert not unfreezer.update(epoch=2, global_step=11)  # same stage: no change
    unfreezer.update(epoch=3, global_step=20)
    assert unfreezer.trainable_blocks() == ["layer_1", "layer_0"]
    unfreezer.update(epoch=9, global_step=90)  # past the last stage: everything trains
    assert unfreezer.trainable_blocks() == ["layer_1", "layer_0", "embeddings"]
    assert all(p.requires_grad for p in model.parameters())


def test_gradual_unfreezing_by_steps_respects_freeze_layers():
    from nlp_transfer.transfer.gradual import GradualUnfreezer

    model = _model()
    freeze_encoder_layers(model, 1)  # embeddings + layer_0 stay frozen throughout
    unfreezer = GradualUnfreezer(model, unfreeze_every_n_steps=5)
    unfreezer.start()
    assert unfreezer.num_stages == 2
    assert unfreezer.stage_at(epoch=1, global_step=4) == 0
    unfreezer.update(epoch=1, global_step=5)
    assert unfreezer.trainable_blocks() == ["layer_1"]
    unfreezer.update(epoch=5, global_step=500)
    assert not model.bert.encoder.layer[0].output.dense.weight.requires_grad
    assert not model.bert.embeddings.word_embeddings.weight.requires_grad
    assert model.bert.encoder.layer[1].output.dense.weight.requires_grad


def test_gradual_unfreezing_run_records_unfrozen_blocks_per_epoch(tiny_bert_dir, toy_csv, tmp_path):
    import sentiment

    metrics = sentiment.main(
        _recipe_args(
            tiny_bert_dir,
            toy_csv,
            tmp_path / "o",
            "--num_train_epochs",
            "3",
            "--gradual_unfreezing",
        )
    )
    assert [e["unfrozen_blocks"] for e in metrics["validation"]] == [
        [],
        ["layer_1"],
        ["layer_1", "layer_0"],
    ]
    assert metrics["transfer_strategy"]["gradual_unfreezing"] == {"unfreeze_every_n_steps": 0}


def test_frozen_blocks_get_no_gradient_during_a_step():
    model = _model()
    freeze_encoder_layers(model, 1)
    batch = {"input_ids": torch.randint(5, 100, (4, 7)), "labels": torch.tensor([0, 1, 0, 1])}
    model(**batch).loss.backward()
    assert model.bert.encoder.layer[0].output.dense.weight.grad is None
    assert model.bert.embeddings.word_embeddings.weight.grad is None
    assert model.bert.encoder.layer[1].output.dense.weight.grad is not None
    assert model.classifier.weight.grad is not None


# Feature extraction


def test_mean_pooling_ignores_padding_and_cls_takes_the_first_token():
    from nlp_transfer.transfer.features import pool

    hidden = torch.arange(2 * 3 * 2, dtype=torch.float32).reshape(2, 3, 2)
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    mean = pool(hidden, mask, "mean")
    assert torch.allclose(mean[0], hidden[0, :2].mean(0))
    assert torch.allclose(mean[1], hidden[1].mean(0))
    assert torch.equal(pool(hidden, mask, "cls"), hidden[:, 0])
    with pytest.raises(ValueError, match="--pooling"):
        pool(hidden, mask, "max")


@pytest.mark.parametrize("head", ["linear", "mlp", "logistic_regression"])
def test_feature_extraction_head_round_trips_through_save_load_and_predict(
    tiny_bert_dir, toy_csv, tmp_path, head
):
    from nlp_transfer import evaluate_saved_model, predict

    import sentiment
    from conftest import toy_sentiment_frame

    out = tmp_path / head
    test_file = tmp_path / "test.csv"
    toy_sentiment_frame(30, seed=7).to_csv(test_file, index=False)
    metrics = sentiment.main(
        _recipe_args(
            tiny_bert_dir,
            toy_csv,
            out,
            *("--feature_extraction", head, "--num_train_epochs", "2"),
            *("--test_file", str(test_file)),
        )
    )
    assert metrics["transfer_strategy"] == {
        "name": "feature_extraction",
        "head": head,
        "pooling": "mean",
    }
    assert metrics["parameters"]["frozen_blocks"] == ["embeddings", "layer_0", "layer_1"]
    expected_head = {
        "linear": 32 * 2 + 2,
        "mlp": 32 * 32 + 32 + 32 * 2 + 2,
        "logistic_regression": 32 + 1,
    }
    assert metrics["parameters"]["trainable"] == expected_head[head]
    # the default logistic regression is stored as its equal linear layer (exportable)
    assert (out / "head.safetensors").exists() and (out / "feature_extraction.json").exists()
    assert not (out / "head.skops").exists()
    # The reloaded model gives the test metrics of the run, on the same test file.
    again = evaluate_saved_model(
        out, test_file, text_column="sentence", label_column="sentiment", batch_size=7
    )
    want = metrics["test"]
    assert again["num_examples"] == want["num_examples"] == 30
    assert again["confusion_matrix"] == want["confusion_matrix"]
    assert again["accuracy"] == want["accuracy"]
    assert again["loss"] == pytest.approx(want["loss"], abs=1e-5)
    assert again["roc_auc"] == pytest.approx(want["roc_auc"], abs=1e-6)
    results = predict(out, ["good movie", "awful plot"], device="cpu")
    assert {r["label"] for r in results} <= {"neg", "pos"}
    assert abs(sum(results[0]["scores"].values()) - 1) < 1e-5


def test_feature_extraction_matches_sklearn_fitted_on_the_same_features(
    tiny_bert_dir, toy_csv, tmp_path, monkeypatch
):
    """The saved linear head predicts what the run's fitted LogisticRegression does."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from transformers import AutoModel, AutoTokenizer

    import nlp_transfer.text.features as text_features
    from nlp_transfer.text.inference import load_classifier, predict_logits_for_texts
    from nlp_transfer.transfer.features import pool

    import sentiment

    fitted = []

    def keep(seed=42):
        fitted.append(LogisticRegression(max_iter=1000, random_state=seed))
        return fitted[-1]

    monkeypatch.setattr(text_features, "default_sklearn_head", keep)
    out = tmp_path / "lr"
    metrics = sentiment.main(
        _recipe_args(tiny_bert_dir, toy_csv, out, "--feature_extraction", "logistic_regression")
    )
    assert "calibration" not in metrics  # feature extraction is not temperature-scaled
    texts = ["good movie", "the plot was awful and boring", "a superb film"]
    model, tokenizer, _ = load_classifier(out, "cpu")
    encoder = AutoModel.from_pretrained(tiny_bert_dir).eval()
    tok = AutoTokenizer.from_pretrained(tiny_bert_dir)
    with torch.no_grad():
        batch = tok(texts, padding=True, return_tensors="pt")
        feats = pool(encoder(**batch).last_hidden_state, batch["attention_mask"]).numpy()
    got = torch.softmax(torch.from_numpy(predict_logits_for_texts(model, tokenizer, texts)), -1)
    got = got.numpy()
    want = fitted[0].predict_proba(feats)
    assert model.estimator is None and model.head.kind == "linear"
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_feature_extraction_refuses_to_combine_with_fine_tuning_flags():
    from nlp_transfer import TextClassificationConfig

    with pytest.raises(ValueError, match="--freeze_layers"):
        TextClassificationConfig(dataset_name="x", feature_extraction="linear", freeze_layers=2)
    with pytest.raises(ValueError, match="--feature_extraction must be one of"):
        TextClassificationConfig(dataset_name="x", feature_extraction="svm")


def test_user_estimator_through_the_python_api(tiny_bert_dir, toy_csv, tmp_path):
    from sklearn.svm import LinearSVC

    from nlp_transfer import TextClassificationConfig, run_text_classification

    config = TextClassificationConfig(
        model_name_or_path=str(tiny_bert_dir),
        train_file=str(toy_csv),
        text_column="sentence",
        label_column="sentiment",
        output_dir=str(tmp_path / "svc"),
        run_baseline=False,
    )
    with pytest.raises(TypeError, match="CalibratedClassifierCV"):
        run_text_classification(config, estimator=LinearSVC())
    from sklearn.neighbors import KNeighborsClassifier

    config.output_dir = str(tmp_path / "knn")
    metrics = run_text_classification(config, estimator=KNeighborsClassifier(5))
    assert metrics["transfer_strategy"]["head"] == "KNeighborsClassifier"


# Weight transfer


def test_init_from_keeps_the_source_encoder_and_makes_a_new_head(tiny_bert_dir, toy_csv, tmp_path):
    from safetensors.torch import load_file

    import sentiment

    source = tmp_path / "source"
    sentiment.main(_recipe_args(tiny_bert_dir, toy_csv, source, "--num_train_epochs", "1"))
    # Target task: three labels, so the source's 2-way classifier cannot be reused.
    frame = __import__("pandas").read_csv(toy_csv)
    frame.loc[frame.index % 3 == 0, "sentiment"] = "neutral"
    target_csv = tmp_path / "target.csv"
    frame.to_csv(target_csv, index=False)
    from nlp_transfer.text.model import build_text_classifier

    model, _ = build_text_classifier(
        str(source), label_names=["neg", "neutral", "pos"], new_head=True
    )
    src = load_file(str(source / "model.safetensors"))
    torch.testing.assert_close(
        model.bert.encoder.layer[1].output.dense.weight,
        src["bert.encoder.layer.1.output.dense.weight"],
    )
    torch.testing.assert_close(model.bert.pooler.dense.weight, src["bert.pooler.dense.weight"])
    assert model.classifier.weight.shape == (3, 32)
    assert model.config.id2label == {0: "neg", 1: "neutral", 2: "pos"}
    # Same label set: the classifier is still re-initialised, not copied.
    same, _ = build_text_classifier(str(source), label_names=["neg", "pos"], new_head=True)
    assert not torch.allclose(same.classifier.weight, src["classifier.weight"])
    assert same.classifier.bias.abs().sum() == 0
    # Through the recipe flag.
    args = _recipe_args(tiny_bert_dir, target_csv, tmp_path / "target", "--num_train_epochs", "1")
    args[:2] = ["--init_from", str(source)]
    metrics = sentiment.main(args)
    assert metrics["transfer_strategy"]["init_from"] == str(source)
    assert metrics["test"]["num_examples"] == 20


def test_init_from_missing_directory_names_the_flag(tmp_path):
    from nlp_transfer import TextClassificationConfig

    with pytest.raises(FileNotFoundError, match="--init_from"):
        TextClassificationConfig(dataset_name="x", init_from=str(tmp_path / "nope"))
