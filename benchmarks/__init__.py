"""Speed and memory benchmarks of qaudio against the stack users pick instead (Hugging Face
``Qwen2AudioForConditionalGeneration``), each printing qaudio/peer ratios.

Run them as modules from the repository root::

    python -m benchmarks.train_throughput [--json FILE]
    python -m benchmarks.infer_throughput [--json FILE]

``clips.py`` makes the test clips, ``systems.py`` builds the two systems compared (and says what
is held equal between them), ``common.py`` holds what every benchmark shares (timing, memory,
FLOPs, workers, output);
``RESULTS.md`` records measured results with the machine, date and command, and
``results/`` the JSON those runs wrote.
"""
