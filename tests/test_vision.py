"""Vision: ResNet block view and freezing, weights, IDX parsing, ImageFolder runs and bad files."""

from __future__ import annotations

import gzip
import logging
import socket

import numpy as np
import pytest
import torch
import torchvision
from safetensors.torch import save_file

from nlp_transfer.models.blocks import get_block_view
from nlp_transfer.transfer.freeze import freeze_encoder_layers, set_train_mode
from nlp_transfer.vision.config import ImageClassificationConfig
from nlp_transfer.vision.datasets import parse_idx
from nlp_transfer.vision.models import ImageModelConfig, ResNetClassifier

from conftest import write_image_folder

BLOCKS = ["stem", "layer1", "layer2", "layer3", "layer4"]


def _model(architecture: str = "resnet18", classes: int = 3, **kwargs) -> ResNetClassifier:
    torch.manual_seed(0)
    labels = [f"c{i}" for i in range(classes)]
    return ResNetClassifier(ImageModelConfig(architecture, labels, image_size=32, **kwargs))


def _numel(*modules) -> int:
    return sum(p.numel() for m in modules for p in m.parameters())


@pytest.mark.parametrize("architecture", ["resnet18", "resnet34", "resnet50"])
def test_block_view_of_each_resnet_depth(architecture):
    model = _model(architecture)
    view = get_block_view(model)
    assert [b.name for b in view.blocks] == BLOCKS
    assert view.head.modules == [model.fc] and view.new.modules == [model.fc]
    assert view.blocks[0].modules == [model.conv1, model.bn1]
    report = freeze_encoder_layers(model, 2)
    assert report.frozen_blocks == ["stem", "layer1", "layer2"]
    assert report.trainable_params == _numel(model.layer3, model.layer4, model.fc)
    assert report.total_params == _numel(model)
    logits = model(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 3)
    # a plain torchvision model has the same view (found by class)
    plain = getattr(torchvision.models, architecture)(weights=None)
    assert [b.name for b in get_block_view(plain).blocks] == BLOCKS


def test_forward_blocks_compose_to_the_torchvision_forward():
    model = _model(stem_maxpool=False).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        prefix = model.forward_blocks(x, 0, 3)
        assert prefix.shape == (2, 128, 8, 8)  # stem /2 (no max-pool), layer2 /2
        suffix = model.fc(model.features(prefix, start=3))
        torch.testing.assert_close(suffix, torchvision.models.ResNet.forward(model, x))


def test_frozen_batchnorm_statistics_do_not_change_in_a_training_step():
    from accelerate import Accelerator
    from torch.utils.data import DataLoader

    from nlp_transfer.data.samplers import EpochShuffleSampler
    from nlp_transfer.metrics.classification import classification_metrics
    from nlp_transfer.training.arguments import TrainingConfig
    from nlp_transfer.training.trainer import Trainer

    model = _model()
    freeze_encoder_layers(model, 2)
    frozen_bn = [model.bn1, model.layer1[0].bn1, model.layer2[1].bn2]
    trained_bn = [model.layer3[0].bn1, model.layer4[1].bn2]
    before = {
        id(m): (m.running_mean.clone(), m.running_var.clone()) for m in frozen_bn + trained_bn
    }
    frozen_weights = model.layer2[0].conv1.weight.detach().clone()
    data = [
        {"pixel_values": torch.randn(3, 32, 32), "labels": torch.tensor(i % 3)} for i in range(8)
    ]
    loader = DataLoader(data, batch_size=4, sampler=EpochShuffleSampler(8, seed=0))
    args = TrainingConfig(
        output_dir="unused", learning_rate=1e-3, num_train_epochs=1, save_strategy="no"
    )
    Trainer(
        model, args, accelerator=Accelerator(cpu=True), train_dataloader=loader,
        eval_dataloader=loader,
        compute_metrics=lambda y, z: classification_metrics(y, z, ["a", "b", "c"]),
    ).train()  # fmt: skip
    for m in frozen_bn:
        torch.testing.assert_close(m.running_mean, before[id(m)][0], atol=0, rtol=0)
        torch.testing.assert_close(m.running_var, before[id(m)][1], atol=0, rtol=0)
    for m in trained_bn:  # the check can fail: statistics of trained stages do move
        assert not torch.equal(m.running_mean, before[id(m)][0])
    torch.testing.assert_close(model.layer2[0].conv1.weight, frozen_weights, atol=0, rtol=0)
    set_train_mode(model)
    assert not model.layer2.training and not model.bn1.training and model.layer3.training


def test_layerwise_lr_and_l2sp_use_the_resnet_blocks():
    from nlp_transfer.transfer.l2sp import L2SPRegularizer
    from nlp_transfer.transfer.lr import layerwise_lr_param_groups

    model = _model()
    groups = layerwise_lr_param_groups(model, 1.0, layer_lr_decay=0.5, head_learning_rate=2.0)
    lrs = {g["name"].split("/")[0]: g["lr"] for g in groups}
    assert lrs == {"head": 2.0, "layer4": 0.5, "layer3": 0.25, "layer2": 0.125,
                   "layer1": 0.0625, "stem": 0.03125}  # fmt: skip
    l2sp = L2SPRegularizer(model, alpha=0.1, beta=0.01)
    assert {id(p) for p in l2sp.new_params} == {id(p) for p in model.fc.parameters()}
    expected = 0.005 * sum(float(p.detach().pow(2).sum()) for p in model.fc.parameters())
    assert float(l2sp().detach()) == pytest.approx(expected, rel=1e-5)


