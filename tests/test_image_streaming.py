"""Images past the memory budget: streamed from disk, the prefix cache memory-mapped, same numbers."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

from nlp_transfer.data import memory
from nlp_transfer.transfer.cache import choose_storage
from nlp_transfer.vision.config import ImageClassificationConfig
from nlp_transfer.vision.data import load_image_data
from nlp_transfer.vision.datasets import ImageDataset
from nlp_transfer.vision.streaming import StreamedImageDataset, decoded_size_bytes

from conftest import write_image_folder

TINY_BUDGET = "1e-6"  # GB: 1,000 bytes, less than any folder here


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_image_folder(tmp_path_factory.mktemp("stream") / "data", per_class=8, size=16)


def _config(folder, **kwargs) -> ImageClassificationConfig:
    return ImageClassificationConfig(
        train_dir=str(folder), validation_size=0.25, test_size=0.25, **kwargs
    )


def test_the_decoded_size_estimate_is_the_size_of_the_decoded_images(folder):
    assert decoded_size_bytes(100_000, 224) == 15_052_800_000  # the 15 GB
    data = load_image_data(_config(folder), image_size=24)  # 16x16 files, resized
    assert not data.streamed
    # 16 files, RGB (grey images are decoded to 3 channels), 24x24: 16 * 3 * 24 * 24 bytes
    assert decoded_size_bytes(16, 24) == 27_648 == data.memory_bytes
    assert sum(d.images.nbytes for d in data.splits.values()) == 27_648


def test_the_budget_is_a_quarter_of_the_available_ram_unless_set(monkeypatch):
    monkeypatch.setattr(memory, "available_memory_bytes", lambda: 40 * 10**9)
    assert memory.memory_budget_bytes(None) == 10 * 10**9
    assert memory.memory_budget_bytes(2.5) == 2_500_000_000
    assert choose_storage("auto", 10**9, budget_bytes=10**9) == "memory"
    assert choose_storage("auto", 10**9 + 1, budget_bytes=10**9) == "disk"
    with pytest.raises(ValueError, match="--image_cache_memory_gb must be positive"):
        ImageClassificationConfig(image_cache_memory_gb=0)


def test_the_real_available_memory_is_a_plausible_number():
    assert 2**20 < memory.available_memory_bytes() < 2**50


def test_over_the_budget_the_splits_are_streamed_and_give_the_same_pixels(folder, caplog):
    in_memory = load_image_data(_config(folder))
    with caplog.at_level(logging.INFO, logger="nlp_transfer.vision.data"):
        streamed = load_image_data(_config(folder, image_cache_memory_gb=1e-6))
    assert streamed.streamed and not in_memory.streamed and streamed.memory_bytes == 0
    assert "Images streamed from disk: 16 images decoded at 3x16x16" in caplog.text
    assert "over the --image_cache_memory_gb budget of 1e-06 GB" in caplog.text
    for split, decoded in in_memory.splits.items():
        lazy = streamed.splits[split]
        assert isinstance(lazy, StreamedImageDataset) and isinstance(decoded, ImageDataset)
        assert lazy.paths == decoded.paths  # the same stratified split of the same files
        assert torch.equal(lazy.labels, decoded.labels)
        pixels = torch.stack([lazy[i]["pixel_values"] for i in range(len(lazy))])
        assert torch.equal(pixels, decoded.images)
    assert streamed.native_size == in_memory.native_size == 16


def test_streamed_images_decode_in_dataloader_workers(folder):
    from torch.utils.data import DataLoader

    from nlp_transfer.vision.transforms import channel_stats, stack_pixels

    data = load_image_data(_config(folder, image_cache_memory_gb=1e-6, dataloader_num_workers=1))
    train = data.splits["train"]
    loader = DataLoader(train, batch_size=4, num_workers=1, collate_fn=stack_pixels)
    batches = torch.cat(list(loader))
    assert batches.shape == (len(train), 3, 16, 16) and batches.dtype == torch.uint8
    decoded = load_image_data(_config(folder)).splits["train"].images
    assert torch.equal(batches, decoded)
    assert channel_stats(train, num_workers=1) == channel_stats(decoded)


def test_a_bad_file_is_found_before_training_when_streamed(tmp_path, caplog):
    root = write_image_folder(tmp_path / "data", per_class=4, size=16)
    (root / "stripes_h" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    config = _config(root, image_cache_memory_gb=1e-6)
    with caplog.at_level(logging.WARNING):
        data = load_image_data(config)
    assert "Skipped 1 image(s)" in caplog.text and "broken.png" in caplog.text
    assert sum(len(d) for d in data.splits.values()) == 8
    config.bad_images = "error"
    with pytest.raises(ValueError, match=r"Cannot decode image .*broken\.png.*--bad_images skip"):
        load_image_data(config)


def test_the_prefix_cache_on_disk_holds_the_values_of_the_one_in_memory(folder, tmp_path):
    from accelerate import Accelerator

    from nlp_transfer.transfer.cache import remove_disk_cache
    from nlp_transfer.transfer.freeze import freeze_lower_blocks
    from nlp_transfer.vision.models import ImageModelConfig, ResNetClassifier
    from nlp_transfer.vision.prefix import MemmapDataset, TensorDictDataset, cache_prefix_splits
    from nlp_transfer.vision.transforms import ImageCollator

    torch.manual_seed(0)
    data = load_image_data(_config(folder))
    model = ResNetClassifier(
        ImageModelConfig("resnet18", ["a", "b"], 16, [0.5] * 3, [0.25] * 3, stem_maxpool=False)
    )
    freeze_lower_blocks(model, 3)
    config = _config(folder, freeze_layers=2, cache_dir=str(tmp_path))
    collator = ImageCollator(16, [0.5] * 3, [0.25] * 3)
    accelerator = Accelerator(cpu=True)
    caches = {}
    for budget in (10**9, 0):
        caches[budget] = cache_prefix_splits(
            model, data.splits, collator, accelerator, config, budget_bytes=budget
        )
    (in_memory, no_dir), (on_disk, directory) = caches[10**9], caches[0]
    assert no_dir is None and directory.parent == tmp_path / "prefix_cache"
    for split in ("train", "validation", "test"):
        assert isinstance(in_memory[split], TensorDictDataset)
        assert isinstance(on_disk[split], MemmapDataset)
        assert isinstance(on_disk[split].values, np.memmap)
        assert len(on_disk[split]) == len(data.splits[split])
        for i in range(len(on_disk[split])):
            a, b = in_memory[split][i], on_disk[split][i]
            assert a["prefix_features"].dtype == b["prefix_features"].dtype == torch.float16
            assert a["prefix_features"].shape == (128, 4, 4)  # layer2 of a 16x16 input
            assert torch.equal(a["prefix_features"], b["prefix_features"])
            assert torch.equal(a["labels"], b["labels"])
    remove_disk_cache(directory)
    assert not directory.exists()


def _flags(folder, output_dir, *extra) -> list[str]:
    return [
        "--train_dir", str(folder), "--output_dir", str(output_dir), "--cache_dir",
        str(output_dir.parent / "cache"), "--image_size", "16", "--num_train_epochs", "1",
        "--per_device_train_batch_size", "4", "--validation_size", "0.25", "--test_size", "0.25",
        "--save_strategy", "no", "--report_to", "none", *extra,
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "extra"),
    [
        ("fine-tuned", ["--dataloader_num_workers", "1"]),  # streamed through a worker process
        ("frozen prefix cached", ["--freeze_layers", "2"]),  # streamed, the cache on disk
        ("feature extraction", ["--feature_extraction", "logistic_regression"]),
    ],
)
def test_a_streamed_run_gives_the_numbers_of_the_in_memory_run(
    folder, tmp_path, capsys, name, extra
):
    import image_classification

    runs = {}
    for arm, budget in (("memory", []), ("streamed", ["--image_cache_memory_gb", TINY_BUDGET])):
        runs[arm] = image_classification.main(_flags(folder, tmp_path / arm, *extra, *budget))
    logs = capsys.readouterr().err
    assert logs.count("Images streamed from disk: 16 images") == 1
    if "--freeze_layers" in extra:
        assert logs.count("Frozen-prefix cache: stem, layer1, layer2") == 2
        assert "float16, in memory)" in logs and "float16, memory-mapped in " in logs
        assert not list((tmp_path / "cache" / "prefix_cache").iterdir())  # removed after the run
    budgets = {
        arm: yaml.safe_load((tmp_path / arm / "config.yaml").read_text())["image_cache_memory_gb"]
        for arm in runs
    }
    assert budgets["streamed"] == 1e-6 and budgets["memory"] > 1e-3  # resolved: RAM / 4
    memory_run, streamed_run = runs["memory"], runs["streamed"]
    assert memory_run["data"] == streamed_run["data"]
    for key in ("loss", "accuracy", "f1_macro"):
        assert streamed_run["test"][key] == pytest.approx(memory_run["test"][key], abs=1e-6)
    for a, b in zip(memory_run["validation"], streamed_run["validation"], strict=True):
        assert b["train_loss"] == pytest.approx(a["train_loss"], abs=1e-6)
        assert b["eval_loss"] == pytest.approx(a["eval_loss"], abs=1e-6)
    weights = {arm: load_file(str(tmp_path / arm / "model.safetensors")) for arm in runs}
    for key, value in weights["memory"].items():
        torch.testing.assert_close(weights["streamed"][key], value, msg=key)
