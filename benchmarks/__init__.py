"""Speed and memory benchmarks of qaudio against the stack users pick instead (Hugging Face
``Qwen2AudioForConditionalGeneration``), each printing qaudio/peer ratios.

Run them as modules from the repository root::

    python -m benchmarks.train_throughput [--json FILE]
    python -m benchmarks.infer_throughput [--json FILE]

``common.py`` holds what both share (sizes, clips, the two systems, timing, memory, FLOPs);
``RESULTS.md`` records measured results with the machine, date and command, and
``results/`` the JSON those runs wrote.
"""