def _write_idx(path, array: np.ndarray, code: int, compress: bool) -> None:
    header = bytes([0, 0, code, array.ndim]) + np.array(array.shape, ">u4").tobytes()
    raw = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    path.write_bytes(gzip.compress(raw) if compress else raw)


@pytest.mark.parametrize("compress", [True, False])
def test_idx_parsing_of_files_the_test_writes(tmp_path, compress):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    labels = np.array([7, -1, 300000], dtype=np.int32)
    _write_idx(tmp_path / "images", images, 0x08, compress)
    _write_idx(tmp_path / "labels", labels, 0x0C, compress)
    np.testing.assert_array_equal(parse_idx((tmp_path / "images").read_bytes()), images)
    np.testing.assert_array_equal(parse_idx((tmp_path / "labels").read_bytes()), labels)
    raw = (tmp_path / "images").read_bytes()
    truncated = gzip.compress(gzip.decompress(raw)[:-3]) if compress else raw[:-3]
    with pytest.raises(ValueError, match="truncated or corrupt"):
        parse_idx(truncated)
    with pytest.raises(ValueError, match="two zero bytes"):
        parse_idx(b"\x01\x02\x08\x01" + bytes(8))


# --- weights ------------------------------------------------------------------------------


def _body_equal(model, state) -> bool:
    own = model.state_dict()
    return all(torch.equal(own[k], v) for k, v in state.items() if not k.startswith("fc."))


@pytest.mark.parametrize("kind", ["pt", "safetensors"])
def test_weights_from_a_local_state_dict(tmp_path, kind):
    from nlp_transfer.vision.weights import apply_initial_weights, load_initial_weights

    torch.manual_seed(1)
    source = torchvision.models.resnet18(weights=None)  # 1000 classes: its fc must not be used
    state = source.state_dict()
    path = tmp_path / f"weights.{kind}"
    if kind == "pt":
        torch.save({"state_dict": state}, path)
    else:
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    weights = load_initial_weights("resnet18", str(path))
    model = _model()
    fc_before = model.fc.weight.detach().clone()
    loaded = apply_initial_weights(model, weights)
    assert len(loaded) == len([k for k in state if not k.startswith("fc.")])
    assert _body_equal(model, state)
    assert torch.equal(model.fc.weight, fc_before) and model.fc.out_features == 3
    with pytest.raises(ValueError, match="does not fit a resnet34"):
        apply_initial_weights(_model("resnet34"), weights)


def test_weights_file_that_is_not_a_state_dict_is_refused(tmp_path):
    from nlp_transfer.vision.weights import load_initial_weights

    path = tmp_path / "module.pt"
    torch.save(torch.nn.Linear(2, 2), path)  # a pickled module: weights_only refuses it
    with pytest.raises(ValueError, match=r"weights_only=True"):
        load_initial_weights("resnet18", str(path))
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_initial_weights("resnet18", str(tmp_path / "missing.pt"))
    with pytest.raises(ValueError, match="IMAGENET1K_V1"):
        load_initial_weights("resnet18", "IMAGENET_TYPO")


def _no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the network was used")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)


def test_imagenet_weights_offline_without_cache_fail_at_once(tmp_path, monkeypatch):
    from nlp_transfer.vision import weights as w

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _no_network(monkeypatch)
    with pytest.raises(OSError, match="not in the torch hub cache") as err:
        w.load_initial_weights("resnet18", "IMAGENET1K_V1")
    message = str(err.value)
    assert "offline mode is set" in message and "resnet18-f37072fd.pth" in message
    assert "--weights none" in message
    monkeypatch.delenv("HF_HUB_OFFLINE")  # online, but the host does not answer
    monkeypatch.setattr(w, "endpoint_reachable", lambda url, timeout: False)
    with pytest.raises(OSError, match=r"download\.pytorch\.org cannot be reached"):
        w.load_initial_weights("resnet18", "IMAGENET1K_V1")


def test_imagenet_weights_from_the_torch_hub_cache_need_no_network(tmp_path, monkeypatch):
    from nlp_transfer.vision.weights import load_initial_weights

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    _no_network(monkeypatch)
    cached = tmp_path / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    cached.parent.mkdir(parents=True)
    state = torchvision.models.resnet18(weights=None).state_dict()
    torch.save(state, cached)
    weights = load_initial_weights("resnet18", "IMAGENET1K_V1")
    assert (weights.image_size, weights.resize_size) == (224, 256)
    assert weights.mean == [0.485, 0.456, 0.406]
    assert torch.equal(weights.state_dict["conv1.weight"], state["conv1.weight"])


# --- ImageFolder: bad files ---------------------------------------------------------------


