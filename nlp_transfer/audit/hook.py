"""``train --audit``: the audit of a run's own splits (after validation and test are split
off), before it trains; registered as the ``audit`` data check (:mod:`nlp_transfer.tasks`)."""

from __future__ import annotations

import logging
from pathlib import Path

from ..tasks import register_data_check
from ..text.problem import label_names_of, problem_type_of
from ..training.setup import check_output_dir
from .data import from_splits
from .report import format_audit_summary
from .run import AuditResult, audit_rows

logger = logging.getLogger(__name__)

AUDIT_SUBDIR = "audit"


def audit_before_training(config, dataset, accelerator) -> AuditResult | None:
    """Audit ``dataset`` (the run's ``train``/``validation``/``test``) on the main process into
    ``<output_dir>/audit``, log the summary, then let every process go on.

    Returns:
        The result on the main process, None on the others.
    """
    result = None
    if accelerator.is_main_process:
        out = check_output_dir(Path(config.output_dir) / AUDIT_SUBDIR, overwrite_output_dir=True)
        rows = from_splits(
            dict(dataset),
            None,
            {s: f"the run's {s} split" for s in dataset},
            problem_type_of(dataset),
            label_names_of(dataset),
        )
        result = audit_rows(
            rows,
            out,
            model_name_or_path=config.model_name_or_path,  # the run's encoder (None: MiniLM)
            max_seq_length=config.max_seq_length or 128,
            seed=config.seed,
            cache_dir=config.cache_dir,
        )
        logger.info(
            f"{format_audit_summary(result.summary)}\n  report: {out / 'audit.md'} (training goes "
            "on; nlp-transfer audit --write_cleaned FILE writes the kept rows)"
        )
    accelerator.wait_for_everyone()
    return result


register_data_check("audit", audit_before_training)
