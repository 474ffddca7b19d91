"""Long documents: what a text longer than ``max_seq_length`` tokens becomes.

Three strategies (``--long_text_strategy``):

- ``truncate``: the first ``max_seq_length`` tokens (what every peer does).
- ``head_tail``: the beginning and the end, the middle dropped: a quarter of the budget from the
  head, the rest from the tail, the split Sun et al. 2019 found best ("How to Fine-Tune BERT for
  Text Classification?", head 128 + tail 382 of 510 tokens).
- ``chunks``: overlapping windows of ``max_seq_length`` tokens, each consecutive pair sharing
  ``stride`` tokens (Hugging Face's ``return_overflowing_tokens`` and ``stride``, as in its
  question-answering examples); a sentence pair keeps its first text whole in every window and
  windows the second. A document gives at most ``max_chunks`` windows (evenly spaced over it
  when it has more, so its end is never lost). Training sees every window with its document's
  label(s); evaluation and prediction pool the windows' logits into one row per document
  (:func:`pool_windows`: mean by default, or max).

Shared by training (:func:`~nlp_transfer.text.tokenize.tokenize_dataset`) and every prediction
backend (:func:`~nlp_transfer.text.inference.sorted_batch_logits`), so a document is cut the same
way in both; the settings travel with the saved model (``config.json``, :meth:`LongTextSettings.save`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from transformers import PreTrainedTokenizerBase
from transformers.utils import logging as hf_logging

from ..training.pooling import CHUNK_POOLINGS, DOCUMENT_COLUMN, first_of_each, pool_windows

__all__ = [
    "CHUNK_POOLINGS",
    "DOCUMENT_COLUMN",
    "LONG_TEXT_STRATEGIES",
    "LongTextSettings",
    "encode_documents",
    "first_of_each",
    "pool_windows",
]

TRUNCATE, HEAD_TAIL, CHUNKS = "truncate", "head_tail", "chunks"
LONG_TEXT_STRATEGIES = (TRUNCATE, HEAD_TAIL, CHUNKS)
# Sun et al. 2019: head 128 + tail 382 tokens of a 510-token budget.
HEAD_SHARE = 128 / 510
# 4 windows of 128 tokens: the work of one 512-token text (the usual model maximum).
DEFAULT_MAX_CHUNKS = 4
INPUT_KEYS = ("input_ids", "token_type_ids", "attention_mask")


@dataclass(frozen=True)
class LongTextSettings:
    """How texts longer than ``max_seq_length`` tokens are read.

    Attributes:
        strategy: ``truncate``, ``head_tail`` or ``chunks``.
        stride: ``chunks``: tokens shared by consecutive windows (None: a quarter of
            ``max_seq_length``).
        max_chunks: ``chunks``: most windows per document.
        pooling: ``chunks``: how windows' logits become the document's: ``mean`` or ``max``.
    """

    strategy: str = TRUNCATE
    stride: int | None = None
    max_chunks: int = DEFAULT_MAX_CHUNKS
    pooling: str = "mean"

    def __post_init__(self) -> None:
        if self.strategy not in LONG_TEXT_STRATEGIES:
            raise ValueError(
                f"--long_text_strategy must be one of {', '.join(LONG_TEXT_STRATEGIES)}; "
                f"got {self.strategy!r}."
            )
        if self.pooling not in CHUNK_POOLINGS:
            raise ValueError(
                f"--chunk_pooling must be one of {', '.join(CHUNK_POOLINGS)}; got {self.pooling!r}."
            )
        if self.max_chunks < 1:
            raise ValueError(f"--max_chunks must be at least 1, got {self.max_chunks}.")
        if self.stride is not None and self.stride < 0:
            raise ValueError(f"--stride must be >= 0, got {self.stride}.")

    @property
    def windowed(self) -> bool:
        """Whether a document may become several rows (``chunks``)."""
        return self.strategy == CHUNKS

    def stride_for(self, max_seq_length: int) -> int:
        """The overlap in tokens at this ``max_seq_length``.

        Raises:
            ValueError: ``stride`` leaves windows no new tokens to advance by.
        """
        stride = max_seq_length // 4 if self.stride is None else self.stride
        if stride >= max_seq_length - 3:
            raise ValueError(
                f"--stride {stride} must be smaller than --max_seq_length {max_seq_length} minus "
                "the special tokens, or the windows would not advance; try "
                f"--stride {max_seq_length // 4}."
            )
        return stride

    def save(self, model_config) -> None:
        """Record the settings in a model's config (``config.json``) so prediction reads the same."""
        model_config.long_text = asdict(self)

    @classmethod
    def of(cls, model_config) -> LongTextSettings:
        """The settings saved with a model (``truncate`` for models saved before they existed)."""
        saved = getattr(model_config, "long_text", None)
        return cls(**saved) if isinstance(saved, dict) else cls()

    @classmethod
    def from_config(cls, config) -> LongTextSettings:
        """The settings of a run's config (``--long_text_strategy``, ``--stride``, ...)."""
        return cls(
            strategy=getattr(config, "long_text_strategy", None) or TRUNCATE,
            stride=getattr(config, "stride", None),
            max_chunks=getattr(config, "max_chunks", DEFAULT_MAX_CHUNKS),
            pooling=getattr(config, "chunk_pooling", "mean"),
        )

    def describe(self, max_seq_length: int) -> str:
        """One line for logs and the model card."""
        if self.strategy == TRUNCATE:
            return f"truncate at {max_seq_length} tokens"
        if self.strategy == HEAD_TAIL:
            return f"head and tail, {max_seq_length} tokens (Sun et al. 2019)"
        return (
            f"chunks of {max_seq_length} tokens sharing {self.stride_for(max_seq_length)}, at "
            f"most {self.max_chunks} per document, {self.pooling}-pooled logits"
        )


