"""The parts of the training loop in :mod:`qaudio.train`, one concept per module.

- :mod:`.config`: the one :class:`TrainConfig` dataclass, its command line and YAML overrides
- :mod:`.corpus`: recipe specs -> filtered, length-checked training examples
- :mod:`.mixing`: temperature sampling over tasks and length-grouped micro-batches
- :mod:`.batching`: examples -> model inputs (targets, audio, cached features)
- :mod:`.bad_data`: skipping and counting unusable examples; the errors that stop a run
- :mod:`.losses`: the batch objective, per-task loss sums, the dev loss
- :mod:`.feature_cache`: frozen-encoder outputs on disk, keyed by audio and encoder identity
- :mod:`.optim`: AdamW parameter groups and the warm-up + cosine schedule
- :mod:`.budget`: ``--max-minutes``: the step count from a timed probe
- :mod:`.checkpoint`: atomic checkpoints, keep-last-K and finding the latest complete one
- :mod:`.metrics_log`: JSONL metrics, TensorBoard events and loss-curve plots

Nothing here subclasses a trainer: :mod:`qaudio.train` writes the loop out and calls these.
"""
