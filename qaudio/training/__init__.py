"""The parts of the training loop in :mod:`qaudio.train`, one concept per module.

- :mod:`.config`: the one :class:`TrainConfig` dataclass, its command line and YAML overrides
- :mod:`.setup`: the accelerator, the resume point, data -> items, the model, sampler and collators
- :mod:`.state`: :class:`TrainState`, where a run stands (saved with every checkpoint)
- :mod:`.step`: one optimizer step (micro-batches, backward, skips), the logging window, the dev pass
- :mod:`.corpus`: recipe specs -> filtered, length-checked training examples
- :mod:`.mixing`: temperature sampling over tasks and length-grouped micro-batches
- :mod:`.batching`: examples -> model inputs (targets, audio, cached features)
- :mod:`.bad_data`: skipping and counting unusable examples; the errors that stop a run
- :mod:`.losses`: the batch objective, per-task loss sums, the dev loss
- :mod:`.feature_cache`: frozen-encoder outputs on disk, keyed by audio and encoder identity
- :mod:`.optim`: AdamW parameter groups and the warm-up + cosine schedule
- :mod:`.budget`: ``--max-minutes``: the step count from a timed probe
- :mod:`.checkpoint`: accelerate's saved state, atomic, keep-last-K, trainable weights only
- :mod:`.metrics_log`: JSONL metrics, TensorBoard events and loss-curve plots

Nothing here subclasses a trainer: :mod:`qaudio.train` writes the loop out and calls these.
"""
