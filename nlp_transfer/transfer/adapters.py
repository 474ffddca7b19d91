"""Parameter-efficient transfer: adapters through ``peft`` (LoRA, IA3, prompt tuning) and BitFit.

No adapter code of our own: :func:`apply_adapter` builds a ``peft`` config from the run's flags
and the model's block view and calls ``peft.get_peft_model``. The newly initialised head is
trained in full (``modules_to_save``); everything else pretrained is frozen.

LoRA and IA3 inject their modules *into* the model, in place: the task keeps training the model
object it built, so its block view, the frozen-prefix cache, layer-wise LR decay and gradual
unfreezing work on it unchanged; the ``PeftModel`` wrapper is kept on the plan to save the
adapter and merge it. Prompt tuning prepends virtual tokens in the wrapper's forward, so it
trains the wrapper (:meth:`~nlp_transfer.transfer.plan.TransferPlan.training_model`).

Sources: LoRA (Hu et al. 2021), IA3 (Liu et al. 2022), prompt tuning (Lester et al. 2021),
BitFit (Ben Zaken et al. 2022); ``peft.get_peft_model``, ``PeftModel.merge_and_unload``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from torch import nn

from ..models.blocks import BlockView
from ..models.targets import adapter_targets_for, matches
from .freeze import FreezeReport, count_parameters, freeze_encoder_layers

ADAPTER_DIR = "adapter"
MERGEABLE = ("lora", "ia3")


def adapter_blocks(view: BlockView, freeze_layers: int) -> list:
    """The blocks that get adapters: the encoder layers (stages) at or above ``freeze_layers``."""
    return view.blocks[1:] if freeze_layers == 0 else view.blocks[freeze_layers + 1 :]


def target_module_names(
    model: nn.Module, view: BlockView, targets: tuple[str, ...], freeze_layers: int
) -> list[str]:
    """Full names of the modules in the adapted blocks that ``targets`` name (see
    :func:`~nlp_transfer.models.targets.matches`).

    Raises:
        ValueError: No module matches (names ``--lora_target_modules``).
    """
    names = {id(m): n for n, m in model.named_modules()}
    found = []
    for block in adapter_blocks(view, freeze_layers):
        for root in block.modules:
            for relative, module in root.named_modules():
                if relative and matches(relative, targets) and _adaptable(module):
                    found.append(f"{names[id(root)]}.{relative}")
    if not found:
        raise ValueError(
            f"--lora_target_modules: no Linear or Conv2d module named {', '.join(targets)} in "
            f"the adapted layers of {type(model).__name__}."
        )
    return found


def _adaptable(module: nn.Module) -> bool:
    return isinstance(module, nn.Linear | nn.Conv2d)


def _peft_config(model: nn.Module, config, view: BlockView):
    """The ``peft`` config of ``--peft`` for ``model``."""
    import peft
    from transformers import PreTrainedModel

    names = {id(m): n for n, m in model.named_modules()}
    head = [names[id(m)] for m in (view.new.modules if view.new else view.head.modules)]
    task = peft.TaskType.SEQ_CLS if isinstance(model, PreTrainedModel) else None
    if config.peft == "prompt_tuning":
        if task is None:
            raise ValueError("--peft prompt_tuning needs a text model (it adds virtual tokens).")
        return peft.PromptTuningConfig(
            task_type=task, num_virtual_tokens=config.num_virtual_tokens, modules_to_save=head
        )
    defaults = adapter_targets_for(model) if not config.lora_target_modules else None
    if config.peft == "lora":
        wanted = (
            tuple(t.strip() for t in config.lora_target_modules.split(",") if t.strip())
            if config.lora_target_modules
            else defaults.lora
        )
        return peft.LoraConfig(
            task_type=task,
            r=config.lora_r,
            lora_alpha=config.lora_alpha,
            lora_dropout=config.lora_dropout,
            target_modules=target_module_names(model, view, wanted, config.freeze_layers),
            modules_to_save=head,
        )
    defaults = defaults or adapter_targets_for(model)
    targets = target_module_names(model, view, defaults.ia3, config.freeze_layers)
    feedforward = (
        target_module_names(model, view, defaults.ia3_feedforward, config.freeze_layers)
        if defaults.ia3_feedforward
        else []
    )
    return peft.IA3Config(
        task_type=task,
        target_modules=targets,
        feedforward_modules=feedforward,
        modules_to_save=head,
    )


def apply_adapter(model: nn.Module, config, view: BlockView) -> tuple[nn.Module, FreezeReport]:
    """Wrap ``model`` with ``peft.get_peft_model`` as ``--peft`` says.

    Adapters go into the encoder layers at or above ``--freeze_layers`` (all of them for 0):
    below, the blocks stay exactly as pretrained, so their output can be cached.

    Args:
        model: The task model (block view supported), freshly built.
        config: The run's :class:`~nlp_transfer.training.arguments.TransferConfig`.
        view: ``model``'s block view, built before wrapping.

    Returns:
        ``(peft_model, report)``; the report's counts are the trainable and total parameters
        as ``peft`` counts them (``get_nb_trainable_parameters``).

    Raises:
        ValueError: No default targets for the family, no module matches
            ``--lora_target_modules``, or prompt tuning on an image model.
    """
    import peft

    if config.freeze_layers:  # checks the range, names --freeze_layers
        freeze_encoder_layers(model, config.freeze_layers, view=view)
    peft_model = peft.get_peft_model(model, _peft_config(model, config, view))
    trainable, total = peft_model.get_nb_trainable_parameters()
    frozen = [b.name for b in view.blocks if not any(p.requires_grad for p in b.parameters())]
    adapted = [b.name for b in view.blocks if b.name not in frozen]
    return peft_model, FreezeReport(frozen, [*adapted, "head"], trainable, total)


def describe_adapter(config, peft_model: nn.Module) -> dict:
    """The adapter's entry of the strategy description (method, rank, where, trainable)."""
    trainable, total = peft_model.get_nb_trainable_parameters()
    entry: dict = {"method": config.peft, "trainable_params": trainable, "total_params": total}
    if config.peft == "lora":
        entry |= {"r": config.lora_r, "alpha": config.lora_alpha, "dropout": config.lora_dropout}
    if config.peft == "prompt_tuning":
        entry["num_virtual_tokens"] = config.num_virtual_tokens
    else:
        targets = sorted(peft_model.peft_config["default"].target_modules)
        entry["target_modules"] = sorted({t.rsplit(".", 1)[-1] for t in targets})
        entry["adapted_modules"] = len(targets)
        entry["merged"] = bool(config.merge_adapter) and config.peft in MERGEABLE
    return entry


