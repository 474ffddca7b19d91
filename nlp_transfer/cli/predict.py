"""``nlp-transfer predict`` and ``nlp-transfer evaluate``: their flags and what they run.

The work is the task packages': :class:`~nlp_transfer.text.classifier.TextClassifier` (torch or
onnxruntime), :func:`~nlp_transfer.text.batch.predict_file` (a file streamed in chunks, written
as it goes, resumable), :func:`~nlp_transfer.text.predict.evaluate_saved_model` and the vision
package's equivalents. Nothing heavy is imported until a command runs.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..tasks import task_of_model_dir

BACKEND_HELP = (
    "torch, or onnxruntime: run <model_dir>/model.onnx (exported on first use, checked against "
    "PyTorch) on the CPU; text models."
)
QUANTIZE_HELP = (
    "int8: with --backend onnxruntime, dynamic int8 quantization of the weights "
    "(<model_dir>/model.int8.onnx, made once); faster on CPUs, predictions may differ slightly."
)


def add_predict_parser(sub) -> None:
    """``nlp-transfer predict``: its flags."""
    p = sub.add_parser(
        "predict", help="Classify texts or images with a saved model (prints JSON lines)."
    )
    p.add_argument("--model_dir", required=True, help="A run's output_dir.")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--text", action="append", help="A text to classify (repeatable).")
    source.add_argument(
        "--file",
        help=".txt (one text, or for an image model one image path, per line) or "
        ".csv/.tsv/.jsonl/.parquet; read and predicted in chunks, written as it goes.",
    )
    source.add_argument("--image", action="append", help="An image file (repeatable).")
    source.add_argument("--image_dir", help="Every image file under this folder (image models).")
    p.add_argument("--text_column", default="text", help="Text column of --file (tables only).")
    p.add_argument(
        "--text_pair_column", help="Sentence-pair models: the second text's column of --file."
    )
    p.add_argument(
        "--text_pair", action="append", help="Sentence-pair models: the second text of each --text."
    )
    p.add_argument("--batch_size", type=int, default=64, help="Texts or images per forward pass.")
    p.add_argument(
        "--output",
        help="Write JSON lines here instead of standard output. With --file, an output left by "
        "an interrupted run of the same input is resumed: its rows are skipped, the rest appended.",
    )
    p.add_argument(
        "--overwrite_output",
        action="store_true",
        help="Replace an existing --output instead of resuming it (or refusing a complete one).",
    )
    p.add_argument(
        "--chunk_size",
        type=int,
        default=1024,
        help="--file: rows read, predicted (in length-sorted batches) and written at a time.",
    )
    p.add_argument(
        "--backend", default="torch", choices=["torch", "onnxruntime"], help=BACKEND_HELP
    )
    p.add_argument("--quantize", choices=["int8"], help=QUANTIZE_HELP)
    p.add_argument(
        "--coverage",
        type=float,
        default=None,
        help="E.g. 0.9: add a conformal prediction_set (label names; regression: interval) "
        "that holds the true label with at least this probability (text models).",
    )


def add_evaluate_parser(sub) -> None:
    """``nlp-transfer evaluate``: its flags."""
    e = sub.add_parser(
        "evaluate", help="Evaluate a saved model on a labelled file or image folder."
    )
    e.add_argument("--model_dir", required=True, help="A run's output_dir.")
    labelled = e.add_mutually_exclusive_group(required=True)
    labelled.add_argument("--file", help="Labelled .csv/.tsv/.jsonl/.parquet file (text models).")
    labelled.add_argument(
        "--image_dir", help="Labelled ImageFolder, <dir>/<class>/*.png (image models)."
    )
    e.add_argument("--text_column", default="text", help="Column holding the text.")
    e.add_argument("--label_column", default="label", help="Column holding the label.")
    e.add_argument("--batch_size", type=int, default=64, help="Texts per forward pass.")
    e.add_argument("--output_dir", help="Write metrics.json and plots/ here.")
    e.add_argument(
        "--backend",
        default="torch",
        choices=["torch", "onnxruntime"],
        help=BACKEND_HELP + " Other than torch, the accuracy and main metric are compared with "
        "PyTorch's on the same file.",
    )
    e.add_argument("--quantize", choices=["int8"], help=QUANTIZE_HELP)


@contextmanager
def log_to_stderr() -> Iterator[None]:
    """While a command runs, show this library's INFO lines (export, resume, progress) on
    standard error as plain messages; other libraries' loggers keep their level."""
    logger = logging.getLogger(__package__.partition(".")[0])  # nlp_transfer, not just its cli
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _torch_only(args: argparse.Namespace) -> None:
    if args.backend != "torch" or args.quantize:
        raise SystemExit(
            f"error: {args.model_dir} is an image model: --backend onnxruntime and --quantize "
            "cover text models (nlp-transfer export writes an image model's ONNX file)."
        )