def windows_per_text(
    lengths: np.ndarray, max_seq_length: int, settings: LongTextSettings, num_special: int = 2
) -> float:
    """The mean number of rows a text of these token ``lengths`` (special tokens included)
    becomes: 1 unless ``chunks``, else its windows, at most ``max_chunks``."""
    lengths = np.asarray(lengths, dtype=np.int64)
    if not settings.windowed or not len(lengths):
        return 1.0
    step = max_seq_length - num_special - settings.stride_for(max_seq_length)
    content = np.maximum(lengths - num_special, 0)
    extra = np.ceil(np.maximum(content - (max_seq_length - num_special), 0) / step)
    return float(np.minimum(1 + extra, settings.max_chunks).mean())


def encode_documents(
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    text_pairs: Sequence[str] | None,
    max_seq_length: int,
    settings: LongTextSettings,
) -> tuple[dict[str, list[list[int]]], list[int], list[bool]]:
    """Token ids of documents read as ``settings`` says.

    Args:
        tokenizer: A fast Hugging Face tokenizer.
        texts: ``n`` documents.
        text_pairs: ``n`` second texts of sentence pairs (``chunks`` windows these), or None.
        max_seq_length: Tokens per row, special tokens included.
        settings: The strategy.

    Returns:
        ``(encoded, document, cut)``: ``encoded`` holds ``input_ids``, ``attention_mask`` (and
        ``token_type_ids`` where the tokenizer makes them), one list per row (``m >= n`` rows
        for ``chunks``, else ``n``); ``document[r]`` is the index of row ``r``'s document (rows
        of a document are consecutive, in reading order); ``cut[i]`` whether document ``i``
        lost tokens (truncation, the middle dropped, or windows beyond ``max_chunks``).

    Raises:
        ValueError: ``stride`` too large for ``max_seq_length``.
    """
    texts, pairs = list(texts), None if text_pairs is None else list(text_pairs)
    if settings.strategy == CHUNKS:
        return _chunks(tokenizer, texts, pairs, max_seq_length, settings)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # "sequence longer than the model's maximum": intended
    try:
        full = tokenizer(texts, pairs, return_special_tokens_mask=True)
    finally:
        hf_logging.set_verbosity(verbosity)
    encoded: dict[str, list[list[int]]] = {k: [] for k in INPUT_KEYS if k in full}
    cut = []
    for i, ids in enumerate(full["input_ids"]):
        keep = None
        if len(ids) > max_seq_length:
            keep = _kept_positions(full["special_tokens_mask"][i], max_seq_length, settings)
        if keep is None and len(ids) > max_seq_length:  # a pair whose second text is short
            row = tokenizer(texts[i], pairs[i], truncation=True, max_length=max_seq_length)
            for key in encoded:
                encoded[key].append(row[key])
        else:
            for key in encoded:
                row = full[key][i]
                encoded[key].append(row if keep is None else [row[p] for p in keep])
        cut.append(len(ids) > max_seq_length)
    return encoded, list(range(len(texts))), cut


