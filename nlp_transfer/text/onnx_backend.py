"""The onnxruntime backend of :class:`~nlp_transfer.text.classifier.TextClassifier`: its model.

``TextClassifier.from_pretrained(model_dir, backend="onnxruntime")`` (``nlp-transfer predict
--backend onnxruntime``) runs ``model_dir/model.onnx``: the model exported by
:func:`~nlp_transfer.text.export.export_text_onnx` (and checked against PyTorch), exported here
on first use, or again when the weights are newer than the file. ``quantize="int8"`` runs
``model_dir/model.int8.onnx``, made once from it by onnxruntime's dynamic quantization
(``onnxruntime.quantization.quantize_dynamic``: int8 weights, activations quantized on the fly;
the usual choice for transformer encoders on CPUs). Weights are quantized per output channel,
every supported op included (:data:`INT8_SETTINGS`), chosen on the **validation** texts of the
main job (``benchmarks/results/int8_settings.md``): it kept 98.31% of PyTorch's labels, as
many as per-channel scales on the ``MatMul`` weights alone (the choice before, made on test
texts) and 2.3 points more than onnxruntime's per-tensor defaults (96.03%), with the highest
validation accuracy of the four (0.8700; torch 0.8730) and a 22.6 MiB file instead of 56.7 MiB.
Tokenization, length-sorted batching and the decoding of logits into labels and scores
(threshold, problem type, truncation length from the saved ``config.json``) are the torch
backend's, so the outputs have the same form.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ..optional import require_onnx

logger = logging.getLogger(__name__)

BACKENDS = ("torch", "onnxruntime")
QUANTIZATIONS = ("int8",)
ONNX_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
# quantize_dynamic's arguments: per-channel int8 weights, all supported ops (None); a file
# quantized otherwise (the sidecar INT8_FILE + ".json" records them) is made again.
INT8_SETTINGS = {"weight_type": "QInt8", "per_channel": True, "op_types_to_quantize": None}
# The files whose change makes an existing export stale (weights, labels, heads).
WEIGHT_SUFFIXES = (".safetensors", ".bin")


class OnnxModel:
    """An exported text classifier in an onnxruntime session (CPU): what
    :class:`~nlp_transfer.text.classifier.TextClassifier` runs for ``backend="onnxruntime"``.

    Attributes:
        session: The ``onnxruntime.InferenceSession``.
        onnx_path: The ``.onnx`` file it runs.
        input_names: The graph's inputs (``input_ids``, ``attention_mask`` and, for BERT-like
            models, ``token_type_ids``).
    """

    backend = "onnxruntime"

    def __init__(self, session, onnx_path: Path):
        self.session = session
        self.onnx_path = Path(onnx_path)
        self.input_names = [i.name for i in session.get_inputs()]

    def run_batch(self, batch) -> np.ndarray:
        """Logits ``(batch, num_labels)`` of one padded batch of numpy arrays ``(batch, seq_len)``.

        Raises:
            ValueError: The graph takes an input the tokenizer does not make.
        """
        feeds = {}
        for name in self.input_names:
            if name in batch:
                feeds[name] = np.asarray(batch[name], dtype=np.int64)
            elif name == "token_type_ids":  # single texts: segment 0, as the torch model defaults
                feeds[name] = np.zeros_like(np.asarray(batch["input_ids"], dtype=np.int64))
            else:
                raise ValueError(f"{self.onnx_path} takes an input {name!r} the tokenizer lacks.")
        (logits,) = self.session.run(["logits"], feeds)
        return logits


def load_onnx_model(
    model_dir: str | os.PathLike,
    backend: str = "onnxruntime",
    quantize: str | None = None,
    device: str | None = None,
    num_threads: int | None = None,
):
    """Load a saved text classifier into onnxruntime, exporting (and quantizing) it once.

    Args:
        model_dir: A run's ``output_dir``.
        backend: ``"onnxruntime"`` (the argument is checked, for the flag's sake).
        quantize: None (fp32) or ``"int8"``.
        device: None or ``"cpu"``: this backend runs on onnxruntime's CPU provider.
        num_threads: The session's intra-op threads, which then wait without spinning (for a
            process that shares the cores with other work, such as a server's HTTP loop);
            None: onnxruntime's default (one per core, spinning between operators).

    Returns:
        ``(model, config, tokenizer)``: the :class:`OnnxModel`, the saved ``config.json`` (labels,
        thresholds, truncation length) and the tokenizer.

    Raises:
        ValueError: An unknown ``--backend``/``--quantize``, int8 without onnxruntime, another
            device, or a model ONNX export does not cover (see
            :func:`~nlp_transfer.text.export.export_text_onnx`).
        FileNotFoundError: No saved model in ``model_dir``.
        ImportError: onnx/onnxruntime/onnxscript are not installed.
    """
    check_backend(backend, quantize)
    if device not in (None, "cpu"):
        raise ValueError(f"--backend onnxruntime runs on the CPU here, not on {device!r}.")
    require_onnx("onnxruntime")
    import onnxruntime as ort
    from transformers import AutoConfig, AutoTokenizer

    path = Path(model_dir).expanduser()
    if not (path / "config.json").exists():
        raise FileNotFoundError(f"--model_dir {path}: no saved model there (config.json missing).")
    onnx_path = ensure_onnx(path, quantize)
    config = AutoConfig.from_pretrained(path, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    options = ort.SessionOptions()
    if num_threads is not None:
        if num_threads < 1:
            raise ValueError(f"--num_threads must be at least 1, got {num_threads}.")
        options.intra_op_num_threads = num_threads
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    return OnnxModel(session, onnx_path), config, tokenizer


def check_backend(backend: str, quantize: str | None) -> None:
    """Raise unless ``--backend``/``--quantize`` are a combination this module runs.

    Raises:
        ValueError: The message names the flag to change.
    """
    if backend not in BACKENDS:
        raise ValueError(f"--backend {backend!r}: choose one of {', '.join(BACKENDS)}.")
    if quantize is not None and quantize not in QUANTIZATIONS:
        raise ValueError(f"--quantize {quantize!r}: choose one of {', '.join(QUANTIZATIONS)}.")
    if quantize is not None and backend != "onnxruntime":
        raise ValueError(f"--quantize {quantize} runs on --backend onnxruntime, not {backend}.")


def ensure_onnx(model_dir: Path, quantize: str | None = None) -> Path:
    """``model_dir/model.onnx`` (or ``model.int8.onnx``), made when missing or stale.

    An export is stale when a weights file or ``config.json`` is newer than it; an int8 file
    when ``model.onnx`` is newer. Files are written beside the model under a temporary name and
    renamed into place, so a run that stops half-way leaves no broken ``.onnx`` behind.

    Raises:
        ValueError: The model cannot be exported as one graph, or the export's check failed.
    """
    fp32 = model_dir / ONNX_FILE
    if _stale(fp32, _weights_mtime(model_dir)):
        from .export import export_text_onnx

        logger.info(
            f"{'Re-exporting' if fp32.exists() else 'Exporting'} {model_dir} to ONNX "
            f"({fp32.name}, checked against PyTorch); later runs reuse it."
        )
        with _replacing(fp32) as tmp:
            export_text_onnx(model_dir, tmp)
    if quantize is None:
        return fp32
    int8 = model_dir / INT8_FILE
    settings = int8.with_name(int8.name + ".json")
    if _stale(int8, fp32.stat().st_mtime) or _read_json(settings) != INT8_SETTINGS:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        logger.info(
            f"Quantizing {fp32.name} to int8 weights ({int8.name}: per channel); "
            "later runs reuse it."
        )
        with _replacing(int8) as tmp:
            quantize_dynamic(
                fp32,
                tmp,
                weight_type=getattr(QuantType, INT8_SETTINGS["weight_type"]),
                per_channel=INT8_SETTINGS["per_channel"],
                op_types_to_quantize=INT8_SETTINGS["op_types_to_quantize"],
            )
        settings.write_text(json.dumps(INT8_SETTINGS), encoding="utf-8")
    return int8


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _weights_mtime(model_dir: Path) -> float:
    files = [model_dir / "config.json"]
    files += [f for f in model_dir.iterdir() if f.suffix in WEIGHT_SUFFIXES]
    return max(f.stat().st_mtime for f in files if f.exists())


def _stale(path: Path, source_mtime: float) -> bool:
    return not path.exists() or path.stat().st_mtime < source_mtime


@contextmanager
def _replacing(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` when the block succeeds."""
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
