"""``nlp-transfer audit``: its flags and what it runs (:func:`nlp_transfer.audit.audit`)."""

from __future__ import annotations

import argparse
import json

PROBLEM_TYPES = ("single_label_classification", "multi_label_classification", "regression")


def add_audit_parser(sub) -> None:
    """``nlp-transfer audit``: its flags."""
    a = sub.add_parser(
        "audit",
        help="Audit labelled text before training: likely label errors, duplicates, leakage.",
        description="Find likely label errors (confident learning through cleanlab, on "
        "out-of-fold probabilities of a logistic regression on sentence features), exact and "
        "near duplicates within and across splits, train/test leakage and outliers. Writes "
        "audit.md (with plots), audit.json and suspects.csv to --output_dir; --write_cleaned "
        "writes the training rows it keeps to a new file (the source is never changed).",
    )
    source = a.add_mutually_exclusive_group(required=True)
    source.add_argument("--train_file", help="The training file (.csv, .tsv, .jsonl, .parquet).")
    source.add_argument("--dataset_name", help="A built-in set (all its splits are audited).")
    a.add_argument("--validation_file", help="Optional validation file, checked for leakage.")
    a.add_argument("--test_file", help="Optional test file, checked for leakage.")
    a.add_argument("--text_column", default="text")
    a.add_argument("--text_pair_column", help="Second text of sentence pairs.")
    a.add_argument("--label_column", default="label")
    a.add_argument("--label_separator", help="Splits multi-label strings ('a,b' with ',').")
    a.add_argument("--problem_type", choices=PROBLEM_TYPES, help="Default: from the labels.")
    a.add_argument(
        "--model_name_or_path",
        help="Encoder of the sentence features (default: the packaged all-MiniLM-L6-v2).",
    )
    a.add_argument("--max_seq_length", type=int, default=128, help="Tokens read per text.")
    a.add_argument("--num_folds", type=int, default=5, help="Cross-validation folds.")
    a.add_argument(
        "--fold_classifier", choices=["logistic_regression", "tfidf", "ensemble", "fine_tuned"],
        help="What gives the out-of-fold probabilities: a logistic regression on the sentence "
        "features, on TF-IDF, the mean of both (ensemble), or fine_tuned: a training run per "
        "fold (slower). Default: ensemble (single-label), else logistic_regression.",
    )  # fmt: skip
    a.add_argument(
        "--near_duplicate_threshold", type=float, default=0.95,
        help="Cosine similarity at or above which two texts are near duplicates.",
    )  # fmt: skip
    a.add_argument(
        "--output_dir", help="Where the report goes (default: outputs/audit-<date>-<time>)."
    )
    a.add_argument("--overwrite_output_dir", action="store_true")
    a.add_argument(
        "--write_cleaned", metavar="FILE",
        help="Write the training rows the audit keeps (all columns) to this new file.",
    )  # fmt: skip
    a.add_argument("--seed", type=int, default=42, help="Seed of the folds.")
    a.add_argument(
        "--cache_dir", help="Features and downloads (default: $NLP_TRANSFER_CACHE or ~/.cache)."
    )
    a.add_argument("--file_encoding", default="utf-8")
    a.add_argument("--json", action="store_true", help="Print audit.json instead of a summary.")


def audit_main(args: argparse.Namespace) -> int:
    """Run the audit and print its summary."""
    from ..audit import audit
    from ..audit.report import format_audit_summary
    from .predict import log_to_stderr

    with log_to_stderr():
        result = audit(
            args.train_file or args.dataset_name,
            validation=args.validation_file,
            test=args.test_file,
            output_dir=args.output_dir,
            text_column=args.text_column,
            text_pair_column=args.text_pair_column,
            label_column=args.label_column,
            label_separator=args.label_separator,
            problem_type=args.problem_type,
            model_name_or_path=args.model_name_or_path,
            max_seq_length=args.max_seq_length,
            num_folds=args.num_folds,
            fold_classifier=args.fold_classifier,
            near_duplicate_threshold=args.near_duplicate_threshold,
            write_cleaned=args.write_cleaned,
            overwrite_output_dir=args.overwrite_output_dir,
            seed=args.seed,
            cache_dir=args.cache_dir,
            encoding=args.file_encoding,
        )
    if args.json:
        print(json.dumps(result.summary, indent=2))
    else:
        print(format_audit_summary(result.summary))
        print(
            f"Report: {result.output_dir / 'audit.md'}; suspects: {result.output_dir / 'suspects.csv'}"
        )
        if result.cleaned_file is not None:
            print(f"Cleaned training rows: {result.cleaned_file}")
    return 0


DRIFT_EXIT_STATUS = 3  # --fail_on_drift: a scheduled check can act on it (1 is a user error)


def add_monitor_parser(sub) -> None:
    """``nlp-transfer monitor``: its flags."""
    m = sub.add_parser(
        "monitor",
        help="Has incoming text drifted from a model's training data? MMD, domain AUC, label shift.",
        description="Compare incoming texts with the training data of a saved text model (its "
        "fingerprint.npz): an MMD two-sample test on the model's features with a permutation "
        "p-value, a domain classifier's AUC, black-box shift estimation of the label priors, and "
        "the texts least like the training data; a verdict, and the domain-adaptation command "
        "to run when the texts drifted.",
    )
    m.add_argument("--model_dir", required=True, help="A text run's output_dir.")
    m.add_argument("--file", required=True, help="Incoming texts (.csv, .tsv, .jsonl, .parquet).")
    m.add_argument("--text_column", default="text")
    m.add_argument("--text_pair_column", help="Second text of sentence pairs.")
    m.add_argument("--max_texts", type=int, default=1000, help="Compare a sample of this many.")
    m.add_argument("--alpha", type=float, default=0.05, help="Level of the MMD test.")
    m.add_argument("--num_permutations", type=int, default=500)
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--file_encoding", default="utf-8")
    m.add_argument("--output_file", help="Also write the report as JSON to this new file.")
    m.add_argument("--json", action="store_true", help="Print the report as JSON.")
    m.add_argument(
        "--fail_on_drift", action="store_true",
        help=f"Exit with status {DRIFT_EXIT_STATUS} when the verdict is drift.",
    )  # fmt: skip


def monitor_main(args: argparse.Namespace) -> int:
    """Run the drift check and print its report."""
    from ..audit.monitoring import format_monitor_report, monitor
    from .predict import log_to_stderr

    with log_to_stderr():
        report = monitor(
            args.model_dir,
            args.file,
            text_column=args.text_column,
            text_pair_column=args.text_pair_column,
            max_texts=args.max_texts,
            alpha=args.alpha,
            num_permutations=args.num_permutations,
            seed=args.seed,
            encoding=args.file_encoding,
            output_file=args.output_file,
        )
    print(json.dumps(report, indent=2) if args.json else format_monitor_report(report))
    return DRIFT_EXIT_STATUS if args.fail_on_drift and report["verdict"] == "drift" else 0
