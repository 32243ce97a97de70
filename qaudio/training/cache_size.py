"""How large the encoder cache (``--cache-encoder``) grows per hour of audio, for a model config.

The cache stores the audio tower's output per clip, (T', D_enc), in ``--cache-dtype``. T' comes
from :mod:`qaudio.model.lengths` (one Whisper encoder frame per 20 ms, pooled by the tower's
kind), D_enc is the encoder's width (with second towers, the fused width ``ModelConfig.audio_width``): so for Whisper large-v3 (1280 wide, 50 frames/s) in fp16
one hour is 3600 x 50 x 1280 x 2 bytes. ``python -m qaudio.training.cache_size`` prints the
table for every preset (the one in docs/shards.md).
"""

from __future__ import annotations

from ..audio import SAMPLE_RATE
from ..config import PRESETS, ModelConfig
from ..model.lengths import encoder_frame_count, max_samples, tower_frame_count

BYTES_PER_VALUE = {"fp16": 2, "bf16": 2, "fp32": 4}  # the cache's storage dtypes (TrainConfig.cache_dtype)


def cache_bytes_per_hour(config: ModelConfig, dtype: str = "fp16") -> int:
    """Bytes of cached encoder states per hour of audio cut into full encoder windows (30 s)."""
    window = max_samples()  # 480000 samples: the clips the encoder sees at most
    frames = tower_frame_count(encoder_frame_count(window), config.encoder.kind)  # per window
    windows_per_hour = 3600 * SAMPLE_RATE // window
    return int(windows_per_hour * frames * config.audio_width * BYTES_PER_VALUE[dtype])


def table(dtype: str = "fp16") -> str:
    rows = ["| preset | encoder width | frames per s | cache per hour of audio |", "|---|---|---|---|"]
    for name, config in PRESETS.items():
        frames = tower_frame_count(encoder_frame_count(max_samples()), config.encoder.kind) / (
            max_samples() / SAMPLE_RATE
        )
        rows.append(
            f"| {name} | {config.audio_width} | {frames:g} | {cache_bytes_per_hour(config, dtype) / 1e9:.3f} GB |"
        )
    return "\n".join(rows)


if __name__ == "__main__":
    print(table())
