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

from .data.builtin import BUILTIN_DATASETS
from .models.text import DEFAULT_MODEL_NAME

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
        config: The run's :class:`~nlp_transfer.config.TextClassificationConfig` or
            :class:`~nlp_transfer.vision.config.ImageClassificationConfig`.
        label_names: Label names in id order.
        modality: ``text`` (a transformers model) or ``image`` (a torchvision ResNet saved by
            :mod:`nlp_transfer.vision`).

    Returns:
        The card (``card.save(path)`` writes it; ``card.data`` is the metadata).
    """
    base_model = metrics.get("model_name") or DEFAULT_MODEL_NAME
    hub_like = (
        modality == "text" and "/" in base_model and not Path(base_model).expanduser().exists()
    )
    dataset = getattr(config, "dataset_name", None)
    builtin = BUILTIN_DATASETS.get(dataset) if dataset else None
    data_description = (metrics.get("data") or {}).get("description")
    if builtin is not None:
        dataset_text = f"the built-in `{dataset}` dataset ({builtin.description})"
    elif data_description:
        dataset_text = data_description
    elif dataset:
        dataset_text = f"the `{dataset}` dataset"
    else:
        user_data = getattr(config, "train_file", None) or getattr(config, "train_dir", None)
        dataset_text = f"`{Path(user_data or 'user data').name}`"
    task = f"{modality}-classification"
    model_name = Path(metrics.get("output_dir", "model")).name
    test = metrics["test"]
    binary = len(label_names) == 2
    metric_keys = ["accuracy", "f1_macro"] + (
        [f"precision_{label_names[1]}", f"recall_{label_names[1]}", f"f1_{label_names[1]}"]
        if binary
        else []
    )
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
    card_data = ModelCardData(
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
    results = [(f"fine-tuned `{base_model}`", [_fmt(test.get(k)) for k in metric_keys])]
    if metrics.get("baseline"):
        results.append(
            (
                "TF-IDF + LogisticRegression",
                [_fmt(metrics["baseline"].get(k, "—")) for k in metric_keys],
            )
        )
    strategy = metrics.get("transfer_strategy") or {}
    parameters = metrics.get("parameters", {})
    environment = metrics.get("environment", {})
    feature = strategy.get("name") == "feature_extraction"
    if modality == "image":
        usage = (
            "from nlp_transfer.vision import predict_images\n\n"
            f'predict_images("{model_name}", ["photo.png"])'
        )
    elif feature:
        usage = f'from nlp_transfer import predict\n\npredict("{model_name}", ["an example text"])'
    else:
        usage = (
            "from transformers import pipeline\n\n"
            f'classify = pipeline("text-classification", model="{model_name}")\n'
            'classify("an example text")'
        )
    return ModelCard.from_template(
        card_data,
        template_str=_TEMPLATE,
        model_name=model_name,
        modality=modality,
        labels=label_names,
        base_model=base_model,
        dataset_text=dataset_text,
        strategy=[(k, v) for k, v in strategy.items()],
        trainable=f"{parameters.get('trainable', 0):,}",
        total=f"{parameters.get('total', 0):,}",
        frozen=", ".join(parameters.get("frozen_blocks") or []) or "none",
        num_test=f"{test.get('num_examples', 0):,}",
        metric_names=metric_keys,
        results=results,
        best_epoch=metrics.get("best_epoch"),
        epochs=len(metrics.get("validation") or []),
        metric_for_best_model=metrics.get("metric_for_best_model"),
        has_confusion_matrix="confusion_matrix" in test,  # multi-label, regression: none
        hyperparameters=[(k, getattr(config, k)) for k in _HYPERPARAMETERS if hasattr(config, k)],
        train_runtime=f"{metrics.get('timings', {}).get('train_runtime_s', 0):.0f}",
        num_processes=environment.get("num_processes", 1),
        device=environment.get("device", "cpu"),
        mixed_precision=environment.get("mixed_precision", "no"),
        usage=usage,
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
