"""The ``domain_adaptation`` task in the task registry: several models (source-only, DANN,
CORAL, MMD, the oracle) trained and compared in one run; no single saved model to predict with
or export, and nothing for ``search`` to tune."""

from __future__ import annotations

from collections.abc import Sequence

from ..tasks import Task, register_task
from .config import DomainAdaptationConfig
from .run import run_domain_adaptation


def _run(config: DomainAdaptationConfig, callbacks: Sequence = ()) -> dict:
    if callbacks:
        raise ValueError("domain_adaptation trains several models; it takes no callbacks.")
    return run_domain_adaptation(config)


register_task(
    Task(
        name="domain_adaptation",
        title="domain adaptation",
        config_class=DomainAdaptationConfig,
        modality=None,
        run=_run,
        searchable=False,
    )
)
