"""Sentence features for the audit: an encoder's pooled states of every text, computed once and
kept on disk.

The audit needs one vector per text three times (the cross-validated classifier, near
duplicates, outliers); a second audit of the same texts with the same encoder reads them back
from ``<cache_dir>/features/<key>.npy`` (listed and cleared by ``nlp-transfer cache``). The
default encoder is the packaged all-MiniLM-L6-v2, a sentence-transformers model trained so
that the cosine of its mean-pooled states measures how alike two sentences are (Reimers &
Gurevych 2019), which is what near-duplicate detection asks of it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..console import stderr_is_terminal
from ..data.fetch import default_cache_dir
from ..text.inference import sorted_batch_logits
from ..text.model import resolve_model_path
from ..transfer.features import pool

logger = logging.getLogger(__name__)

FEATURES_DIR = "features"
_FORMAT = 1  # bump when what a cached file holds changes


def _model_fingerprint(path: str) -> dict:
    """What identifies the weights at ``path``: its files' names, sizes and modification times
    (a local directory), or the name (a hub id, resolved offline from the local cache)."""
    folder = Path(path)
    if not folder.is_dir():
        return {"name": path}
    files = sorted(p for p in folder.iterdir() if p.is_file())
    return {"files": [(p.name, p.stat().st_size, int(p.stat().st_mtime)) for p in files]}


def features_key(texts: Sequence[str], model_path: str, max_seq_length: int, pooling: str) -> str:
    """The cache key of one call of :func:`embed_texts`: a SHA-256 over the texts (in order), the
    model's files, ``max_seq_length``, ``pooling``, the format and the torch and transformers
    versions."""
    import transformers

    digest = hashlib.sha256()
    header = {
        "model": _model_fingerprint(model_path),
        "max_seq_length": max_seq_length,
        "pooling": pooling,
        "format": _FORMAT,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }
    digest.update(json.dumps(header, sort_keys=True).encode())
    for text in texts:
        digest.update(text.encode("utf-8", "surrogatepass"))
        digest.update(b"\x00")
    return digest.hexdigest()[:32]


@torch.no_grad()
def embed_texts(
    texts: Sequence[str],
    model_name_or_path: str | None = None,
    *,
    max_seq_length: int = 128,
    pooling: str = "mean",
    batch_size: int = 64,
    cache_dir: str | os.PathLike | None = None,
    use_cache: bool = True,
    device: str | None = None,
) -> np.ndarray:
    """Pooled encoder features of ``texts``, L2-normalised, in input order.

    Texts are tokenized once, batched by length (:func:`~nlp_transfer.text.inference.
    sorted_batch_logits`) and cut at ``max_seq_length`` tokens; the states are pooled with
    :func:`~nlp_transfer.transfer.features.pool` and scaled to unit length, so that a dot
    product is a cosine similarity.

    Args:
        texts: ``n`` strings.
        model_name_or_path: Any encoder ``AutoModel`` loads (a hub id in the local cache, a
            saved model or a run's ``output_dir``); None: the packaged all-MiniLM-L6-v2.
        max_seq_length: Tokens read per text.
        pooling: ``"mean"`` or ``"cls"``.
        batch_size: Texts per forward pass.
        cache_dir: Where ``features/`` is kept (default: ``$NLP_TRANSFER_CACHE`` or
            ``~/.cache/nlp_transfer``).
        use_cache: Read and write the disk cache.
        device: Torch device (default: CUDA when available, else CPU).

    Returns:
        ``(n, hidden)`` float32.

    Raises:
        FileNotFoundError: ``model_name_or_path`` is a path that does not exist.
        ValueError: A text is not a string, or ``pooling`` is unknown.
    """
    from transformers import AutoModel, AutoTokenizer

    texts = list(texts)
    path, local_only = resolve_model_path(model_name_or_path)
    cache_file = None
    if use_cache:
        key = features_key(texts, path, max_seq_length, pooling)
        cache_file = default_cache_dir(cache_dir) / FEATURES_DIR / f"{key}.npy"
        if cache_file.exists():
            logger.info(f"Features of {len(texts):,} texts read from {cache_file}")
            return np.load(cache_file)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=local_only)
    encoder = AutoModel.from_pretrained(path, local_files_only=local_only).to(device).eval()
    bar = tqdm(total=len(texts), desc="Features", leave=False, disable=not stderr_is_terminal())

    def run_batch(batch) -> np.ndarray:
        batch = {k: v.to(device) for k, v in batch.items()}
        hidden = encoder(**batch).last_hidden_state
        bar.update(len(hidden))
        return pool(hidden, batch["attention_mask"], pooling).float().cpu().numpy()

    hidden_size = encoder.config.hidden_size
    with bar:
        features = sorted_batch_logits(
            tokenizer, texts, run_batch, hidden_size, batch_size, max_seq_length
        )
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    features = (features / np.maximum(norms, 1e-12)).astype(np.float32)
    if cache_file is not None:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        partial = cache_file.with_suffix(f".{os.getpid()}.tmp.npy")
        np.save(partial, features)
        os.replace(partial, cache_file)  # never a half-written file under the final name
    return features
