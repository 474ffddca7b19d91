"""What a domain-adaptation run leaves in ``output_dir``, and the table it prints."""

from __future__ import annotations

import json
from pathlib import Path

from accelerate import Accelerator

from ..reporting.config_file import save_config


def write_metrics(
    config, metrics: dict, accelerator: Accelerator, models: dict, tokenizer=None
) -> None:
    """Write ``metrics.json`` and ``config.yaml`` (and ``<method>/`` models) on the main process.

    Args:
        config: The run's :class:`~nlp_transfer.adaptation.config.DomainAdaptationConfig`.
        metrics: JSON-serialisable results.
        accelerator: The run's Accelerator.
        models: ``{method: DomainAdaptationModel}`` to save (``--save_models``), each as a
            feature-extraction classifier that :func:`nlp_transfer.predict` loads.
        tokenizer: Saved beside each model.
    """
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        path = Path(config.output_dir).expanduser()
        path.mkdir(parents=True, exist_ok=True)
        for method, model in models.items():
            model.as_classifier().save_pretrained(path / method)
            if tokenizer is not None:
                tokenizer.save_pretrained(path / method)
        (path / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
        save_config(config, path / "config.yaml")
    accelerator.wait_for_everyone()


DESCRIPTIONS = {
    "source_only": "fine-tuned on source labels only",
    "dann": "DANN (gradient reversal)",
    "coral": "Deep CORAL",
    "mmd": "multi-kernel MMD",
    "oracle": "in-domain oracle (target labels)",
}


def format_table(metrics: dict) -> str:
    """The comparison as a text table: target test accuracy and macro-F1 per method, the
    difference to source-only, source test accuracy and the proxy A-distance."""
    methods = metrics["methods"]
    first = next(iter(methods.values()))
    baseline = methods.get("source_only")
    lines = [
        f"== domain adaptation: {metrics['source']} -> {metrics['target']} "
        f"(target test: {first['target_test']['num_examples']:,} texts) ==",
        f"{'method':<36}{'target acc':>11}{'vs source':>11}{'macro-F1':>10}{'source acc':>12}"
        f"{'PAD':>7}{'train s':>9}",
        f"{'pretrained features (no training)':<36}{'':>11}{'':>11}{'':>10}{'':>12}"
        f"{metrics['pretrained']['proxy_a_distance']['proxy_a_distance']:>7.3f}{'':>9}",
    ]
    for method, m in methods.items():
        accuracy = m["target_test"]["accuracy"]
        delta = f"{accuracy - baseline['target_test']['accuracy']:+.4f}" if baseline else "—"
        lines.append(
            f"{DESCRIPTIONS.get(method, method):<36}{accuracy:>11.4f}{delta:>11}"
            f"{m['target_test']['f1_macro']:>10.4f}{m['source_test']['accuracy']:>12.4f}"
            f"{m['proxy_a_distance']['proxy_a_distance']:>7.3f}{m['train_runtime_s']:>9.0f}"
        )
    lines.append(
        "PAD: proxy A-distance between source-test and target-test features (0 = the domains "
        "look alike, 2 = perfectly separable)."
    )
    lines.append(
        f"total {metrics['timings']['total_runtime_s']:.0f} s | saved to "
        f"{metrics['output_dir']} (metrics.json, config.yaml)"
    )
    return "\n".join(lines)
