"""What a run writes for people to read: ``metrics.json`` and the summary (:mod:`.outputs`),
``config.yaml`` (:mod:`.config_file`), plots (:mod:`.plots`, :mod:`.plots_problems`) and the
Hugging Face model card (:mod:`.model_card`). Sits above ``training`` and below the task packages.
"""
