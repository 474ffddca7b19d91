"""What adapters and BitFit compose with: LR decay, gradual unfreezing, --init_from, images."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from nlp_transfer.text.config import TextClassificationConfig
from nlp_transfer.transfer.plan import plan_transfer
from nlp_transfer.vision.config import ImageClassificationConfig
from nlp_transfer.vision.models import ImageModelConfig, ResNetClassifier

from conftest import write_image_folder


def _text(tiny_bert_dir):
    from nlp_transfer.text.model import build_text_classifier

    torch.manual_seed(0)
    return build_text_classifier(str(tiny_bert_dir), label_names=["neg", "pos"])[0]


def _config(cls=TextClassificationConfig, **kw):
    config = cls(output_dir="unused", **kw)
    config.validate()
    return config


def test_lora_with_layer_lr_decay_gives_each_layer_its_rate(tiny_bert_dir):
    model = _text(tiny_bert_dir)
    plan = plan_transfer(model, _config(peft="lora", layer_lr_decay=0.5, learning_rate=1e-3))
    optimizer, _ = plan.optimizer(model)
    lr_of = {id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]}
    named = dict(model.named_parameters())
    top = named["bert.encoder.layer.1.attention.self.query.lora_A.default.weight"]
    low = named["bert.encoder.layer.0.attention.self.query.lora_A.default.weight"]
    head = named["classifier.modules_to_save.default.weight"]
    assert lr_of[id(top)] == pytest.approx(2 * lr_of[id(low)])
    assert lr_of[id(head)] == pytest.approx(1e-3)
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert set(lr_of) == trainable  # the optimizer holds exactly what trains


@pytest.mark.parametrize("flags", [{"peft": "lora"}, {"bitfit": True}])
def test_gradual_unfreezing_switches_only_what_the_method_trains(tiny_bert_dir, flags):
    model = _text(tiny_bert_dir)
    plan = plan_transfer(model, _config(gradual_unfreezing=True, **flags))
    before = {n for n, p in model.named_parameters() if p.requires_grad}
    unfreezer = plan.unfreezer(model)
    unfreezer.start()
    head_only = {n for n, p in model.named_parameters() if p.requires_grad}
    assert head_only < before and all(
        n.startswith(("classifier", "bert.pooler")) for n in head_only
    )
    unfreezer.update(epoch=99, global_step=0)  # every stage reached
    assert {n for n, p in model.named_parameters() if p.requires_grad} == before


def test_lora_on_a_model_from_init_from(tiny_bert_dir, tmp_path):
    from nlp_transfer.text.model import build_text_classifier

    _text(tiny_bert_dir).save_pretrained(tmp_path / "previous")
    model, _ = build_text_classifier(
        str(tmp_path / "previous"), label_names=["a", "b", "c"], new_head=True
    )
    plan = plan_transfer(model, _config(peft="lora", init_from=str(tmp_path / "previous")))
    assert plan.adapter.get_nb_trainable_parameters()[0] == plan.freeze.trainable_params
    assert model.classifier.modules_to_save["default"].out_features == 3


def test_lora_on_resnet_convolutions_above_frozen_stages():
    model = ResNetClassifier(ImageModelConfig("resnet18", ["a", "b"], image_size=32))
    plan = plan_transfer(model, _config(ImageClassificationConfig, peft="lora", freeze_layers=2))
    adapted = {n.rsplit(".lora_", 1)[0] for n, _ in model.named_parameters() if "lora_A" in n}
    assert adapted and all(n.startswith(("layer3.", "layer4.")) for n in adapted)
    assert {n.rsplit(".", 1)[-1] for n in adapted} == {"conv1", "conv2"}
    assert plan.freeze.trainable_params == plan.adapter.get_nb_trainable_parameters()[0]
    assert plan.freeze.frozen_blocks == ["stem", "layer1", "layer2"]


def test_image_run_with_lora_saves_merged_model_and_adapter(tmp_path):
    import image_classification

    data = write_image_folder(tmp_path / "data", per_class=8)
    out = tmp_path / "out"
    metrics = image_classification.main(
        [
            "--train_dir", str(data), "--output_dir", str(out), "--image_size", "32",
            "--num_train_epochs", "1", "--per_device_train_batch_size", "8",
            "--validation_size", "0.25", "--test_size", "0.25",
            "--peft", "lora", "--lora_r", "2", "--freeze_layers", "2",
        ]
    )  # fmt: skip
    assert metrics["transfer_strategy"]["peft"]["method"] == "lora"
    assert json.loads((out / "adapter" / "adapter_config.json").read_text())["r"] == 2
    assert not any("lora_" in k for k in load_file(str(out / "model.safetensors")))