def test_non_image_files_are_skipped_with_a_count_or_are_an_error(tmp_path, caplog):
    from nlp_transfer.vision.folder import load_image_folder

    root = write_image_folder(tmp_path / "data", per_class=3)
    (root / "stripes_h" / "notes.txt").write_text("not an image")
    (root / "stripes_v" / "labels.csv").write_text("a,b")
    with caplog.at_level(logging.WARNING):
        dataset, names = load_image_folder(root, image_size=16)
    assert len(dataset) == 6 and names == ["stripes_h", "stripes_v"]
    assert "Skipped 2 file(s)" in caplog.text and "notes.txt" in caplog.text
    assert "--bad_images error" in caplog.text
    with pytest.raises(ValueError, match=r"notes\.txt is not an image file.*--bad_images skip"):
        load_image_folder(root, image_size=16, bad_images="error")


def test_undecodable_images_are_skipped_with_a_count_or_are_an_error(tmp_path, caplog):
    from nlp_transfer.vision.folder import load_image_folder

    root = write_image_folder(tmp_path / "data", per_class=3)
    (root / "stripes_h" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (root / "stripes_v" / "empty.jpg").write_bytes(b"")
    with caplog.at_level(logging.WARNING):
        dataset, _ = load_image_folder(root, image_size=16)
    assert len(dataset) == 6 and not any("broken" in p for p in dataset.paths)
    assert "Skipped 2 image(s)" in caplog.text and "cannot be decoded" in caplog.text
    assert "broken.png" in caplog.text and "empty.jpg" in caplog.text
    with pytest.raises(ValueError, match=r"Cannot decode image .*broken\.png.*--bad_images skip"):
        load_image_folder(root, image_size=16, bad_images="error")


def test_image_config_errors_name_the_flag(tmp_path):
    with pytest.raises(ValueError, match="--freeze_layers must be between 0 and 4"):
        ImageClassificationConfig(freeze_layers=5)
    with pytest.raises(
        ValueError, match="--cache_frozen_prefix memory is exact only without --augment"
    ):
        ImageClassificationConfig(augment=True, freeze_layers=2, cache_frozen_prefix="memory")
    with pytest.raises(ValueError, match="either --dataset_name or --train_dir"):
        ImageClassificationConfig(dataset_name="cifar10", train_dir=str(tmp_path))
    with pytest.raises(ValueError, match="--architecture must be one of"):
        ImageClassificationConfig(architecture="vgg16")
    assert ImageClassificationConfig(train_dir=str(tmp_path)).dataset_name is None


def test_augmentation_turns_the_prefix_cache_off():
    from torchvision.models import resnet18

    from nlp_transfer.transfer.plan import plan_transfer

    def caches(**kwargs) -> bool:
        config = ImageClassificationConfig(**kwargs)
        return plan_transfer(resnet18(), config, cacheable=not config.augment).cache_prefix

    assert caches(freeze_layers=2)
    assert not caches(freeze_layers=0)
    assert not caches(freeze_layers=2, augment=True)
    assert not caches(freeze_layers=2, cache_frozen_prefix="no")


def test_logistic_regression_head_becomes_an_equivalent_linear_layer():
    from scipy.special import softmax
    from sklearn.linear_model import LogisticRegression

    from nlp_transfer.vision.features import linear_from_logistic_regression

    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 8)).astype(np.float32)
    for classes in (2, 3):
        y = np.arange(60) % classes
        estimator = LogisticRegression(max_iter=500).fit(x, y)
        layer = linear_from_logistic_regression(estimator, classes)
        with torch.no_grad():
            probs = softmax(layer(torch.from_numpy(x)).double().numpy(), axis=1)
        np.testing.assert_allclose(probs, estimator.predict_proba(x), atol=1e-5)


def test_cifar10_offline_without_a_copy_fails_at_once(tmp_path, monkeypatch):
    from nlp_transfer.vision.datasets import load_cifar10

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _no_network(monkeypatch)
    with pytest.raises(OSError, match=r"CIFAR-10 is not in .*cifar10 and offline mode is set"):
        load_cifar10(tmp_path)


@pytest.mark.parametrize("num_blocks", [1, 3, 5])
def test_cached_prefix_model_gives_the_logits_of_the_whole_model(num_blocks):
    from nlp_transfer.vision.prefix import CachedPrefixResNet

    model = _model(stem_maxpool=False).eval()
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        prefix = model.forward_blocks(x, 0, num_blocks)
        torch.testing.assert_close(CachedPrefixResNet(model, num_blocks)(prefix), model(x))


def test_preset_resize_keeps_its_ratio_at_another_image_size():
    from nlp_transfer.vision.run import _folder_sizes
    from nlp_transfer.vision.weights import InitialWeights

    preset = InitialWeights("IMAGENET1K_V1", {}, image_size=224, resize_size=256)
    assert _folder_sizes(ImageClassificationConfig(), preset) == (224, 256)
    assert _folder_sizes(ImageClassificationConfig(image_size=64), preset) == (64, 73)
    assert _folder_sizes(ImageClassificationConfig(image_size=64), InitialWeights()) == (64, None)