def _image_paths(args: argparse.Namespace) -> list[str]:
    """``--image``, every image under ``--image_dir``, or one path per line of a ``--file``."""
    from torchvision.datasets.folder import IMG_EXTENSIONS

    if args.image:
        return args.image
    if args.image_dir:
        root = Path(args.image_dir)
        if not root.is_dir():
            raise SystemExit(f"error: --image_dir {root}: no such directory.")
        return [str(p) for p in sorted(root.rglob("*")) if p.suffix.lower() in IMG_EXTENSIONS]
    if args.file and Path(args.file).suffix.lower() == ".txt":
        lines = Path(args.file).read_text(encoding="utf-8").splitlines()
        return [line.strip() for line in lines if line.strip()]
    raise SystemExit("error: an image model takes --image, --image_dir or a .txt --file of paths.")


def _check_output(args: argparse.Namespace) -> None:
    """Refuse to replace a non-empty ``--output`` unless ``--overwrite_output`` (not resumable)."""
    path = Path(args.output) if args.output else None
    if path is not None and path.exists() and path.stat().st_size and not args.overwrite_output:
        raise FileExistsError(
            f"--output {path} exists; pass --overwrite_output to replace it, or choose another "
            "--output."
        )


def _write_lines(lines: list[str], args: argparse.Namespace) -> None:
    """``lines`` (each ending in a newline) to ``--output`` or standard output."""
    if not args.output:
        sys.stdout.writelines(lines)
        return
    _check_output(args)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text("".join(lines), encoding="utf-8")


def predict_main(args: argparse.Namespace) -> int:
    """``nlp-transfer predict``: JSON lines for ``--text``, ``--file`` or images."""
    if args.batch_size <= 0 or args.chunk_size <= 0:
        raise SystemExit("error: --batch_size and --chunk_size must be positive.")
    if task_of_model_dir(args.model_dir).modality == "image":
        from ..vision.predict import predict_images

        _torch_only(args)
        _check_output(args)
        if args.coverage is not None:
            raise SystemExit("error: --coverage is for text models (image models: not yet).")
        results = predict_images(args.model_dir, _image_paths(args), batch_size=args.batch_size)
        _write_lines([json.dumps(r, ensure_ascii=False) + "\n" for r in results], args)
        return 0
    if args.image or args.image_dir:
        raise SystemExit(f"error: {args.model_dir} is a text model: pass --text or --file.")
    with log_to_stderr():
        return _predict_texts(args)


