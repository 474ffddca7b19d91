"""Shared fixtures: a tiny BERT saved to disk, a toy learnable sentiment task, offline mode."""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path

import pandas as pd
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "recipes"))


def pytest_configure(config) -> None:
    """Under pytest-xdist, each worker gets its share of the cores for in-process torch work:
    two workers with torch's default of one thread per core would run twice the threads the
    machine has, and OpenMP threads that wait by spinning make that far worse than 2x."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        import torch

        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
        torch.set_num_threads(max(1, cores // workers))


POSITIVE = ["good", "great", "fine", "happy", "lovely", "superb"]
NEGATIVE = ["bad", "awful", "sad", "poor", "dull", "boring"]
FILLER = ["the", "movie", "was", "a", "plot", "and", "film", "really", "story", "very"]


def toy_sentiment_frame(n: int = 200, seed: int = 0) -> pd.DataFrame:
    """Sentences whose label is given by one sentiment word among filler: learnable, not trivial."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = "pos" if i % 2 == 0 else "neg"
        words = [*rng.sample(FILLER, 4), rng.choice(POSITIVE if label == "pos" else NEGATIVE)]
        rng.shuffle(words)
        rows.append({"sentence": " ".join(words), "sentiment": label})
    return pd.DataFrame(rows)


def train_toy_sentiment(model_dir, root: Path, name: str = "model", **settings) -> Path:
    """``root/name``: a tiny sentiment model trained for real on 200 toy rows (2 epochs; the
    defaults' calibration and conformal scores), ``settings`` overriding the config."""
    from nlp_transfer import TextClassificationConfig, run_text_classification

    path = root / "toy.csv"
    toy_sentiment_frame(200, seed=0).to_csv(path, index=False)
    out = root / name
    config = dict(
        model_name_or_path=str(model_dir),
        train_file=str(path),
        text_column="sentence",
        label_column="sentiment",
        num_train_epochs=2,
        learning_rate=1e-3,
        max_seq_length=32,
        save_strategy="no",
        run_baseline=False,
        output_dir=str(out),
        seed=0,
    )
    run_text_classification(TextClassificationConfig(**(config | settings)))
    return out


def _tiny_vocab() -> list[str]:
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    return [*specials, *POSITIVE, *NEGATIVE, *FILLER, *"abcdefghijklmnopqrstuvwxyz"]


def tiny_config(model_type: str = "bert", num_labels: int = 2):
    """A 2-layer, hidden-32 config of each supported family (vocab 100, 64 positions)."""
    import transformers as T

    common = {"vocab_size": 100, "num_labels": num_labels}
    if model_type == "bert":
        return T.BertConfig(
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=37,
            max_position_embeddings=64,
            type_vocab_size=2,
            **common,
        )
    if model_type == "roberta":
        return T.RobertaConfig(
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=37,
            max_position_embeddings=64,
            type_vocab_size=1,
            pad_token_id=1,
            **common,
        )
    if model_type == "distilbert":
        return T.DistilBertConfig(
            dim=32, n_layers=2, n_heads=2, hidden_dim=37, max_position_embeddings=64, **common
        )
    if model_type == "electra":
        return T.ElectraConfig(
            embedding_size=16,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=37,
            max_position_embeddings=64,
            type_vocab_size=2,
            **common,
        )
    raise ValueError(model_type)


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory) -> Path:
    """A randomly initialised 2-layer BERT (hidden 32) and a word-level tokenizer, saved to disk."""
    import torch
    from transformers import AutoModel, BertTokenizer

    path = tmp_path_factory.mktemp("tiny_bert")
    vocab = {word: i for i, word in enumerate(_tiny_vocab())}
    tokenizer = BertTokenizer(vocab=vocab, model_max_length=64)
    torch.manual_seed(0)
    AutoModel.from_config(tiny_config("bert")).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture()
def toy_csv(tmp_path) -> Path:
    path = tmp_path / "toy.csv"
    toy_sentiment_frame().to_csv(path, index=False)
    return path


def write_image_folder(root: Path, per_class: int = 8, size: int = 16, seed: int = 0) -> Path:
    """An ImageFolder of two learnable classes: horizontal vs vertical stripes, with noise (PNG)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    stripes = (np.arange(size) // 2 % 2 * 200).astype(np.float64)
    for name, pattern in (("stripes_h", stripes[:, None]), ("stripes_v", stripes[None, :])):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = np.broadcast_to(pattern, (size, size)) + rng.normal(0, 30, (size, size))
            image = np.clip(pixels, 0, 255).astype(np.uint8)
            rgb = np.stack([image, image[::-1], image], axis=-1) if i % 2 else image
            Image.fromarray(rgb).save(root / name / f"{i}.png")
    return root
