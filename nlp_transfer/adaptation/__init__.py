"""Domain adaptation: a labelled source domain, an unlabelled target domain, one feature space.

Methods (on the pooled encoder features): source-only fine-tuning, DANN (Ganin et al. 2016),
Deep CORAL (Sun & Saenko 2016) and multi-kernel MMD (Long et al. 2015), compared on a
labelled target test split beside the in-domain oracle, with the proxy A-distance
(Ben-David et al. 2010) before and after alignment.
"""

from .config import METHODS, TARGET_DOMAINS, DomainAdaptationConfig
from .data import DomainSplits, PairedDomainSampler, load_domains, paired_dataloader
from .distance import proxy_a_distance
from .losses import DomainDiscriminator, coral_loss, dann_lambda, grad_reverse, mmd_loss
from .model import DomainAdaptationModel
from .run import run_domain_adaptation

__all__ = [
    "METHODS",
    "TARGET_DOMAINS",
    "DomainAdaptationConfig",
    "DomainAdaptationModel",
    "DomainDiscriminator",
    "DomainSplits",
    "PairedDomainSampler",
    "coral_loss",
    "dann_lambda",
    "grad_reverse",
    "load_domains",
    "mmd_loss",
    "paired_dataloader",
    "proxy_a_distance",
    "run_domain_adaptation",
]
