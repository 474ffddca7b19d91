"""Image defaults of a first run (issue 20): folders keep their own size; the time estimate."""

from __future__ import annotations

import numpy as np
from PIL import Image

from nlp_transfer.training.eta import TrainingEstimate, format_duration
from nlp_transfer.vision.config import ImageClassificationConfig
from nlp_transfer.vision.data import load_image_data
from nlp_transfer.vision.folder import native_image_size

from conftest import write_image_folder


def test_a_folder_of_small_images_keeps_its_size(tmp_path):
    root = write_image_folder(tmp_path / "digits", per_class=6, size=28)
    assert native_image_size(root) == 28
    data = load_image_data(ImageClassificationConfig(train_dir=str(root)))
    assert data.native_size == 28  # not upscaled to 224
    assert data.splits["train"].images.shape[-2:] == (28, 28)


def test_a_folder_of_mixed_sizes_gets_the_median_shorter_side_at_most_224(tmp_path):
    root = tmp_path / "mixed"
    sizes = {"a": [(40, 30), (50, 40), (64, 48)], "b": [(300, 400), (32, 32)]}
    for name, shapes in sizes.items():
        (root / name).mkdir(parents=True)
        for i, (w, h) in enumerate(shapes):
            Image.fromarray(np.zeros((h, w, 3), np.uint8)).save(root / name / f"{i}.png")
    # shorter sides 30, 40, 48, 300, 32: median 40
    assert native_image_size(root) == 40
    assert native_image_size(root, max_size=35) == 35


def test_estimate_is_logged_once_after_the_timed_batches_with_the_step_count():
    lines = []
    estimate = TrainingEstimate(
        total_batches=855,
        batches_done=0,
        num_epochs=3,
        gradient_accumulation_steps=1,
        log=lines.append,
        early_stopping=True,
    )
    for _ in range(5):
        estimate.update()
    assert lines == []  # 1 warm-up batch + 5 timed ones needed
    for _ in range(10):
        estimate.update()
    assert len(lines) == 1
    assert lines[0].startswith("Training: at most 855 optimizer steps (3 epochs x 285 batches), ")
    assert "over batches 2-6" in lines[0]


def test_estimate_of_a_resumed_or_tiny_run():
    lines = []
    TrainingEstimate(2, 0, 1, 1, lines.append).update()
    assert lines == []  # too short to time: nothing logged
    estimate = TrainingEstimate(100, 50, 2, 2, lines.append)
    for _ in range(6):
        estimate.update()
    assert lines and lines[0].startswith("Training: 50 optimizer steps (2 epochs x 50 batches)")
    assert "over batches 52-56" in lines[0]


def test_format_duration():
    assert format_duration(0.4) == "under 1 s"
    assert format_duration(40) == "about 40 s"
    assert format_duration(4.3 * 855) == "about 61 min"
    assert format_duration(3 * 3600) == "about 3.0 h"
