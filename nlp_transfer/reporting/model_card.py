"""Model cards: a Hugging Face ``README.md`` for every saved model, built with ``huggingface_hub``.

The card's YAML metadata (``library_name``, ``base_model``, ``datasets``, ``metrics`` and
``model-index`` results, ``pipeline_tag``, licence where known) is made with
``huggingface_hub.ModelCardData``/``EvalResult``, so the Hub and ``ModelCard.load`` parse it; the
body says how the model was made: the transfer strategy, hyper-parameters, test metrics beside
the baseline, and the confusion-matrix plot.
"""

from __future__ import annotations

import os
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from ..data.builtin import BUILTIN_DATASETS
from ..hub import DEFAULT_MODEL_NAME

# Licences of models we ship or know; others are left out rather than guessed.
KNOWN_MODEL_LICENSES = {DEFAULT_MODEL_NAME: "apache-2.0"}

_TEMPLATE = """---
{{ card_data }}
---

# {{ model_name }}

A{{ "n" if modality == "image" else "" }} {{ modality }} classifier ({{ labels | join(", ") }}) {{ "trained" if modality == "image" else "fine-tuned" }} from `{{ base_model }}` with
nlp_transfer on {{ dataset_text }}.

## Transfer strategy

| setting | value |
| --- | --- |
{% for key, value in strategy %}| {{ key }} | {{ value }} |
{% endfor %}
Trainable parameters: {{ trainable }} of {{ total }}; frozen blocks: {{ frozen }}.

## Results on the test split ({{ num_test }} examples)

| model | {{ metric_names | join(" | ") }} |
| --- | {% for _ in metric_names %}--- | {% endfor %}
{% for row in results %}| {{ row[0] }} | {{ row[1] | join(" | ") }} |
{% endfor %}
Best epoch {{ best_epoch }} of {{ epochs }} by validation `{{ metric_for_best_model }}`.
{% if has_confusion_matrix %}
![Confusion matrix on the test split](plots/confusion_matrix.png)
{% endif %}{% if calibration %}
## Calibration

Temperature scaling (Guo et al. 2017), fitted on the validation split and folded into the
classification head: the saved model's probabilities are the calibrated ones in every backend;
the temperature does not change its labels. Temperature: {{ calibration.temperature_text }}.{% if calibration.isotonic_text %}
{{ calibration.isotonic_text }}{% endif %}

| test split | ECE (15 bins) | Brier score | NLL |
| --- | --- | --- | --- |
{% for name, row in calibration.rows %}| {{ name }} | {{ row.ece }} | {{ row.brier }} | {{ row.nll }} |
{% endfor %}
![Reliability diagram on the test split](plots/reliability.png)
{% endif %}
## Training hyper-parameters

| hyper-parameter | value |
| --- | --- |
{% for key, value in hyperparameters %}| `{{ key }}` | {{ value }} |
{% endfor %}
Training took {{ train_runtime }} s on {{ num_processes }} process(es) ({{ device }},
mixed precision {{ mixed_precision }}).

## Use

```python
{{ usage }}
```
"""

_HYPERPARAMETERS = (
    "problem_type",
    "text_pair_column",
    "learning_rate",
    "head_learning_rate",
    "num_train_epochs",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "weight_decay",
    "warmup_ratio",
    "lr_scheduler_type",
    "max_seq_length",
    "long_text_strategy",
    "image_size",
    "augment",
    "max_grad_norm",
    "class_weights",
    "sampling",
    "seed",
)