def apply_bitfit(model: nn.Module, freeze_layers: int, view: BlockView) -> FreezeReport:
    """BitFit (Ben Zaken et al. 2022): only the bias terms train, and the head in full.

    With ``--freeze_layers k`` the biases of the frozen prefix stay frozen too (it can be cached).

    Returns:
        A :class:`~nlp_transfer.transfer.freeze.FreezeReport` with the resulting counts.
    """
    report = freeze_encoder_layers(model, freeze_layers, view=view)
    for block in view.blocks:
        for module in block.modules:
            for name, p in module.named_parameters():
                if p.requires_grad and not name.endswith("bias"):
                    p.requires_grad_(False)
    report.trainable_params, report.total_params = count_parameters(model)
    return report


def save_adapter_outputs(
    plan, accelerator, model: nn.Module, output_dir: str | os.PathLike, tokenizer=None
) -> nn.Module:
    """Save the adapter in peft's format and return the model for the run's usual save.

    Writes ``output_dir/adapter/`` (``adapter_config.json``, ``adapter_model.safetensors``, the
    model's ``config.json`` with its labels, and the tokenizer), loadable for prediction with
    :func:`load_adapter_classifier`. Then, for LoRA and IA3 with ``--merge_adapter`` (default),
    merges the adapter into the weights (``merge_and_unload``): the returned model saves in the
    plain Hugging Face layout. Otherwise the ``PeftModel`` is returned and ``output_dir`` gets
    the adapter format too.

    Args:
        plan: The run's transfer plan (its ``adapter`` is the ``PeftModel``, or None).
        accelerator: The run's Accelerator (only the main process writes).
        model: The trained (possibly prepared) model.
        output_dir: The run's output directory.
        tokenizer: Saved beside the adapter when given.

    Returns:
        What to save in ``output_dir``: ``model`` unchanged when the run has no adapter.
    """
    peft_model = getattr(plan, "adapter", None)
    if peft_model is None:
        return model
    config = plan.config
    path = Path(output_dir).expanduser()
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        peft_model.save_pretrained(path / ADAPTER_DIR)
        _save_companions(peft_model, path / ADAPTER_DIR, tokenizer)
    accelerator.wait_for_everyone()
    if config.peft in MERGEABLE and config.merge_adapter:
        return peft_model.merge_and_unload()
    if accelerator.is_main_process:
        _save_companions(peft_model, path, None)
    return peft_model


def _save_companions(peft_model: nn.Module, path: Path, tokenizer) -> None:
    """The base model's config (labels, decision threshold) and tokenizer beside an adapter."""
    path.mkdir(parents=True, exist_ok=True)
    config = getattr(peft_model.get_base_model(), "config", None)
    if hasattr(config, "save_pretrained"):
        config.save_pretrained(path)
    if tokenizer is not None:
        tokenizer.save_pretrained(path)


def is_adapter_dir(path: str | os.PathLike) -> bool:
    """Whether ``path`` holds a peft adapter (``adapter_config.json``)."""
    return (Path(path) / "adapter_config.json").exists()


def load_adapter_classifier(path: str | os.PathLike, merge: bool = True) -> nn.Module:
    """A text classifier from an adapter directory: its base model, the adapter on it.

    The base is the model ``adapter_config.json`` names (``base_model_name_or_path``), with the
    labels of the directory's ``config.json``; LoRA and IA3 are merged (``merge=True``).

    Raises:
        FileNotFoundError: The base model is not where the adapter says (a local path).
    """
    from peft import PeftConfig, PeftModel
    from transformers import AutoConfig, AutoModelForSequenceClassification

    path = Path(path)
    peft_config = PeftConfig.from_pretrained(str(path))
    base_path = peft_config.base_model_name_or_path
    if base_path and not Path(base_path).exists() and os.environ.get("HF_HUB_OFFLINE") == "1":
        raise FileNotFoundError(
            f"--model_dir {path}: the adapter's base model {base_path} is not there "
            f"(base_model_name_or_path in {path / 'adapter_config.json'})."
        )
    base = AutoModelForSequenceClassification.from_pretrained(
        base_path, config=AutoConfig.from_pretrained(path), ignore_mismatched_sizes=True
    )
    model = PeftModel.from_pretrained(base, str(path))
    method = json.loads((path / "adapter_config.json").read_text())["peft_type"].lower()
    return model.merge_and_unload() if merge and method in MERGEABLE else model