def _kept_positions(
    special: list[int], max_seq_length: int, settings: LongTextSettings
) -> list[int] | None:
    """Positions kept from an encoding longer than ``max_seq_length``: every special token,
    and the last text (a pair's second) cut down to the budget: its first tokens (``truncate``),
    or its head and tail. None when the last text is too short to absorb the cut (a pair with a
    long first text: the caller truncates it longest first, as ``truncate`` does)."""
    n = len(special)
    excess = n - max_seq_length
    runs, start = [], None  # content runs (the texts) between special tokens
    for p, s in enumerate([*special, 1]):
        if not s and start is None:
            start = p
        elif s and start is not None:
            runs.append((start, p))
            start = None
    if not runs or runs[-1][1] - runs[-1][0] <= excess:
        return None
    begin, end = runs[-1]
    budget = end - begin - excess
    head = round(budget * HEAD_SHARE) if settings.strategy == HEAD_TAIL else budget
    dropped = range(begin + head, end - (budget - head))
    return [p for p in range(n) if p not in dropped]


def _chunks(tokenizer, texts, pairs, max_seq_length, settings):
    """``encode_documents`` for ``chunks``: Hugging Face's overflowing windows, capped."""
    stride = settings.stride_for(max_seq_length)
    single = []  # pairs whose first text leaves the second too little room: one window
    if pairs is not None:
        first_lengths = [
            len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]
        ]
        room = max_seq_length - tokenizer.num_special_tokens_to_add(pair=True)
        single = [i for i, n in enumerate(first_lengths) if room - n <= stride]
    windowed = [i for i in range(len(texts)) if i not in set(single)]
    encoded = tokenizer(
        [texts[i] for i in windowed],
        [pairs[i] for i in windowed] if pairs is not None else None,
        truncation="only_second" if pairs is not None else True,
        max_length=max_seq_length,
        stride=stride,
        return_overflowing_tokens=True,
    )
    keys = [k for k in INPUT_KEYS if k in encoded]
    rows: dict[int, list[dict]] = {}
    for row, j in enumerate(encoded["overflow_to_sample_mapping"]):
        rows.setdefault(windowed[j], []).append({k: encoded[k][row] for k in keys})
    if single:
        whole = tokenizer(
            [texts[i] for i in single],
            [pairs[i] for i in single],
            truncation=True,
            max_length=max_seq_length,
        )
        for j, i in enumerate(single):
            rows[i] = [{k: whole[k][j] for k in keys}]
    out: dict[str, list[list[int]]] = {k: [] for k in keys}
    document, cut = [], []
    for doc in range(len(texts)):
        windows = rows[doc]
        if len(windows) > settings.max_chunks:  # evenly spaced: the beginning and the end kept
            picks = np.linspace(0, len(windows) - 1, settings.max_chunks).round().astype(int)
            windows = [windows[p] for p in sorted(set(picks.tolist()))]
            cut.append(True)
        else:
            cut.append(doc in single and len(windows[0]["input_ids"]) == max_seq_length)
        for window in windows:
            for key in out:
                out[key].append(window[key])
            document.append(doc)
    return out, document, cut