def _fmt(value: object) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def build_model_card(
    metrics: dict, config: object, label_names: list[str], modality: str = "text"
) -> ModelCard:
    """A :class:`huggingface_hub.ModelCard` for a finished classification run.

    Args:
        metrics: What the run wrote to ``metrics.json``.
        config: The run's :class:`~nlp_transfer.cli.config.TextClassificationConfig` or
            :class:`~nlp_transfer.vision.config.ImageClassificationConfig`.
        label_names: Label names in id order.
        modality: ``text`` (a transformers model) or ``image`` (a torchvision ResNet saved by
            :mod:`nlp_transfer.vision`).

    Returns:
        The card (``card.save(path)`` writes it; ``card.data`` is the metadata).
    """
    base_model = metrics.get("model_name") or DEFAULT_MODEL_NAME
    dataset = getattr(config, "dataset_name", None)
    model_name = Path(metrics.get("output_dir", "model")).name
    test = metrics["test"]
    metric_keys = _metric_keys(label_names)
    card_data = _card_data(metrics, model_name, base_model, dataset, metric_keys, modality)
    strategy = metrics.get("transfer_strategy") or {}
    return ModelCard.from_template(
        card_data,
        template_str=_TEMPLATE,
        model_name=model_name,
        modality=modality,
        labels=label_names,
        base_model=base_model,
        dataset_text=_dataset_text(metrics, config, dataset),
        strategy=[(k, _cell(v)) for k, v in strategy.items()] + _long_text_row(metrics),
        **_parameter_fields(metrics),
        num_test=f"{test.get('num_examples', 0):,}",
        metric_names=metric_keys,
        results=_results_rows(metrics, base_model, metric_keys),
        best_epoch=metrics.get("best_epoch"),
        epochs=len(metrics.get("validation") or []),
        metric_for_best_model=metrics.get("metric_for_best_model"),
        has_confusion_matrix="confusion_matrix" in test,  # multi-label, regression: none
        hyperparameters=[(k, getattr(config, k)) for k in _HYPERPARAMETERS if hasattr(config, k)],
        **_environment_fields(metrics),
        usage=_usage(model_name, modality, strategy),
        calibration=_calibration_fields(metrics),
    )


def _cell(value) -> str:
    """A strategy table cell: a nested report (e.g. the contrastive stage's) as ``key value``
    pairs, floats to 4 significant digits."""
    if not isinstance(value, dict):
        return value
    shown = (f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in value.items())
    return ", ".join(shown)


def _long_text_row(metrics: dict) -> list[tuple[str, str]]:
    """The strategy table's row on how texts longer than ``max_seq_length`` were read."""
    long_text = metrics.get("long_text")
    return [("long texts", long_text["description"])] if long_text else []


def _calibration_fields(metrics: dict) -> dict | None:
    """The card's calibration section: the temperature(s) and the test split's ECE, Brier and
    NLL before and after (None when the run was not calibrated or has no test report)."""
    report = metrics.get("calibration")
    if not report or "test" not in report:
        return None
    temperature = report["temperature"]
    if isinstance(temperature, list):
        text = f"one per label, {min(temperature):.3f} to {max(temperature):.3f}"
    else:
        text = f"{temperature:.4f}"
    steps = (("before calibration", "before"), ("after calibration", "after"))
    isotonic, isotonic_text = report.get("isotonic"), None
    if isotonic:  # binary: an isotonic map after the temperature (metrics.recalibration)
        steps = (steps[0], ("after the temperature", "after_temperature"), steps[1])
        isotonic_text = (
            f"Then a centered isotonic map of the positive label's probability (Oron and "
            f"Flournoy 2017, after Zadrozny and Elkan 2002; {isotonic['breakpoints']} breakpoints, saved in `config.json` and applied "
            f"by `TextClassifier` in every backend, not by `transformers.pipeline`): it lowered "
            f"the validation NLL, cross-validated, from {isotonic['cv_nll_temperature']:.4f} "
            f"to {isotonic['cv_nll']:.4f}. Labels follow the calibrated probabilities "
            f"({report['test'].get('labels_changed', 0)} test texts changed label)."
        )
    rows = [
        (name, {k: f"{report['test'][key][k]:.4f}" for k in ("ece", "brier", "nll")})
        for name, key in steps
    ]
    return {"temperature_text": text, "rows": rows, "isotonic_text": isotonic_text}


def _dataset_text(metrics: dict, config: object, dataset: str | None) -> str:
    """The intro's "on ..." phrase: the built-in dataset, the data's description, or the file."""
    builtin = BUILTIN_DATASETS.get(dataset) if dataset else None
    data_description = (metrics.get("data") or {}).get("description")
    if builtin is not None:
        return f"the built-in `{dataset}` dataset ({builtin.description})"
    if data_description:
        return data_description
    if dataset:
        return f"the `{dataset}` dataset"
    user_data = getattr(config, "train_file", None) or getattr(config, "train_dir", None)
    return f"`{Path(user_data or 'user data').name}`"