def _predict_texts(args: argparse.Namespace) -> int:
    """A text model: ``--file`` streamed (resumable), or ``--text`` in memory."""
    from ..text.batch import predict_file, prediction_lines
    from ..text.classifier import TextClassifier
    from ..text.stream import open_text_rows

    if args.file and args.text_pair:
        raise SystemExit("error: --text_pair goes with --text; with --file, --text_pair_column.")
    if args.file:  # the columns are checked before the model loads (or is exported)
        open_text_rows(args.file, args.text_column, args.text_pair_column)
    elif args.text_pair_column:
        raise SystemExit("error: --text_pair_column goes with --file; with --text, --text_pair.")
    else:
        _check_output(args)
    classifier = TextClassifier.from_pretrained(
        args.model_dir, backend=args.backend, quantize=args.quantize
    )
    if args.file:
        predict_file(
            classifier,
            args.file,
            args.output,
            text_column=args.text_column,
            text_pair_column=args.text_pair_column,
            batch_size=args.batch_size,
            chunk_size=args.chunk_size,
            overwrite_output=args.overwrite_output,
            coverage=args.coverage,
        )
        return 0
    texts = args.text
    if args.text_pair:  # sentence-pair models: (text, text_pair)
        if len(args.text_pair) != len(texts):
            raise SystemExit("error: give one --text_pair per --text.")
        texts = list(zip(texts, args.text_pair, strict=True))
    results = classifier.predict(texts, args.batch_size, coverage=args.coverage)
    _write_lines(prediction_lines(texts, results), args)
    return 0


def evaluate_main(args: argparse.Namespace) -> int:
    """``nlp-transfer evaluate``: the metrics of a saved model on labelled data, as JSON."""
    if args.batch_size <= 0:
        raise SystemExit("error: --batch_size must be positive.")
    image_model = task_of_model_dir(args.model_dir).modality == "image"
    if image_model != (args.image_dir is not None):
        raise SystemExit(
            f"error: {args.model_dir} is {'an image' if image_model else 'a text'} model: "
            f"pass {'--image_dir' if image_model else '--file'}."
        )
    if image_model:
        from ..vision.predict import evaluate_image_folder

        _torch_only(args)
        metrics = evaluate_image_folder(
            args.model_dir, args.image_dir, batch_size=args.batch_size, output_dir=args.output_dir
        )
    else:
        from ..text.predict import evaluate_saved_model

        with log_to_stderr():
            metrics = evaluate_saved_model(
                args.model_dir,
                args.file,
                text_column=args.text_column,
                label_column=args.label_column,
                batch_size=args.batch_size,
                output_dir=args.output_dir,
                backend=args.backend,
                quantize=args.quantize,
            )
    summary = {
        k: v
        for k, v in metrics.items()
        if isinstance(v, int | float) or v is None or k in ("backend", "calibration")
    }
    print(json.dumps(summary, indent=2))
    return 0


def add_refit_conformal_parser(sub) -> None:
    """``nlp-transfer refit-conformal``: its flags."""
    r = sub.add_parser(
        "refit-conformal",
        help="Replace a saved text model's conformal scores with those of labelled texts from "
        "the period it now predicts (after drift); the former scores are kept aside.",
    )
    r.add_argument("--model_dir", required=True, help="A run's output_dir.")
    r.add_argument(
        "--file",
        required=True,
        help="Labelled .csv/.tsv/.jsonl/.parquet: a random sample of the texts to predict, not "
        "texts the model was trained or validated on.",
    )
    r.add_argument("--text_column", default="text", help="Column holding the text.")
    r.add_argument("--label_column", default="label", help="Column holding the label (value).")
    r.add_argument("--batch_size", type=int, default=64, help="Texts per forward pass.")
    r.add_argument(
        "--abstain_below_precision",
        type=float,
        default=None,
        help="Single-label: choose the abstention threshold again on the file for this "
        "precision (unset: a model trained with one gets it again for its own target).",
    )


def refit_conformal_main(args: argparse.Namespace) -> int:
    """``nlp-transfer refit-conformal``: new ``conformal.json`` from a labelled file (JSON out)."""
    from ..text.refit_conformal import refit_conformal

    if task_of_model_dir(args.model_dir).modality == "image":
        raise SystemExit("error: refit-conformal is for text models.")
    with log_to_stderr():
        report = refit_conformal(
            args.model_dir,
            args.file,
            text_column=args.text_column,
            label_column=args.label_column,
            batch_size=args.batch_size,
            abstain_below_precision=args.abstain_below_precision,
        )
    print(json.dumps(report, indent=2))
    return 0
