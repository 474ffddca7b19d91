"""Domain adaptation: labelled movie reviews -> unlabelled product reviews (or tweets, or yours).

    accelerate launch recipes/domain_adaptation.py                        # movie -> amazon
    accelerate launch recipes/domain_adaptation.py --target_domain tweets # or nyt
    accelerate launch recipes/domain_adaptation.py --target_train_file unlabelled.csv \\
        --target_test_file labelled_test.csv --text_column text --label_column label
    accelerate launch recipes/domain_adaptation.py --methods source_only,dann --dann_weight 0.3

Trains source-only, DANN, Deep CORAL and multi-kernel MMD (and the in-domain oracle, when the
target has labels) from the same initialisation and prints their target test accuracy beside
the proxy A-distance of the features before and after alignment. The steps are
``nlp_transfer.adaptation.run_domain_adaptation``; this recipe sets nothing else.
"""

from __future__ import annotations

from nlp_transfer.adaptation import DomainAdaptationConfig, run_domain_adaptation
from nlp_transfer.cli.config import parse_config

__all__ = ["DomainAdaptationConfig", "main"]


def main(argv: list[str] | None = None) -> dict:
    """Run the recipe; returns the metrics it writes to ``output_dir/metrics.json``."""
    config = parse_config(DomainAdaptationConfig, argv)
    return run_domain_adaptation(config)


if __name__ == "__main__":
    main()