def _metric_keys(label_names: list[str]) -> list[str]:
    """The results table's columns: accuracy, macro-F1 and, for binary tasks, id 1's P/R/F1."""
    binary = len(label_names) == 2
    return ["accuracy", "f1_macro"] + (
        [f"precision_{label_names[1]}", f"recall_{label_names[1]}", f"f1_{label_names[1]}"]
        if binary
        else []
    )


def _card_data(
    metrics: dict,
    model_name: str,
    base_model: str,
    dataset: str | None,
    metric_keys: list[str],
    modality: str,
) -> ModelCardData:
    """The card's YAML metadata, with the test metrics as ``model-index`` results."""
    hub_like = (
        modality == "text" and "/" in base_model and not Path(base_model).expanduser().exists()
    )
    task = f"{modality}-classification"
    test = metrics["test"]
    eval_results = [
        EvalResult(
            task_type=task,
            dataset_type=dataset or "custom",
            dataset_name=dataset or "custom",
            dataset_split="test",
            metric_type=key,
            metric_name=key,
            metric_value=round(float(test[key]), 4),
        )
        for key in metric_keys
        if test.get(key) is not None
    ]
    return ModelCardData(
        model_name=model_name,
        base_model=base_model if hub_like else None,
        datasets=[dataset] if dataset else None,
        library_name="transformers" if modality == "text" else "pytorch",
        pipeline_tag=task,
        license=KNOWN_MODEL_LICENSES.get(base_model),
        metrics=["accuracy", "f1"],
        tags=["nlp_transfer", task, "transfer-learning"]
        + (["torchvision", "resnet"] if modality == "image" else []),
        eval_results=eval_results,
    )


def _results_rows(
    metrics: dict, base_model: str, metric_keys: list[str]
) -> list[tuple[str, list[str]]]:
    """The results table's rows: the fine-tuned model, and the baseline when there is one."""
    test = metrics["test"]
    results = [(f"fine-tuned `{base_model}`", [_fmt(test.get(k)) for k in metric_keys])]
    if metrics.get("baseline"):
        results.append(
            (
                "TF-IDF + LogisticRegression",
                [_fmt(metrics["baseline"].get(k, "—")) for k in metric_keys],
            )
        )
    return results


def _parameter_fields(metrics: dict) -> dict[str, str]:
    """The strategy section's trainable/total parameter counts and frozen blocks."""
    parameters = metrics.get("parameters", {})
    return {
        "trainable": f"{parameters.get('trainable', 0):,}",
        "total": f"{parameters.get('total', 0):,}",
        "frozen": ", ".join(parameters.get("frozen_blocks") or []) or "none",
    }


def _environment_fields(metrics: dict) -> dict:
    """The hyper-parameter section's last line: training time, processes, device, precision."""
    environment = metrics.get("environment", {})
    return {
        "train_runtime": f"{metrics.get('timings', {}).get('train_runtime_s', 0):.0f}",
        "num_processes": environment.get("num_processes", 1),
        "device": environment.get("device", "cpu"),
        "mixed_precision": environment.get("mixed_precision", "no"),
    }


def _usage(model_name: str, modality: str, strategy: dict) -> str:
    """The "Use" section's code: vision's ``predict_images``, ``predict``, or a pipeline."""
    if modality == "image":
        return (
            "from nlp_transfer.vision import predict_images\n\n"
            f'predict_images("{model_name}", ["photo.png"])'
        )
    if strategy.get("name") == "feature_extraction":
        return f'from nlp_transfer import predict\n\npredict("{model_name}", ["an example text"])'
    return (
        "from transformers import pipeline\n\n"
        f'classify = pipeline("text-classification", model="{model_name}")\n'
        'classify("an example text")'
    )


def write_model_card(
    output_dir: str | os.PathLike,
    metrics: dict,
    config: object,
    label_names: list[str],
    modality: str = "text",
) -> Path:
    """Write ``output_dir/README.md`` (see :func:`build_model_card`); returns its path."""
    path = Path(output_dir).expanduser() / "README.md"
    build_model_card(metrics, config, label_names, modality).save(path)
    return path
