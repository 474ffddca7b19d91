"""Adapters through peft (LoRA, IA3, prompt tuning) and BitFit as strategies of the transfer plan."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from nlp_transfer.models.blocks import get_block_view
from nlp_transfer.text.config import TextClassificationConfig
from nlp_transfer.transfer.plan import plan_transfer

from conftest import toy_sentiment_frame


def _config(**kw) -> TextClassificationConfig:
    config = TextClassificationConfig(output_dir="unused", **kw)
    config.validate()
    return config


@pytest.fixture()
def classifier(tiny_bert_dir):
    from nlp_transfer.text.model import build_text_classifier

    torch.manual_seed(0)
    model, _ = build_text_classifier(str(tiny_bert_dir), label_names=["neg", "pos"])
    return model


def _inputs():
    torch.manual_seed(1)
    return {
        "input_ids": torch.randint(5, 40, (4, 9)),
        "attention_mask": torch.ones(4, 9, dtype=int),
    }


@pytest.mark.parametrize(
    ("flags", "expected_trainable"),
    [
        # LoRA r=4 on query and value of 2 layers: 2 * 2 * (4*32 + 32*4) = 1,024; + the new
        # classifier (32*2 + 2 = 66)
        ({"peft": "lora", "lora_r": 4}, 1024 + 66),
        # layers >= 1 only: half the LoRA modules
        ({"peft": "lora", "lora_r": 4, "freeze_layers": 1}, 512 + 66),
        # IA3 on key, value (32 each) and the feed-forward output's input (37), 2 layers
        ({"peft": "ia3"}, 2 * (32 + 32 + 37) + 66),
        ({"peft": "prompt_tuning", "num_virtual_tokens": 5}, 5 * 32 + 66),
    ],
)
def test_trainable_counts_equal_peft_own_count(classifier, flags, expected_trainable):
    plan = plan_transfer(classifier, _config(**flags))
    own, total = plan.adapter.get_nb_trainable_parameters()
    assert plan.freeze.trainable_params == own == expected_trainable
    assert plan.freeze.total_params == total
    described = plan.describe()
    assert described["name"] == flags["peft"]
    assert described["peft"]["trainable_params"] == own
    if flags["peft"] == "lora":
        assert described["peft"]["r"] == 4
        assert described["peft"]["target_modules"] == ["query", "value"]


def test_block_view_still_covers_the_wrapped_model(classifier):
    plan = plan_transfer(classifier, _config(peft="lora", freeze_layers=1))
    view = get_block_view(classifier)  # rebuilt on the model with LoRA inside: coverage holds
    assert [b.name for b in view.blocks] == ["embeddings", "layer_0", "layer_1"]
    assert plan.freeze.frozen_blocks == ["embeddings", "layer_0"]
    lora = [n for n, p in classifier.named_parameters() if p.requires_grad and "lora_" in n]
    assert lora and all(".layer.1." in n for n in lora)


def test_bitfit_trains_biases_and_head_only(classifier):
    plan = plan_transfer(classifier, _config(bitfit=True, freeze_layers=1))
    trainable = [n for n, p in classifier.named_parameters() if p.requires_grad]
    assert all(n.endswith("bias") or n.startswith(("classifier", "bert.pooler")) for n in trainable)
    assert not any(".layer.0." in n or "embeddings" in n for n in trainable)
    assert any(".layer.1." in n for n in trainable)
    assert plan.describe()["name"] == "bitfit" and plan.cache_prefix


def test_merged_logits_equal_adapter_logits(classifier):
    plan = plan_transfer(classifier, _config(peft="lora", lora_r=4))
    with torch.no_grad():  # a trained-looking adapter: B is zero at initialisation
        for name, p in classifier.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    classifier.eval()
    with torch.no_grad():
        adapted = plan.adapter(**_inputs()).logits
        merged = plan.adapter.merge_and_unload()
        plain = merged(**_inputs()).logits
    assert not any("lora_" in n for n, _ in merged.named_parameters())
    torch.testing.assert_close(plain, adapted, atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"peft": "lora", "feature_extraction": "linear"}, "--peft"),
        ({"bitfit": True, "feature_extraction": "mlp"}, "--bitfit"),
        ({"peft": "lora", "bitfit": True}, "--bitfit"),
        ({"peft": "ia3", "l2sp_alpha": 0.1}, "--l2sp_alpha"),
        ({"peft": "prompt_tuning", "freeze_layers": 1}, "--freeze_layers"),
        ({"peft": "prompt_tuning", "layer_lr_decay": 0.9}, "--layer_lr_decay"),
        ({"peft": "dora"}, "--peft must be one of"),
        ({"peft": "lora", "lora_r": 0}, "--lora_r"),
        ({"peft": "lora", "lora_dropout": 1.0}, "--lora_dropout"),
    ],
)
def test_meaningless_combinations_are_refused(flags, message):
    with pytest.raises(ValueError, match=message):
        _config(**flags)


def test_unknown_target_module_names_the_flag(classifier):
    with pytest.raises(ValueError, match="--lora_target_modules"):
        plan_transfer(classifier, _config(peft="lora", lora_target_modules="nonexistent"))


def _run(tiny_bert_dir, data, out, *extra):
    import sentiment

    return sentiment.main(
        [
            "--model_name_or_path", str(tiny_bert_dir),
            "--train_file", str(data),
            "--text_column", "sentence",
            "--label_column", "sentiment",
            "--output_dir", str(out),
            "--learning_rate", "3e-3",
            "--num_train_epochs", "2",
            "--per_device_train_batch_size", "16",
            "--run_baseline", "false",
            *extra,
        ]
    )  # fmt: skip


def test_lora_run_saves_adapter_and_merged_model_that_predict_alike(
    tiny_bert_dir, toy_csv, tmp_path
):
    from nlp_transfer.text.inference import load_classifier, predict_logits_for_texts

    out = tmp_path / "lora"
    metrics = _run(tiny_bert_dir, toy_csv, out, "--peft", "lora", "--lora_r", "4")
    assert (out / "adapter" / "adapter_config.json").exists()
    assert (out / "adapter" / "adapter_model.safetensors").exists()
    saved = load_file(str(out / "model.safetensors"))
    assert not any("lora_" in k or "base_layer" in k or "modules_to_save" in k for k in saved)
    strategy = metrics["transfer_strategy"]
    assert strategy["name"] == "lora" and strategy["peft"]["r"] == 4
    assert metrics["parameters"]["trainable"] == strategy["peft"]["trainable_params"]
    assert "lora" in (out / "README.md").read_text()
    texts = ["great superb film", "awful dull plot", "the movie was fine"]
    logits = []
    for directory in (out, out / "adapter"):  # merged model, adapter on its base
        model, _, threshold = load_classifier(directory, device="cpu")
        assert threshold is not None
        tokenizer = load_classifier(directory, device="cpu")[1]
        logits.append(predict_logits_for_texts(model, tokenizer, texts))
    torch.testing.assert_close(torch.tensor(logits[0]), torch.tensor(logits[1]), atol=1e-5, rtol=0)
    from transformers import pipeline

    classify = pipeline("text-classification", model=str(out), device="cpu")
    assert classify("great superb film")[0]["label"] in {"neg", "pos"}


def test_prompt_tuning_run_saves_the_adapter_and_predicts_from_it(tiny_bert_dir, tmp_path):
    from nlp_transfer.text.predict import predict

    data = tmp_path / "small.csv"
    toy_sentiment_frame(80).to_csv(data, index=False)
    out = tmp_path / "prompt"
    flags = ("--peft", "prompt_tuning", "--num_virtual_tokens", "4", "--num_train_epochs", "1")
    metrics = _run(tiny_bert_dir, data, out, *flags)
    assert metrics["parameters"]["trainable"] == 4 * 32 + 66  # virtual tokens + classifier
    assert (out / "adapter_config.json").exists()  # no merge for prompt tuning
    texts = ["great film", "awful plot"]
    assert predict(out, texts) == predict(out / "adapter", texts)


def test_lora_above_frozen_layers_keeps_the_cache_exact(tiny_bert_dir, toy_csv, tmp_path):
    flags = ("--peft", "lora", "--freeze_layers", "1")  # LoRA dropout on: same masks
    plain = _run(tiny_bert_dir, toy_csv, tmp_path / "plain", *flags, "--cache_frozen_prefix", "no")
    cached = _run(tiny_bert_dir, toy_csv, tmp_path / "cached", *flags, "--cache_dtype", "float32")
    assert not plain["transfer_strategy"]["prefix_cache"]
    assert cached["transfer_strategy"]["prefix_cache"]
    for a, b in zip(plain["validation"], cached["validation"], strict=True):
        assert b["train_loss"] == pytest.approx(a["train_loss"], abs=1e-5)
        assert b["eval_loss"] == pytest.approx(a["eval_loss"], abs=1e-5)
    a = load_file(str(tmp_path / "plain" / "model.safetensors"))
    b = load_file(str(tmp_path / "cached" / "model.safetensors"))
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=1e-4, rtol=1e-4, msg=name)
